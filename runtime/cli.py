"""The `netc` command line. Exit status: 0 ok, 1 a spec/data/run error, 2 misuse, 130 Ctrl-C.

Subcommands import what they need when they run: `netc check` never imports JAX.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys

from .errors import (
    EXIT_ERROR,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    RunError,
    UsageError,
)
from .specfile import read_spec, report_spec_error, spec_folder

# ---- netc check ----------------------------------------------------------------------


def cmd_check(args) -> int:
    from netc.compiler.check import check_source
    from netc.compiler.summary import to_json
    from netc.dsl.diagnostics import SpecError, render

    source = None
    try:
        source, name = read_spec(args.file)
        net = check_source(source, name)
        transfer = None
        if net.train.init_from is not None:  # reads the run's file header; no JAX
            from netc.compiler.transfer_check import resolve_init_from

            transfer = resolve_init_from(net, spec_folder(args.file))
    except SpecError as exc:
        shown = "<stdin>" if args.file == "-" else args.file
        return report_spec_error(exc, shown, args.json, source)
    warnings = list(net.warnings) + list(transfer.warnings if transfer else ())
    if args.json:
        out = to_json(net, transfer)
        out["warnings"] += [w.as_json() for w in transfer.warnings] if transfer else []
        print(json.dumps(out))
        return EXIT_OK
    from netc.compiler.summary import print_table
    from rich.console import Console

    for w in warnings:
        print(render(w, source, name), file=sys.stderr)
    print_table(net, Console(highlight=False), transfer)
    return EXIT_OK


def _draw(args) -> int:
    from .draw import cmd_draw  # matplotlib only for a PNG; never JAX

    return cmd_draw(args)


# ---- argument parsing ----------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own misuse path: one line, exit 2
        raise UsageError(message)


class _Version(argparse.Action):
    """--version: the installed distribution's version, looked up only when asked (the
    runtime does not import the netc package's __init__, which imports the runtime)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("netc")
        except PackageNotFoundError:
            text = "(version unknown: netc is not installed)"
        print(f"netc {text}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="netc", description="Write neural networks as text; check and train "
                     "them on JAX.")
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="show netc's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("check", help="parse and shape-check a spec; print its layer table")
    p.add_argument("file", help="the .net file ('-' for standard input)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("draw", help="draw the checked net as an SVG or PNG diagram")
    p.add_argument("file", help="the .net file ('-' for standard input)")
    p.add_argument("--out", metavar="PATH", help="model.svg or model.png (default NET.svg)")
    p.set_defaults(run=_draw)

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


def command() -> int:
    """The `netc` command (the console script, `python -m netc`): main() in a process of its
    own. The garbage collector is off while the command imports its modules (0.12 s of
    importing JAX, Optax and netc on this 2-core machine) until commands.settle_imports
    freezes what they made and turns it back on (`check`, `draw` and `diagnose`, which
    import no JAX, end first); at the end everything alive is frozen, so that the
    interpreter's teardown skips collecting it (0.2 s of a moons run's exit).
    benchmarks/FINDINGS.md has the figures."""
    from netc.runtime.commands import hold_collections

    hold_collections()
    try:
        return main()
    finally:
        gc.freeze()


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
        args.argv = list(argv)  # the command as given (a distributed run re-runs it)
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
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        if os.environ.get("NETC_DEBUG"):
            raise
        lines = str(exc).strip().splitlines() or [""]  # its first line: one line to read
        more = " ..." if len(lines) > 1 else ""
        print(f"netc: internal error: {type(exc).__name__}: {lines[0]}{more}\n"
              "  (this is a bug in netc; rerun with NETC_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(command())
