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

import functools

import jax.numpy as jnp
import numpy as np
from netc.compiler.losses import LOSSES

from .split_figures import padded_batches, split_batches


def is_multitask(model) -> bool:
    """Whether the net's outputs are separate tasks: a loss with per-output hits (binary
    cross-entropy) and more than one output."""
    return (LOSSES[model.loss_name].task_hits is not None
            and int(np.prod(model.output_shape)) > 1)


def task_sums(model, variables, x, y, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(hits, known), each (N,) float64, over a split in batches of exactly `batch` examples
    (the last padded and weighted 0, as the run's other final figures are computed)."""
    return _summed(model, variables, padded_batches(x, y, batch))


def _summed(model, variables, batches) -> tuple[np.ndarray, np.ndarray]:
    """(hits, known) summed over padded (x, y, weights) batches of one size."""
    width = int(np.prod(model.output_shape))
    run = _batch_task_sums(model)
    total = jnp.zeros((2, width), jnp.float32)
    for xb, yb, weights in batches:
        total = run(variables, xb, yb, weights, total)
    hits, known = np.asarray(total, np.float64)
    return hits, known


def task_figures(model, variables, x, y, batch: int) -> dict:
    """{"task_accuracy": [per task, None where no label is known], "task_known": [counts]}
    for a multi-task net; {} for any other."""
    if not is_multitask(model) or len(x) == 0:
        return {}
    return _as_figures(*task_sums(model, variables, x, y, batch))


def output_task_figures(model, outputs: np.ndarray, y: np.ndarray) -> dict:
    """:func:`task_figures` from the net's outputs (probabilities) and the labels of a split
    already predicted (runtime/split_pass.py's one pass): the same rule, summed exactly."""
    if not is_multitask(model) or len(outputs) == 0:
        return {}
    task_hits = LOSSES[model.loss_name].task_hits
    hits, known = task_hits(jnp.asarray(outputs).reshape(len(outputs), -1),
                            jnp.asarray(y, jnp.float32).reshape(len(y), -1))
    return _as_figures(np.asarray(hits, np.float64).sum(axis=0),
                       np.asarray(known, np.float64).sum(axis=0))


def _as_figures(hits: np.ndarray, known: np.ndarray) -> dict:
    return {"task_accuracy": [float(h / k) if k else None for h, k in zip(hits, known)],
            "task_known": [int(k) for k in known]}


def add_task_figures(final: dict, model, variables, splits, batch: int) -> dict:
    """Add each split's per-task figures to `final` ({split: {...}}, run.json's "final")
    for a multi-task net; `splits` is runtime/data.py's Splits. Returns `final`."""
    if not is_multitask(model):
        return final
    for name, part in splits.parts():  # in memory or streamed from disk
        if name in final and len(part):
            final[name].update(_as_figures(*_summed(model, variables,
                                                    split_batches(part, batch))))
    return final


@functools.lru_cache(maxsize=8)
def _batch_task_sums(model):
    """jit: (variables, x, y, weights, total) -> total + [[hits per task], [known per task]]."""
    task_hits = LOSSES[model.loss_name].task_hits

    def run(variables, x, y, weights, total):
        probabilities = model.apply(variables, x)
        hits, known = task_hits(probabilities.reshape(len(x), -1), y.reshape(len(y), -1))
        w = weights[:, None]
        return total + jnp.stack([jnp.sum(hits * w, axis=0), jnp.sum(known * w, axis=0)])
    return model.jit(run, donate_argnums=(4,))


__all__ = ["add_task_figures", "is_multitask", "output_task_figures", "task_figures",
           "task_sums"]
