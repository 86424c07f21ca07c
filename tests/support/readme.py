"""The README's shell commands, for the tests that run them as written."""

from __future__ import annotations

import re

from support.paths import ROOT


def section(heading: str) -> str:
    """The README's text from ``heading`` to the next heading of any level."""
    text = (ROOT / "README.md").read_text()
    start = text.index(heading)
    body = text.index("\n", start)
    nxt = re.search(r"^#{2,3} ", text[body:], re.M)
    return text[start:body + nxt.start()] if nxt else text[start:]


def commands(heading: str) -> list[str]:
    """The commands of the ```bash blocks under ``heading``: continuation lines joined, comment
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
