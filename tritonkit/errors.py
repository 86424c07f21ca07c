"""Domain errors. Library code raises these; only the CLI turns them into exit codes."""

from __future__ import annotations

from typing import Sequence

from tritonkit.spec import SpecError


class TritonkitError(Exception):
    """A problem the user can fix (bad input, missing file, unreachable server...).

    The CLI prints ``str(error)`` as one line and exits 1, without a traceback. ``fields`` lists
    the option fields the message names (``limit must be >= 1``: ``fields=("limit",)``), so a
    front end can show its own name for each instead; the CLI shows the flag that sets it.
    """

    def __init__(self, *args: object, fields: Sequence[str] = ()) -> None:
        super().__init__(*args)
        self.fields = tuple(fields)


class CardError(TritonkitError, SpecError):
    """A model card is malformed, duplicated or unknown. A :class:`~tritonkit.spec.SpecError`
    too: ``except SpecError`` catches every spec or card problem."""


class ConfigError(TritonkitError):
    """Repository options or a server-side chain that cannot make a valid model config."""


class DatasetError(TritonkitError):
    """A dataset is missing or its layout/annotations are unusable."""


class ServerError(TritonkitError):
    """The Triton server is unreachable, not ready, or disagrees with the card."""


class ToolMissingError(TritonkitError):
    """An external tool or optional library (perf_analyzer, tensorrt, docker) is missing."""
