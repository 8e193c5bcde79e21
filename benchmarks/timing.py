"""Timing helpers shared by the contender scripts (contenders.py's and netc_bench.py's)."""

from __future__ import annotations

import time

import numpy as np


def median_time(fn, reps):
    """(median, min) seconds of `reps` calls of fn()."""
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), float(min(ts))


def cost_flops(compiled):
    """XLA's flop count of a compiled function (nan when it has none)."""
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):  # older jax returned one dict per device
        ca = ca[0]
    return float(ca.get("flops", float("nan"))) if ca else float("nan")


def time_train_step(jitted, carry, rest, steps):
    """Seconds to trace, lower and XLA-compile jitted(*carry, *rest), then `steps` timed
    calls of the compiled step, whose outputs start with the new carry and then the loss.
    step_s is the median of the calls after the first (the first also pays one-time costs:
    first_step_s). -> (figures of the resnet case, the final carry)."""
    import jax

    t0 = time.perf_counter()
    traced = jitted.trace(*carry, *rest)
    t1 = time.perf_counter()
    lowered = traced.lower()
    t2 = time.perf_counter()
    compiled = lowered.compile()
    t3 = time.perf_counter()
    flops = cost_flops(compiled)
    step_s, losses = [], []
    for _ in range(steps):
        t0s = time.perf_counter()
        out = compiled(*carry, *rest)
        carry, loss = out[: len(carry)], out[len(carry)]
        jax.block_until_ready(loss)
        step_s.append(time.perf_counter() - t0s)
        losses.append(float(loss))
    steady_s = float(np.median(step_s[1:] or step_s))
    figures = dict(
        trace_s=t1 - t0,
        lower_s=t2 - t1,
        trace_lower_s=t2 - t0,
        compile_s=t3 - t2,
        first_step_s=step_s[0],
        step_s=steady_s,
        step_s_all=step_s,
        flops_per_step=flops,
        gflops=flops / steady_s / 1e9,
        losses=losses,
    )
    return figures, carry
