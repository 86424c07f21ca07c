"""The README's commands, for the tests that run them as written: the ``bash`` blocks of one section."""

from __future__ import annotations

import re
import shlex

from support.paths import ROOT


def section(heading: str) -> str:
    """The README text from ``heading`` to the next heading of level 2 or 3."""
    text = (ROOT / "README.md").read_text()
    start = text.index(heading)
    body = text.index("\n", start)
    nxt = re.search(r"^#{2,3} ", text[body:], re.M)
    return text[start:body + nxt.start()] if nxt else text[start:]


def code_blocks(heading: str, language: str = "python") -> list[str]:
    """The section's fenced code blocks of ``language``, as written."""
    return re.findall(rf"```{language}\n(.*?)```", section(heading), re.S)


def command_lines(heading: str) -> list[str]:
    """The commands of the section's ``bash`` blocks as text: continuation lines joined, comment
    lines and trailing comments dropped, whitespace collapsed."""
    out, current = [], ""
    for block in re.findall(r"```bash\n(.*?)```", section(heading), re.S):
        for line in block.splitlines():
            line = line.strip()
            if line.endswith("\\"):
                current += line[:-1].strip() + " "
                continue
            command = (current + line).split(" #")[0].strip()
            current = ""
            if command and not command.startswith("#"):
                out.append(" ".join(command.split()))
    return out


def commands(heading: str, prefix: str = "") -> list[list[str]]:
    """Every command of the section's ``bash`` blocks as an argv (shell words), those starting with
    ``prefix`` only."""
    return [argv for argv in (shlex.split(line, comments=True) for line in command_lines(heading))
            if argv and " ".join(argv).startswith(prefix)]


def substituted(argv: list[str], values: dict[str, str]) -> list[str]:
    """``argv`` with each word that is a key of ``values`` replaced (paths and addresses of the test)."""
    return [values.get(word, word) for word in argv]
