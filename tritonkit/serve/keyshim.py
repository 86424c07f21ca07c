"""Keep the restricted-API key off tritonserver's command line (``ps``, ``/proc/<pid>/cmdline``).

tritonserver 2.51 takes the restricted-API key only as part of a flag
(``--http-restricted-api=<apis>:<header>=<key>``, ``--grpc-restricted-protocol=...``): it has
no configuration file, no response file and no environment variable for it (its
``command_line_parser.cc`` reads ``argv`` only). Whatever is in ``argv`` when the process
starts is world-readable in ``/proc/<pid>/cmdline``.

So the server is started with :data:`PLACEHOLDER` where the key goes, and a small preloaded
library (``LD_PRELOAD``, compiled once with the system C compiler into the cache folder)
replaces it before ``main`` runs: an ELF constructor receives ``argc``/``argv`` and points the
argument at a heap copy holding the key read from :data:`VALUE_ENV`. ``/proc/<pid>/cmdline``
keeps showing the original stack strings, i.e. the placeholder. The key is then in the
server's initial environment only, which ``/proc/<pid>/environ`` shows to its owner (and root)
alone; the constructor also removes it and ``LD_PRELOAD`` from the environment its children
(python-backend stubs) inherit.

Fail closed: the placeholder holds control characters, which neither gRPC metadata nor the
HTTP clients can send, so a server that somehow ran with it would refuse every restricted
call; the constructor exits when the placeholder is there but the key is not; and
:class:`~tritonkit.serve.local.LocalServer` checks that the library is mapped in the server.
Without a C compiler the key goes on the command line as before and the exposure is reported
(``LocalServer.key_on_command_line``, the CLI's warning, ``validate``'s security check).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

VALUE_ENV = "TRITONKIT_RESTRICTED_VALUE"
PLACEHOLDER = "\x01tritonkit-restricted-value\x01"
_C_PLACEHOLDER = PLACEHOLDER.replace("\x01", "\\x01")

SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char PLACEHOLDER[] = "%(placeholder)s";

__attribute__((constructor))
static void tritonkit_fill_restricted_value(int argc, char **argv, char **envp) {
    (void)envp;
    const char *env = getenv("%(env)s");
    char *value = env ? strdup(env) : NULL;
    unsetenv("%(env)s");
    unsetenv("LD_PRELOAD");
    size_t plen = strlen(PLACEHOLDER);
    for (int i = 1; argv && i < argc; i++) {
        char *at = strstr(argv[i], PLACEHOLDER);
        if (!at) continue;
        if (!value || !*value) {
            fputs("tritonkit key shim: $%(env)s is not set; refusing to start\n", stderr);
            _exit(2);
        }
        size_t head = (size_t)(at - argv[i]);
        size_t n = strlen(argv[i]) - plen + strlen(value) + 1;
        char *out = malloc(n);
        if (!out) _exit(2);
        memcpy(out, argv[i], head);
        strcpy(out + head, value);
        strcat(out, at + plen);
        argv[i] = out;
    }
}
""" % {"placeholder": _C_PLACEHOLDER, "env": VALUE_ENV}


def compiler() -> str | None:
    """The C compiler to build the shim with (``$CC``, else ``cc`` or ``gcc`` on PATH)."""
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def shim_library(cache_dir: Path) -> Path | None:
    """The compiled shim in ``cache_dir`` (built once, atomically), or None when it cannot be built."""
    digest = hashlib.sha256(SOURCE.encode()).hexdigest()[:12]
    lib = Path(cache_dir) / f"tritonkit-keyshim-{digest}.so"
    if lib.is_file():
        return lib
    cc = compiler()
    if cc is None:
        return None
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        src = Path(tmp) / "keyshim.c"
        out = Path(tmp) / lib.name
        src.write_text(SOURCE)
        try:
            subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(out), str(src)], check=True,
                           capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return None
        os.replace(out, lib)
    return lib


def is_mapped(pid: int, lib: Path) -> bool:
    """Whether process ``pid`` has ``lib`` loaded (read from ``/proc/<pid>/maps``)."""
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
            return any(str(lib) in line for line in f)
    except OSError:
        return False


def key_in_cmdline(pid: int, key: str) -> bool | None:
    """Whether ``key`` is readable in ``/proc/<pid>/cmdline`` (None when it cannot be read)."""
    if not key:
        return False
    try:
        return key.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


__all__ = ["VALUE_ENV", "PLACEHOLDER", "shim_library", "is_mapped", "key_in_cmdline", "compiler"]
