"""The losses: one record each, with the head it pairs with, the labels the data must give,
and its per-example formula (computed from logits when the net ends in that head).

The cost J is the (weighted) mean of these over the minibatch, as the course writes it:
    cross-entropy   J = -(1/m) sum_i sum_j y_ij log a_ij   (labels: class ids or one-hot rows)
    binary CE       J = -(1/m) sum_i sum_j [y log a + (1-y) log(1-a)], NaN labels left out
                    (each example sums over its known labels; m counts every example,
                    so a row with no known label adds 0 and still counts in m)
    mse             J = mean((a - y)^2)

No JAX is imported until a formula runs (compiler/lazy_jax.py): the checker reads this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .lazy_jax import jax, jnp, optax

_TINY = 1e-12


def cross_entropy(out, y, from_logits: bool):
    log_p = jax.nn.log_softmax(out) if from_logits else jnp.log(jnp.clip(out, _TINY, 1.0))
    if y.ndim == 1:  # class ids
        return -jnp.take_along_axis(log_p, y[:, None].astype(jnp.int32), axis=1)[:, 0]
    return -jnp.sum(y * log_p, axis=-1)


def binary_cross_entropy(out, y, from_logits: bool):
    known = ~jnp.isnan(y)
    y0 = jnp.where(known, y, 0.0)
    if from_logits:
        per = optax.sigmoid_binary_cross_entropy(out, y0)
    else:
        p = jnp.clip(out, _TINY, 1 - 1e-7)
        per = -(y0 * jnp.log(p) + (1 - y0) * jnp.log(1 - p))
    return jnp.sum(jnp.where(known, per, 0.0), axis=-1)


def mse(out, y, from_logits: bool):
    return jnp.mean(jnp.square(out - y).reshape(out.shape[0], -1), axis=-1)


def class_hits(out, y):
    """Per-example (hits, counted): the arg-max class against the label."""
    target = y if y.ndim == 1 else jnp.argmax(y, axis=-1)
    hits = (jnp.argmax(out, axis=-1) == target).astype(jnp.float32)
    return hits, jnp.ones_like(hits)


def binary_task_hits(out, y):
    """Per-example, per-output (hits, counted), each (m, N): an output is right when its
    probability is above 0.5 exactly where its label is 1; a NaN (unknown) label counts
    nowhere. The per-task accuracy of a multi-task `sigmoid N` is hits / counted per column."""
    known = ~jnp.isnan(y)
    right = ((out > 0.5) == (jnp.where(known, y, 0.0) > 0.5)) & known
    return right.astype(jnp.float32), known.astype(jnp.float32)


def binary_hits(out, y):
    """Per-example (hits, counted) over the known labels: binary_task_hits summed over the
    outputs, so a multi-task accuracy counts every known label once (hits / known labels)."""
    hits, counted = binary_task_hits(out, y)
    return jnp.sum(hits, axis=-1), jnp.sum(counted, axis=-1)


@dataclass(frozen=True)
class Loss:
    name: str
    head: str | None       # the last layer kind it pairs with; a net ending in it gets it
    labels: str            # what the data must give: "classes", "binary" or "values"
    per_example: Callable  # (out, y, from_logits) -> (m,)
    hits: Callable | None  # (probabilities, y) -> per-example (hits, counted); None: no accuracy
    aliases: tuple[str, ...] = ()
    # (probabilities, y) -> per-example, per-output (hits, counted), (m, N) each: outputs
    # that are separate tasks (sigmoid N); None where the outputs make one prediction
    task_hits: Callable | None = None


LOSSES: dict[str, Loss] = {loss.name: loss for loss in (
    Loss("cross_entropy", "softmax", "classes", cross_entropy, class_hits, ("ce",)),
    Loss("binary_cross_entropy", "sigmoid", "binary", binary_cross_entropy, binary_hits,
         ("bce",), binary_task_hits),
    Loss("mse", None, "values", mse, None),
)}
# Every name a spec may write (`loss ce`), aliases after their loss.
LOSS_NAMES: dict[str, str] = {name: loss.name for loss in LOSSES.values()
                              for name in (loss.name, *loss.aliases)}


def default_loss(last_kind: str) -> str:
    """The loss of a net ending in `last_kind`: the head's own, else mse."""
    return next((loss.name for loss in LOSSES.values() if loss.head == last_kind), "mse")
