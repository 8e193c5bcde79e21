"""A training run and its directory.

    DIR/spec.net               the spec as run (overrides applied)
    DIR/run.json               input shape, loss, classes, epochs done, final metrics (loss
                               and accuracy over each whole split, train_dev included),
                               which splits were streamed from disk and what skip_bad left out
    DIR/metrics.jsonl          one object per epoch: epoch, lr, loss, accuracy, dev_*, seconds
    DIR/checkpoints/ckpt_NNNNNN/ params, state, optimiser state (Orbax; the newest two:
                               runtime/sharded_checkpoint.py)
    DIR/model.safetensors      the final variables and the normalisation statistics
    DIR/learning_curve.png     cost against epochs, as the course plots it
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from netc.compiler.ir import Net
from netc.compiler.losses import LOSSES
from netc.compiler.model import compile_net
from netc.compiler.xla_options import SMALL_NET_MACS

from . import checkpoint as ckpt
from . import sharded_checkpoint as sharded
from .clock import compile_seconds, now
from .data import DataError, Splits, load_source, make_splits, prepare
from .devices import Placement
from .host_feed import ArrayBatches, HostData, is_streamed
from .split_figures import evaluate_split
from .train import Data, StopRequested, Trainer, first_bad_epoch
from .transfer import cast_start, start_variables


class RunFailed(Exception):
    """The run stopped for a reason the user must fix (exit 1); checkpoints are kept."""


@dataclass
class RunResult:
    out_dir: Path
    epochs_done: int
    history: list[dict]
    final: dict          # {"train": {...}, "train_dev": {...}, "dev": {...}, "test": {...}}
    interrupted: bool = False


def load_data(net: Net, base_dir: Path, loss: str, *,
              streaming: bool = False) -> tuple[Splits, dict]:
    """Read, split and validate the data of a spec's train section (before any compiling).
    With `streaming` (training) and the spec's `stream` not off, a split too large for
    memory (any split, with `stream on`) is left on disk: a StreamedSplit
    (runtime/stream.py) where the Splits otherwise hold a Dataset. A source that cannot
    stream (a built-in, a CSV file) is loaded in memory whatever `stream` says."""
    cfg = net.train
    if cfg.data is None:
        raise DataError("the spec has no data: add a line such as `data moons` to its train "
                        "section, or pass --set data=moons")
    if streaming and cfg.stream != "off":
        from .stream import load_streamed

        found = load_streamed(net, base_dir, loss, stream=cfg.stream, skip_bad=cfg.skip_bad)
        if found is not None:
            return found
    options = dict(cfg.data.options)
    source = options.pop("path") if cfg.data.name == "file" else cfg.data.name
    arrays = load_source(source, options, seed=cfg.seed, base_dir=base_dir)
    splits = make_splits(arrays, split=cfg.split, seed=cfg.seed, train_dev=cfg.train_dev)
    out = net.output_shape
    prepared, stats = prepare(splits, input_shape=tuple(net.input_shape),
                              labels=LOSSES[loss].labels,
                              n_outputs=int(np.prod(out)) if len(out) != 1 else out[0],
                              normalize=cfg.normalize)
    return replace(prepared, csv_layout=arrays.get("csv_layout")), stats


def to_device(split, placement: Placement | None = None) -> Data | HostData | None:
    """A split's arrays on the device, or replicated on every device of `placement`; a
    split streamed from disk stays there (the Trainer feeds its minibatches from the host),
    and so does one in memory when `placement` spans several processes: each process then
    puts only its rows of every minibatch on its devices (host_feed.ArrayBatches)."""
    if split is None:
        return None
    if is_streamed(split):
        return HostData(split)
    if placement is not None and jax.process_count() > 1:
        return HostData(ArrayBatches(split.x, split.y))
    # device_put runs no XLA program (jnp.asarray compiles a small one per array)
    where = placement.replicated() if placement is not None else None
    return Data(jax.device_put(split.x, where), jax.device_put(split.y, where))


class MetricsLog:
    """metrics.jsonl: appended per chunk of epochs; on resume cut back to the checkpoint."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a crash: everything after it is lost work
        return out

    def truncate(self, epochs_done: int) -> list[dict]:
        kept = [r for r in self.read() if r.get("epoch", 0) <= epochs_done]
        ckpt.atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        return kept

    def append(self, records: list[dict]) -> None:
        with open(self.path, "a") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in records)


def train_run(net: Net, out_dir: Path, *, base_dir: Path, resume: bool = False,
              loop: str = "auto", checkpoint_every: int | None = None,
              checkpoint_seconds: float = 30.0, reporter=None,
              placement: Placement | None = None, compute_dtype: str | None = None,
              checkpoint_dir: Path | None = None,
              report_every: int | None = None, curve=None) -> RunResult:
    """Train `net` into `out_dir`. Raises DataError, RunFailed, and SpecError when its
    `init from=` run cannot be used. A fresh start takes the variables `init from=` names
    (Trainer.init_state(start=...)); a resumed run continues from its own checkpoint.
    Checkpoints go to `checkpoint_dir` (OUT/checkpoints by default: the processes of a
    distributed run other than 0 train into a private folder and save into the run's).
    `checkpoint_every` E saves every E epochs; `report_every` E only hands the reporter
    every E epochs' records (a tuning trial's pruning monitor) without saving them.
    `curve`, a plots.CurveProcess started early (the command line's), draws the learning
    curve; without it matplotlib is imported on a thread once training runs."""
    from .plots import learning_curve, preload

    started, started_unix, compiled_before = now(), time.time(), compile_seconds()
    matplotlib_loading = None  # imported on a thread after the first chunk (not while tracing)
    out_dir = Path(out_dir)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else out_dir / "checkpoints"
    # `init from=`: checked and read before anything runs; a run resumed from its own
    # checkpoint does not need it (SpecError at the init from= line)
    transfer, start = (None, None) if resume and sharded.list_checkpoints(ckpt_dir) else \
        start_variables(net, base_dir)
    model = compile_net(net, compute_dtype=compute_dtype)
    splits, stats = load_data(net, base_dir, model.loss_name, streaming=True)
    train, dev = to_device(splits.train, placement), to_device(splits.dev, placement)
    try:
        trainer = Trainer(net, train, dev, loop=loop,
                          chunk_epochs=checkpoint_every or report_every,
                          placement=placement, compute_dtype=compute_dtype)
    except ValueError as exc:  # a batch that does not split over the devices
        raise RunFailed(str(exc)) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(out_dir / "metrics.jsonl")
    # Orbax's import (0.12-0.3 s of Python) goes on a thread beside the epochs where they
    # leave a host core idle: on an accelerator, or for a small net on CPU (moons). XLA:CPU
    # runs a larger net's steps on every core, which the import would slow (LeNet-5's first
    # epochs after the warm-up up to 2x), so there the first save imports it: the same cost,
    # once, but not inside the epochs' timing (benchmarks/FINDINGS.md)
    spare_core = model.platform != "cpu" or net.macs <= SMALL_NET_MACS
    say = reporter.warn if reporter else print

    carry = None
    done, history = 0, []
    if resume:
        found = _restore(trainer, ckpt_dir, say)
        if found is not None:  # resumed from its own checkpoint, `init from=` or not
            done, carry = found
            history = log.truncate(done)
    if carry is None:  # a fresh start
        if transfer is None and net.train.init_from is not None:  # no usable checkpoint
            transfer, start = start_variables(net, base_dir)
        carry = trainer.init_state(start=cast_start(start, trainer.model.dtype))
    if not resume or done == 0:
        log.truncate(0)
    ckpt.atomic_write_text(out_dir / "spec.net", net.source)
    info = {"data_dir": str(Path(base_dir).resolve())}
    if placement is not None:
        info["mesh"] = placement.describe()
    info["streamed"] = {name: is_streamed(part) for name, part in splits.parts()}
    if net.train.stream == "on" and not any(info["streamed"].values()):
        say("note: stream on: this data source cannot be streamed (built-in data and CSV "
            "files are read whole), so it is loaded in memory")
    origin = transfer.as_json() if transfer is not None else _read_init_from(out_dir)
    if origin is not None:
        info["init_from"] = origin
    write_run_json(out_dir, net, model, splits, done, None, info)

    cfg = net.train
    meta = {"net": net.name, "seed": cfg.seed}
    last_save = now()
    if reporter:
        if transfer is not None:
            for w in transfer.warnings:
                reporter.warn(f"warning: {w.message}")
            reporter.warn(transfer.describe())
        reporter.start(net, trainer, done)
    interrupted = False
    loop_seconds, first_epoch = 0.0, done
    stopped = trainer.watch_report(carry)[0].get("stopped", False)  # a resumed stopped run
    stop_reason = "patience" if stopped else None
    # The first save removes the checkpoints after `done` (those skipped as damaged). The
    # writer stays open until the run's files are written: Orbax writes the last save while
    # the final figures are taken, and it is on disk once the block ends. A first Ctrl-C
    # after the last epoch only asks for what happens anyway (the writer closes before
    # StopRequested lets go of the signal)
    with StopRequested() as stop, sharded.CheckpointWriter(ckpt_dir, start=done) as writer:
        with readers_closed(trainer):
            while done < cfg.epochs and not stopped:
                count = min(trainer.chunk, cfg.epochs - done)
                t0, c0 = now(), compile_seconds()
                new_carry, sums = trainer.run_epochs(carry, done, count)
                if spare_core:  # Orbax imported while the epochs run, not while tracing
                    writer.preload()
                if matplotlib_loading is None and curve is None:
                    matplotlib_loading = preload()
                # compiling is not training
                seconds = max(now() - t0 - (compile_seconds() - c0), 0.0)
                loop_seconds += seconds
                records = trainer.records(sums, done, seconds, ended=now() - started)
                bad = first_bad_epoch(records)
                if bad is not None and cfg.early_stop is not None:
                    # early stopping keeps the best epoch's variables: the run ends there
                    records = [r for r in records if r["epoch"] < bad]
                    stopped = True
                    stop_reason = f"the loss became {records_loss(sums, bad, done)}"
                elif bad is not None:
                    good = [r for r in records if r["epoch"] < bad]
                    log.append(good)
                    history += good
                    writer.wait()
                    kept = sharded.list_checkpoints(ckpt_dir)
                    where = (f"the last good checkpoint is {kept[-1][1]}" if kept
                             else "no checkpoint was written yet")
                    raise RunFailed(f"the loss became {records[bad - done - 1]['loss']} at "
                                    f"epoch {bad}; stopped ({where}). Try a smaller learning "
                                    "rate, normalize standard, or another init")
                carry = new_carry
                done += len(records)  # fewer than count when early stopping ended the run
                if not stopped and trainer.watch_report(carry)[0].get("stopped"):
                    stopped, stop_reason = True, "patience"
                log.append(records)
                history += records
                if reporter and records:
                    reporter.epochs(records)
                due = (checkpoint_every is not None or done == cfg.epochs or stopped
                       or now() - last_save >= checkpoint_seconds or stop.requested)
                if due:
                    writer.save(done, carry, meta)  # Orbax writes it while training goes on
                    last_save = now()
                if stop.requested and done < cfg.epochs:
                    interrupted = True
                    break

        if curve is not None:  # the helper draws while the final figures are taken
            curve.send(history, out_dir / "learning_curve.png", title=net.name)
        variables = trainer.variables(carry, best=True)[0]  # early stopping: the best epoch's
        if cfg.early_stop is not None:
            info["best_epoch"] = trainer.watch_report(carry)[0]["best_epoch"]
            info["stopped_epoch"] = done if stopped else None
            info["stop_reason"] = stop_reason
        final = {name: evaluate_split(model, variables, part, trainer.batch)  # per task too
                 for name, part in splits.parts()}
        save_model(out_dir / "model.safetensors", variables, stats, done)
        steps = (done - first_epoch) * trainer.steps_per_epoch
        info["timing"] = {"started": round(started_unix, 4),
                          "seconds": round(now() - started, 4),
                          "compile_seconds": round(compile_seconds() - compiled_before, 4),
                          "train_seconds": round(loop_seconds, 4), "steps": steps,
                          "step_us": round(1e6 * loop_seconds / steps, 2) if steps else None,
                          "loop": trainer.loop}
        if trainer.streamed:  # how fast the train split was read, beside how fast it trained
            rates = trainer.feed_rates
            info["timing"]["feed"] = {"examples": rates.examples,
                                      "read_seconds": round(rates.read_seconds, 4),
                                      "data_rate": round(rates.data_rate(), 1),
                                      "step_rate": round(rates.step_rate(), 1)}
        skipped = skipped_examples(splits)
        if skipped:
            info["skipped"] = skipped
            say(skipped_warning(splits, skipped))
        write_run_json(out_dir, net, model, splits, done, final, info)
        if matplotlib_loading is not None:
            matplotlib_loading.join()
        if curve is not None:
            curve.finish()
        else:
            learning_curve(history, out_dir / "learning_curve.png", title=net.name)
    if reporter and cfg.early_stop is not None:
        best, on = info["best_epoch"], cfg.early_stop.on.replace("_", " ")
        ended = (f"stopped after epoch {done} ({stop_reason})" if stopped
                 else f"ran {done} epochs")
        reporter.warn(f"early stopping: {ended}; the final parameters are epoch {best}'s, "
                      f"the best {on}" if best else f"early stopping: {ended}; no epoch "
                      "improved on the start, so the final parameters are the initial ones")
    if reporter:
        reporter.finish(final, interrupted)
    return RunResult(out_dir, done, history, final, interrupted)


def skipped_warning(splits: Splits, skipped: dict[str, int], shown: int = 3) -> str:
    """The warning line of skip_bad: how many examples it left out, per split, and the
    first `shown` of them by name."""
    total = sum(skipped.values())
    names = list(dict.fromkeys(name for _, part in splits.parts()
                               for name in getattr(part, "skipped_names", ())))
    which = ", ".join(names[:shown]) + (f" and {len(names) - shown} more"
                                        if len(names) > shown else "")
    per_split = ", ".join(f"{name} {count}" for name, count in skipped.items() if count)
    return (f"warning: skip_bad left out {total} unreadable example{'s' * (total != 1)} "
            f"({per_split})" + (f": {which}" if which else ""))


def skipped_examples(splits: Splits) -> dict[str, int]:
    """{split: examples skip_bad left out of it} for the streamed splits (run.json's
    "skipped"), each unreadable example once however many epochs met it; {} when nothing
    was left out."""
    counts = {name: len(set(getattr(part, "skipped_names", ()))) or int(part.skipped)
              for name, part in splits.parts() if is_streamed(part)}
    return counts if any(counts.values()) else {}


def records_loss(sums, bad: int, done: int) -> str:
    """The training loss of epoch `bad` (from 1) in a chunk that started after `done`."""
    row = sums[bad - done - 1]
    return f"{row[0] / max(row[1], 1):g} at epoch {bad}"


def _read_init_from(out_dir: Path) -> dict | None:
    """run.json's `init_from` of a run being resumed (it started from another run)."""
    try:
        return json.loads((out_dir / "run.json").read_text()).get("init_from")
    except (OSError, ValueError, AttributeError):
        return None


@contextmanager
def readers_closed(trainer: Trainer):
    """The trainer's readers of host-fed splits stopped (their worker processes ended)
    however the block ends: training done, stopped early, interrupted, or failed (a loss
    that became NaN, a DataError of the reader, a second Ctrl-C)."""
    try:
        yield trainer
    finally:
        trainer.close_readers()


def _restore(trainer: Trainer, ckpt_dir: Path, warn):
    """(epochs done, carry) of the newest readable checkpoint, placed on this run's devices
    (any device count wrote it), or None."""
    try:
        return sharded.restore_latest(ckpt_dir, trainer.init_state(), warn=warn)
    except sharded.CheckpointMismatch as exc:
        raise RunFailed(f"the checkpoint does not fit this spec ({exc}); train into a new "
                        "--out folder or without --resume") from None


# ---- saved models ----------------------------------------------------------------------


def save_model(path: Path, variables: dict, stats: dict, epochs: int) -> None:
    """model.safetensors: whole arrays (every process of a distributed run calls it: the
    shards of --shard-params arrays that other processes hold are gathered)."""
    tensors = ckpt.flatten_variables(jax.tree.map(_whole, variables))
    for key in ("mean", "std"):
        if stats.get(key) is not None:
            tensors[f"norm/{key}"] = np.asarray(stats[key], np.float32)
    ckpt.save_tensors(path, tensors, {"epochs": epochs})


def _whole(a) -> np.ndarray:
    """An array on the host, gathered from every process when some of it lives elsewhere."""
    if isinstance(a, jax.Array) and not a.is_fully_addressable and not a.is_fully_replicated:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(jax.device_get(a))


def write_run_json(out_dir: Path, net: Net, model, splits: Splits, done: int, final,
                    extra: dict) -> None:
    info = {**extra, "net": net.name, "input": list(net.input_shape),
            "output": list(net.output_shape),
            "loss": model.loss_name, "epochs_done": done, "epochs": net.train.epochs,
            "class_names": list(splits.class_names) if splits.class_names else None,
            "examples": {name: len(part) for name, part in splits.parts()},
            "final": final}
    if splits.csv_layout is not None:  # predict reads new csv inputs the same way
        info["csv_layout"] = splits.csv_layout
    ckpt.atomic_write_text(out_dir / "run.json", json.dumps(info, indent=2) + "\n")


def load_run(run_dir) -> tuple:
    """(model, variables) of a finished run directory; variables also hold 'normalization'."""
    from netc.compiler.check import check_file

    run_dir = Path(run_dir)
    spec = run_dir / "spec.net"
    if not spec.exists():
        raise FileNotFoundError(f"{run_dir} is not a netc run directory (no spec.net)")
    net = check_file(spec)
    model = compile_net(net)
    weights = run_dir / "model.safetensors"
    if weights.exists():
        tensors, _ = ckpt.load_tensors(weights)
    else:  # an interrupted run: its newest checkpoint
        found = sharded.latest_variables(run_dir / "checkpoints")
        if found is None:
            raise FileNotFoundError(f"{run_dir} holds no trained variables yet")
        tensors = ckpt.flatten_variables(found[0])
    variables = ckpt.unflatten_variables(tensors)
    variables = jax.tree.map(jnp.asarray, variables)
    norm = {k: tensors.get(f"norm/{k}") for k in ("mean", "std")}
    if any(v is not None for v in norm.values()):
        variables["normalization"] = norm
    return model, variables
