"""Timing a run: the clock, and the seconds JAX has spent compiling (compiling is not
training: the loops leave it out of their step rates)."""

from __future__ import annotations

import math
import time

import jax

__all__ = ["compile_seconds", "now"]


def now() -> float:
    return time.perf_counter()


_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
# (start, end), perf_counter seconds
_compile_intervals: list[tuple[float, float]] = []
_listening: list[bool] = []


def compile_seconds() -> float:
    """Seconds this process has spent tracing, lowering and compiling with XLA so far: the
    union of the intervals of JAX's compile events (nested traces overlap; a persistent-cache
    hit costs its load time only)."""
    if not _listening:
        def listen(event: str, seconds: float, **_):
            if event in _COMPILE_EVENTS:
                end = time.perf_counter()
                _compile_intervals.append((end - seconds, end))
        jax.monitoring.register_event_duration_secs_listener(listen)
        _listening.append(True)
    total, reached = 0.0, -math.inf
    for start, end in sorted(_compile_intervals):
        if end > reached:
            total += end - max(start, reached)
            reached = end
    return total
