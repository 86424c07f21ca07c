"""(not yet implemented)"""

from __future__ import annotations

import argparse

from tritonkit.errors import TritonkitError


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise TritonkitError("perf is not implemented yet")
