"""A split's figures (loss without L2, accuracy) in inference mode: batches of exactly the
run's batch size, the last padded and weighted 0, so that one compiled program serves every
split, the step loop's dev check and the final figures; in memory or streamed from disk."""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from netc.compiler.model import Model

from .host_feed import is_streamed, padded_stream_batches

__all__ = ["as_sums", "batches_sums", "evaluate", "evaluate_split", "figures_of",
           "members_sums", "padded_batches", "split_batches", "split_sums", "sums_width",
           "task_accuracy"]


def evaluate(model: Model, variables, x, y, batch: int) -> dict:
    """Loss (without L2) and accuracy in inference mode over a split (host or device arrays)."""
    return figures_of(split_sums(model, variables, x, y, batch))


def evaluate_split(model: Model, variables, split, batch: int) -> dict:
    """`evaluate` over a split as runtime/data.py's Splits hold it: in memory (a Dataset)
    or streamed from disk (read in order, batch by batch)."""
    return figures_of(batches_sums(model, variables, split_batches(split, batch)))


def figures_of(sums: np.ndarray) -> dict:
    """{'loss', 'accuracy' (where counted)} of a split's summed figures (as_sums), and a
    multi-task net's 'task_accuracy' and 'task_known' (each task's known labels)."""
    loss_sum, n, hits, counted = sums[:4].tolist()
    out = {"loss": loss_sum / max(n, 1)}
    if counted:
        out["accuracy"] = hits / counted
    if len(sums) > 4 and n:
        tasks = sums[4:].tolist()
        out["task_accuracy"] = task_accuracy(tasks)
        out["task_known"] = [int(k) for k in tasks[len(tasks) // 2:]]
    return out


def task_accuracy(task_sums: list[float]) -> list[float | None]:
    """Each task's accuracy from a multi-task net's summed [task hits..., task known...]:
    None for a task with no known label."""
    tasks = len(task_sums) // 2
    return [h / k if k else None for h, k in zip(task_sums[:tasks], task_sums[tasks:])]


def split_sums(model: Model, variables, x, y, batch: int) -> np.ndarray:
    """[loss_sum, n, hits, counted] (and per-task sums, as_sums) over a split, in batches of
    exactly `batch` examples (the last padded and weighted 0): the final figures of every
    split and the step loop's dev check share one compiled program (the scan loop checks
    dev inside its own program)."""
    return batches_sums(model, variables, padded_batches(x, y, batch))


def batches_sums(model: Model, variables, batches) -> np.ndarray:
    """[loss_sum, n, hits, counted] (and per-task sums, as_sums) summed over padded
    (x, y, weights) batches of one size."""
    run = batch_sums_program(model)
    total = np.zeros(sums_width(model), np.float32)
    for xb, yb, weights in batches:
        total = run(variables, xb, yb, weights, total)
    return np.asarray(total, np.float64)


def members_sums(model: Model, members: list[dict], batches) -> np.ndarray:
    """batches_sums of each member's variables, (members, width), reading `batches` once."""
    run = batch_sums_program(model)
    totals = [np.zeros(sums_width(model), np.float32) for _ in members]
    for xb, yb, weights in batches:
        totals = [run(variables, xb, yb, weights, total)
                  for variables, total in zip(members, totals)]
    return np.stack([np.asarray(total, np.float64) for total in totals])


def split_batches(split, batch: int):
    """padded_batches of a split in memory (x, y arrays), or of one streamed from disk."""
    if is_streamed(split):
        return padded_stream_batches(getattr(split, "split", split), batch)
    return padded_batches(split.x, split.y, batch)


def padded_batches(x, y, batch: int):
    """(x, y, weights) in batches of exactly `batch` examples, the last padded with zeros
    and weighted 0: one compiled program serves a whole split."""
    x, y = np.asarray(x), np.asarray(y)
    for start in range(0, len(x), batch):
        xb, yb = x[start:start + batch], y[start:start + batch]
        weights = (np.arange(batch) < len(xb)).astype(np.float32)
        if len(xb) < batch:
            xb, yb = (np.concatenate([a, np.zeros((batch - len(a), *a.shape[1:]), a.dtype)])
                      for a in (xb, yb))
        yield xb, yb, weights


def sums_width(model: Model) -> int:
    """The length of a split's figures as the loops add them up (as_sums): 4, and a
    multi-task net's per-task hits and known labels after them (2 per task)."""
    return 4 + 2 * model.tasks


def as_sums(r: dict):
    """evaluate_batch's (or a training step's) figures as the vector the loops add up:
    [loss_sum, n, hits, counted], then a multi-task net's task_hits and task_known."""
    head = jnp.stack([r["loss_sum"], r["n"], r.get("hits", jnp.float32(0)),
                      r.get("counted", jnp.float32(0))])
    if "task_hits" not in r:
        return head
    return jnp.concatenate([head, r["task_hits"], r["task_known"]]).astype(head.dtype)


@functools.lru_cache(maxsize=8)
def batch_sums_program(model: Model):
    """jit: (variables, x, y, weights, total) -> total + the batch's as_sums."""
    def run(variables, x, y, weights, total):
        r = model.evaluate_batch(variables, x, y, weights)
        return total + as_sums(r)
    return model.jit(run, donate_argnums=(4,))
