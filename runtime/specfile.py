"""Reading a spec named on the command line, and reporting its errors.

Shared by `netc check` (runtime/cli.py) and the commands that run JAX (runtime/commands.py,
runtime/gradcheck.py). It imports only runtime/errors.py of netc.runtime, and the checker
only when called, so importing it costs nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import EXIT_ERROR, UsageError

if TYPE_CHECKING:
    from netc.compiler.ir import Net
    from netc.dsl.diagnostics import SpecError


def read_spec(path: str) -> tuple[str, str]:
    """(source text, display name). '-' reads standard input."""
    from netc.dsl.parser import decode_source

    if path == "-":
        return decode_source(sys.stdin.buffer.read(), "<stdin>"), "<stdin>"
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise UsageError(f"cannot read '{path}': {exc.strerror or exc}") from None
    return decode_source(data, path), path


def spec_folder(path: str) -> Path:
    """The folder a spec's relative paths (data, init from=) are read from: the spec's own
    folder, or the current one for standard input ('-')."""
    return Path.cwd() if path == "-" else Path(path).resolve().parent


def load_net(path: str) -> Net:
    """Read and check the spec at `path`. Raises SpecError, or UsageError if unreadable."""
    from netc.compiler.check import check_source

    source, name = read_spec(path)
    return check_source(source, name)


def report_spec_error(exc: SpecError, path: str, as_json: bool, source: str | None) -> int:
    """Print a spec's errors (and warnings): rendered on stderr, or as one JSON object on
    stdout. Returns the exit status, EXIT_ERROR."""
    from netc.dsl.diagnostics import render

    if as_json:
        print(json.dumps({"errors": [d.as_json() for d in exc.diagnostics],
                          "warnings": [d.as_json() for d in exc.warnings]}))
    else:
        for d in exc.diagnostics + exc.warnings:
            print(render(d, source or "", path), file=sys.stderr)
        n = len(exc.diagnostics)
        print(f"{n} error{'s' * (n != 1)} in {path}", file=sys.stderr)
    return EXIT_ERROR


__all__ = ["load_net", "read_spec", "report_spec_error", "spec_folder"]
