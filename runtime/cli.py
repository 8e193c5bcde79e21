"""The `netc` command line. Exit status: 0 ok, 1 a spec/data/run error, 2 misuse, 130 Ctrl-C.

Subcommands import what they need when they run: `netc check` never imports JAX.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from netc.dsl.diagnostics import SpecError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class UsageError(Exception):
    """A command-line misuse (exit 2)."""


class RunError(Exception):
    """A failure of a run that is the user's to fix: bad data, a diverging loss (exit 1)."""


# ---- reading specs -------------------------------------------------------------------


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


def load_net(path: str):
    from netc.compiler.check import check_source

    source, name = read_spec(path)
    return check_source(source, name)


def report_spec_error(exc: SpecError, path: str, as_json: bool, source: str | None) -> int:
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


# ---- netc check ----------------------------------------------------------------------


def cmd_check(args) -> int:
    from netc.compiler.check import check_source
    from netc.compiler.summary import to_json
    from netc.dsl.diagnostics import SpecError, render

    source = None
    try:
        source, name = read_spec(args.file)
        net = check_source(source, name)
    except SpecError as exc:
        shown = "<stdin>" if args.file == "-" else args.file
        return report_spec_error(exc, shown, args.json, source)
    if args.json:
        print(json.dumps(to_json(net)))
        return EXIT_OK
    from netc.compiler.summary import print_table
    from rich.console import Console

    for w in net.warnings:
        print(render(w, source, name), file=sys.stderr)
    print_table(net, Console(highlight=False))
    return EXIT_OK


# ---- argument parsing ----------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own misuse path: one line, exit 2
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="netc", description="Write neural networks as text; check and train "
                     "them on JAX.")
    from netc import __version__

    parser.add_argument("--version", action="version", version=f"netc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("check", help="parse and shape-check a spec; print its layer table")
    p.add_argument("file", help="the .net file ('-' for standard input)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(run=cmd_check)

    from netc.runtime import commands  # train, eval, predict, gradcheck: JAX only when run

    commands.register(sub)
    return parser


def _import_lark_without_regex() -> None:
    """Import lark with the third-party `regex` module hidden. lark imports `regex` whenever
    it is installed, for its `regex=True` option only, which netc does not use; that import
    is ~12 ms of CPU, some 8% of a `netc check`. Only the command line does this (its process
    is ours); `import netc` leaves lark as it is."""
    if "lark" in sys.modules or "regex" in sys.modules:
        return
    sys.modules["regex"] = None  # type: ignore[assignment]  # `import regex` raises ImportError
    try:
        import lark  # noqa: F401
    finally:
        del sys.modules["regex"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _import_lark_without_regex()
    from netc.dsl.diagnostics import SpecError

    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "run", None):
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return args.run(args)
    except UsageError as exc:
        print(f"netc: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SpecError as exc:  # from commands that load a spec
        path = getattr(locals().get("args"), "file", "<spec>")
        try:
            source = read_spec(path)[0]
        except (UsageError, SpecError):
            source = None
        return report_spec_error(exc, path, False, source)
    except RunError as exc:
        print(f"netc: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("netc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        if os.environ.get("NETC_DEBUG"):
            raise
        print(f"netc: internal error: {type(exc).__name__}: {exc}\n"
              "  (this is a bug in netc; rerun with NETC_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
