"""What a tune folder shows: tune.jsonl, the ranked table, tune.png and the JSON summary.

Everything is read from the study's trials (every worker's and every machine's), so each
file is a snapshot of the whole study however many processes add to it. A trial's record:

    {"number": 7, "round": 1, "state": "complete", "reason": null,
     "params": {"optimizer.lr": 0.003162}, "value": 0.2871,
     "final": {"train": {"loss": 0.2871, "accuracy": 0.9}},  # run.json "final"
     "epochs_done": 200, "run": "tunes/moons/trials/0007"}

`state` is "complete", "pruned", "failed" or "running"; `reason` says why a trial failed or
where it was pruned; `value` is the objective (null unless complete). No JAX here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .objective import Objective

STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
          "WAITING": "waiting"}


def record(trial) -> dict:
    """The tune.jsonl object of an Optuna FrozenTrial."""
    attrs = trial.user_attrs
    state = STATES.get(trial.state.name, trial.state.name.lower())
    return {"number": trial.number, "round": attrs.get("round", 1), "state": state,
            "reason": attrs.get("reason"), "params": attrs.get("params", {}),
            "value": trial.value if state == "complete" else None,
            "final": attrs.get("final"), "epochs_done": attrs.get("epochs_done"),
            "run": attrs.get("run")}


def records(trials) -> list[dict]:
    return [record(t) for t in sorted(trials, key=lambda t: t.number)]


def ranked(recs: list[dict], objective: Objective) -> list[dict]:
    """Complete trials best first (ties broken by dev loss, then trial number:
    :meth:`Objective.rank`), then pruned, running and failed ones by number."""
    order = {"complete": 0, "pruned": 1, "running": 2, "waiting": 2, "failed": 3}

    def key(r):
        if r["state"] == "complete" and r["value"] is not None:
            return (0, objective.rank(r["value"], r["final"], r["number"]))
        return (order.get(r["state"], 4) or 4, (r["number"],))

    return sorted(recs, key=key)


def write_jsonl(path: Path, recs: list[dict]) -> None:
    from netc.runtime.checkpoint import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in recs))


def _fmt(value) -> str:
    """A figure: 4 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _value(value) -> str:
    from .spaces import show

    return "-" if value is None else show(value)


def print_table(recs: list[dict], objective: Objective, title: str, console=None,
                limit: int = 30) -> None:
    """The trials ranked by the objective: number, round, each sampled key, the final figures
    of each split, state."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console(highlight=False)
        if not console.is_terminal:  # a file or a pipe: never cut a column
            console = Console(highlight=False, width=240)
    keys = list(dict.fromkeys(k for r in recs for k in r["params"]))
    splits = list(dict.fromkeys(s for r in recs for s in (r["final"] or {})))
    metrics = {s: list(dict.fromkeys(m for r in recs for m in ((r["final"] or {}).get(s) or {})))
               for s in splits}
    table = Table(title=title, title_justify="left", caption="* the objective",
                  caption_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("trial", justify="right")
    table.add_column("round", justify="right")
    for k in keys:
        table.add_column(k, justify="right")
    for s in splits:
        for m in metrics[s]:
            mark = "*" if (s, m) == (objective.split, objective.metric) else ""
            table.add_column(f"{s} {m}{mark}", justify="right", style="bold" if mark else None)
    table.add_column("state")
    shown = ranked(recs, objective)
    for i, r in enumerate(shown[:limit], 1):
        final = r["final"] or {}
        state = r["state"]
        if r["reason"] and state != "complete":
            reason = r["reason"]
            state = reason if reason.startswith(state) else f"{state}: {reason}"
            if len(state) > 60:
                state = state[:57] + "..."
        row = [str(i) if r["state"] == "complete" else "", str(r["number"]), str(r["round"])]
        row += [_value(r["params"].get(k)) for k in keys]
        row += [_fmt((final.get(s) or {}).get(m)) for s in splits for m in metrics[s]]
        table.add_row(*row, state)
    console.print(table)
    if len(shown) > limit:
        console.print(f"... and {len(shown) - limit} more trials in tune.jsonl")


def best(recs: list[dict], objective: Objective) -> dict | None:
    done = ranked([r for r in recs if r["state"] == "complete"], objective)
    return done[0] if done else None


def plot(recs: list[dict], objective: Objective, scales: dict[str, str], path: Path,
         title: str = "") -> bool:
    """tune.png, the course's picture of a search: the objective against each sampled
    hyperparameter, one subplot each, on a log x axis for log spaces (1 - x for 1-log);
    round 2 (--refine) in its own colour. False when no trial is complete yet."""
    done = [r for r in recs if r["state"] == "complete" and r["value"] is not None]
    keys = list(dict.fromkeys(k for r in recs for k in r["params"]))
    if not done or not keys:
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(len(keys), 3)
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    rounds = sorted({r["round"] for r in done})
    for ax, key in zip(axes, keys):
        scale = scales.get(key, "linear")
        for rnd in rounds:
            pts = [(r["params"][key], r["value"]) for r in done
                   if r["round"] == rnd and key in r["params"]]
            if not pts:
                continue
            xs = [x for x, _ in pts]
            if scale == "1-log":
                xs = [1.0 - x for x in xs]
            elif scale == "category" or any(isinstance(x, str) for x in xs):
                xs = [str(x) for x in xs]
            ax.scatter(xs, [v for _, v in pts], s=22, alpha=0.8,
                       label=f"round {rnd}" if len(rounds) > 1 else None)
        if scale in ("log", "1-log"):
            ax.set_xscale("log")
            # a narrow range labels minor ticks (3e-3, 4e-3, ...): tilt them apart
            ax.tick_params(axis="x", which="both", labelrotation=35)
            ax.tick_params(axis="x", which="minor", labelsize="x-small")
        ax.set_xlabel(f"1 - {key}" if scale == "1-log" else key)
        ax.set_ylabel(objective.label())
        if len(rounds) > 1:
            ax.legend(fontsize="small")
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    from netc.runtime.checkpoint import atomic_write

    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png"))
    return True


__all__ = ["STATES", "best", "plot", "print_table", "ranked", "record", "records",
           "write_jsonl"]
