"""Running a batch of tuning trials: the seam between the study and training.

The study (runtime/tune/study.py) asks Optuna for a batch of trials, turns each into a
`TrialPlan` and hands the batch to `run_trials`; it tells Optuna each `TrialOutcome`.
This module knows nothing of Optuna: a plan is a spec, the `--set` overrides that make it
the trial's, and a run folder. A runner that trains many compatible plans at once (one
vmapped XLA program for a population of hyperparameter settings) replaces `run_trials`
with the same signature and contract:

- every plan gets exactly one outcome, in `plans` order, and `on_outcome(outcome)` is called
  once per plan as soon as its outcome is known (so the study can record it, print it and
  free the next trial);
- a plan whose overrides or spec do not check, whose data cannot be read, or whose training
  diverges (RunFailed: NaN loss) is a "failed" outcome with a one-line reason, never an
  exception: the batch goes on;
- after each chunk of epochs `monitor.epochs(number, records)` gets that chunk's metric
  records (metrics.jsonl's, with the epoch numbered from 1); when it returns True the trial
  stops there and its outcome is "pruned" (a population runner drops the member);
- a finished trial's folder is a normal run folder (spec.net, run.json, metrics.jsonl,
  model.safetensors), and its outcome's `final` is run.json's "final" (inference over each
  whole split);
- Ctrl-C: the trial being trained stops at the end of its epoch, its outcome and those of
  the plans not yet started are "failed" with `interrupted=True`.

Plans whose specs differ only in hyperparameters (runtime/population.py's program_key:
learning rate, betas, eps, weight decay, schedule numbers, l2) train together as one
population, one program for all of them; the others, and every plan when a monitor prunes
(it needs each trial's own chunks), train one after another with runtime/run.py's
train_run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

PRUNE_REPORTS = 10  # with a monitor, a trial reports at least this many times (chunks)


@dataclass(frozen=True)
class TrialPlan:
    number: int                   # Optuna's trial number: unique in the study
    round: int                    # 1: the spaces as given; 2: --refine's box
    params: dict                  # the sampled values under their --set keys
    overrides: tuple[str, ...]    # every --set KEY=VALUE of the trial (fixed and sampled)
    run_dir: Path                 # the trial's run folder


@dataclass
class TrialOutcome:
    number: int
    state: str                    # "complete", "pruned" or "failed"
    final: dict | None = None     # run.json "final" of a complete trial
    epochs_done: int = 0
    reason: str | None = None     # why it failed, or where it was pruned
    interrupted: bool = False     # Ctrl-C: the study stops asking


class TrialMonitor(Protocol):
    def epochs(self, number: int, records: list[dict]) -> bool:
        """Records of the epochs trial `number` just ran; True stops (prunes) it."""


class TrialPruned(Exception):
    """Raised from the reporter inside train_run to stop a trial the monitor prunes."""

    def __init__(self, epoch: int):
        super().__init__(f"pruned after epoch {epoch}")
        self.epoch = epoch


class TrialReporter:
    """runtime/progress.Reporter's interface, quiet: passes each chunk's records to the
    monitor and stops the trial when the monitor says so."""

    def __init__(self, number: int, monitor: TrialMonitor | None, stream=None):
        self.number, self.monitor = number, monitor
        self.stream = stream or sys.stderr

    def warn(self, message: str) -> None:
        if message.startswith("warning"):
            print(f"trial {self.number}: {message}", file=self.stream)

    def start(self, net, trainer, done: int) -> None:
        pass

    def epochs(self, records: list[dict]) -> None:
        if self.monitor is not None and self.monitor.epochs(self.number, records):
            raise TrialPruned(records[-1]["epoch"])

    def finish(self, final: dict, interrupted: bool) -> None:
        pass


def trial_net(net_text: str, overrides: Sequence[str], name: str):
    """The checked spec of a trial: `net_text` with `overrides` applied. Raises ValueError
    with a one-line reason."""
    from netc.compiler.check import check_source
    from netc.compiler.overrides import OverrideError, apply_overrides
    from netc.dsl.diagnostics import SpecError

    try:
        return check_source(apply_overrides(net_text, list(overrides), name), name)
    except OverrideError as exc:
        raise ValueError(str(exc)) from None
    except SpecError as exc:
        d = exc.diagnostics[0] if exc.diagnostics else None
        raise ValueError(f"{name}:{d.span.line}:{d.span.col}: {d.message}" if d
                         else str(exc)) from None


def run_trials(net_text: str, plans: Sequence[TrialPlan], *, name: str, base_dir: Path,
               monitor: TrialMonitor | None = None,
               on_outcome: Callable[[TrialOutcome], None] | None = None,
               population: bool = True) -> list[TrialOutcome]:
    """Train each plan (see the module's docstring for the contract); `name` is the spec's
    file name (for messages), `base_dir` the folder its data paths are relative to.
    `population=False` trains every plan on its own."""
    from netc.runtime.data import DataError
    from netc.runtime.population import program_key
    from netc.runtime.run import RunFailed, train_run

    outcomes: dict[int, TrialOutcome] = {}

    def done(outcome: TrialOutcome) -> None:
        outcomes[outcome.number] = outcome
        if on_outcome is not None:
            on_outcome(outcome)

    groups: dict[tuple, list] = {}
    if population and monitor is None:
        for plan in plans:
            try:
                net = trial_net(net_text, plan.overrides, name)
            except ValueError as exc:
                done(TrialOutcome(plan.number, "failed", reason=f"bad sample: {exc}"))
                continue
            groups.setdefault(program_key(net), []).append((plan, net))
    stopped = False
    for group in groups.values():
        if len(group) < 2:
            continue
        if stopped:
            break
        for outcome in _run_population(group, base_dir, (DataError,)):
            stopped = stopped or outcome.interrupted
            done(outcome)
    for plan in plans:
        if plan.number in outcomes:
            continue
        if stopped:
            done(TrialOutcome(plan.number, "failed", reason="interrupted before it started",
                              interrupted=True))
            continue
        outcome = _run_one(plan, net_text, name, base_dir, monitor, train_run,
                           (DataError, RunFailed))
        stopped = outcome.interrupted
        done(outcome)
    return [outcomes[plan.number] for plan in plans]


def _run_population(group: list, base_dir: Path, failures) -> list[TrialOutcome]:
    """Plans whose nets share one program, trained as one population."""
    from netc.runtime.population import train_population

    plans = [plan for plan, _ in group]
    try:
        results = train_population([net for _, net in group], [p.run_dir for p in plans],
                                   base_dir=base_dir)
    except failures as exc:
        return [TrialOutcome(p.number, "failed", reason=f"data: {exc}") for p in plans]
    outcomes = []
    for plan, result in zip(plans, results):
        epochs = len(result.history)
        if result.interrupted:
            outcomes.append(TrialOutcome(plan.number, "failed", epochs_done=epochs,
                                         reason=f"interrupted after epoch {epochs}",
                                         interrupted=True))
        elif result.failed:
            outcomes.append(TrialOutcome(plan.number, "failed", epochs_done=epochs,
                                         reason=result.failed))
        else:
            outcomes.append(TrialOutcome(plan.number, "complete", final=result.final,
                                         epochs_done=epochs))
    return outcomes


def _run_one(plan: TrialPlan, net_text: str, name: str, base_dir: Path, monitor, train_run,
             failures) -> TrialOutcome:
    try:
        net = trial_net(net_text, plan.overrides, name)
    except ValueError as exc:
        return TrialOutcome(plan.number, "failed", reason=f"bad sample: {exc}")
    every = None
    if monitor is not None:
        every = max(1, net.train.epochs // PRUNE_REPORTS)
    try:
        result = train_run(net, plan.run_dir, base_dir=base_dir, report_every=every,
                           reporter=TrialReporter(plan.number, monitor))
    except TrialPruned as exc:
        return TrialOutcome(plan.number, "pruned", epochs_done=exc.epoch,
                            reason=f"pruned after epoch {exc.epoch}")
    except failures as exc:
        prefix = "data: " if type(exc).__name__ == "DataError" else ""
        return TrialOutcome(plan.number, "failed", reason=prefix + str(exc))
    if result.interrupted:
        return TrialOutcome(plan.number, "failed", epochs_done=result.epochs_done,
                            reason=f"interrupted after epoch {result.epochs_done}",
                            interrupted=True)
    return TrialOutcome(plan.number, "complete", final=result.final,
                        epochs_done=result.epochs_done)


__all__ = ["PRUNE_REPORTS", "TrialMonitor", "TrialOutcome", "TrialPlan", "TrialPruned",
           "TrialReporter", "run_trials", "trial_net"]
