"""A training run and its directory.

    DIR/spec.net               the spec as run (overrides applied)
    DIR/run.json               input shape, loss, classes, epochs done, final metrics (loss
                               and accuracy over each whole split, train_dev included)
    DIR/metrics.jsonl          one object per epoch: epoch, lr, loss, accuracy, dev_*, seconds
    DIR/checkpoints/ckpt-*.safetensors   params, state, optimiser state (the newest two)
    DIR/model.safetensors      the final variables and the normalisation statistics
    DIR/learning_curve.png     cost against epochs, as the course plots it
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from netc.compiler.ir import Net
from netc.compiler.losses import LOSSES
from netc.compiler.model import compile_net

from . import checkpoint as ckpt
from .data import DataError, Splits, load_source, make_splits, prepare
from .task_metrics import add_task_figures
from .train import Data, StopRequested, Trainer, compile_seconds, evaluate, first_bad_epoch, now


class RunFailed(Exception):
    """The run stopped for a reason the user must fix (exit 1); checkpoints are kept."""


@dataclass
class RunResult:
    out_dir: Path
    epochs_done: int
    history: list[dict]
    final: dict          # {"train": {...}, "train_dev": {...}, "dev": {...}, "test": {...}}
    interrupted: bool = False


def load_data(net: Net, base_dir: Path, loss: str) -> tuple[Splits, dict]:
    """Read, split and validate the data of a spec's train section (before any compiling)."""
    cfg = net.train
    if cfg.data is None:
        raise DataError("the spec has no data: add a line such as `data moons` to its train "
                        "section, or pass --set data=moons")
    options = dict(cfg.data.options)
    source = options.pop("path") if cfg.data.name == "file" else cfg.data.name
    arrays = load_source(source, options, seed=cfg.seed, base_dir=base_dir)
    splits = make_splits(arrays, split=cfg.split, seed=cfg.seed, train_dev=cfg.train_dev)
    out = net.output_shape
    return prepare(splits, input_shape=tuple(net.input_shape), labels=LOSSES[loss].labels,
                   n_outputs=int(np.prod(out)) if len(out) != 1 else out[0],
                   normalize=cfg.normalize)


def to_device(split) -> Data | None:
    if split is None:
        return None
    # device_put runs no XLA program (jnp.asarray compiles a small one per array)
    return Data(jax.device_put(split.x), jax.device_put(split.y))


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
              checkpoint_seconds: float = 30.0, reporter=None) -> RunResult:
    """Train `net` into `out_dir`. Raises DataError, RunFailed."""
    from .plots import learning_curve, preload

    started, started_unix, compiled_before = now(), time.time(), compile_seconds()
    matplotlib_loading = None  # imported on a thread after the first chunk (not while tracing)
    out_dir = Path(out_dir)
    model = compile_net(net)
    splits, stats = load_data(net, base_dir, model.loss_name)
    train, dev = to_device(splits.train), to_device(splits.dev)
    trainer = Trainer(net, train, dev, loop=loop, chunk_epochs=checkpoint_every)
    ckpt_dir = out_dir / "checkpoints"
    out_dir.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(out_dir / "metrics.jsonl")

    carry = trainer.init_state()
    done, history = 0, []
    if resume:
        found = ckpt.load_latest_checkpoint(ckpt_dir, warn=reporter.warn if reporter else print)
        if found is not None:
            done, variables, opt_leaves, _ = found
            carry = _restore(trainer, carry, variables, opt_leaves)
            history = log.truncate(done)
    if not resume or done == 0:
        log.truncate(0)
    ckpt.atomic_write_text(out_dir / "spec.net", net.source)
    info = {"data_dir": str(Path(base_dir).resolve())}
    write_run_json(out_dir, net, model, splits, done, None, info)

    cfg = net.train
    meta = {"net": net.name, "seed": cfg.seed}
    last_save = now()
    if reporter:
        reporter.start(net, trainer, done)
    interrupted = False
    loop_seconds, first_epoch = 0.0, done
    with StopRequested() as stop:
        while done < cfg.epochs:
            count = min(trainer.chunk, cfg.epochs - done)
            t0, c0 = now(), compile_seconds()
            new_carry, sums = trainer.run_epochs(carry, done, count)
            if matplotlib_loading is None:
                matplotlib_loading = preload()
            # compiling is not training
            seconds = max(now() - t0 - (compile_seconds() - c0), 0.0)
            loop_seconds += seconds
            records = trainer.records(sums, done, seconds, ended=now() - started)
            bad = first_bad_epoch(records)
            if bad is not None:
                good = [r for r in records if r["epoch"] < bad]
                log.append(good)
                history += good
                kept = ckpt.list_checkpoints(ckpt_dir)
                where = (f"the last good checkpoint is {kept[-1]}" if kept
                         else "no checkpoint was written yet")
                raise RunFailed(f"the loss became {records[bad - done - 1]['loss']} at epoch "
                                f"{bad}; stopped ({where}). Try a smaller learning rate, "
                                "normalize standard, or another init")
            carry = new_carry
            done += count
            log.append(records)
            history += records
            if reporter:
                reporter.epochs(records)
            due = (checkpoint_every is not None or now() - last_save >= checkpoint_seconds
                   or done == cfg.epochs or stop.requested)
            if due:
                _save(trainer, carry, ckpt_dir, done, meta)
                last_save = now()
            if stop.requested and done < cfg.epochs:
                interrupted = True
                break

    params, state, _ = carry
    variables = {"params": params, "state": state}
    final = {name: evaluate(model, variables, part.x, part.y, trainer.batch)
             for name, part in splits.parts()}
    add_task_figures(final, model, variables, splits, trainer.batch)  # multi-task sigmoid N
    save_model(out_dir / "model.safetensors", variables, stats, done)
    steps = (done - first_epoch) * trainer.steps_per_epoch
    info["timing"] = {"started": round(started_unix, 4), "seconds": round(now() - started, 4),
                      "compile_seconds": round(compile_seconds() - compiled_before, 4),
                      "train_seconds": round(loop_seconds, 4), "steps": steps,
                      "step_us": round(1e6 * loop_seconds / steps, 2) if steps else None,
                      "loop": trainer.loop}
    write_run_json(out_dir, net, model, splits, done, final, info)
    if matplotlib_loading is not None:
        matplotlib_loading.join()
    learning_curve(history, out_dir / "learning_curve.png", title=net.name)
    if reporter:
        reporter.finish(final, interrupted)
    return RunResult(out_dir, done, history, final, interrupted)


def _save(trainer: Trainer, carry, ckpt_dir: Path, done: int, meta: dict) -> None:
    params, state, opt = carry
    ckpt.save_checkpoint(ckpt_dir, done, {"params": params, "state": state},
                         jax.tree.leaves(opt), meta)


def _restore(trainer: Trainer, fresh, variables: dict, opt_leaves: list):
    params0, state0, opt0 = fresh
    try:
        params = jax.tree.map(lambda ref, a: jnp.asarray(a, ref.dtype).reshape(ref.shape),
                              params0, variables["params"])
        state = jax.tree.map(lambda ref, a: jnp.asarray(a, ref.dtype).reshape(ref.shape),
                             state0, variables["state"])
        ref_leaves, treedef = jax.tree.flatten(opt0)
        if len(ref_leaves) != len(opt_leaves):
            raise ValueError("optimiser state differs")
        opt = jax.tree.unflatten(treedef, [jnp.asarray(a, r.dtype).reshape(r.shape)
                                           for r, a in zip(ref_leaves, opt_leaves)])
    except (ValueError, TypeError, KeyError) as exc:
        raise RunFailed(f"the checkpoint does not fit this spec ({exc}); train into a new "
                        "--out folder or without --resume") from None
    return params, state, opt


# ---- saved models ----------------------------------------------------------------------


def save_model(path: Path, variables: dict, stats: dict, epochs: int) -> None:
    tensors = ckpt.flatten_variables(jax.device_get(variables))
    for key in ("mean", "std"):
        if stats.get(key) is not None:
            tensors[f"norm/{key}"] = np.asarray(stats[key], np.float32)
    ckpt.save_tensors(path, tensors, {"epochs": epochs})


def write_run_json(out_dir: Path, net: Net, model, splits: Splits, done: int, final,
                    extra: dict) -> None:
    info = {**extra, "net": net.name, "input": list(net.input_shape),
            "output": list(net.output_shape),
            "loss": model.loss_name, "epochs_done": done, "epochs": net.train.epochs,
            "class_names": list(splits.class_names) if splits.class_names else None,
            "examples": {name: len(part) for name, part in splits.parts()},
            "final": final}
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
        found = ckpt.load_latest_checkpoint(run_dir / "checkpoints")
        if found is None:
            raise FileNotFoundError(f"{run_dir} holds no trained variables yet")
        tensors = ckpt.flatten_variables(found[1])
    variables = ckpt.unflatten_variables(tensors)
    variables = jax.tree.map(jnp.asarray, variables)
    norm = {k: tensors.get(f"norm/{k}") for k in ("mean", "std")}
    if any(v is not None for v in norm.values()):
        variables["normalization"] = norm
    return model, variables
