"""tritonkit: deploy vision models on Triton Inference Server and measure what you got.

Stages, in pipeline order: export -> build -> repo -> serve -> eval -> perf -> validate.
`tritonkit demo` runs the whole pipeline on generated data with the local CPU server.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

from tritonkit import __version__
from tritonkit.cli.args import first_line, flag_message
from tritonkit.errors import TritonkitError

# subcommand -> module in tritonkit.cli. Modules import only light things at top level, so
# building the parser (and `tritonkit --help`) stays instant.
SUBCOMMANDS = {
    "cards": "cards",
    "export": "export",
    "build": "build",
    "repo": "repo",
    "serve": "serve",
    "eval": "evaluate",
    "perf": "perf",
    "validate": "validate",
    "deploy": "deploy",
    "demo": "demo",
    "gpu-smoke": "gpu_smoke",
}


# Write failures a user fixes on the machine, not in the code: one line, exit 1, no traceback.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tritonkit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"tritonkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(f"tritonkit.cli.{module_name}")
        p = sub.add_parser(name, help=first_line(module.__doc__), description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tritonkit`` console script. Returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except TritonkitError as exc:
        print(f"tritonkit {args.command}: error: {flag_message(exc, parser, args)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tritonkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        hint = " (files already written are complete; free space and rerun)" if exc.errno == errno.ENOSPC else ""
        print(f"tritonkit {args.command}: error{where}: {exc.strerror or exc}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
