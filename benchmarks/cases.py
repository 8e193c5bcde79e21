"""The benchmark cases, one `Case` record each, in CASES: run.py measures them and report.py
writes their tables.

A contender is a command that prints, as the LAST line of its stdout, one JSON object with
the figures of its case (see `Case.figures`); run.py runs it in a fresh subprocess.  A case's
hand-written contenders are functions in ``<case>_contenders.py`` run through
``contenders.py CASE NAME`` with the case's size options (`Case.args`); netc's own come from
netc_cases.py (see "NETC HOOK" at the end).  Adding a case: benchmarks/README.md.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from moons_contenders import agreement
from settings import (
    Settings,
    ceiling_args,
    digits_args,
    lenet_args,
    moons_args,
    no_args,
    resnet_args,
)

HERE = Path(__file__).resolve().parent
PY = sys.executable
CONTENDERS_SCRIPT = str(HERE / "contenders.py")

Command = list | Callable[[Settings], list]


class Contender(NamedTuple):
    name: str
    # argv, or settings -> argv; None: the hand-written contender of that name, run as
    # `contenders.py CASE NAME` with the case's size options
    command: Command | None = None


class Figure(NamedTuple):
    key: str  # the field of a contender's JSON line
    label: str  # its column heading in RESULTS.md
    better: str | None  # "lower" or "higher" is better; None for a loss or an accuracy
    spec: str  # format spec of its cells
    ratio: bool = False  # also a "×ref" column: median / the reference contender's median


@dataclasses.dataclass
class Case:
    name: str
    title: str  # the heading of the case's section in RESULTS.md
    reference: str  # the contender that ratios are taken against
    contenders: list[Contender]
    figures: list[Figure]  # shown, in this order, in the case's table
    args: Callable[[Settings], list[str]] = no_args  # size options of its contender scripts
    # the run's settings (as in results.json) -> the end of the title (sizes, --quick)
    sizes_in_title: Callable[[dict], str] = lambda settings: ""
    # contender -> {figure key: median measured on the reference machine (shown beside)}
    expected: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    quick_only: tuple[str, ...] = ()  # with --quick, only these contenders (empty: all)
    # after all its runs, before the summary: adds figures computed across contenders
    derive: Callable[[Case, dict], None] | None = None
    # after all its runs: {check: value} comparing the contenders' results, printed and
    # kept as the case's "agreement" in results.json
    agreement: Callable[[Case, dict], dict] | None = None
    # the case's results (runs, summary, agreement) -> lines under its table
    notes: Callable[[Case, dict], list[str]] = lambda case, results: []
    method: tuple[str, ...] = ()  # its bullets in RESULTS.md's Method section

    def argv(self, contender: Contender, settings: Settings) -> list:
        if contender.command is None:
            return [PY, CONTENDERS_SCRIPT, self.name, contender.name, *self.args(settings)]
        if callable(contender.command):
            return contender.command(settings)
        return list(contender.command)


def hand_written(*names: str) -> list[Contender]:
    return [Contender(name) for name in names]


def import_cmd(modules: str):
    """`python -c 'import <modules>'` timing itself; the parent also times the process."""
    code = "\n".join(
        [
            "import json, os, time",
            "os.environ.setdefault('KERAS_BACKEND', 'jax')",
            "t = time.perf_counter()",
            "try:",
            f"    {'import ' + modules if modules else 'pass'}",
            "except ImportError as e:",
            "    print(json.dumps({'skipped': f'not installed ({e.name})'}))",
            "else:",
            "    print(json.dumps({'import_s': time.perf_counter() - t}))",
        ]
    )
    return [PY, "-c", code]


KERAS_SUMMARY = "\n".join([
    "import os",
    "os.environ.setdefault('KERAS_BACKEND', 'jax')",
    "try:",
    "    import keras",
    "except ImportError as e:",
    "    print('{\"skipped\": \"not installed (keras)\"}')",
    "else:",
    "    keras.applications.ResNet50(weights=None).summary()",
    "    print('{}')",
])


def first_figure(results, name, key):
    """The first non-empty `key` among the runs of contender `name`."""
    for r in results["runs"].get(name, []):
        if r.get(key):
            return r[key]
    return None


# ------------------------------------------------------------------------------------------
# What some cases do beyond their table (the hooks of their records)
# ------------------------------------------------------------------------------------------
def moons_agreement(case, runs_by_name):
    """Final loss and parameters of each contender's first run against the reference's."""
    firsts = {n: rs[0] for n, rs in runs_by_name.items() if rs and "params" in rs[0]}
    return agreement(firsts, ref=case.reference)


def moons_notes(case, results):
    if not results.get("agreement"):
        return []
    lines = [
        "Maths cross-check (first repeat of each; same init, data and minibatch "
        "order; numpy_course is float64, the others float32):",
        "",
    ]
    for k, v in results["agreement"].items():
        lines.append(f"- {k}: {v:.6f}" if k.startswith("final_loss") else f"- {k}: {v:.3g}")
    return [*lines, ""]


def lenet_gflops(case, runs_by_name):
    """GFLOP/s of every contender from the XLA flop count of the reference (Flax) step."""
    flops = [
        r["flops_per_step"]
        for r in runs_by_name.get(case.reference, [])
        if r.get("flops_per_step")
    ]
    if flops:
        for runs in runs_by_name.values():
            for r in runs:
                if "step_ms" in r:
                    r["gflops"] = flops[0] / (r["step_ms"] / 1e3) / 1e9


def seconds_per_trial(case, runs_by_name):
    """A tuning contender's process wall time over its trials."""
    for runs in runs_by_name.values():
        for r in runs:
            if r.get("trials"):
                r["per_trial_s"] = r["wall_s"] / r["trials"]


def lenet_notes(case, results):
    flops = first_figure(results, case.reference, "flops_per_step")
    if not flops:
        return []
    return [
        f"flops_per_step (XLA cost analysis of the Flax step): {flops:,.0f}; "
        "GFLOP/s for every contender uses this count.",
        "",
    ]


def ceilings_notes(case, results):
    lines = []
    for name, runs in results["runs"].items():
        ok = [r for r in runs if "matmul_n" in r]
        if ok:
            lines.append(
                f"- `{name}`: matmul {ok[0]['matmul_n']}² @ {ok[0]['matmul_n']}², "
                f"conv {ok[0]['conv_shape']} SAME, median of {ok[0]['reps']} "
                "calls per process"
            )
    return [*lines, ""]


def resnet_notes(case, results):
    lines = []
    for name, runs in results["runs"].items():
        ok = [r for r in runs if "n_params" in r]
        if ok:
            lines.append(
                f"- `{name}`: {ok[0]['model']}, {ok[0]['n_params']:,} parameters, "
                f"{ok[0]['flops_per_step']:,.0f} XLA flops/step; losses of the timed "
                f"steps: {', '.join(f'{x:.3f}' for x in ok[0]['losses'])}"
            )
    return [*lines, ""]


# ------------------------------------------------------------------------------------------
# The cases, in the order they run and appear in RESULTS.md
# ------------------------------------------------------------------------------------------
CASE_LIST = [
    Case(
        name="moons",
        title="1. Moons 2-5-2-1 MLP (Adam, batch 64, 300 examples)",
        sizes_in_title=lambda s: f", {s['moons_epochs']} epochs",
        args=moons_args,
        contenders=hand_written("jax_loop", "jax_scan", "torch_eager", "numpy_course"),
        reference="jax_loop",
        figures=[
            Figure("e2e_s", "end-to-end s", "lower", ".2f", ratio=True),
            Figure("step_us", "step µs", "lower", ".1f", ratio=True),
            Figure("compile_s", "compile s", "lower", ".2f"),
            Figure("import_s", "import s", "lower", ".2f"),
            Figure("final_loss", "final loss", None, ".6f"),
            Figure("train_acc", "train acc", None, ".4f"),
        ],
        expected={
            "jax_loop": {"step_us": "60-70"},
            "jax_scan": {"step_us": "25-34"},
            "torch_eager": {"step_us": "≈615"},
            "numpy_course": {"step_us": "≈110"},
        },
        agreement=moons_agreement,
        notes=moons_notes,
        method=(
            "moons: data = sklearn make_moons(300, noise=0.2, random_state=3), generated by a "
            "bit-identical numpy copy (checked by `contenders.py moons agree`) so that "
            "sklearn's ~0.8 s import does not swamp every end-to-end time. He init and the "
            "per-epoch permutations come from one seeded numpy generator shared by all "
            "contenders. end-to-end = subprocess spawn to trained parameters (time.time() in "
            "both); step µs = training-loop seconds (after compile/warm-up) / number of Adam "
            "steps (5 per epoch).",
            "jax_loop: jitted step (value_and_grad + optax.adam, params/opt state donated), "
            "minibatch gathered on device from the index slice; both batch shapes (64, 44) "
            "are compiled on copies before the timed loop.",
            "jax_scan: one lax.scan over the 4 full minibatches + one extra step on the "
            "44-example remainder inside the same function (no padding/masking: exactly "
            "jax_loop's maths); epochs in an outer lax.scan over all precomputed permutations, "
            "so training is a single XLA call (faster here than a Python loop over a jitted "
            "epoch: ~7.6 vs ~9.6 µs/step).",
            "torch_eager: nn.Sequential + BCEWithLogitsLoss + torch.optim.Adam(eps=1e-8), "
            "torch.set_num_threads(2). numpy_course: float64, (n_x, m) layout, hand backprop "
            "+ Adam.",
        ),
    ),
    Case(
        name="lenet",
        title="2. LeNet-5, batch 128, Adam 1e-3 (steady state)",
        sizes_in_title=lambda s: (
            f", {s['lenet_n']} random examples, {s['lenet_epochs']} timed epochs"
        ),
        args=lenet_args,
        contenders=hand_written("flax_optax", "torch_eager", "keras_jax", "flax_scan"),
        reference="flax_optax",
        figures=[
            Figure("img_per_s", "img/s", "higher", ",.0f", ratio=True),
            Figure("step_ms", "step ms", "lower", ".2f"),
            Figure("gflops", "GFLOP/s", "higher", ".2f"),
            Figure("compile_s", "compile s", "lower", ".2f"),
            Figure("final_loss", "loss", None, ".4f"),
        ],
        expected={
            "torch_eager": {"img_per_s": "≈13.7k"},
            "flax_optax": {"img_per_s": "≈6.9k"},
            "keras_jax": {"img_per_s": "≈6.3k"},
            "flax_scan": {"img_per_s": "≈1.7k"},
        },
        derive=lenet_gflops,
        notes=lenet_notes,
        method=(
            "lenet: steady state = one warm-up epoch (after compile), then the timed epochs. "
            "Flax models are linen; keras_jax uses model.fit (jit_compile=True), which was at "
            "least as fast as a train_on_batch loop; its compile s includes its first epoch. "
            "Init differs per framework (throughput only).",
        ),
    ),
    Case(
        name="ceilings",
        title="3a. Machine ceilings (float32, jit)",
        args=ceiling_args,
        contenders=hand_written("jax", "torch"),
        reference="jax",
        figures=[
            Figure("matmul_gflops", "matmul GFLOP/s", "higher", ".1f", ratio=True),
            Figure("conv_gflops", "conv3x3 GFLOP/s", "higher", ".1f", ratio=True),
        ],
        notes=ceilings_notes,
    ),
    Case(
        name="imports",
        title="3b. Import cost (fresh `python -c` subprocess)",
        contenders=[
            Contender("python", import_cmd("")),
            Contender("numpy", import_cmd("numpy")),
            Contender("jax", import_cmd("jax")),
            Contender("flax+optax", import_cmd("flax.linen, optax")),
            Contender("torch", import_cmd("torch")),
            Contender("keras", import_cmd("keras")),
        ],
        reference="python",
        figures=[
            Figure("import_s", "import s (in process)", "lower", ".3f"),
            Figure("wall_s", "process wall s", "lower", ".3f", ratio=True),
        ],
        quick_only=("python", "jax"),  # to stay under a minute
    ),
    Case(
        name="resnet",
        title="4. ResNet-50 train step, batch 8, 224x224x3, SGD momentum",
        sizes_in_title=lambda s: " — **tiny ResNet (--quick)**" if s["resnet_tiny"] else "",
        args=resnet_args,
        contenders=hand_written("flax"),
        reference="flax",
        figures=[
            Figure("trace_s", "trace s", "lower", ".2f"),
            Figure("lower_s", "lower s", "lower", ".2f"),
            Figure("compile_s", "XLA compile s", "lower", ".2f", ratio=True),
            Figure("step_s", "s / step", "lower", ".3g", ratio=True),  # ms on a GPU
            Figure("first_step_s", "1st step s", "lower", ".3g"),
            Figure("gflops", "GFLOP/s", "higher", ".1f"),
            Figure("init_s", "init s", "lower", ".2f"),
            Figure("peak_rss_mb", "peak RSS MB", "lower", ",.0f", ratio=True),
            Figure("wall_s", "process wall s", "lower", ".1f"),
        ],
        expected={"flax": {"trace_s": "≈1.7", "compile_s": "≈7.4", "step_s": "≈3.1"}},
        notes=resnet_notes,
        method=(
            "resnet: trace/lower/compile timed separately via jit(f).trace(...).lower()"
            ".compile(); s/step = the median of the steps after the 1st (2 steps on CPU; "
            "the 1st is shown apart: it also pays one-time costs); peak RSS = ru_maxrss of "
            "the subprocess. netc's step comes from netc.compile(examples/zoo/resnet50.net) "
            "with the same optax.sgd(0.1, momentum=0.9).",
        ),
    ),
    Case(
        name="digits",
        title="5. A small ResNet (examples/digits_resnet.net) on sklearn's digits: "
        "time to a dev accuracy",
        sizes_in_title=lambda s: f" of {s['digits_target']:g}, {s['digits_epochs']} epochs",
        args=digits_args,
        contenders=hand_written("flax_optax"),
        reference="flax_optax",
        figures=[
            Figure("time_to_target_s", "s to target", "lower", ".2f", ratio=True),
            Figure("epochs_to_target", "epochs to target", None, "d"),
            Figure("e2e_s", "end-to-end s", "lower", ".2f", ratio=True),
            Figure("epoch_s", "s / epoch", "lower", ".3f"),
            Figure("compile_s", "compile s", "lower", ".2f"),
            Figure("final_dev_acc", "final dev acc", None, ".4f"),
        ],
        method=(
            "digits: the same net, data (sklearn digits / 16), 80/10/10 split sizes, Adam "
            "3e-3 with per-epoch cosine decay, batch 64; each contender shuffles and splits "
            "with its own seed. s to target = process start to the end of the first epoch "
            "whose dev accuracy reaches the target.",
        ),
    ),
    Case(
        name="check",
        title="6. ResNet-50 summarised (layers, shapes, parameters) from process start",
        contenders=[  # netc adds `netc check`
            Contender("python", [PY, "-c", "print('{}')"]),
            Contender("keras_summary", [PY, "-c", KERAS_SUMMARY]),
        ],
        reference="keras_summary",
        figures=[Figure("wall_s", "process wall s", "lower", ".3f", ratio=True)],
        method=(
            "check: process wall time of `netc check examples/zoo/resnet50.net` (table or "
            "--json, output discarded) against Keras 3 (JAX backend) building "
            "keras.applications.ResNet50(weights=None) and printing model.summary(); "
            "`python` is the interpreter's floor.",
        ),
    ),
    Case(
        name="devices",
        title="8. Data parallelism: examples/digits_mlp.net over simulated CPU devices",
        contenders=[],  # netc only (netc_cases.py)
        reference="netc_1dev",
        figures=[
            Figure("steps_per_s", "steps/s", "higher", ",.0f", ratio=True),
            Figure("step_us", "µs / step", "lower", ".1f"),
            Figure("compile_s", "compile s", "lower", ".2f"),
        ],
        method=(
            "devices: `netc train examples/digits_mlp.net` (batch 32, 20 epochs) on 1, 2 and 4 "
            "devices simulated with XLA_FLAGS=--xla_force_host_platform_device_count=N in one "
            "process, and on 2 processes of 2 devices each (a localhost coordinator, gloo "
            "collectives). This machine has 2 cores, so the figures show the overhead of "
            "splitting a step and summing its gradients, not a speed-up: that needs devices "
            "that are really separate (GPUs, TPU cores, hosts).",
        ),
    ),
    Case(
        name="tune",
        title="7. Tuning: learning-rate trials of the course's moons model",
        sizes_in_title=lambda s: (f", {s.get('tune_trials', 16)} trials of "
                                  f"{s.get('tune_epochs', 2000)} epochs"),
        contenders=[],  # netc only (netc_cases.py): one train, a population, one by one
        reference="netc_one_train",
        derive=seconds_per_trial,
        figures=[
            Figure("wall_s", "process wall s", "lower", ".2f", ratio=True),
            Figure("trials", "trials", None, "d"),
            Figure("per_trial_s", "s / trial", "lower", ".3f"),
        ],
        method=(
            "tune: `netc tune examples/moons_adam.net --trials N --set "
            "optimizer.lr=log(1e-4,1) --set epochs=E` from process start to its end, with an "
            "empty compilation cache: `netc_population` trains the trials as one population "
            "(one program), `netc_one_by_one` with --one-by-one (one run each, as separate "
            "`netc train` runs would); `netc_one_train` is a single `netc train` of the same "
            "spec and epochs, the reference.",
        ),
    ),
]
CASES = {case.name: case for case in CASE_LIST}

COMMON_METHOD_NOTE = (
    "Every (case, contender, repeat) is a fresh subprocess; repeats are interleaved."
)

# ====================================== NETC HOOK ======================================
# netc's own contenders are NOT written here.  If benchmarks/netc_cases.py exists, its
# CONTENDERS = {case: [(name, command), ...]} are appended to those cases' contenders and
# its METHOD_NOTES to RESULTS.md's Method section.
NETC_METHOD_NOTES: list[str] = []
if (HERE / "netc_cases.py").exists():
    import netc_cases

    for case_name, entries in netc_cases.CONTENDERS.items():
        CASES[case_name].contenders += [Contender(*entry) for entry in entries]
    NETC_METHOD_NOTES = netc_cases.METHOD_NOTES
# =======================================================================================


def method_notes() -> list[str]:
    """RESULTS.md's Method bullets: the common one, each case's, then netc's."""
    return [
        COMMON_METHOD_NOTE,
        *(note for case in CASES.values() for note in case.method),
        *NETC_METHOD_NOTES,
    ]
