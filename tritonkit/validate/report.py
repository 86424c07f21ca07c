"""The validation report: ``validation.json``, ``report.md`` and the checks table for the terminal."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonkit.report import TextTable, markdown_table, write_json, write_text
from tritonkit.validate.result import CheckResult

JSON_NAME = "validation.json"
MARKDOWN_NAME = "report.md"


@dataclass(frozen=True)
class ValidationReport:
    """Every check result of one run, plus where the server was and what was validated."""

    checks: tuple[CheckResult, ...]
    server: dict[str, Any] = field(default_factory=dict)
    models: tuple[dict[str, Any], ...] = ()
    not_requested: tuple[str, ...] = ()
    started: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.passed)

    @classmethod
    def combine(cls, reports: "list[ValidationReport] | tuple[ValidationReport, ...]") -> "ValidationReport":
        """One report from several runs against the same server (e.g. different check groups
        for different models): checks and models in run order, the first run's server and start."""
        if not reports:
            raise ValueError("combine needs at least one report")
        first = reports[0]
        not_requested = tuple(g for g in first.not_requested if all(g in r.not_requested for r in reports))
        return cls(checks=tuple(c for r in reports for c in r.checks), server=first.server,
                   models=tuple(m for r in reports for m in r.models), not_requested=not_requested,
                   started=first.started, seconds=sum(r.seconds for r in reports))

    def by_name(self, name: str, model: str | None = None) -> list[CheckResult]:
        return [c for c in self.checks if c.name == name and (model is None or c.model == model)]

    def to_dict(self) -> dict:
        return {"passed": self.passed, "started": self.started, "seconds": round(self.seconds, 2),
                "server": self.server, "models": list(self.models),
                "not_requested": list(self.not_requested),
                "summary": {"checks": len(self.checks), "failed": len(self.failed)},
                "checks": [c.to_dict() for c in self.checks]}

    def markdown(self) -> str:
        verdict = "PASSED" if self.passed else f"FAILED ({len(self.failed)} of {len(self.checks)} checks)"
        parts = [f"# Deployment validation: {verdict}\n\n",
                 f"Server: gRPC `{self.server.get('grpc')}`, HTTP `{self.server.get('http')}`, metrics "
                 f"`{self.server.get('metrics')}`; Triton {self.server.get('version', '?')}; "
                 f"{self.server.get('process', '')}. Started {self.started}, took {self.seconds:.1f} s.\n\n"]
        if self.models:
            parts += ["## Models\n\n", markdown_table(
                ["model", "card", "reference", "precision"],
                [[m["name"], m["card_source"], m["reference_source"], m["precision"]] for m in self.models]), "\n"]
        parts += ["## Checks\n\n", markdown_table(
            ["check", "model", "result", "detail"],
            [[c.name, c.model or "(server)", "pass" if c.passed else "**FAIL**", _one_line(c.detail)]
             for c in self.checks]),
            "\n"]
        hinted = [c for c in self.failed if c.hint]
        if hinted:
            parts.append("## How to fix\n\n" + "".join(
                f"- `{c.name}`" + (f" ({c.model})" if c.model else "") + f": {c.hint}\n" for c in hinted) + "\n")
        if self.not_requested:
            parts.append(f"Not requested: {', '.join(self.not_requested)} (opt-in: `--soak DURATION`).\n\n")
        with_figures = [c for c in self.checks if c.figures]
        if with_figures:
            parts.append("## Figures\n\n")
            for c in with_figures:
                rows = [[k, _cell(v)] for k, v in c.to_dict()["figures"].items()]
                parts += [f"### {c.name}" + (f" ({c.model})" if c.model else "") + "\n\n",
                          markdown_table(["figure", "value"], rows, digits=3), "\n"]
        return "".join(parts)

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``validation.json`` and ``report.md`` into ``out_dir`` (atomically)."""
        out = Path(out_dir)
        return self.write_json(out / JSON_NAME), self.write_markdown(out / MARKDOWN_NAME)

    def write_json(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())

    def write_markdown(self, path: str | Path) -> Path:
        return write_text(path, self.markdown())

    def table(self) -> TextTable:
        """The checks, one row each (check and model are what ``--checks`` / ``--models`` take)."""
        rows = tuple((c.name, c.model or "(server)", "pass" if c.passed else "FAIL",
                      _one_line(c.detail) + (f" fix: {_one_line(c.hint)}" if c.hint and not c.passed else ""))
                     for c in self.checks)
        return TextTable("tritonkit validate: " + ("PASSED" if self.passed else "FAILED"),
                         ("check", "model", "result", "detail"), rows, keys=(0, 1))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _cell(value: Any) -> Any:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(_short(v)) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return _one_line(value) if isinstance(value, str) else value


def _short(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_short(v)}" for k, v in value.items()) + "}"
    return value
