"""A command run in the background for a test: started, waited for, always stopped."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence


@contextmanager
def background(argv: Sequence[str], log: Path, ready_url: str, timeout_s: float = 180.0,
               **popen) -> Iterator[subprocess.Popen]:
    """Run ``argv`` (output to ``log``) until ``ready_url`` answers 200, yield it, then SIGTERM it
    (SIGKILL after 60 s) whatever happened."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **popen)
    try:
        deadline = time.monotonic() + timeout_s
        while not _answers(ready_url):
            if proc.poll() is not None or time.monotonic() > deadline:
                exited = proc.poll() is not None
                state = f"exited with {proc.returncode}" if exited else f"not ready in {timeout_s:.0f} s"
                raise AssertionError(f"{' '.join(argv[:4])} ... {state}: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.5)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
