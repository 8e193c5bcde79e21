"""XLA compiler options per backend and net, chosen from benchmarks (benchmarks/FINDINGS.md,
"2026-11-29: XLA:CPU's loop emitters for the course's small nets").

XLA:CPU generates its kernels with MLIR fusion emitters by default. For a net whose step is
all overhead (a few hundred multiply-adds per example: the course's moons and planar nets),
its older loop emitters compile the same programs in about half the time (moons' chunk of
epochs 0.77 -> 0.36 s) and run them as fast (7.8 vs 7.9 µs per step). On larger nets the
trade varies (digits' ConvNet steps 1.34x slower, ResNet-50 compiles 1.4x longer), so they
keep XLA's default.
"""

from __future__ import annotations

SMALL_NET_MACS = 1_000  # multiply-adds per example: moons' 2-5-2-1 net has 22


def compiler_options(platform: str, macs_per_example: int) -> dict | None:
    """The options every program of a net compiles with on `platform`; None: XLA's own."""
    if platform == "cpu" and macs_per_example <= SMALL_NET_MACS:
        return {"xla_cpu_use_fusion_emitters": False}
    return None
