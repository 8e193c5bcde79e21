"""netc's contenders, merged into benchmarks/run.py's cases (its "NETC HOOK").

Each runs benchmarks/netc_bench.py, which trains or checks through netc's own CLI code.
`netc_cached` contenders reuse a JAX compilation cache that a warm-up run (outside the
timing, when the command is built) filled for the same spec and sizes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH = str(HERE / "netc_bench.py")
CACHE = HERE / ".cache"  # ignored by git; delete it after changing netc


def netc(case: str, args, cache: str = "fresh"):
    def command(s):
        return [sys.executable, BENCH, case, *args(s), "--cache", cache]
    return command


def warmed(case: str, args):
    """The command of a run whose compilation cache is already filled: the first time it
    is built for these settings, run it once untimed (that run fills the cache)."""
    def command(s):
        folder = CACHE / f"{case}-{'-'.join(args(s))}".replace("/", "_")
        argv = [sys.executable, BENCH, case, *args(s), "--cache", str(folder)]
        if not folder.exists():
            folder.mkdir(parents=True)
            warm_up = subprocess.run(argv, capture_output=True, check=False, cwd=HERE.parent)
            if warm_up.returncode != 0:  # try again next time; the timed run shows the error
                shutil.rmtree(folder, ignore_errors=True)
        return argv
    return command


def moons_args(s):
    return ["--epochs", str(s.moons_epochs)]


def lenet_args(s):
    return ["--n", str(s.lenet_n), "--epochs", str(s.lenet_epochs)]


def digits_args(s):
    return ["--epochs", str(s.digits_epochs), "--target", str(s.digits_target)]


def resnet_args(s):
    return ["--tiny"] if s.resnet_tiny else []


CONTENDERS = {
    "moons": [("netc", netc("moons", moons_args)),
              ("netc_cached", warmed("moons", moons_args))],
    "lenet": [("netc", netc("lenet", lenet_args)),  # auto: scan (its convs lower to matmuls)
              ("netc_step", netc("lenet", lambda s: [*lenet_args(s), "--loop", "step"]))],
    "digits": [("netc", netc("digits", digits_args)),
               ("netc_cached", warmed("digits", digits_args))],
    "resnet": [("netc", netc("resnet", resnet_args))],
    "check": [("netc_json", [sys.executable, BENCH, "check", "--json"]),
              ("netc_table", [sys.executable, BENCH, "check"])],
}
