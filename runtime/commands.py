"""`netc train | eval | predict | export | gradcheck | tune`: the subcommands that run JAX.

Each imports JAX only when it runs, so `netc check` stays instant.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .errors import EXIT_INTERRUPTED, EXIT_OK, RunError, UsageError
from .specfile import read_spec


def register(sub) -> None:
    p = sub.add_parser("train", help="train a spec with its train section; write a run folder")
    p.add_argument("file", help="the .net file")
    p.add_argument("--out", help="run folder (default runs/NAME-TIMESTAMP)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a train setting: epochs=5, optimizer.lr=0.01, data=moons")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest complete checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="print only errors and the summary")
    p.add_argument("--json", action="store_true", help="print the final summary as JSON")
    p.add_argument("--loop", choices=("auto", "step", "scan"), default="auto",
                   help="how to loop over minibatches (auto: chosen per model and backend)")
    p.add_argument("--checkpoint-every", type=_positive, metavar="EPOCHS",
                   help="checkpoint every N epochs (default: every 30 s and at the end)")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("eval", help="evaluate a trained run on its data")
    p.add_argument("dir", help="a run folder written by netc train")
    p.add_argument("--split", choices=("train", "train_dev", "dev", "test", "all"), default=None,
                   help="which split (default: test, else dev, else train)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    errors = p.add_mutually_exclusive_group()
    errors.add_argument("--errors", type=_positive, metavar="K",
                        help="error analysis: the K most confidently wrong examples of dev "
                        "(else test, else train; or --split) to errors.csv, and errors.png "
                        "for images")
    errors.add_argument("--errors-summary", metavar="CSV",
                        help="the share of each category tagged in an errors.csv, and what "
                        "fixing it could gain at most")
    p.add_argument("--out", metavar="DIR", help="where --errors writes (default: the run folder)")
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("diagnose", help="the course's diagnosis of a trained run: avoidable "
                       "bias, variance, data mismatch")
    p.add_argument("dir", help="a run folder written by netc train")
    p.add_argument("--bayes-error", type=_bayes_error, default=0.0, metavar="E",
                   help="the Bayes (or human-level) error, 0.05 or 5%% (default 0)")
    p.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    p.set_defaults(run=_diagnose)

    p = sub.add_parser("predict", help="predict with a trained run")
    p.add_argument("dir", help="a run folder written by netc train")
    p.add_argument("input", help="inputs: .npz (array x), .csv, .h5, an image or an image folder")
    p.add_argument("--out", default="predictions.npz", help="where to write (.npz or .csv)")
    p.set_defaults(run=cmd_predict)

    p = sub.add_parser("export", help="export a trained run to ONNX or StableHLO, checked "
                       "against the run")
    p.add_argument("dir", help="a run folder written by netc train")
    p.add_argument("--format", required=True, choices=("onnx", "stablehlo"),
                   help="onnx (ONNX Runtime, Netron, other runtimes) or stablehlo (jax.export)")
    p.add_argument("--out", metavar="FILE",
                   help="where to write (default: DIR/model.onnx or DIR/model.stablehlo)")
    p.add_argument("--batch", type=_batch, default=None, metavar="N|dynamic",
                   help="a fixed batch size, or dynamic (the default): any batch size")
    p.set_defaults(run=_export)

    p = sub.add_parser("gradcheck", help="the course's gradient check, in float64")
    p.add_argument("file", help="the .net file")
    p.add_argument("--samples", type=_positive, default=200,
                   help="parameter entries to check (default 200)")
    p.add_argument("--batch", type=_positive, default=8, help="examples (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_gradcheck)

    from .tune.command import register as register_tune

    register_tune(sub, run=_tune)


def configure_jax() -> None:
    """Use JAX's persistent compilation cache, so a second run of the same spec and shapes
    skips XLA compilation. NETC_CACHE_DIR moves it; NETC_CACHE_DIR=off disables it."""
    import os

    import jax

    where = os.environ.get("NETC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "netc", "xla")
    if where == "off":
        return
    try:
        os.makedirs(where, exist_ok=True)
    except OSError:
        return
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        import argparse

        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# ---- train -----------------------------------------------------------------------------


def cmd_train(args) -> int:
    from netc.compiler.check import check_source
    from netc.compiler.overrides import OverrideError, apply_overrides

    source, name = read_spec(args.file)
    saved = Path(args.out) / "spec.net" if args.out else None
    if args.resume and saved is not None and saved.exists():
        # continue the run as it was run (its overrides included); new --set apply on top
        source = saved.read_text()
        if not args.quiet and not args.json:
            print(f"resuming with {saved} (the spec as run)", file=sys.stderr)
    try:
        source = apply_overrides(source, args.set, name)
    except OverrideError as exc:
        raise RunError(str(exc)) from None
    net = check_source(source, name)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("runs") / f"{net.name}-{stamp}"
    if args.resume and not args.out:
        raise UsageError("--resume needs --out DIR (the run to continue)")
    if out.exists() and not args.resume and any(out.iterdir()):
        raise UsageError(f"{out} already holds files; pass --resume to continue that run or "
                         "choose another --out")

    from .data import DataError
    from .progress import Reporter
    from .run import RunFailed, train_run

    configure_jax()
    reporter = Reporter("quiet" if args.quiet or args.json else "auto")
    try:
        result = train_run(net, out, base_dir=Path(args.file).resolve().parent,
                           resume=args.resume, loop=args.loop,
                           checkpoint_every=args.checkpoint_every, reporter=reporter)
    except DataError as exc:
        raise RunError(f"data: {exc}") from None
    except RunFailed as exc:
        raise RunError(str(exc)) from None
    summary = {"run": str(out), "net": net.name, "epochs_done": result.epochs_done,
               "interrupted": result.interrupted, **result.final}
    if args.json:
        print(json.dumps(summary))
    elif not args.quiet:
        print(f"run saved in {out}", file=sys.stderr)
    if result.interrupted:
        print(f"interrupted after epoch {result.epochs_done}; continue with: netc train "
              f"{args.file} --out {out} --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


# ---- eval and predict ------------------------------------------------------------------


def _open_run(path: str):
    configure_jax()
    from .checkpoint import CheckpointError
    from .run import load_run

    try:
        return load_run(path)
    except (FileNotFoundError, CheckpointError) as exc:
        raise RunError(str(exc)) from None


def cmd_eval(args) -> int:
    from .evaluate import evaluate_run

    if args.out is not None and args.errors is None:
        raise UsageError("--out goes with --errors K (where to write errors.csv)")
    if args.errors_summary is not None:
        from .error_analysis import cmd_errors_summary

        return cmd_errors_summary(args)
    model, variables = _open_run(args.dir)
    if args.errors is not None:
        from .error_analysis import cmd_errors

        return cmd_errors(args, model, variables)
    try:
        report = evaluate_run(Path(args.dir), model, variables, args.split)
    except Exception as exc:
        from .data import DataError

        if isinstance(exc, DataError):
            raise RunError(f"data: {exc}") from None
        raise
    if args.json:
        print(json.dumps(report))
    else:
        from .evaluate import print_report

        print_report(report)
    return EXIT_OK


def cmd_predict(args) -> int:
    from .data import DataError
    from .evaluate import class_names_of, predict_file

    model, variables = _open_run(args.dir)
    try:
        n = predict_file(model, variables, Path(args.input), Path(args.out),
                         class_names_of(Path(args.dir)))
    except DataError as exc:
        raise RunError(f"input: {exc}") from None
    print(f"{n} predictions written to {args.out}", file=sys.stderr)
    return EXIT_OK


def _bayes_error(text: str) -> float:
    from .diagnose import parse_bayes

    return parse_bayes(text)


def _diagnose(args) -> int:
    from .diagnose import cmd_diagnose

    return cmd_diagnose(args)


def _batch(text: str) -> int | None:
    from .export import parse_batch

    return parse_batch(text)


def _export(args) -> int:
    configure_jax()
    from .export import cmd_export

    return cmd_export(args)


def _gradcheck(args) -> int:
    from .gradcheck import cmd_gradcheck

    return cmd_gradcheck(args)


def _tune(args) -> int:
    configure_jax()
    from .tune.command import cmd_tune

    return cmd_tune(args)
