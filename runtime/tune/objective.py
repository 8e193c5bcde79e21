"""What a study optimises, decided once per study from the spec.

Dev accuracy (maximise) when the net's loss gives an accuracy and the run has a dev split;
else dev loss (minimise) when it has a dev split; else the training loss (minimise). The
value of a finished trial is its run's final figure (run.json "final": inference over the
whole split); pruning watches the same figure epoch by epoch (metrics.jsonl's records).
No JAX here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

OBJECTIVES = ("dev_accuracy", "dev_loss", "train_loss")


@dataclass(frozen=True)
class Objective:
    name: str  # one of OBJECTIVES

    @property
    def split(self) -> str:
        return self.name.partition("_")[0]

    @property
    def metric(self) -> str:
        return self.name.partition("_")[2]

    @property
    def direction(self) -> str:
        return "maximize" if self.metric == "accuracy" else "minimize"

    @property
    def record_key(self) -> str:
        """The per-epoch figure in a metrics record: dev_accuracy, dev_loss or loss."""
        return "loss" if self.name == "train_loss" else self.name

    def of_final(self, final: dict | None) -> float | None:
        value = ((final or {}).get(self.split) or {}).get(self.metric)
        return float(value) if value is not None and math.isfinite(value) else None

    def of_record(self, record: dict) -> float | None:
        value = record.get(self.record_key)
        return float(value) if value is not None and math.isfinite(value) else None

    def rank(self, value: float, final: dict | None, number: int) -> tuple:
        """A complete trial's sort key, best first: its objective, then (ties: two trials
        with the same dev accuracy) its dev loss, lower first, then its trial number."""
        dev = ((final or {}).get("dev") or {}).get("loss")
        dev = float(dev) if dev is not None and math.isfinite(dev) else math.inf
        return (-value if self.direction == "maximize" else value, dev, number)

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "maximize" else a < b

    def label(self) -> str:
        return self.name.replace("_", " ")


def decide(net, base_dir: Path) -> Objective:
    """The objective of a study of `net` (a checked spec, its overrides applied). A file's
    own dev arrays count as a dev split; reading them may raise the runtime's DataError."""
    from netc.compiler.losses import LOSSES, default_loss

    cfg = net.train
    loss = LOSSES[cfg.loss or default_loss(net.head.kind)]
    has_dev = cfg.split[1] > 0
    if not has_dev and cfg.data is not None and cfg.data.name == "file":
        from netc.runtime.data import load_source

        options = dict(cfg.data.options)
        arrays = load_source(options.pop("path"), options, seed=cfg.seed, base_dir=base_dir)
        has_dev = "x_dev" in arrays and "y_dev" in arrays
    if not has_dev:
        return Objective("train_loss")
    return Objective("dev_accuracy" if loss.hits is not None else "dev_loss")


__all__ = ["OBJECTIVES", "Objective", "decide"]
