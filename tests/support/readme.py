"""The README's commands, for the tests that run them: the ``bash`` blocks of one section."""

from __future__ import annotations

import re
import shlex

from support.paths import ROOT


def section(heading: str) -> str:
    """The README text from ``heading`` to the next heading of level 2 or 3."""
    text = (ROOT / "README.md").read_text()
    start = text.index(heading)
    ends = [i for i in (text.find("\n## ", start + 1), text.find("\n### ", start + 1)) if i != -1]
    return text[start:min(ends) if ends else len(text)]


def commands(heading: str, prefix: str = "") -> list[list[str]]:
    """Every command of the section's ``bash`` blocks (``\\`` continuations joined, comments
    dropped) as an argv, those starting with ``prefix`` only."""
    out, current = [], ""
    for block in re.findall(r"```bash\n(.*?)```", section(heading), re.S):
        for line in block.splitlines():
            line = line.strip()
            if line.endswith("\\"):
                current += line[:-1] + " "
                continue
            argv = shlex.split(current + line, comments=True)
            current = ""
            if argv and " ".join(argv).startswith(prefix):
                out.append(argv)
    return out


def substituted(argv: list[str], values: dict[str, str]) -> list[str]:
    """``argv`` with each word that is a key of ``values`` replaced (paths and addresses of the test)."""
    return [values.get(word, word) for word in argv]
