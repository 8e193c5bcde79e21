"""`netc tune FILE --trials N --set KEY=SPACE ...`: a hyperparameter search with Optuna.

    DIR/study.journal      the Optuna study (unless --storage names another storage)
    DIR/trials/NNNN/       one normal run folder per trial, NNNN its trial number
    DIR/tune.jsonl         one object per trial of the study (report.py has the keys)
    DIR/best.net           the spec with the best trial's settings written in
    DIR/tune.png           the objective against each sampled hyperparameter

Running the same command with the same --out continues the study. Importing this module
costs nothing: the parser is registered by runtime/commands.py, and the work imports
Optuna (and, through the runner, JAX) when it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from netc.runtime.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, RunError, UsageError
from netc.runtime.specfile import read_spec


def _count(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise argparse.ArgumentTypeError(f"expected an integer >= {least}, got {text!r}")
    return value


def register(sub, run) -> None:
    """Add `netc tune` to the subcommands; `run(args)` runs it."""
    p = sub.add_parser(
        "tune", help="search hyperparameters: many runs of a spec, sampled by Optuna",
        description="Train a spec many times with hyperparameters drawn from search spaces "
        "(--set KEY=SPACE), rank the runs by dev accuracy (else dev loss, else train loss) "
        "and write the best one's settings into best.net.")
    p.add_argument("file", help="the .net file")
    p.add_argument("--trials", type=lambda t: _count(t, 1), required=True, metavar="N",
                   help="trials this command adds to the study (shared by the workers; "
                   "twice N with --refine)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=SPACE",
                   help="a search space: optimizer.lr='log(1e-4,1)', optimizer.b1="
                   "'1-log(1e-3,1e-1)', l2='uniform(0,0.1)', epochs='int(50,200)', "
                   "batch='choice(32,64,full)'; KEY=VALUE fixes a setting for every trial")
    p.add_argument("--out", help="tune folder (default tunes/NAME-TIMESTAMP); the same --out "
                   "continues its study")
    p.add_argument("--workers", type=lambda t: _count(t, 1), default=1, metavar="K",
                   help="processes sharing the trials, each with its own sampler seed")
    p.add_argument("--storage", metavar="URL", help="an Optuna storage shared by many "
                   "commands or machines: a journal file path, or a database URL "
                   "(postgresql://..., sqlite:///tune.db); default DIR/study.journal")
    p.add_argument("--study", metavar="NAME", help="the study's name (default the net's)")
    p.add_argument("--sampler", choices=("random", "tpe"), default="random",
                   help="random search, as the course advises (default), or Optuna's TPE")
    p.add_argument("--seed", type=lambda t: _count(t, 0), default=0,
                   help="the samplers' seed (default 0); give each machine its own")
    p.add_argument("--prune", action="store_true",
                   help="stop hopeless trials early (Optuna's MedianPruner on the per-epoch "
                   "objective)")
    p.add_argument("--refine", action="store_true",
                   help="coarse to fine: then N more trials in a box around the best ones")
    p.add_argument("--one-by-one", action="store_true",
                   help="train every trial on its own, never as a population (trials that "
                   "differ only in hyperparameters otherwise share one program)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=run)


def _spaces(items: list[str]):
    from .spaces import SpaceError, parse_set

    entries = []
    for item in items:
        try:
            entries.append((item, parse_set(item)))
        except SpaceError as exc:
            raise RunError(str(exc)) from None
    spaces = [s for _, s in entries if s is not None]
    if not spaces:
        raise UsageError("netc tune needs at least one search space, e.g. "
                         "--set optimizer.lr='log(1e-4,1)'")
    seen: dict[str, str] = {}
    for item, _ in entries:
        key = item.partition("=")[0].strip()
        if key in seen:
            raise RunError(f"--set {item}: {key} is already set by --set {seen[key]}")
        seen[key] = item
    return entries, spaces


def _check(source: str, name: str, entries) -> str:
    """The spec with every fixed value and a typical value of each space applied: a key
    --set does not know, or a space none of whose values fits, stops here. SpecError of
    the spec itself propagates (the command line reports it)."""
    from netc.compiler.overrides import OverrideError, apply_overrides

    from .spaces import override, representative

    applied = []
    for item, space in entries:
        applied.append(item if space is None else override(space, representative(space)))
    try:
        return apply_overrides(source, applied, name)
    except OverrideError as exc:
        message = str(exc)
        for (item, space), used in zip(entries, applied):
            if space is not None and message.startswith(f"--set {used}:"):
                # the message names the space, not the typical value tried (hints too)
                value, tried = item.partition("=")[2].strip(), used.partition("=")[2]
                rest = message[len(f"--set {used}:"):].replace(f"={tried}?", f"={value}?")
                message = f"--set {item}:{rest}"
        raise RunError(message) from None


def cmd_tune(args) -> int:
    import uuid

    from netc.compiler.check import check_source

    source, name = read_spec(args.file)
    entries, spaces = _spaces(args.set)
    net = check_source(_check(source, name, entries), name)
    base_dir = Path(args.file).resolve().parent
    if net.train.init_from is not None:  # a run that cannot be used fails here, not per trial
        from netc.compiler.transfer_check import resolve_init_from

        resolve_init_from(net, base_dir)

    from netc.runtime.data import DataError

    from . import study as st
    from .objective import decide

    try:
        objective = decide(net, base_dir)
    except DataError as exc:
        raise RunError(f"data: {exc}") from None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("tunes") / f"{net.name}-{stamp}"
    storage = args.storage or str(out / "study.journal")
    study_name = args.study or net.name
    attrs = {"objective": objective.name, "spec": name,
             "spaces": {s.key: s.text() for s in spaces}}
    try:
        study = st.create_study(storage, study_name, objective, attrs)
    except st.StudyError as exc:
        raise RunError(str(exc)) from None
    start = len(study.get_trials(deepcopy=False))
    trials_dir = out / "trials"
    if start == 0 and trials_dir.is_dir() and any(trials_dir.iterdir()):
        raise UsageError(f"{trials_dir} holds trials of another study; choose another --out")
    given = study.user_attrs.get("spaces", {})
    now = {s.key: s.text() for s in spaces}
    if start and given != now:
        print(f"note: study '{study_name}' was started with spaces {given}; this command "
              f"samples {now}", file=sys.stderr)

    config = st.TuneConfig(
        spec_text=source, spec_name=name, base_dir=str(base_dir), items=tuple(args.set),
        spaces=tuple(spaces), storage=storage, study_name=study_name,
        objective=objective.name, out=str(out), sampler=args.sampler, seed=args.seed,
        prune=args.prune, population=not args.one_by_one,
        jax_env=st.jax_env() if args.workers > 1 else (),
        command=uuid.uuid4().hex)
    if not args.json:
        print(f"tuning {net.name}: {args.trials} trial{'s' * (args.trials != 1)}"
              f"{' + ' + str(args.trials) + ' refined' if args.refine else ''}, "
              f"{objective.label()} ({objective.direction}), study '{study_name}' in "
              f"{storage}", file=sys.stderr)
    try:
        ok = st.run_round(config, 1, args.trials, args.workers, start)
        if ok and args.refine:
            box = st.refine_spaces(study.get_trials(deepcopy=False), spaces, objective)
            if box is None:
                print("note: fewer than 2 trials completed: no refined round", file=sys.stderr)
            else:
                print("round 2 (refined): " + ", ".join(f"{s.key}={s.text()}" for s in box),
                      file=sys.stderr)
                start2 = len(study.get_trials(deepcopy=False))
                ok = st.run_round(replace_spaces(config, box), 2, args.trials, args.workers,
                                  start2)
    except st.StudyError as exc:
        _outputs(study, source, name, objective, spaces, out, storage, config.command, args)
        raise RunError(str(exc)) from None
    summary = _outputs(study, source, name, objective, spaces, out, storage, config.command, args)
    if not ok:
        print(f"interrupted; continue with the same command (--out {out})", file=sys.stderr)
        return EXIT_INTERRUPTED
    if summary["best"] is None:
        print("netc: error: no trial has completed (tune.jsonl says why)", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def replace_spaces(config, spaces):
    from dataclasses import replace

    return replace(config, spaces=tuple(spaces))


def _outputs(study, source: str, name: str, objective, spaces, out: Path, storage: str,
             command: str, args) -> dict:
    """tune.jsonl, best.net and tune.png from the whole study; the table (or --json)."""
    from netc.runtime.checkpoint import atomic_write_text

    from . import report
    from .spaces import ChoiceSpace, LogSpace, OneMinusLogSpace, show
    from .specedit import write_settings

    trials = study.get_trials(deepcopy=False)
    recs = report.records(trials)
    out.mkdir(parents=True, exist_ok=True)
    report.write_jsonl(out / "tune.jsonl", recs)
    best = report.best(recs, objective)
    best_net = None
    if best is not None:
        overrides = next(t for t in trials if t.number == best["number"]).user_attrs.get(
            "overrides", [])
        try:
            text = write_settings(source, overrides, name)
        except Exception as exc:  # a spec edited since that trial ran
            print(f"note: best.net not written: {exc}", file=sys.stderr)
        else:
            best_net = out / "best.net"
            atomic_write_text(best_net, text)
    scales = {s.key: "log" if isinstance(s, LogSpace) else "1-log"
              if isinstance(s, OneMinusLogSpace) else "category"
              if isinstance(s, ChoiceSpace) and any(isinstance(v, str) for v in s.values)
              else "linear" for s in spaces}
    plotted = report.plot(recs, objective, scales, out / "tune.png",
                          title=f"{study.study_name}: {objective.label()}")
    counts = {state: sum(r["state"] == state for r in recs)
              for state in ("complete", "pruned", "failed", "running")}
    summary = {"study": study.study_name, "storage": storage, "out": str(out),
               "objective": {"name": objective.name, "direction": objective.direction},
               "trials": counts,
               "added": [t.number for t in trials if t.user_attrs.get("command") == command],
               "best": best, "best_net": str(best_net) if best_net else None,
               "tune_jsonl": str(out / "tune.jsonl"),
               "plot": str(out / "tune.png") if plotted else None}
    if args.json:
        print(json.dumps(summary))
        return summary
    better = "higher" if objective.direction == "maximize" else "lower"
    report.print_table(recs, objective, f"{study.study_name}: {len(recs)} trials ranked by "
                       f"{objective.label()} ({better} is better)")
    if best is not None:
        values = "  ".join(f"{k}={show(v)}" for k, v in best["params"].items())
        print(f"best: trial {best['number']}  {values}  {objective.label()} "
              f"{best['value']:.4f}")
        print(f"wrote {best_net}, {out / 'tune.jsonl'}" + (f", {out / 'tune.png'}"
                                                           if plotted else ""))
    return summary


__all__ = ["cmd_tune", "register"]
