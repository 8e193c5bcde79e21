#!/usr/bin/env python
"""Run the netc benchmark suite: every (case, contender) in its own subprocess.

    python benchmarks/run.py [--quick] [--repeats N] [--out benchmarks/RESULTS.md]
                             [--cases moons,lenet,ceilings,imports,resnet]

Writes RESULTS.md (tables: min / median over repeats, ratios against the reference
contender of each case) and results.json (every raw figure) next to it.

A contender is a command that prints, as the LAST line of its stdout, one JSON object
with the figures of its case (see CASE_FIGURES).  Repeats are interleaved (round-robin
over the contenders of a case) so slow drifts in machine load hit all contenders alike.

Adding netc
-----------
Create ``benchmarks/netc_cases.py`` defining ``CONTENDERS = {case: [(name, command)]}``
where ``command`` is either an argv list or a callable ``command(settings) -> argv``
(``settings`` is the ``Settings`` below: quick flag, epochs, sizes).  Those entries are
appended to the cases here (see "NETC HOOK").  The command must print the JSON figures
of that case; for moons it should also carry ``t_trained`` (``time.time()`` when the
model is trained) so the end-to-end time is measured from process spawn, and ``params``
(course layout, see moons_contenders.moons_metrics) for the maths cross-check.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
sys.path.insert(0, str(HERE))


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
    digits_epochs: int = 30
    digits_target: float = 0.97
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
            timeout_s=300,
        )


Command = list | Callable[[Settings], list]


def contender(case: str, name: str, extra: Callable[[Settings], list] = lambda s: []):
    """A command running ``contenders.py case name`` with case-specific arguments."""
    return lambda s: [PY, str(HERE / "contenders.py"), case, name, *extra(s)]


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
    return ["--tiny"] if s.resnet_tiny else []


def digits_args(s):
    return ["--epochs", str(s.digits_epochs), "--target", str(s.digits_target)]


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


# case -> [(contender name, command)]; the first entry of REFERENCE is the ratio base.
CASES: dict[str, list[tuple[str, Command]]] = {
    "moons": [
        ("jax_loop", contender("moons", "jax_loop", moons_args)),
        ("jax_scan", contender("moons", "jax_scan", moons_args)),
        ("torch_eager", contender("moons", "torch_eager", moons_args)),
        ("numpy_course", contender("moons", "numpy_course", moons_args)),
    ],
    "lenet": [
        ("flax_optax", contender("lenet", "flax_optax", lenet_args)),
        ("torch_eager", contender("lenet", "torch_eager", lenet_args)),
        ("keras_jax", contender("lenet", "keras_jax", lenet_args)),
        ("flax_scan", contender("lenet", "flax_scan", lenet_args)),
    ],
    "ceilings": [
        ("jax", contender("ceilings", "jax", ceiling_args)),
        ("torch", contender("ceilings", "torch", ceiling_args)),
    ],
    "imports": [
        ("python", import_cmd("")),
        ("numpy", import_cmd("numpy")),
        ("jax", import_cmd("jax")),
        ("flax+optax", import_cmd("flax.linen, optax")),
        ("torch", import_cmd("torch")),
        ("keras", import_cmd("keras")),
    ],
    "resnet": [
        ("flax", contender("resnet", "flax", resnet_args)),
    ],
    "digits": [
        ("flax_optax", contender("digits", "flax_optax", digits_args)),
    ],
    # ResNet-50 summarised from process start (netc adds `netc check`)
    "check": [
        ("python", [PY, "-c", "print('{}')"]),
        ("keras_summary", [PY, "-c", KERAS_SUMMARY]),
    ],
}
# --quick keeps only these contenders of these cases (to stay under a minute).
QUICK_ONLY = {"imports": ["python", "jax"]}

REFERENCE = {
    "moons": "jax_loop",
    "lenet": "flax_optax",
    "ceilings": "jax",
    "imports": "python",
    "resnet": "flax",
    "digits": "flax_optax",
    "check": "keras_summary",
}

# ====================================== NETC HOOK ======================================
# netc's own contenders are NOT written here.  If benchmarks/netc_cases.py exists and
# defines CONTENDERS = {case: [(name, command), ...]}, they are merged into CASES.
NETC_CONTENDERS: dict[str, list[tuple[str, Command]]] = {}
if (HERE / "netc_cases.py").exists():
    from netc_cases import CONTENDERS as NETC_CONTENDERS
for _case, _entries in NETC_CONTENDERS.items():
    CASES.setdefault(_case, []).extend(_entries)
# =======================================================================================

# Figures shown per case: (key, label, "lower"/"higher" is better, format).
CASE_FIGURES = {
    "moons": [
        ("e2e_s", "end-to-end s", "lower", ".2f"),
        ("step_us", "step µs", "lower", ".1f"),
        ("compile_s", "compile s", "lower", ".2f"),
        ("import_s", "import s", "lower", ".2f"),
        ("final_loss", "final loss", None, ".6f"),
        ("train_acc", "train acc", None, ".4f"),
    ],
    "lenet": [
        ("img_per_s", "img/s", "higher", ",.0f"),
        ("step_ms", "step ms", "lower", ".2f"),
        ("gflops", "GFLOP/s", "higher", ".2f"),
        ("compile_s", "compile s", "lower", ".2f"),
        ("final_loss", "loss", None, ".4f"),
    ],
    "ceilings": [
        ("matmul_gflops", "matmul GFLOP/s", "higher", ".1f"),
        ("conv_gflops", "conv3x3 GFLOP/s", "higher", ".1f"),
    ],
    "imports": [
        ("import_s", "import s (in process)", "lower", ".3f"),
        ("wall_s", "process wall s", "lower", ".3f"),
    ],
    "resnet": [
        ("trace_s", "trace s", "lower", ".2f"),
        ("lower_s", "lower s", "lower", ".2f"),
        ("compile_s", "XLA compile s", "lower", ".2f"),
        ("step_s", "s / step", "lower", ".2f"),
        ("first_step_s", "1st step s", "lower", ".2f"),
        ("gflops", "GFLOP/s", "higher", ".1f"),
        ("init_s", "init s", "lower", ".2f"),
        ("peak_rss_mb", "peak RSS MB", "lower", ",.0f"),
        ("wall_s", "process wall s", "lower", ".1f"),
    ],
    "digits": [
        ("time_to_target_s", "s to target", "lower", ".2f"),
        ("epochs_to_target", "epochs to target", None, "d"),
        ("e2e_s", "end-to-end s", "lower", ".2f"),
        ("epoch_s", "s / epoch", "lower", ".3f"),
        ("compile_s", "compile s", "lower", ".2f"),
        ("final_dev_acc", "final dev acc", None, ".4f"),
    ],
    "check": [
        ("wall_s", "process wall s", "lower", ".3f"),
    ],
}

# Figures that get a "×ref" column (median / median of the case's reference contender).
RATIO_KEYS = {
    "moons": ["e2e_s", "step_us"],
    "lenet": ["img_per_s"],
    "ceilings": ["matmul_gflops", "conv_gflops"],
    "imports": ["wall_s"],
    "resnet": ["compile_s", "step_s", "peak_rss_mb"],
    "digits": ["time_to_target_s", "e2e_s"],
    "check": ["wall_s"],
}

# Figures measured on the reference machine when this suite was specified (medians).
EXPECTED = {
    ("moons", "jax_loop", "step_us"): "60-70",
    ("moons", "jax_scan", "step_us"): "25-34",
    ("moons", "torch_eager", "step_us"): "≈615",
    ("moons", "numpy_course", "step_us"): "≈110",
    ("lenet", "torch_eager", "img_per_s"): "≈13.7k",
    ("lenet", "flax_optax", "img_per_s"): "≈6.9k",
    ("lenet", "keras_jax", "img_per_s"): "≈6.3k",
    ("lenet", "flax_scan", "img_per_s"): "≈1.7k",
    ("resnet", "flax", "trace_s"): "≈1.7",
    ("resnet", "flax", "compile_s"): "≈7.4",
    ("resnet", "flax", "step_s"): "≈3.1",
}


# --------------------------------------------------------------------------------------
# Machine load: other processes on a 2-core box wreck timings (OpenMP especially).
# --------------------------------------------------------------------------------------
def _cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return sum(v), idle


def busy_cores(interval=0.5):
    """CPU cores busy (0..ncores) over `interval` seconds; we are idle meanwhile."""
    try:
        t0, i0 = _cpu_times()
        time.sleep(interval)
        t1, i1 = _cpu_times()
    except OSError:
        return float("nan")
    return (os.cpu_count() or 1) * (1 - (i1 - i0) / max(t1 - t0, 1))


def wait_quiet(max_wait_s, threshold=0.25):
    """Wait (up to max_wait_s) until background load is below `threshold` cores."""
    deadline = time.time() + max_wait_s
    load = busy_cores(0.5 if max_wait_s > 0 else 0.2)
    while load > threshold and time.time() < deadline:
        load = busy_cores(1.0)
    return load


# --------------------------------------------------------------------------------------
def run_one(case, name, command, settings, quiet_wait):
    """Run one contender process; returns its JSON figures plus wall_s, e2e_s and the
    background load before (bg_cores) and during (bg_during) the run, in busy cores."""
    argv = command(settings) if callable(command) else list(command)
    bg = wait_quiet(quiet_wait)
    stat0, ru0 = _cpu_times(), resource.getrusage(resource.RUSAGE_CHILDREN)
    t_spawn = time.time()
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=settings.timeout_s, cwd=HERE.parent
        )
    except subprocess.TimeoutExpired:
        return dict(error=f"timeout after {settings.timeout_s}s", bg_cores=bg)
    wall = time.time() - t_spawn
    stat1, ru1 = _cpu_times(), resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_s = ((stat1[0] - stat0[0]) - (stat1[1] - stat0[1])) / os.sysconf("SC_CLK_TCK")
    child_s = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    bg_during = max(0.0, (busy_s - child_s) / wall)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return dict(
            error=f"rc={proc.returncode}: {proc.stderr.strip()[-800:]}",
            bg_cores=bg,
            bg_during=bg_during,
        )
    res = json.loads(lines[-1])
    res.update(wall_s=wall, bg_cores=bg, bg_during=bg_during, child_cpu_s=child_s)
    if "t_trained" in res:  # process spawn -> trained model
        res["e2e_s"] = res["t_trained"] - t_spawn
    return res


def contended(res, threshold=0.5):
    return max(res.get("bg_cores", 0.0), res.get("bg_during", 0.0)) > threshold


def derived(case, runs_by_name):
    """Figures computed across contenders: LeNet GFLOP/s from the Flax step's flops."""
    if case == "lenet":
        flops = [
            r["flops_per_step"]
            for r in runs_by_name.get(REFERENCE["lenet"], [])
            if r.get("flops_per_step")
        ]
        if flops:
            for runs in runs_by_name.values():
                for r in runs:
                    if "step_ms" in r:
                        r["gflops"] = flops[0] / (r["step_ms"] / 1e3) / 1e9


def summarise(runs, key):
    vals = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
    if not vals:
        return None
    return dict(min=min(vals), median=statistics.median(vals), max=max(vals), n=len(vals))


def moons_agreement(runs_by_name):
    from moons_contenders import agreement

    firsts = {n: rs[0] for n, rs in runs_by_name.items() if rs and "params" in rs[0]}
    return agreement(firsts, ref=REFERENCE["moons"])


# --------------------------------------------------------------------------------------
def machine_info():
    model, cores = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            phys = None
            for line in f:
                if line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                if line.startswith("physical id"):
                    phys = line.split(":", 1)[1].strip()
                if line.startswith("core id"):
                    cores.add((phys, line.split(":", 1)[1].strip()))
    except OSError:
        pass
    mem_gb = None
    try:
        with open("/proc/meminfo") as f:
            mem_gb = int(f.readline().split()[1]) / 2**20
    except OSError:
        pass
    return dict(
        cpu_model=model,
        logical_cpus=os.cpu_count(),
        physical_cores=len(cores) or None,
        affinity_cpus=len(os.sched_getaffinity(0)),
        mem_gb=mem_gb,
        platform=platform.platform(),
    )


def versions():
    out = {"python": platform.python_version()}
    for dist in ("jax", "jaxlib", "optax", "flax", "torch", "keras", "numpy", "scikit-learn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def ratio(case, name, key, summary):
    ref = summary.get(REFERENCE[case], {}).get(key)
    me = summary.get(name, {}).get(key)
    if not (ref and me) or not ref["median"]:
        return None
    return me["median"] / ref["median"]


def write_markdown(path, doc):
    s = doc["settings"]
    L = ["# netc benchmark results", ""]
    L.append(f"Command: `{doc['command']}`  ")
    L.append(
        f"Date: {doc['date']}; repeats per figure: {s['repeats']}"
        + ("; **--quick (tiny sizes, not comparable)**" if s["quick"] else "")
    )
    L += ["", "## Machine", ""]
    m = doc["machine"]
    L.append(
        f"- CPU: {m['cpu_model']}; logical CPUs {m['logical_cpus']}, physical cores "
        f"{m['physical_cores']}, usable (affinity) {m['affinity_cpus']}; "
        f"memory {m['mem_gb']:.1f} GiB"
    )
    L.append(f"- {m['platform']}")
    L.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()))
    L += [
        "",
        "Each cell is `min / median` over the repeats (separate processes). Ratios use "
        "medians against the case's reference contender: for times, ×ref > 1 means slower "
        "than the reference; for throughputs (img/s, GFLOP/s), ×ref > 1 means faster. "
        "`bg` is the background load from other processes (busy cores, max over the "
        "repeats of the larger of: just before the run, and averaged during it); a run with "
        "bg > 0.5 is re-taken once (`--retries`) and figures with bg ≳ 0.3 were taken on a "
        "contended machine.",
        "",
    ]

    if doc.get("discarded_contended_runs"):
        L += [
            "Runs re-taken because other processes were busy (kept in results.json): "
            + ", ".join(f"{k} ×{len(v)}" for k, v in doc["discarded_contended_runs"].items()),
            "",
        ]

    titles = {
        "moons": "1. Moons 2-5-2-1 MLP (Adam, batch 64, 300 examples)",
        "lenet": "2. LeNet-5, batch 128, Adam 1e-3 (steady state)",
        "ceilings": "3a. Machine ceilings (float32, jit)",
        "imports": "3b. Import cost (fresh `python -c` subprocess)",
        "resnet": "4. ResNet-50 train step, batch 8, 224x224x3, SGD momentum",
        "digits": "5. A small ResNet (examples/digits_resnet.net) on sklearn's digits: "
                  "time to a dev accuracy",
        "check": "6. ResNet-50 summarised (layers, shapes, parameters) from process start",
    }
    for case, res in doc["cases"].items():
        title = titles.get(case, case)
        if case == "resnet" and s["resnet_tiny"]:
            title += " — **tiny ResNet (--quick)**"
        if case == "moons":
            title += f", {s['moons_epochs']} epochs"
        if case == "lenet":
            title += f", {s['lenet_n']} random examples, {s['lenet_epochs']} timed epochs"
        if case == "digits":
            title += f" of {s['digits_target']:g}, {s['digits_epochs']} epochs"
        L += [f"## {title}", ""]
        figs = CASE_FIGURES.get(case, [])
        head = ["contender"] + [lab for _, lab, _, _ in figs]
        rkeys = RATIO_KEYS.get(case, []) if len(res["summary"]) > 1 else []
        head += [f"×ref {lab}" for k, lab, _, _ in figs if k in rkeys]
        head += ["expected (ref. machine)", "bg"]
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "---|" * len(head))
        for name, summ in res["summary"].items():
            runs = res["runs"][name]
            skipped = next((r["skipped"] for r in runs if "skipped" in r), None)
            err = next((r["error"] for r in runs if "error" in r), None)
            row = [f"`{name}`" + (" (ref)" if name == REFERENCE.get(case) else "")]
            if skipped or (err and not summ):
                msg = f"skipped: {skipped}" if skipped else "error (see results.json)"
                L.append("| " + " | ".join(row + [msg] + [""] * (len(head) - 2)) + " |")
                continue
            for key, _, _, spec in figs:
                v = summ.get(key)
                row.append(
                    "–"
                    if v is None
                    else (
                        fmt(v["min"], spec)
                        if v["min"] == v["median"]
                        else f"{fmt(v['min'], spec)} / {fmt(v['median'], spec)}"
                    )
                )
            for key, _, _, _ in figs:
                if key in rkeys:
                    r = ratio(case, name, key, res["summary"])
                    row.append("–" if r is None else f"{r:.2f}")
            exp = [f"{k[2]} {v}" for k, v in EXPECTED.items() if k[:2] == (case, name)]
            row.append(", ".join(exp) or "")
            bgs = [max(r.get("bg_cores", 0.0), r.get("bg_during", 0.0)) for r in runs]
            row.append(f"{max(bgs):.2f}" if bgs else "")
            L.append("| " + " | ".join(row) + " |")
        L.append("")
        if case == "moons" and res.get("agreement"):
            L += [
                "Maths cross-check (first repeat of each; same init, data and minibatch "
                "order; numpy_course is float64, the others float32):",
                "",
            ]
            for k, v in res["agreement"].items():
                L.append(f"- {k}: {v:.6f}" if k.startswith("final_loss") else f"- {k}: {v:.3g}")
            L.append("")
        if case == "lenet":
            flops = summ_first(res, REFERENCE["lenet"], "flops_per_step")
            if flops:
                L += [
                    f"flops_per_step (XLA cost analysis of the Flax step): {flops:,.0f}; "
                    "GFLOP/s for every contender uses this count.",
                    "",
                ]
        if case == "ceilings":
            for name, runs in res["runs"].items():
                ok = [r for r in runs if "matmul_n" in r]
                if ok:
                    L.append(
                        f"- `{name}`: matmul {ok[0]['matmul_n']}² @ {ok[0]['matmul_n']}², "
                        f"conv {ok[0]['conv_shape']} SAME, median of {ok[0]['reps']} "
                        "calls per process"
                    )
            L.append("")
        if case == "resnet":
            for name, runs in res["runs"].items():
                ok = [r for r in runs if "n_params" in r]
                if ok:
                    L.append(
                        f"- `{name}`: {ok[0]['model']}, {ok[0]['n_params']:,} parameters, "
                        f"{ok[0]['flops_per_step']:,.0f} XLA flops/step; losses of the timed "
                        f"steps: {', '.join(f'{x:.3f}' for x in ok[0]['losses'])}"
                    )
            L.append("")
    L += ["## Method", ""] + [f"- {x}" for x in METHOD_NOTES] + [""]
    findings = HERE / "FINDINGS.md"  # the goals and what the committed run showed
    if findings.exists():
        L += [findings.read_text()]
    Path(path).write_text("\n".join(L))


def summ_first(res, name, key):
    for r in res["runs"].get(name, []):
        if r.get(key):
            return r[key]
    return None


METHOD_NOTES = [
    "Every (case, contender, repeat) is a fresh subprocess; repeats are interleaved.",
    "moons: data = sklearn make_moons(300, noise=0.2, random_state=3), generated by a "
    "bit-identical numpy copy (checked by `contenders.py moons agree`) so that sklearn's "
    "~0.8 s import does not swamp every end-to-end time. He init and the per-epoch "
    "permutations come from one seeded numpy generator shared by all contenders. "
    "end-to-end = subprocess spawn to trained parameters (time.time() in both); step µs = "
    "training-loop seconds (after compile/warm-up) / number of Adam steps (5 per epoch).",
    "jax_loop: jitted step (value_and_grad + optax.adam, params/opt state donated), "
    "minibatch gathered on device from the index slice; both batch shapes (64, 44) are "
    "compiled on copies before the timed loop.",
    "jax_scan: one lax.scan over the 4 full minibatches + one extra step on the 44-example "
    "remainder inside the same function (no padding/masking: exactly jax_loop's maths); "
    "epochs in an outer lax.scan over all precomputed permutations, so training is a single "
    "XLA call (faster here than a Python loop over a jitted epoch: ~7.6 vs ~9.6 µs/step).",
    "torch_eager: nn.Sequential + BCEWithLogitsLoss + torch.optim.Adam(eps=1e-8), "
    "torch.set_num_threads(2). numpy_course: float64, (n_x, m) layout, hand backprop + Adam.",
    "lenet: steady state = one warm-up epoch (after compile), then the timed epochs. Flax "
    "models are linen; keras_jax uses model.fit (jit_compile=True), which was at least as "
    "fast as a train_on_batch loop; its compile s includes its first epoch. Init differs "
    "per framework (throughput only).",
    "resnet: trace/lower/compile timed separately via jit(f).trace(...).lower().compile(); "
    "s/step = the 2nd of 2 steps after compile (the 1st is shown apart: it also pays "
    "one-time costs); peak RSS = ru_maxrss of the subprocess. netc's step comes from "
    "netc.compile(examples/zoo/resnet50.net) with the same optax.sgd(0.1, momentum=0.9).",
    "netc contenders (benchmarks/netc_bench.py) run `netc train` in-process through the "
    "CLI's own code (run directory, metrics.jsonl, checkpoints, learning-curve plot "
    "included) and read their figures back from run.json and metrics.jsonl. `netc` starts "
    "with an empty JAX compilation cache; `netc_cached` reuses one filled by an earlier run "
    "of the same spec (what a user's second run gets). netc draws its own init and "
    "shuffles from its seed, so its final loss differs from the shared-init contenders.",
    "digits: the same net, data (sklearn digits / 16), 80/10/10 split sizes, Adam 3e-3 "
    "with per-epoch cosine decay, batch 64; each contender shuffles and splits with its "
    "own seed. s to target = process start to the end of the first epoch whose dev "
    "accuracy reaches the target.",
    "check: process wall time of `netc check examples/zoo/resnet50.net` (table or --json, "
    "output discarded) against Keras 3 (JAX backend) building keras.applications.ResNet50"
    "(weights=None) and printing model.summary(); `python` is the interpreter's floor.",
]


# --------------------------------------------------------------------------------------
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1 repeat, tiny sizes (< 60 s)")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--out", default=str(HERE / "RESULTS.md"))
    p.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}"
    )
    p.add_argument("--only", default="", help="comma-separated contender names to keep")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=None,
        help="max seconds to wait for background load to settle before each run "
        "(default 20, --quick 0)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=None,
        help="re-runs of a measurement whose background load exceeded 0.5 cores before or "
        "during it (default 1, --quick 0); the spoiled runs stay in results.json",
    )
    p.add_argument(
        "--render",
        metavar="RESULTS_JSON",
        help="only rewrite --out from an existing results.json (no measuring)",
    )
    a = p.parse_args(argv)
    if a.render:
        write_markdown(a.out, json.loads(Path(a.render).read_text()))
        print(f"wrote {a.out} from {a.render}")
        return
    settings = Settings.make(a.quick, a.repeats)
    quiet_wait = a.quiet_wait if a.quiet_wait is not None else (0 if a.quick else 20)
    out_md = Path(a.out)
    out_json = out_md.with_name("results.json")
    out_md.parent.mkdir(parents=True, exist_ok=True)
    only = set(filter(None, a.only.split(",")))
    retries = a.retries if a.retries is not None else (0 if a.quick else 1)
    discarded = {}

    doc = dict(
        command="python benchmarks/run.py " + " ".join(argv or sys.argv[1:]),
        date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        settings=dataclasses.asdict(settings),
        machine=machine_info(),
        versions=versions(),
        cases={},
    )
    t_start = time.time()
    for case in a.cases.split(","):
        entries = [(n, c) for n, c in CASES[case] if not only or n in only]
        if settings.quick and case in QUICK_ONLY:
            entries = [(n, c) for n, c in entries if n in QUICK_ONLY[case]]
        runs_by_name = {n: [] for n, _ in entries}
        for rep in range(settings.repeats):
            for name, command in entries:
                if any("skipped" in r for r in runs_by_name[name]):
                    continue
                res = run_one(case, name, command, settings, quiet_wait)
                for _ in range(retries):  # re-take figures spoiled by other processes
                    if not contended(res) or "error" in res or "skipped" in res:
                        break
                    print(
                        f"  {case}/{name}: contended (bg {res['bg_cores']:.2f} before, "
                        f"{res.get('bg_during', 0):.2f} during), retrying",
                        flush=True,
                    )
                    discarded.setdefault(f"{case}/{name}", []).append(res)
                    res = run_one(case, name, command, settings, quiet_wait)
                runs_by_name[name].append(res)
                show = {k: res[k] for k, *_ in CASE_FIGURES.get(case, []) if k in res}
                status = (
                    (res.get("skipped") and f"skipped: {res['skipped']}")
                    or res.get("error")
                    or ", ".join(f"{k}={v:.4g}" for k, v in show.items())
                )
                print(
                    f"[{time.time() - t_start:6.1f}s] {case}/{name} #{rep + 1} "
                    f"(bg {res.get('bg_cores', float('nan')):.2f}/"
                    f"{res.get('bg_during', float('nan')):.2f}): {status}",
                    flush=True,
                )
        derived(case, runs_by_name)
        keys = {k for k, *_ in CASE_FIGURES.get(case, [])}
        summary = {
            n: {k: s for k in keys if (s := summarise(rs, k))} for n, rs in runs_by_name.items()
        }
        doc["cases"][case] = dict(runs=runs_by_name, summary=summary)
        if case == "moons":
            agree = moons_agreement(runs_by_name)
            doc["cases"][case]["agreement"] = agree
            for k, v in agree.items():
                print(f"    maths check {k}: {v:.3g}")
    doc["discarded_contended_runs"] = discarded
    doc["total_s"] = time.time() - t_start
    out_json.write_text(json.dumps(doc, indent=1))
    write_markdown(out_md, doc)
    print(f"wrote {out_md} and {out_json} in {doc['total_s']:.1f}s")


if __name__ == "__main__":
    main()
