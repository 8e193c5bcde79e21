"""A population: many trainings of one net run as one program (the course's "caviar"
strategy, many models at once, on one machine).

Members differ only in hyperparameters, the numbers a training program takes as inputs
(runtime/optim.py: learning rate, betas, eps, weight decay, the schedule's numbers, l2,
`init random`'s scale).
The Trainer runs its compiled programs over them (runtime/train.py: one after another
inside the program on CPU, vmapped on accelerators), so K members cost one compilation
and one dispatch per chunk of epochs; they share the data, the minibatch orders and the random
keys (one seed), so each member is the run `netc train` makes with the same values.

    key = program_key(net)                      # equal keys: one population can hold both
    results = train_population(nets, out_dirs, base_dir=Path("."))

Each member gets a run folder like `netc train`'s (spec.net, run.json with "final",
metrics.jsonl, model.safetensors), without checkpoints or plots: a population is not
resumed; Ctrl-C stops every member after its epoch. A member whose loss becomes NaN or inf
is failed with the epoch; the others go on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from netc.compiler.ir import Net
from netc.compiler.model import compile_net
from netc.compiler.settings import Choice

from . import checkpoint as ckpt
from .clock import compile_seconds, now
from .optim import STATIC_OPTIONS, hyperparameters
from .run import MetricsLog, load_data, readers_closed, save_model, to_device, write_run_json
from .split_figures import evaluate_split
from .train import StopRequested, Trainer, first_bad_epoch
from .transfer import cast_start, start_variables


@dataclass
class MemberResult:
    out_dir: Path
    history: list[dict]
    final: dict | None       # run.json's "final"; None for a failed member
    failed: str | None = None
    interrupted: bool = False  # Ctrl-C stopped the population after an epoch


def program_key(net: Net) -> tuple:
    """What a net's training program depends on: its layers and its train section with the
    hyperparameters taken out. Nets with equal keys can train as one population."""
    cfg = net.train
    bare = replace(cfg, optimizer=Choice(cfg.optimizer.name), init=Choice(cfg.init.name),
                   schedule=Choice(cfg.schedule.name, {k: v for k, v in
                                                       cfg.schedule.options.items()
                                                       if k in STATIC_OPTIONS}),
                   l2=0.0, spans={})
    layers = tuple((leaf.name, leaf.kind, repr(sorted(leaf.attrs.items())), leaf.in_shape,
                    leaf.out_shape) for leaf in net.leaves())
    return tuple(net.input_shape), layers, repr(bare)


def member_hyperparameters(nets: list[Net]) -> list[dict]:
    """Each member's hyperparameters, with the same keys for all (l2 0 where unused)."""
    hyper = [hyperparameters(net.train) for net in nets]
    if any("l2" in hp for hp in hyper):
        hyper = [{**hp, "l2": hp.get("l2", 0.0)} for hp in hyper]
    return hyper


def train_population(nets: list[Net], out_dirs: list[Path], *, base_dir: Path,
                     loop: str = "auto") -> list[MemberResult]:
    """Train every net (all with one program_key) as one population; write a run folder
    for each. Raises DataError for the data, ValueError when the nets differ in more than
    hyperparameters; SpecError when their `init from=` run cannot be used."""
    if not nets or len(nets) != len(out_dirs):
        raise ValueError("train_population needs one output folder per net")
    keys = {program_key(net) for net in nets}
    if len(keys) != 1:
        raise ValueError("the nets of a population may differ only in hyperparameters")
    started, started_unix, compiled_before = now(), time.time(), compile_seconds()
    net = nets[0]
    transfer, start = start_variables(net, base_dir)  # `init from=`: the same for every member
    model = compile_net(net)
    splits, stats = load_data(net, base_dir, model.loss_name, streaming=True)
    train, dev = to_device(splits.train), to_device(splits.dev)
    trainer = Trainer(net, train, dev, loop=loop, population=member_hyperparameters(nets))
    out_dirs = [Path(d) for d in out_dirs]
    logs = []
    for member, out_dir in zip(nets, out_dirs):
        out_dir.mkdir(parents=True, exist_ok=True)
        ckpt.atomic_write_text(out_dir / "spec.net", member.source)
        logs.append(MetricsLog(out_dir / "metrics.jsonl"))
        logs[-1].truncate(0)

    carry = trainer.init_state(start=cast_start(start, trainer.model.dtype))
    histories: list[list[dict]] = [[] for _ in nets]
    failed: list[str | None] = [None] * len(nets)
    done, loop_seconds, epochs = 0, 0.0, net.train.epochs
    with StopRequested() as stop, readers_closed(trainer):
        while done < epochs and not stop.requested and not _all_stopped(trainer, carry):
            count = min(trainer.chunk, epochs - done)
            carry, done, seconds = _chunk(trainer, carry, done, count, logs, histories,
                                          failed, started)
            loop_seconds += seconds
    interrupted = stop.requested and done < epochs
    steps = done * trainer.steps_per_epoch
    timing = {"started": round(started_unix, 4), "seconds": round(now() - started, 4),
              "compile_seconds": round(compile_seconds() - compiled_before, 4),
              "train_seconds": round(loop_seconds, 4), "steps": steps,
              "step_us": round(1e6 * loop_seconds / steps, 2) if steps else None,
              "loop": trainer.loop}
    results = []
    for k, (variables, member, out_dir) in enumerate(zip(trainer.variables(carry, best=True),
                                                         nets, out_dirs)):
        final = None
        if failed[k] is None:
            final = {name: evaluate_split(model, variables, part, trainer.batch)
                     for name, part in splits.parts()}
            save_model(out_dir / "model.safetensors", variables, stats, done)
        info = {"data_dir": str(Path(base_dir).resolve()), "timing": timing,
                "population": {"members": len(nets), "member": k}}
        if transfer is not None:
            info["init_from"] = transfer.as_json()
        if failed[k] is not None:
            info["failed"] = failed[k]
        ran = len(histories[k])
        if net.train.early_stop is not None:
            report = trainer.watch_report(carry)[k]
            info["best_epoch"] = report["best_epoch"]
            info["stopped_epoch"] = ran if report["stopped"] else None
        write_run_json(out_dir, member, model, splits, ran, final, info)
        results.append(MemberResult(out_dir, histories[k], final, failed[k], interrupted))
    return results


def _all_stopped(trainer: Trainer, carry) -> bool:
    """Whether early stopping ended every member."""
    return all(report.get("stopped") for report in trainer.watch_report(carry))


def _chunk(trainer: Trainer, carry, done: int, count: int, logs, histories, failed,
           started: float):
    """Run `count` epochs of every member; log each live member's records, failing those
    whose loss stopped being finite. -> (carry, epochs done, training seconds)."""
    t0, c0 = now(), compile_seconds()
    carry, sums = trainer.run_epochs(carry, done, count)
    seconds = max(now() - t0 - (compile_seconds() - c0), 0.0)
    for k, log in enumerate(logs):
        if failed[k] is not None:
            continue
        records = trainer.records(sums[k], done, seconds, ended=now() - started, member=k)
        bad = first_bad_epoch(records)
        if bad is not None:
            failed[k] = f"the loss became {records[bad - done - 1]['loss']} at epoch {bad}"
            records = [r for r in records if r["epoch"] < bad]
        log.append(records)
        histories[k] += records
    return carry, done + count, seconds


__all__ = ["MemberResult", "member_hyperparameters", "program_key",
           "train_population"]
