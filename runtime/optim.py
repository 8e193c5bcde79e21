"""Optimisers and schedules from the train section, as Optax compositions with the course's
formulas (t counts steps from 1; e counts epochs from 0, so the first epoch runs at lr):

    gd        W -= lr*dW
    momentum  V = beta*V + (1-beta)*dW;  W -= lr*V             (optax.ema without debiasing)
    rmsprop   S = beta*S + (1-beta)*dW^2;  W -= lr*dW/(sqrt(S)+eps)   (eps outside the sqrt)
    adam      course Adam with bias correction, eps outside the sqrt (optax.scale_by_adam)
    adamw     adam + decoupled weight decay wd (optax.adamw)

The rate changes once per epoch: lr_e = schedule(e) with e = step // steps_per_epoch.

The numbers of these settings (learning rate, betas, eps, weight decay, the schedule's
decay/rate/k/min, l2, and `init random`'s scale) are *hyperparameters*: the compiled
training program takes them as inputs instead of baking them in as constants. Runs that
differ only in them share one program, which is what lets `netc tune` train many trials
as one population (runtime/population.py), and a second run with another learning rate
reuse the compiled program.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import optax
from netc.compiler.settings import TrainConfig

STATIC_OPTIONS = {"every"}  # schedule.every: an epoch count, part of the program


def hyperparameters(cfg: TrainConfig) -> dict[str, float]:
    """The numbers a training program takes as inputs, keyed as `--set` writes them:
    {"optimizer.lr": 0.001, "optimizer.b1": 0.9, ..., "l2": 0.01 (only when used),
    "init.scale": 0.01 (with init random)}."""
    hp = {f"optimizer.{k}": float(v) for k, v in cfg.optimizer.options.items()}
    hp.update({f"schedule.{k}": float(v) for k, v in cfg.schedule.options.items()
               if k not in STATIC_OPTIONS})
    if cfg.l2:
        hp["l2"] = float(cfg.l2)
    if cfg.init.name == "random":
        hp["init.scale"] = float(cfg.init.options.get("scale", 0.01))
    return hp


def epoch_rate(cfg: TrainConfig, hp: dict, epochs: int, xp=jnp):
    """lr as a function of the epoch index e: traced in the optimiser (xp=jnp, `hp` values
    may be traced), or over numpy arrays of epochs for the metrics log (xp=np, no device
    work)."""
    name = cfg.schedule.name
    lr = hp["optimizer.lr"]
    every = cfg.schedule.options.get("every", 1)
    if name == "constant":
        return lambda e: lr * xp.ones_like(xp.asarray(e, xp.float32))
    if name == "inverse_time":
        return lambda e: lr / (1.0 + hp["schedule.decay"] * xp.floor_divide(e, every))
    if name == "exponential":
        return lambda e: lr * hp["schedule.rate"] ** xp.floor_divide(e, every).astype(
            xp.float32)
    if name == "inverse_sqrt":
        return lambda e: lr * hp["schedule.k"] / xp.sqrt(xp.asarray(e, xp.float32) + 1.0)
    if name == "cosine":
        low = hp["schedule.min"]
        return lambda e: low + (lr - low) * 0.5 * (
            1.0 + xp.cos(math.pi * xp.asarray(e, xp.float32) / max(epochs, 1)))
    raise ValueError(f"unknown schedule {name}")  # the checker rejects these earlier


def build_optimizer(cfg: TrainConfig, hp: dict, *, epochs: int,
                    steps_per_epoch: int) -> optax.GradientTransformation:
    """The optax transformation of a train section with the hyperparameters `hp` (Python
    floats or traced scalars)."""
    rate_of_epoch = epoch_rate(cfg, hp, epochs)

    def lr(step):  # optax counts steps from 0
        return rate_of_epoch(jnp.floor_divide(step, steps_per_epoch))

    def o(name):
        return hp[f"optimizer.{name}"]

    name = cfg.optimizer.name
    if name == "gd":
        return optax.scale_by_learning_rate(lr)
    if name == "momentum":
        return optax.chain(optax.ema(o("beta"), debias=False), optax.scale_by_learning_rate(lr))
    if name == "rmsprop":
        return optax.chain(optax.scale_by_rms(o("beta"), o("eps"), eps_in_sqrt=False),
                           optax.scale_by_learning_rate(lr))
    if name == "adam":
        return optax.chain(optax.scale_by_adam(o("b1"), o("b2"), o("eps")),
                           optax.scale_by_learning_rate(lr))
    if name == "adamw":
        return optax.adamw(lr, o("b1"), o("b2"), o("eps"), weight_decay=o("wd"))
    raise ValueError(f"unknown optimizer {name}")  # pragma: no cover - the checker rejects
