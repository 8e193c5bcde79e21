"""`netc train | eval | predict | export | gradcheck | tune`: the subcommands that run JAX.

Each imports JAX only when it runs, so `netc check` stays instant.
"""

from __future__ import annotations

import json
import os
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
    p.add_argument("--devices", default="all", metavar="N|all",
                   help="train data-parallel on N local devices (default: all of them)")
    p.add_argument("--platform", choices=("cpu", "gpu", "tpu"),
                   help="the devices' platform (default: JAX's choice, a GPU or TPU if any)")
    p.add_argument("--shard-params", action="store_true",
                   help="shard parameters and optimiser state over the devices (FSDP-style)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="compute in bfloat16, keeping float32 weights, optimiser state and "
                   "loss (default float32)")
    p.add_argument("--distributed", action="store_true",
                   help="one of many processes (jax.distributed detects Slurm, Open MPI, "
                   "Cloud TPU, Kubernetes)")
    p.add_argument("--coordinator", metavar="HOST:PORT",
                   help="process 0's address (with --num-processes and --process-id)")
    p.add_argument("--num-processes", type=_positive, metavar="N")
    p.add_argument("--process-id", type=int, metavar="I")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="seconds to wait for a process to join or to answer (default 60)")
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
    p.add_argument("input", help="inputs, read as the run read its data: .npz (array x), .npy, "
                   ".csv (with or without the label column), .h5, .array_record, an image or an "
                   "image folder")
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


def cluster_of(args):
    """The Cluster of --distributed / --coordinator --num-processes --process-id, or None."""
    from .distributed import Cluster

    given = [args.coordinator, args.num_processes, args.process_id]
    if any(v is not None for v in given) and any(v is None for v in given):
        raise UsageError("--coordinator, --num-processes and --process-id go together "
                         "(or --distributed alone, where JAX detects the cluster)")
    if args.coordinator is not None:
        if ":" not in args.coordinator:
            raise UsageError(f"--coordinator {args.coordinator}: expected HOST:PORT")
        if not 0 <= args.process_id < args.num_processes:
            raise UsageError(f"--process-id {args.process_id} is not one of 0 .. "
                             f"{args.num_processes - 1}")
        return Cluster(args.coordinator, args.num_processes, args.process_id, args.timeout)
    if args.distributed:
        return Cluster(timeout_s=args.timeout)
    return None


def private_run_folder(out: Path, resume: bool) -> Path:
    """Where a distributed run's process other than 0 writes its outputs (nothing of it is
    kept): a temporary folder holding, to resume from, a copy of the run's metrics. Its
    checkpoints it saves with every process into the run folder, which must be on a disk
    every process sees."""
    import shutil
    import tempfile

    private = Path(tempfile.mkdtemp(prefix="netc-process-"))
    if resume and out.exists():
        for name in ("metrics.jsonl", "spec.net", "run.json"):
            if (out / name).exists():
                shutil.copy2(out / name, private / name)
    return private


def devices_for(args):
    """The Placement of `--devices N|all` (None for one device: no mesh). UsageError when
    there are fewer devices than asked for."""
    from .devices import Placement, pick_devices

    count = None
    if args.devices != "all":
        try:
            count = int(args.devices)
        except ValueError:
            count = 0
        if count < 1:
            raise UsageError(f"--devices {args.devices}: expected a positive number or all")
    try:
        devices = pick_devices(count, args.platform)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    if len(devices) == 1:
        if args.shard_params:
            raise UsageError("--shard-params needs more than one device (--devices N)")
        return None
    return Placement.over(devices, shard_params=args.shard_params)


def configure_jax(platform: str | None = None) -> None:
    """Use JAX's persistent compilation cache, so a second run of the same spec and shapes
    skips XLA compilation. NETC_CACHE_DIR moves it; NETC_CACHE_DIR=off disables it.
    `platform` (cpu, gpu, tpu) restricts JAX to that platform's devices. JAX is imported
    by now: settle_imports()."""
    import jax

    if platform:
        jax.config.update("jax_platforms", platform)
    where = compilation_cache_dir()
    if where is not None:
        jax.config.update("jax_compilation_cache_dir", where)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    settle_imports()


def compilation_cache_dir() -> str | None:
    """NETC_CACHE_DIR, or ~/.cache/netc/xla; None when off or it cannot be made."""
    where = os.environ.get("NETC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "netc", "xla")
    if where == "off":
        return None
    try:
        os.makedirs(where, exist_ok=True)
    except OSError:
        return None
    return where


_HOLDING: list[bool] = []  # hold_collections() was called and settle_imports() not yet


def hold_collections() -> None:
    """cli.command(): this process is the `netc` command's own, so the garbage collector is
    off while the command imports its modules (0.12 s of importing JAX, Optax and netc here)
    until settle_imports()."""
    import gc

    gc.disable()
    _HOLDING.append(True)


def settle_imports() -> None:
    """Called once a command has imported what it runs on (JAX, Optax, netc's runtime).
    After hold_collections(), move everything alive into the collector's permanent
    generation (gc.freeze: the collections that tracing and training set off skip it) and
    turn the collector back on. Otherwise (main() called in a test's or a notebook's
    process) nothing happens."""
    import gc

    if _HOLDING:
        _HOLDING.clear()
        gc.freeze()
        gc.enable()


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

    from .distributed import CHILD, ClusterError, supervise

    cluster = cluster_of(args)
    if cluster is not None and not os.environ.get(CHILD):
        if not args.out:
            raise UsageError("--distributed needs --out DIR: every process names the same run")
        settle_imports()  # the parent only watches its children: no more imports
        try:
            return supervise(args.argv, cluster)  # the training runs in a child process
        except ClusterError as exc:
            raise RunError(str(exc)) from None
    writer = True  # process 0 of a distributed run, or the only process
    if cluster is not None:
        configure_jax(platform=args.platform)
        cluster.initialize()
        import jax

        writer = jax.process_index() == 0
    source, name = read_spec(args.file)
    saved = Path(args.out) / "spec.net" if args.out else None
    if args.resume and saved is not None and saved.exists():
        # continue the run as it was run (its overrides included); new --set apply on top
        source = saved.read_text()
        if writer and not args.quiet and not args.json:  # one process says it
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
    if writer and out.exists() and not args.resume and any(out.iterdir()):
        raise UsageError(f"{out} already holds files; pass --resume to continue that run or "
                         "choose another --out")

    from .plots import CurveProcess

    # the learning curve's helper imports matplotlib on another core while JAX loads here
    curve = CurveProcess() if writer else None
    try:
        return _train(args, net, out, cluster, writer, curve)
    finally:
        if curve is not None:
            curve.close()  # a run that failed: the helper ends without drawing


def _train(args, net, out: Path, cluster, writer: bool, curve) -> int:
    """cmd_train once the spec is checked and the run folder chosen."""
    from .data import DataError
    from .progress import Reporter
    from .run import RunFailed, train_run

    if cluster is None:
        configure_jax(platform=args.platform)
    placement = devices_for(args)
    checkpoints = out / "checkpoints"  # every process writes its shards of a checkpoint
    if not writer:  # the other processes of a distributed run: a private folder
        out = private_run_folder(out, args.resume)
    reporter = Reporter("quiet" if args.quiet or args.json or not writer else "auto")
    try:
        result = train_run(net, out, base_dir=Path(args.file).resolve().parent,
                           resume=args.resume, loop=args.loop,
                           checkpoint_every=args.checkpoint_every, reporter=reporter,
                           placement=placement, compute_dtype=args.dtype,
                           checkpoint_dir=checkpoints, curve=curve)
    except DataError as exc:
        raise RunError(f"data: {exc}") from None
    except RunFailed as exc:
        raise RunError(str(exc)) from None
    if not writer:
        return EXIT_OK
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
                         class_names_of(Path(args.dir)), run_dir=Path(args.dir))
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
    configure_jax()  # imports JAX (then settle_imports)
    from .gradcheck import cmd_gradcheck

    return cmd_gradcheck(args)


def _tune(args) -> int:
    configure_jax()
    from .tune.command import cmd_tune

    return cmd_tune(args)
