#!/usr/bin/env python
"""How long `netc check` on ResNet-50 takes from process start (issue #2).

    python benchmarks/check_startup.py [--repeats 5]

Each item runs in a fresh subprocess, N times (the quick ones interleaved, so load drifts
hit all alike; Keras after them), timed from spawn to exit with output sent to /dev/null:

  netc_check_json   python -m netc check examples/zoo/resnet50.net --json
  netc_check_table  python -m netc check examples/zoo/resnet50.net        (the rich table)
  python            python -c pass                                         (the floor)
  keras_summary     Keras 3 (JAX backend) builds ResNet50(weights=None), model.summary()
                    (skipped, null, when keras is not installed)

Prints min / median per item; the LAST line of stdout is one JSON object with the medians
(`<item>_s`) and minima (`<item>_s_min`) in seconds. The table is rendered 120 columns wide
(COLUMNS=120). With PYTHONDONTWRITEBYTECODE set (no .pyc written), netc's own modules are
compiled from source at every start, which a normal install does not do: a note says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = str(ROOT / "examples" / "zoo" / "resnet50.net")
PY = sys.executable

KERAS_SCRIPT = """
import keras
model = keras.applications.ResNet50(weights=None)
model.summary()
"""


def items() -> dict[str, list[str] | None]:
    keras = [PY, "-c", KERAS_SCRIPT] if importlib.util.find_spec("keras") else None
    return {
        "netc_check_json": [PY, "-m", "netc", "check", SPEC, "--json"],
        "netc_check_table": [PY, "-m", "netc", "check", SPEC],
        "python": [PY, "-c", "pass"],
        "keras_summary": keras,
    }


def wall(argv: list[str]) -> float:
    env = dict(os.environ, KERAS_BACKEND="jax", COLUMNS="120")
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed (exit {proc.returncode}): {' '.join(argv[:4])} ...")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    if sys.flags.dont_write_bytecode:
        print("note: PYTHONDONTWRITEBYTECODE is set: uncached modules compile at every start")
    commands = items()
    times: dict[str, list[float]] = {name: [] for name, argv in commands.items() if argv}
    # the quick items interleaved (load drifts hit all alike), then the slow Keras runs, so
    # that their after-effects on the machine do not land on the quick ones
    repeats = max(1, args.repeats)
    for _ in range(repeats):
        for name in [name for name in times if name != "keras_summary"]:
            times[name].append(wall(commands[name]))
    if "keras_summary" in times:
        times["keras_summary"] = [wall(commands["keras_summary"]) for _ in range(repeats)]

    result: dict[str, float | None] = {}
    for name in commands:
        if name not in times:
            print(f"{name:18s} skipped (not installed)")
            result[f"{name}_s"] = result[f"{name}_s_min"] = None
            continue
        lo, med = min(times[name]), statistics.median(times[name])
        print(f"{name:18s} min {lo:7.3f} s   median {med:7.3f} s   (n={len(times[name])})")
        result[f"{name}_s"] = round(med, 4)
        result[f"{name}_s_min"] = round(lo, 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
