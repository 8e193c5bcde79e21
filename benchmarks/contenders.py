"""Hand-written contenders for the netc benchmark suite: the command line that runs one.

    python benchmarks/contenders.py moons jax_scan --epochs 200
    python benchmarks/contenders.py lenet flax_optax --n 256 --epochs 2
    python benchmarks/contenders.py ceilings jax
    python benchmarks/contenders.py resnet flax --tiny
    python benchmarks/contenders.py moons agree --epochs 200   # maths cross-check

Every contender is one function ``<case>_<name>(opts) -> dict`` in its case's module
(moons_contenders.py, lenet_contenders.py, ceilings_contenders.py, resnet_contenders.py,
digits_contenders.py) that builds, compiles and trains/measures its model and returns its
figures as a flat dict, printed here as ONE JSON line.

Heavy libraries (jax, torch, keras, sklearn) are imported *inside* the contender that
needs them, so that a subprocess running one contender pays only for its own imports
(end-to-end timings) and so that a missing torch/keras only skips that contender
(it prints {"skipped": "not installed"}).
"""

from __future__ import annotations

import time

T_PROCESS = time.time()  # as early as we can get it: just after interpreter start-up

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import ceilings_contenders  # noqa: E402
import digits_contenders  # noqa: E402
import lenet_contenders  # noqa: E402
import moons_contenders  # noqa: E402
import resnet_contenders  # noqa: E402
from digits_contenders import DIGITS  # noqa: E402
from lenet_contenders import LENET  # noqa: E402
from moons_contenders import MOONS  # noqa: E402

CONTENDERS = {  # case -> {contender: function(opts) -> figures}
    "moons": moons_contenders.CONTENDERS,
    "lenet": lenet_contenders.CONTENDERS,
    "ceilings": ceilings_contenders.CONTENDERS,
    "resnet": resnet_contenders.CONTENDERS,
    "digits": digits_contenders.CONTENDERS,
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("case", choices=CONTENDERS)
    p.add_argument("contender")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"moons: training epochs (default {MOONS['epochs']}); "
        f"lenet: timed epochs (default {LENET['epochs']})",
    )
    p.add_argument(
        "--sklearn",
        action="store_true",
        help="moons: generate the data with sklearn itself (adds its import)",
    )
    p.add_argument(
        "--outer",
        choices=["scan", "python"],
        default="scan",
        help="moons jax_scan: epochs in an outer lax.scan or a Python loop",
    )
    p.add_argument("--unroll", type=int, default=1, help="jax_scan/flax_scan: scan unroll")
    p.add_argument("--n", type=int, default=LENET["n"], help="lenet: number of examples")
    p.add_argument("--keras-mode", choices=["fit", "tob"], default="fit")
    p.add_argument("--matmul-n", type=int, default=2048)
    p.add_argument("--conv-batch", type=int, default=32)
    p.add_argument("--reps", type=int, default=10, help="ceilings: timed repetitions")
    p.add_argument("--tiny", action="store_true", help="resnet: tiny ResNet instead of -50")
    p.add_argument("--steps", type=int, default=None,
                   help="resnet: timed steps (default 2; step_s is the median after the first)")
    p.add_argument("--target", type=float, default=DIGITS["target"], help="digits: dev accuracy")
    p.set_defaults(t_process=T_PROCESS)  # the contenders' figures count from process start
    opts = p.parse_args(argv)
    if opts.epochs is None:
        opts.epochs = {"moons": MOONS["epochs"], "digits": DIGITS["epochs"]}.get(
            opts.case, LENET["epochs"])
    if opts.contender not in CONTENDERS[opts.case]:
        p.error(
            f"unknown contender {opts.contender!r} for {opts.case}: {sorted(CONTENDERS[opts.case])}"
        )
    return opts


def main(argv=None):
    opts = parse_args(argv)
    fn = CONTENDERS[opts.case][opts.contender]
    try:
        result = fn(opts)
    except ImportError as e:  # torch / keras (or anything else) absent
        result = dict(
            case=opts.case, contender=opts.contender, skipped=f"not installed ({e.name or e})"
        )
        print(f"skipped: not installed ({e.name or e})", file=sys.stderr)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
