"""netc's contenders, merged into the cases of benchmarks/cases.py (its "NETC HOOK").

Each runs benchmarks/netc_bench.py, which trains or checks through netc's own CLI code.
`netc_cached` contenders reuse a JAX compilation cache that a warm-up run (outside the
timing, when the command is built) filled for the same spec and sizes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from settings import digits_args, lenet_args, moons_args, resnet_args, tune_args

HERE = Path(__file__).resolve().parent
BENCH = str(HERE / "netc_bench.py")
CACHE = HERE / ".cache"  # ignored by git; delete it after changing netc


def netc(case: str, args, cache: str = "fresh"):
    def command(s):
        return [sys.executable, BENCH, case, *args(s), "--cache", cache]
    return command


def warmed(case: str, args):
    """The command of a run whose compilation cache is already filled: the first time it
    is built for these settings, run it once untimed (that run fills the cache), within the
    settings' timeout_s (gpu_check.py gives the time left before its deadline)."""
    def command(s):
        folder = CACHE / f"{case}-{'-'.join(args(s))}".replace("/", "_")
        argv = [sys.executable, BENCH, case, *args(s), "--cache", str(folder)]
        if not folder.exists():
            folder.mkdir(parents=True)
            try:
                warm_up = subprocess.run(argv, capture_output=True, check=False,
                                         cwd=HERE.parent, timeout=s.timeout_s)
                failed = warm_up.returncode != 0
            except subprocess.TimeoutExpired:
                failed = True
            if failed:  # try again next time; the timed run shows the error
                shutil.rmtree(folder, ignore_errors=True)
        return argv
    return command


CONTENDERS = {
    "moons": [("netc", netc("moons", moons_args)),
              ("netc_cached", warmed("moons", moons_args))],
    "lenet": [("netc", netc("lenet", lenet_args)),  # auto: scan (its convs lower to matmuls)
              ("netc_step", netc("lenet", lambda s: [*lenet_args(s), "--loop", "step"])),
              ("netc_augment", netc("lenet", lambda s: [*lenet_args(s), "--augment"])),
              ("netc_saving", netc("lenet", lambda s: [*lenet_args(s), "--save-every-epoch"]))],
    "digits": [("netc", netc("digits", digits_args)),
               ("netc_cached", warmed("digits", digits_args))],
    "resnet": [("netc", netc("resnet", resnet_args))],
    "check": [("netc_json", [sys.executable, BENCH, "check", "--json"]),
              ("netc_table", [sys.executable, BENCH, "check"])],
    "devices": [(f"netc_{n}dev", netc("devices", lambda s, n=n: ["--devices", str(n)]))
                for n in (1, 2, 4)] + [
        ("netc_2proc", netc("devices", lambda s: ["--processes", "2"]))],
    "tune": [("netc_one_train", netc("tune", lambda s: ["--trials", "0", "--epochs",
                                                        str(s.tune_epochs)])),
             ("netc_population", netc("tune", tune_args)),
             ("netc_one_by_one", netc("tune", lambda s: [*tune_args(s), "--loop", "step"]))],
}

METHOD_NOTES = [
    "netc contenders (benchmarks/netc_bench.py) run `netc train` in-process through the "
    "CLI's own code (run directory, metrics.jsonl, checkpoints, learning-curve plot "
    "included) and read their figures back from run.json and metrics.jsonl. `netc` starts "
    "with an empty JAX compilation cache; `netc_cached` reuses one filled by an earlier run "
    "of the same spec (what a user's second run gets). netc draws its own init and "
    "shuffles from its seed, so its final loss differs from the shared-init contenders.",
]
