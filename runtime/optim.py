"""Optimisers and schedules from the train section, as Optax compositions with the course's
formulas (t counts steps from 1; e counts epochs from 0, so the first epoch runs at lr):

    gd        W -= lr*dW
    momentum  V = beta*V + (1-beta)*dW;  W -= lr*V             (optax.ema without debiasing)
    rmsprop   S = beta*S + (1-beta)*dW^2;  W -= lr*dW/(sqrt(S)+eps)   (eps outside the sqrt)
    adam      course Adam with bias correction, eps outside the sqrt (optax.scale_by_adam)
    adamw     adam + decoupled weight decay wd (optax.adamw)

The rate changes once per epoch: lr_e = schedule(e) with e = step // steps_per_epoch.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import optax
from netc.compiler.settings import Choice


def epoch_rate(schedule: Choice, lr: float, epochs: int, xp=jnp):
    """lr as a function of the epoch index e: traced in the optimiser (xp=jnp), or over numpy
    arrays of epochs for the metrics log (xp=np, no device work)."""
    o = schedule.options
    name = schedule.name
    if name == "constant":
        return lambda e: lr * xp.ones_like(xp.asarray(e, xp.float32))
    if name == "inverse_time":
        return lambda e: lr / (1.0 + o["decay"] * xp.floor_divide(e, o["every"]))
    if name == "exponential":
        return lambda e: lr * o["rate"] ** xp.floor_divide(e, o["every"]).astype(xp.float32)
    if name == "inverse_sqrt":
        return lambda e: lr * o["k"] / xp.sqrt(xp.asarray(e, xp.float32) + 1.0)
    if name == "cosine":
        low = o["min"]
        return lambda e: low + (lr - low) * 0.5 * (
            1.0 + xp.cos(math.pi * xp.asarray(e, xp.float32) / max(epochs, 1)))
    raise ValueError(f"unknown schedule {name}")  # the checker rejects these earlier


def build_optimizer(optimizer: Choice, schedule: Choice, *, epochs: int,
                    steps_per_epoch: int) -> tuple[optax.GradientTransformation, object]:
    """(optax transformation, lr of an epoch on the host) for a train section."""
    o = optimizer.options
    rate_of_epoch = epoch_rate(schedule, o["lr"], epochs)

    def lr(step):  # optax counts steps from 0
        return rate_of_epoch(jnp.floor_divide(step, steps_per_epoch))

    name = optimizer.name
    if name == "gd":
        tx = optax.scale_by_learning_rate(lr)
    elif name == "momentum":
        tx = optax.chain(optax.ema(o["beta"], debias=False), optax.scale_by_learning_rate(lr))
    elif name == "rmsprop":
        tx = optax.chain(optax.scale_by_rms(o["beta"], o["eps"], eps_in_sqrt=False),
                         optax.scale_by_learning_rate(lr))
    elif name == "adam":
        tx = optax.chain(optax.scale_by_adam(o["b1"], o["b2"], o["eps"]),
                         optax.scale_by_learning_rate(lr))
    elif name == "adamw":
        tx = optax.adamw(lr, o["b1"], o["b2"], o["eps"], weight_decay=o["wd"])
    else:  # pragma: no cover - the checker rejects these earlier
        raise ValueError(f"unknown optimizer {name}")
    return tx, epoch_rate(schedule, o["lr"], epochs, xp=np)
