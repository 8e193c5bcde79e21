#!/usr/bin/env python
"""netc's contenders for benchmarks/run.py: each runs what a user runs and prints one JSON line.

    python benchmarks/netc_bench.py moons  [--epochs 10000] [--cache DIR|fresh]
    python benchmarks/netc_bench.py lenet  [--n 1024] [--epochs 5] [--loop auto|step|scan]
                                           [--augment] [--save-every-epoch]
    python benchmarks/netc_bench.py digits [--target 0.97] [--epochs 30]
    python benchmarks/netc_bench.py resnet [--tiny] [--steps 2]
    python benchmarks/netc_bench.py check  [--json]
    python benchmarks/netc_bench.py tune   [--trials 16] [--epochs 2000] [--loop step]
    python benchmarks/netc_bench.py devices [--devices 4 | --processes 2] [--epochs 20]

moons, lenet and digits call `netc train` in this process (the CLI's own code path, run
directory, checkpoints, metrics and plot included; lenet calls what the command calls with one
epoch per dispatch, see _train_epoch_by_epoch) and read the figures back from the run's
run.json ("timing") and metrics.jsonl. `--cache fresh` points JAX's persistent compilation
cache at an empty folder (a first run); `--cache DIR` at a folder that a previous run filled.
resnet compiles ResNet-50's train step through `netc.compile` like the Flax contender does
(same optimiser, batch and timing points). check runs `netc check` on ResNet-50. tune runs
`netc tune` on the moons model (`--loop step` means --one-by-one), `--trials 0` one
`netc train` of it.
"""

from __future__ import annotations

import time

T_PROCESS = time.time()  # as close to process start as Python lets us

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _use_cache(where: str | None) -> None:
    if where == "fresh":
        where = tempfile.mkdtemp(prefix="netc-xla-")
    if where:
        os.environ["NETC_CACHE_DIR"] = where


def _train(spec: str, out: Path, *sets: str, loop: str | None = None,
           extra: tuple = ()) -> tuple[dict, list]:
    """`netc train SPEC --out OUT --quiet --set ...` in this process -> (run.json, metrics)."""
    from netc.runtime.cli import main

    argv = ["train", spec, "--out", str(out), "--quiet", *extra]
    for item in sets:
        argv += ["--set", item]
    if loop:
        argv += ["--loop", loop]
    with contextlib.redirect_stdout(sys.stderr):
        rc = main(argv)
    if rc != 0:
        raise SystemExit(f"netc train exited {rc}")
    info = json.loads((out / "run.json").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return info, metrics


def _train_epoch_by_epoch(spec: Path, out: Path, loop: str | None) -> tuple[dict, list]:
    """What `netc train SPEC --out OUT --quiet` runs (configure_jax, the learning curve's
    helper, runtime.run.train_run), with one epoch per dispatch so that the warm-up epoch's
    time is its own: train_run's `report_every` 1 (a tuning trial's pruning monitor) sets
    the chunk without `--checkpoint-every 1`'s save after every epoch, whose Orbax threads
    would share the 2 cores with the timed epochs. Checkpoints as by default: every 30 s and
    at the end. -> (run.json, metrics)."""
    from netc.compiler.check import check_file
    from netc.runtime.commands import configure_jax
    from netc.runtime.plots import CurveProcess
    from netc.runtime.run import train_run

    curve = CurveProcess()
    try:
        configure_jax()
        train_run(check_file(spec), out, base_dir=spec.parent, loop=loop or "auto",
                  report_every=1, curve=curve)
    finally:
        curve.close()
    info = json.loads((out / "run.json").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return info, metrics


def moons(opts) -> dict:
    _use_cache(opts.cache)
    t0 = time.time()
    import netc.runtime.commands
    import netc.runtime.run  # noqa: F401

    import_s = time.time() - t0
    with tempfile.TemporaryDirectory() as tmp:
        info, _ = _train(str(ROOT / "examples" / "moons_adam.net"), Path(tmp) / "run",
                         f"epochs={opts.epochs}")
        t_trained = time.time()
    timing, final = info["timing"], info["final"]["train"]
    return dict(case="moons", contender="netc", epochs=opts.epochs, t_process=T_PROCESS,
                t_trained=t_trained, import_s=import_s, compile_s=timing["compile_seconds"],
                train_s=timing["train_seconds"], step_us=timing["step_us"],
                steps=timing["steps"], loop=timing["loop"], run_s=timing["seconds"],
                final_loss=final["loss"], train_acc=final["accuracy"],
                cache=os.environ.get("NETC_CACHE_DIR"))


LENET_SPEC = """net lenet5_relu
input 32x32x1
conv f=5 c=6 -> relu -> avgpool f=2 s=2
-> conv f=5 c=16 -> relu -> avgpool f=2 s=2
-> fc 120 -> relu -> fc 84 -> relu -> softmax 10
train {{
  data "lenet.npz"
  split 1 0 0
  optimizer adam lr=0.001 b1=0.9 b2=0.999 eps=1e-8
  batch 128
  epochs {epochs}
{augment}
}}
"""
LENET_AUGMENT = "  augment flip crop=2 color=0.2"


def lenet(opts) -> dict:
    """The Flax contender's LeNet-5 (relu, average pools), data and Adam; the first epoch
    is the warm-up, the next `epochs` are timed from metrics.jsonl's per-epoch seconds."""
    import numpy as np
    from lenet_contenders import LENET, lenet_data

    _use_cache(opts.cache)
    x, y = lenet_data(opts.n)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "lenet.npz", x=x, y=y)
        spec = tmp / "lenet.net"
        warmup = LENET["warmup_epochs"]
        spec.write_text(LENET_SPEC.format(epochs=warmup + opts.epochs,
                                          augment=LENET_AUGMENT if opts.augment else ""))
        if opts.save_every_epoch:  # `--checkpoint-every 1`: Orbax writes beside the epochs
            info, metrics = _train(str(spec), tmp / "run", loop=opts.loop,
                                   extra=("--checkpoint-every", "1"))
        else:
            info, metrics = _train_epoch_by_epoch(spec, tmp / "run", loop=opts.loop)
    timed = metrics[warmup:]
    train_s = sum(r["seconds"] for r in timed)
    steps = len(timed) * -(-opts.n // LENET["batch"])
    name = ("netc" + (f"_{opts.loop}" if opts.loop else "") + ("_augment" if opts.augment else "")
            + ("_saving" if opts.save_every_epoch else ""))
    return dict(case="lenet", contender=name,
                n=opts.n, batch=LENET["batch"], timed_steps=steps, train_s=train_s,
                img_per_s=len(timed) * opts.n / train_s, step_ms=1e3 * train_s / steps,
                compile_s=info["timing"]["compile_seconds"], loop=info["timing"]["loop"],
                final_loss=timed[-1]["loss"], in_process_s=time.time() - T_PROCESS)


def digits(opts) -> dict:
    """examples/digits_resnet.net: wall time from process start to the first epoch whose
    dev accuracy reaches the target (the run goes on to its last epoch)."""
    _use_cache(opts.cache)
    with tempfile.TemporaryDirectory() as tmp:
        info, metrics = _train(str(ROOT / "examples" / "digits_resnet.net"), Path(tmp) / "run",
                               f"epochs={opts.epochs}")
        t_trained = time.time()
    start = info["timing"]["started"] - T_PROCESS
    hit = next((r for r in metrics if r.get("dev_accuracy", 0) >= opts.target), None)
    return dict(case="digits", contender="netc", target=opts.target,
                time_to_target_s=start + hit["time"] if hit else None,
                epochs_to_target=hit["epoch"] if hit else None,
                e2e_s=t_trained - T_PROCESS, compile_s=info["timing"]["compile_seconds"],
                epoch_s=info["timing"]["train_seconds"] / len(metrics),
                final_dev_acc=metrics[-1].get("dev_accuracy"),
                test_acc=(info["final"].get("test") or {}).get("accuracy"))


TINY_RESNET = """net tiny_resnet
input 32x32x3
conv f=7 s=2 p=3 c=8 -> bn -> relu -> maxpool f=3 s=2 p=1
-> residual { conv f=1 c=8 -> bn -> relu -> conv f=3 p=1 c=8 -> bn -> relu -> conv f=1 c=32 -> bn }
-> relu
-> residual { conv f=1 c=16 -> bn -> relu -> conv f=3 s=2 p=1 c=16 -> bn -> relu
              -> conv f=1 c=64 -> bn }
-> relu -> globalavgpool -> softmax 10
"""


def resnet(opts) -> dict:
    """ResNet-50 (examples/zoo/resnet50.net) train step at batch 8: the Flax contender's
    optimiser (optax.sgd 0.1, momentum 0.9), data and timing points."""
    import jax
    import netc
    import numpy as np
    import optax
    from resnet_contenders import resnet_batch, resnet_config, time_resnet_step

    cfg = resnet_config(opts.tiny)
    t_imports = time.time()
    source = TINY_RESNET if opts.tiny else str(ROOT / "examples" / "zoo" / "resnet50.net")
    model = netc.compile(source)
    x, y = resnet_batch(cfg, np.random.default_rng(0))
    t0 = time.perf_counter()
    variables = jax.block_until_ready(model.init(jax.random.key(0)))
    init_s = time.perf_counter() - t0
    tx = optax.sgd(cfg["lr"], momentum=cfg["momentum"])
    params, state = variables["params"], variables["state"]
    opt_state = tx.init(params)
    step = model.train_step(tx)
    return time_resnet_step("netc", opts.tiny, step, (params, state, opt_state),
                            (x, y, jax.random.key(1)), init_s, t_imports, T_PROCESS, opts.steps)


def tune(opts) -> dict:
    """`netc tune examples/moons_adam.net --trials N --set optimizer.lr=log(1e-4,1)` at
    `--epochs` (populations, or --one-by-one), or one `netc train` of the same spec and
    epochs (`--trials 0`): process start to the end of the command."""
    from netc.runtime.cli import main

    _use_cache(opts.cache)
    spec = str(ROOT / "examples" / "moons_adam.net")
    with tempfile.TemporaryDirectory() as tmp:
        if opts.trials == 0:
            argv = ["train", spec, "--out", str(Path(tmp) / "run"), "--quiet",
                    "--set", f"epochs={opts.epochs}"]
            mode = "one_train"
        else:
            argv = ["tune", spec, "--trials", str(opts.trials), "--out", str(Path(tmp) / "t"),
                    "--set", "optimizer.lr=log(1e-4,1)", "--set", f"epochs={opts.epochs}",
                    "--json"]
            mode = "one_by_one" if opts.loop == "step" else "population"
            if opts.loop == "step":
                argv.append("--one-by-one")
        with contextlib.redirect_stdout(sys.stderr):
            rc = main(argv)
        if rc != 0:
            raise SystemExit(f"netc {argv[0]} exited {rc}")
    return dict(case="tune", contender=f"netc_{mode}", trials=max(opts.trials, 1),
                epochs=opts.epochs, in_process_s=time.time() - T_PROCESS)


def devices(opts) -> dict:
    """examples/digits_mlp.net (batch 32) data-parallel over `--devices` simulated CPU
    devices in one process, or over 2 processes of 2 devices each (`--processes 2`, a
    localhost coordinator): steps per second from run.json's timing."""
    import socket
    import subprocess

    spec = str(ROOT / "examples" / "digits_mlp.net")
    sets = [f"epochs={opts.epochs}"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        if opts.processes == 1:
            os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={opts.devices}"
            info, _ = _train(spec, out, *sets)
        else:
            with socket.socket() as free:
                free.bind(("127.0.0.1", 0))
                port = free.getsockname()[1]
            env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
            argv = [sys.executable, "-m", "netc", "train", spec, "--out", str(out), "--quiet",
                    "--set", sets[0], "--coordinator", f"127.0.0.1:{port}",
                    "--num-processes", str(opts.processes)]
            procs = [subprocess.Popen([*argv, "--process-id", str(i)], env=env)
                     for i in range(opts.processes)]
            if any(p.wait() for p in procs):
                raise SystemExit("a process of the distributed run failed")
            info = json.loads((out / "run.json").read_text())
    timing = info["timing"]
    count = len(info.get("mesh", {}).get("devices", [])) or 1
    name = f"netc_{opts.processes}proc" if opts.processes > 1 else f"netc_{count}dev"
    return dict(case="devices", contender=name, devices=count, processes=opts.processes,
                steps_per_s=1e6 / timing["step_us"], step_us=timing["step_us"],
                compile_s=timing["compile_seconds"], loop=timing["loop"])


def check(opts) -> dict:
    """`netc check examples/zoo/resnet50.net [--json]`, output discarded; the parent times
    the whole process."""
    from netc.runtime.cli import main

    argv = ["check", str(ROOT / "examples" / "zoo" / "resnet50.net")]
    if opts.json:
        argv.append("--json")
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        rc = main(argv)
    return dict(case="check", contender="netc_json" if opts.json else "netc_table", rc=rc,
                in_process_s=time.time() - T_PROCESS)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("case", choices=["moons", "lenet", "digits", "resnet", "check", "tune",
                                    "devices"])
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--n", type=int, default=1024, help="lenet: examples")
    p.add_argument("--loop", choices=["auto", "step", "scan"], default=None)
    p.add_argument("--target", type=float, default=0.97, help="digits: dev accuracy")
    p.add_argument("--cache", default="fresh", help="fresh, or a cache folder to reuse")
    p.add_argument("--tiny", action="store_true", help="resnet: a tiny net (smoke test)")
    p.add_argument("--steps", type=int, default=None,
                   help="resnet: timed steps (default 2; step_s is the median after the first)")
    p.add_argument("--augment", action="store_true",
                   help="lenet: with augment flip crop=2 color=0.2")
    p.add_argument("--save-every-epoch", action="store_true",
                   help="lenet: `--checkpoint-every 1` (a checkpoint after every epoch)")
    p.add_argument("--trials", type=int, default=16, help="tune: trials (0: one netc train)")
    p.add_argument("--devices", type=int, default=1, help="devices: simulated CPU devices")
    p.add_argument("--processes", type=int, default=1, help="devices: processes (2 devices "
                   "each)")
    p.add_argument("--json", action="store_true", help="check: --json instead of the table")
    opts = p.parse_args(argv)
    if opts.epochs is None:
        defaults = {"moons": 10_000, "lenet": 5, "digits": 30, "tune": 2000, "devices": 20}
        opts.epochs = defaults.get(opts.case, 1)
    return opts


def main(argv=None) -> int:
    opts = parse_args(argv)
    command = opts.case != "resnet"  # the command's cases: as the `netc` process does
    if command:  # (runtime/cli.py command): no collections until JAX and netc are imported
        from netc.runtime.commands import hold_collections

        hold_collections()
    result = {"moons": moons, "lenet": lenet, "digits": digits, "resnet": resnet,
              "check": check, "tune": tune, "devices": devices}[opts.case](opts)
    print(json.dumps(result))
    if command:
        gc.freeze()  # and leaves the interpreter's teardown nothing to collect
    return 0


if __name__ == "__main__":
    sys.exit(main())
