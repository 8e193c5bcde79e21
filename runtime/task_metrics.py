"""Per-task accuracy of multi-task nets: `sigmoid N` (N > 1) trained with binary
cross-entropy, each output a separate yes/no task whose label may be unknown (NaN).

A split's overall accuracy (runtime/split_figures.py's `evaluate`) counts every known label once:
all hits over all known labels. Here each task gets its own: task j's accuracy is its hits
over its known labels, in inference mode, thresholding at 0.5 (compiler/losses.py's
`binary_task_hits`, the rule the overall figure sums). A task with no known label in a
split has no accuracy (None; null in JSON).

    figures = task_figures(model, variables, x, y, batch)
    # {"task_accuracy": [0.91, None, 0.75], "task_known": [120, 0, 37]}
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from netc.compiler.losses import LOSSES

from .split_figures import figures_of, split_sums, task_accuracy


def is_multitask(model) -> bool:
    """Whether the net's outputs are separate tasks: a loss with per-output hits (binary
    cross-entropy) and more than one output (compiler/model.py's Model.tasks)."""
    return model.tasks > 0


def task_figures(model, variables, x, y, batch: int) -> dict:
    """{"task_accuracy": [per task, None where no label is known], "task_known": [counts]}
    for a multi-task net, over a split in batches of exactly `batch` examples (the last
    padded and weighted 0): the pass of the run's final figures (split_figures.split_sums,
    whose sums hold each task's hits and known labels); {} for any other net."""
    if not is_multitask(model) or len(x) == 0:
        return {}
    figures = figures_of(split_sums(model, variables, x, y, batch))
    return {key: figures[key] for key in ("task_accuracy", "task_known")}


def output_task_figures(model, outputs: np.ndarray, y: np.ndarray) -> dict:
    """:func:`task_figures` from the net's outputs (probabilities) and the labels of a split
    already predicted (runtime/split_pass.py's one pass): the same rule, summed exactly."""
    if not is_multitask(model) or len(outputs) == 0:
        return {}
    task_hits = LOSSES[model.loss_name].task_hits
    hits, known = task_hits(jnp.asarray(outputs).reshape(len(outputs), -1),
                            jnp.asarray(y, jnp.float32).reshape(len(y), -1))
    hits, known = (np.asarray(a, np.float64).sum(axis=0).tolist() for a in (hits, known))
    return {"task_accuracy": task_accuracy(hits + known), "task_known": [int(k) for k in known]}


__all__ = ["is_multitask", "output_task_figures", "task_figures"]
