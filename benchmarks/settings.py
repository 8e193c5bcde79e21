"""The sizes of a benchmark run (full, or tiny with --quick) and the command-line options that
pass them to a case's contender scripts (contenders.py and netc_bench.py take the same ones).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Settings:
    quick: bool = False
    repeats: int = 3
    moons_epochs: int = 10_000
    lenet_n: int = 1024
    lenet_epochs: int = 5  # timed epochs (after one warm-up epoch)
    matmul_n: int = 2048
    conv_batch: int = 32
    ceiling_reps: int = 10
    resnet_tiny: bool = False
    resnet_steps: int = 2  # timed steps; s/step is the median of those after the first
    digits_epochs: int = 30
    digits_target: float = 0.97
    tune_trials: int = 16
    tune_epochs: int = 2000
    timeout_s: int = 1800

    @classmethod
    def make(cls, quick: bool, repeats: int | None):
        if not quick:
            return cls(repeats=repeats or 3)
        return cls(
            quick=True,
            repeats=repeats or 1,
            moons_epochs=200,
            lenet_n=256,
            lenet_epochs=2,
            matmul_n=512,
            conv_batch=2,
            ceiling_reps=3,
            resnet_tiny=True,
            digits_epochs=2,
            digits_target=0.5,
            tune_trials=4,
            tune_epochs=100,
            timeout_s=300,
        )


def no_args(s):
    return []


def moons_args(s):
    return ["--epochs", str(s.moons_epochs)]


def lenet_args(s):
    return ["--n", str(s.lenet_n), "--epochs", str(s.lenet_epochs)]


def ceiling_args(s):
    return [
        "--matmul-n",
        str(s.matmul_n),
        "--conv-batch",
        str(s.conv_batch),
        "--reps",
        str(s.ceiling_reps),
    ]


def resnet_args(s):
    return (["--tiny"] if s.resnet_tiny else []) + ["--steps", str(s.resnet_steps)]


def digits_args(s):
    return ["--epochs", str(s.digits_epochs), "--target", str(s.digits_target)]


def tune_args(s):
    return ["--trials", str(s.tune_trials), "--epochs", str(s.tune_epochs)]

