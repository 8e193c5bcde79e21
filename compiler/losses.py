"""Losses per example, computed from logits where the net ends in softmax/sigmoid.

The cost J is the (weighted) mean of these over the minibatch, as the course writes it:
    cross-entropy   J = -(1/m) sum_i sum_j y_ij log a_ij   (labels: class ids or one-hot rows)
    binary CE       J = -(1/m) sum_i sum_j [y log a + (1-y) log(1-a)], NaN labels left out
    mse             J = mean((a - y)^2)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

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


LOSSES = {"cross_entropy": cross_entropy, "binary_cross_entropy": binary_cross_entropy,
          "mse": mse}


def accuracy_hits(loss: str, out, y):
    """Per-example (hits, counted) for accuracy; None for regression."""
    if loss == "cross_entropy":
        target = y if y.ndim == 1 else jnp.argmax(y, axis=-1)
        hits = (jnp.argmax(out, axis=-1) == target).astype(jnp.float32)
        return hits, jnp.ones_like(hits)
    if loss == "binary_cross_entropy":
        known = ~jnp.isnan(y)
        # out may be logits or probabilities; the caller passes probabilities.
        right = ((out > 0.5) == (jnp.where(known, y, 0.0) > 0.5)) & known
        return (jnp.sum(right, axis=-1).astype(jnp.float32),
                jnp.sum(known, axis=-1).astype(jnp.float32))
    return None
