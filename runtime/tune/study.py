"""The Optuna side of `netc tune`: storage, sampler, pruner, ask/tell in batches, workers,
and --refine's second round.

A study lives in an Optuna storage: by default a journal file in the tune folder
(`DIR/study.journal`), else `--storage` (a journal file path, or a database URL such as
`postgresql://...` or `sqlite:///tune.db`), so many processes and machines add trials to
one study. Each worker process asks a batch of trials (up to BATCH), hands it to
runtime/tune/trials.py's `run_trials`, and tells Optuna each outcome as it arrives; a
trial's sampled values, round, overrides and run folder are its user attributes, its
final figures too once it completes. Training is the runner's: JAX is imported here only
to pass its compilation-cache setting on to spawned workers.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .objective import Objective
from .spaces import Space, override, show
from .trials import TrialOutcome, TrialPlan, run_trials

BATCH = 16           # trials asked at once by one worker (a population runner's batch)
TOP_FRACTION = 0.25  # --refine: the box is drawn around this best fraction of trials ...
TOP_MIN = 2          # ... and at least this many


class StudyError(Exception):
    """A storage or study that cannot be used; the message is one line."""


@dataclass(frozen=True)
class TuneConfig:
    """Everything a worker process needs (picklable)."""

    spec_text: str
    spec_name: str                 # the spec's file name, for messages
    base_dir: str                  # where its data paths are relative to
    items: tuple[str, ...]         # every --set item, in command order (spaces included)
    spaces: tuple[Space, ...]      # this round's spaces (--refine's box in round 2)
    storage: str                   # journal file path or database URL
    study_name: str
    objective: str
    out: str                       # the tune folder
    sampler: str = "random"        # random or tpe
    seed: int = 0
    prune: bool = False
    population: bool = True        # trials that share a program train as one population
    tag: str = ""                  # "[worker 2] " before each progress line
    jax_env: tuple = ()            # (name, value) of JAX settings for spawned workers
    command: str = ""              # an id of the command, recorded on each trial it adds

    def space_of(self, key: str) -> Space | None:
        return next((s for s in self.spaces if s.key == key), None)


# ---- storage, sampler, study -----------------------------------------------------------


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def open_storage(where: str):
    """An Optuna storage: a database URL (anything with ://) or a journal file path."""
    quiet_optuna()
    if "://" in where:
        from optuna.storages import RDBStorage

        try:
            return RDBStorage(where)
        except Exception as exc:  # a bad URL, a missing driver, a refused connection
            raise StudyError(f"cannot open --storage {where}: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(where)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError as exc:
        raise StudyError(f"cannot open the journal {where}: {exc.strerror or exc}") from None


def worker_seed(seed: int, worker: int, round_: int, start: int) -> int:
    """The sampler seed of one worker: different workers (and reruns that continue a study,
    which start from a different trial count) draw different streams; the same command on a
    fresh study draws the same values again."""
    import numpy as np

    return int(np.random.SeedSequence([seed, worker, round_, start]).generate_state(1)[0])


def make_sampler(kind: str, seed: int):
    import optuna

    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(prune: bool):
    import optuna

    return optuna.pruners.MedianPruner() if prune else optuna.pruners.NopPruner()


def create_study(storage_url: str, name: str, objective: Objective, attrs: dict):
    """Create the study, or load it to continue; its objective must be this spec's."""
    import optuna

    storage = open_storage(storage_url)
    try:
        study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True,
                                    direction=objective.direction)
    except Exception as exc:
        raise StudyError(f"cannot create or load study '{name}' in {storage_url}: {exc}") \
            from None
    had = study.user_attrs.get("objective")
    if had is not None and had != objective.name:
        raise StudyError(f"study '{name}' in {storage_url} optimises {had}; this spec's "
                         f"objective is {objective.name} (use another --out, --storage or "
                         "--study)")
    if study.direction.name.lower() != objective.direction:
        raise StudyError(f"study '{name}' in {storage_url} is to "
                         f"{study.direction.name.lower()}; this spec's objective "
                         f"{objective.name} is to {objective.direction}")
    for key, value in attrs.items():
        if key not in study.user_attrs:
            study.set_user_attr(key, value)
    return study


def load_study(config: TuneConfig, sampler=None):
    import optuna

    return optuna.load_study(study_name=config.study_name, storage=open_storage(config.storage),
                             sampler=sampler, pruner=make_pruner(config.prune))


def ask_trial(study, spaces: Sequence[Space]):
    """Ask Optuna for a trial over `spaces`: (trial, {key: the value a user writes})."""
    trial = study.ask({s.param: s.distribution() for s in spaces})
    return trial, {s.key: s.value(trial.params[s.param]) for s in spaces}


def trial_overrides(items: Sequence[str], spaces: Sequence[Space], params: dict) -> list[str]:
    """The command's --set items with each space replaced by the trial's value."""
    out = []
    for item in items:
        key = item.partition("=")[0].strip()
        space = next((s for s in spaces if s.key == key), None)
        out.append(item if space is None else override(space, params[key]))
    return out


# ---- one worker -----------------------------------------------------------------------


class PruneMonitor:
    """trials.TrialMonitor: reports each epoch's objective figure to its Optuna trial and
    says to stop when the pruner prunes it."""

    def __init__(self, trials: dict, objective: Objective):
        self.trials, self.objective = trials, objective

    def epochs(self, number: int, records: list[dict]) -> bool:
        trial = self.trials[number]
        reported = False
        for rec in records:
            value = self.objective.of_record(rec)
            if value is not None:
                trial.report(value, rec["epoch"])
                reported = True
        return reported and trial.should_prune()


def _describe(params: dict) -> str:
    return "  ".join(f"{k}={show(v)}" for k, v in params.items())


class Teller:
    """Tells Optuna the outcome of each trial of a batch as it arrives, and prints it."""

    def __init__(self, study, objective: Objective, asked: dict, plans: list[TrialPlan],
                 tag: str, stream):
        self.study, self.objective, self.asked, self.tag, self.stream = (
            study, objective, asked, tag, stream)
        self.plans = {p.number: p for p in plans}
        self.told: set[int] = set()

    def __call__(self, outcome: TrialOutcome) -> None:
        from optuna.trial import TrialState

        trial, objective = self.asked[outcome.number], self.objective
        value = None
        if outcome.state == "complete":
            value = objective.of_final(outcome.final)
            if value is None:
                outcome = replace(outcome, state="failed",
                                  reason=f"the run has no {objective.label()} figure")
        trial.set_user_attr("epochs_done", outcome.epochs_done)
        if outcome.final is not None:
            trial.set_user_attr("final", outcome.final)
        if outcome.reason:
            trial.set_user_attr("reason", outcome.reason)
        if outcome.state == "complete":
            self.study.tell(trial, value)
            shown = f"{objective.label()} {value:.4f}"
        elif outcome.state == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
            shown = outcome.reason
        else:
            self.study.tell(trial, state=TrialState.FAIL)
            shown = f"failed: {outcome.reason}"
        self.told.add(outcome.number)
        plan = self.plans[outcome.number]
        print(f"{self.tag}trial {plan.number} (round {plan.round})  {_describe(plan.params)}"
              f"  ->  {shown}", file=self.stream, flush=True)

    def fail_the_rest(self, reason: str) -> None:
        """Tell every trial not told yet failed (an exception, or a second Ctrl-C)."""
        from optuna.trial import TrialState

        for number in self.asked.keys() - self.told:
            self.asked[number].set_user_attr("reason", reason)
            self.study.tell(self.asked[number], state=TrialState.FAIL)
            self.told.add(number)


def work(config: TuneConfig, round_: int, n: int, worker: int, start: int,
         stream=None) -> bool:
    """Add `n` trials of round `round_` to the study, BATCH at a time. False when Ctrl-C
    stopped it (the running trial is told failed: interrupted)."""
    from .report import records, write_jsonl

    stream = stream or sys.stderr
    objective = Objective(config.objective)
    study = load_study(config, make_sampler(config.sampler,
                                            worker_seed(config.seed, worker, round_, start)))
    trials_dir = Path(config.out) / "trials"
    while n > 0:
        asked: dict = {}
        plans: list[TrialPlan] = []
        for _ in range(min(n, BATCH)):
            trial, params = ask_trial(study, config.spaces)
            run_dir = trials_dir / f"{trial.number:04d}"
            overrides = trial_overrides(config.items, config.spaces, params)
            for key, value in (("round", round_), ("params", params),
                               ("overrides", overrides), ("run", str(run_dir)),
                               ("worker", worker), ("command", config.command)):
                trial.set_user_attr(key, value)
            asked[trial.number] = trial
            plans.append(TrialPlan(trial.number, round_, params, tuple(overrides), run_dir))
        teller = Teller(study, objective, asked, plans, config.tag, stream)
        outcomes: list[TrialOutcome] = []
        try:
            outcomes = run_batch(config, plans, PruneMonitor(asked, objective)
                                 if config.prune else None, teller)
        finally:
            teller.fail_the_rest("interrupted")
            write_jsonl(Path(config.out) / "tune.jsonl",
                        records(study.get_trials(deepcopy=False)))
        n -= len(plans)
        if any(o.interrupted for o in outcomes):
            return False
    return True


def run_batch(config: TuneConfig, plans: list[TrialPlan], monitor, on_outcome):
    """Where a batch of asked trials is trained: trials.run_trials (populations of the plans
    that share a program, the others one after another)."""
    return run_trials(config.spec_text, plans, name=config.spec_name,
                      base_dir=Path(config.base_dir), monitor=monitor, on_outcome=on_outcome,
                      population=config.population)


def _child(config: TuneConfig, round_: int, n: int, worker: int, start: int) -> None:
    """A spawned worker process."""
    os.environ.update(dict(config.jax_env))
    try:
        ok = work(config, round_, n, worker, start)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        print(f"netc: worker {worker}: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(3)
    sys.exit(0 if ok else 130)


def run_round(config: TuneConfig, round_: int, n: int, workers: int, start: int) -> bool:
    """`n` trials of one round, shared by `workers` processes: this one and workers-1
    spawned ones, each on its own sampler seed. False when interrupted; raises StudyError
    when a spawned worker failed."""
    shares = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
    procs = []
    if workers > 1:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # JAX is not fork-safe
        for i in range(1, workers):
            if shares[i]:
                child = replace(config, tag=f"[worker {i}] ")
                proc = context.Process(target=_child, args=(child, round_, shares[i], i, start),
                                       name=f"netc-tune-worker-{i}")
                proc.start()
                procs.append(proc)
        config = replace(config, tag="[worker 0] ")
    ok = True
    try:
        if shares[0]:
            ok = work(config, round_, shares[0], 0, start)
    finally:
        for proc in procs:
            try:
                proc.join()
            except KeyboardInterrupt:
                proc.join()
    codes = [p.exitcode for p in procs]
    if any(code == 130 for code in codes):
        ok = False
    bad = [f"worker {i + 1} exited {code}" for i, code in enumerate(codes)
           if code not in (0, 130)]
    if bad:
        raise StudyError("; ".join(bad) + " (its trials so far are in the study)")
    return ok


# ---- --refine --------------------------------------------------------------------------


def refine_spaces(trials, spaces: Sequence[Space], objective: Objective) -> list[Space] | None:
    """Round 2's spaces: for each space, the box around the values of the best TOP_FRACTION
    (at least TOP_MIN) complete trials of the study (spaces.py's narrowed: widened a little,
    clipped to the space). None when fewer than TOP_MIN trials are complete."""
    done = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None
            and all(s.key in t.user_attrs.get("params", {}) for s in spaces)]
    if len(done) < TOP_MIN:
        return None
    done.sort(key=lambda t: objective.rank(t.value, t.user_attrs.get("final"), t.number))
    top = done[:max(TOP_MIN, math.ceil(TOP_FRACTION * len(done)))]
    return [s.narrowed([t.user_attrs["params"][s.key] for t in top]) for s in spaces]


def jax_env() -> tuple:
    """The JAX settings this process runs with that spawned workers should share (the
    persistent compilation cache), as environment variables JAX reads at import."""
    import jax

    where = jax.config.jax_compilation_cache_dir
    if not where:
        return ()
    return (("JAX_COMPILATION_CACHE_DIR", str(where)),
            ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
             str(jax.config.jax_persistent_cache_min_compile_time_secs)))


__all__ = ["BATCH", "TOP_FRACTION", "TOP_MIN", "PruneMonitor", "StudyError", "Teller",
           "TuneConfig",
           "ask_trial", "create_study", "jax_env", "load_study", "make_pruner", "make_sampler",
           "open_storage", "quiet_optuna", "refine_spaces", "run_batch", "run_round",
           "trial_overrides", "work", "worker_seed"]
