#!/usr/bin/env python
"""Issue #14 on a GPU in one prepared command: the machine, a GPU test subset, and the moons,
LeNet-5 and ResNet-50 cases against hand-written JAX/Flax with step time, compile time, GPU
utilisation and the training loop netc picked; everything under one output folder.

    bash benchmarks/gpu_check.sh             # on the device tool's GPU machine (README.md)
    bash benchmarks/gpu_check.sh --dry-run   # the same steps at tiny sizes, here on CPU
    python benchmarks/gpu_check.py --out DIR [--dry-run] [--budget 400]

It writes (at most 8 files come back from the device tool; gpu_check.sh adds check.log,
all that it and this script print, the contender runs as they happened):
  env.txt            nvidia-smi, jax.devices(), the versions, the loop netc picks per net
  pytest.log         the test subset's output
  results-gpu.json   every figure of every run (run.py's results.json layout) + utilisation
  gpu-samples.csv    the raw nvidia-smi samples (case, contender, repeat, sample, %, MiB)
  RESULTS-gpu.md     the cases' tables (report.py's), the utilisation and loop table, goals
  summary.json       the medians, the goals of issue #14 and whether they were met

Each (case, contender, repeat) runs in its own process as in run.py; repeats are rounds
over all three cases, the tests run after the first, and a round's run that would not end
before the budget is skipped: every case is measured at least once. results-gpu.json,
RESULTS-gpu.md and summary.json are written after each run and after the tests, so a check
killed at the device tool's limit still brings back what it measured (`written_after`
says how far it got).
Utilisation: nvidia-smi sampled every 200 ms during each run; `busy` is the mean over the
samples above 0 % (the process's import and compile leave the GPU idle), `max` the peak.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from cases import CASES  # noqa: E402
from report import header, table  # noqa: E402
from run import byte_compile_netc, machine_info, run_one, summarise, versions  # noqa: E402
from settings import Settings  # noqa: E402

# the contenders measured: netc's and the hand-written JAX/Flax ones (no torch, no keras)
CONTENDERS = {
    "moons": ("jax_loop", "jax_scan", "netc", "netc_cached"),
    "lenet": ("flax_optax", "flax_scan", "netc", "netc_step"),
    "resnet": ("flax", "netc"),
}
ONCE = ("netc_cached", "netc_step")  # in the first round only: the others' repeats go first
# the conv cases of the 0.9x goal: the figure compared (lower is better), the Flax rivals
GOAL_FIGURE = {"lenet": "step_ms", "resnet": "step_s"}
FLAX = {"lenet": ("flax_optax", "flax_scan"), "resnet": ("flax",)}
# conv nets whose auto loop must be the fused one (scan) on a GPU, and dense ones to report
LOOP_SPECS = ("moons_adam.net", "lenet5.net", "digits_convnet.net", "digits_resnet.net",
              "zoo/resnet50.net", "zoo/mobilenet_v2.net")
CONV_SPECS = LOOP_SPECS[1:]
# in this order (ONNX Runtime's CPU-heavy export checks last); 46 s on the 2-core CPU machine
TESTS = ("tests/test_xla_options.py", "tests/test_train.py", "tests/test_sharded_checkpoint.py",
         "tests/test_dtypes.py", "tests/test_export.py")
# the zoo's exports but ResNet's: a minute of ONNX Runtime on the CPU, no other GPU path
TESTS_DESELECT = "not vgg16 and not alexnet and not googlenet and not mobilenet"
DRY_TESTS = ("tests/test_xla_options.py",)


def gpu_settings(dry_run: bool) -> Settings:
    """The GPU run's sizes: LeNet-5 on 65,536 images (2,560 timed steps, enough for the
    sampler to see), ResNet-50 over 20 steps; --dry-run: run.py's --quick sizes."""
    if dry_run:
        return dataclasses.replace(Settings.make(True, 1), resnet_steps=3, timeout_s=240)
    return Settings(repeats=3, lenet_n=65_536, lenet_epochs=5, resnet_steps=20, timeout_s=300)


# ---- the machine ----------------------------------------------------------------------------
PROBE = """
import json, sys, jax, netc
from importlib import metadata
from netc.runtime.train import choose_loop
names = ("jax", "jaxlib", "jax-cuda13-plugin", "flax", "optax", "orbax-checkpoint", "grain",
         "array-record", "dm-pix", "lark", "optuna", "chex", "etils", "protobuf", "numpy")
def version(n):
    try:
        return metadata.version(n)
    except metadata.PackageNotFoundError:
        return None
out = {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
       "versions": {n: version(n) for n in names}, "loop": {}}
for spec in sys.argv[1:]:
    out["loop"][spec] = choose_loop(netc.check("examples/" + spec))
print(json.dumps(out))
"""


def probe_machine(env_txt: Path) -> dict:
    """nvidia-smi, and in a subprocess (JAX takes most of the GPU's memory when it starts)
    the backend, devices, versions and the loop netc picks for LOOP_SPECS."""
    lines = []
    smi = shutil.which("nvidia-smi")
    if smi:
        lines.append(subprocess.run([smi], capture_output=True, text=True).stdout)
    else:
        lines.append("nvidia-smi: not found (no NVIDIA GPU here)\n")
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    try:
        proc = subprocess.run([sys.executable, "-c", PROBE, *LOOP_SPECS], capture_output=True,
                              text=True, cwd=ROOT, env=env, timeout=180)
        stderr = proc.stderr
        info = json.loads(proc.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        stderr, info = "", {"error": "the probe did not end within 180 s"}
    except (IndexError, json.JSONDecodeError):
        info = {"error": stderr.strip()[-2000:]}
    info["gpu"] = gpu_name() if smi else None
    lines += [json.dumps(info, indent=1), "", "python " + sys.version, "",
              "stderr of the probe:", stderr[-3000:]]
    env_txt.write_text("\n".join(lines))
    return info


def gpu_name() -> str | None:
    proc = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                           "--format=csv,noheader"], capture_output=True, text=True)
    return proc.stdout.strip() or None


# ---- the tests ------------------------------------------------------------------------------
def tests_timeout(budget: float, deadline: float, now: float) -> float:
    """Seconds the test subset may take: a quarter of the budget at most, and what leaves a
    minute before the deadline for the other rounds, yet 30 s when only that much is left
    before it, never past it; 0 (the tests are skipped) when under 10 s are left."""
    left = deadline - now
    seconds = min(budget / 4, max(left - 60, min(30.0, left)))
    return seconds if seconds >= 10 else 0.0


def run_tests(files, log: Path, timeout_s: float) -> dict:
    """pytest on `files` with JAX allocating as it goes (its subprocesses share the GPU);
    up to 10 failures are listed (one run on a lent machine: see as many as it shows), and
    each test's name and outcome as it ends (a run stopped at the timeout still shows them)."""
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    argv = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--maxfail=10",
            "--durations=10", "-k", TESTS_DESELECT, *files]
    t0 = time.time()
    with open(log, "w") as f:
        f.write(" ".join(argv) + "\n")
        f.flush()
        try:
            rc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    text = log.read_text().strip().splitlines()
    return {"rc": rc, "seconds": round(time.time() - t0, 1), "files": list(files),
            "summary": text[-1].strip("= ") if text else ""}


# ---- utilisation ----------------------------------------------------------------------------
class GpuSampler:
    """nvidia-smi's utilisation and memory every 200 ms while a run lasts (nothing without
    nvidia-smi); .samples: [(sample number, util %, memory MiB)]."""

    def __init__(self):
        self.samples, self.proc = [], None

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            self.file = tempfile.TemporaryFile("w+")
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                 "--format=csv,noheader,nounits", "-lms", "200"], stdout=self.file,
                stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc):
        if self.proc is None:
            return
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.file.seek(0)
        rows = [line.split(",") for line in self.file.read().splitlines() if "," in line]
        for i, (util, mem) in enumerate(r[:2] for r in rows):
            with contextlib.suppress(ValueError):  # "[N/A]" or a partial last line
                self.samples.append((i, float(util), float(mem)))
        self.file.close()

    def figures(self) -> dict:
        if not self.samples:
            return {}
        util = [u for _, u, _ in self.samples]
        busy = [u for u in util if u > 0]
        return {"gpu_util_mean": statistics.fmean(util), "gpu_util_max": max(util),
                "gpu_util_busy": statistics.fmean(busy) if busy else 0.0,
                "gpu_mem_max_mib": max(m for _, _, m in self.samples),
                "gpu_samples": len(util)}


# ---- the benchmark rounds -------------------------------------------------------------------
class Rounds:
    """The benchmark's runs, a round at a time: each round runs every case's contenders once
    (the ONCE ones only in the first), in fresh processes, each sampled by a GpuSampler; a
    run whose earlier repeat would not fit before the deadline is skipped. .runs:
    {case: {contender: [figures of each run]}}; the samples go to samples_csv; after each
    run, `ran` (if given) is called with "round N, CASE/CONTENDER"."""

    def __init__(self, settings, deadline, log, samples_csv, cases=tuple(CONTENDERS),
                 ran=None):
        self.settings, self.deadline, self.log, self.ran = settings, deadline, log, ran
        self.runs = {case: {name: [] for name in CONTENDERS[case]} for case in cases}
        self.took = {}  # (case, contender) -> its longest run's seconds
        self.done = 0
        self.t_start = time.time()
        self.samples_csv = samples_csv
        self.samples = csv.writer(samples_csv)
        self.samples.writerow(["case", "contender", "repeat", "sample", "util_percent",
                               "memory_mib"])

    def say(self, line):
        print(f"[{time.time() - self.t_start:6.1f}s] {line}", file=self.log, flush=True)

    def run(self, rounds):
        for _ in range(rounds):
            if self.done == self.settings.repeats:
                return
            self.done += 1
            for case_name, by_name in self.runs.items():
                for name in by_name:
                    if self.done == 1 or name not in ONCE:
                        self.run_one(case_name, name)

    def run_one(self, case_name, name):
        case, rep = CASES[case_name], self.done
        left = self.deadline - time.time()
        if self.took.get((case_name, name), 20) * 1.2 > left:
            self.say(f"{case_name}/{name} #{rep}: skipped ({left:.0f} s left)")
            return
        limited = dataclasses.replace(self.settings, timeout_s=max(int(left), 1))
        t0 = time.time()
        contender = next(c for c in case.contenders if c.name == name)
        argv = case.argv(contender, limited)  # netc_cached: runs its untimed warm-up here
        left = self.deadline - time.time()
        if left < 1:
            self.say(f"{case_name}/{name} #{rep}: skipped (its warm-up took the time left)")
            return
        limited = dataclasses.replace(self.settings, timeout_s=int(left))
        with GpuSampler() as sampler:
            res = run_one(argv, limited, 0)
        self.took[(case_name, name)] = max(self.took.get((case_name, name), 0),
                                           time.time() - t0)
        res.update(sampler.figures())
        for row in sampler.samples:
            self.samples.writerow([case_name, name, rep, *row])
        self.samples_csv.flush()  # a run killed later keeps these
        self.runs[case_name][name].append(res)
        shown = {f.key: res[f.key] for f in case.figures if f.key in res}
        status = res.get("error") or ", ".join(f"{k}={v:.4g}" for k, v in shown.items())
        loop = f", loop {res['loop']}" if "loop" in res else ""
        util = (f", GPU busy {res['gpu_util_busy']:.0f}% max {res['gpu_util_max']:.0f}%"
                if "gpu_util_max" in res else "")
        self.say(f"{case_name}/{name} #{rep}: {status}{loop}{util}")
        if self.ran:
            self.ran(f"round {rep}, {case_name}/{name}")


def case_results(case_name, by_name) -> dict:
    case = CASES[case_name]
    if case.derive:
        case.derive(case, by_name)
    keys = [f.key for f in case.figures] + ["gpu_util_mean", "gpu_util_busy", "gpu_util_max",
                                            "gpu_mem_max_mib"]
    summary = {n: {k: s for k in keys if (s := summarise(rs, k))} for n, rs in by_name.items()}
    results = {"runs": by_name, "summary": summary}
    if case.agreement:
        results["agreement"] = case.agreement(case, by_name)
    return results


# ---- what it found --------------------------------------------------------------------------
def median(results, name, key):
    return (results["summary"].get(name, {}).get(key) or {}).get("median")


def goals(doc) -> list[dict]:
    """Issue #14 on a GPU: netc's step >= 0.9x the speed of hand-written Flax (each case's
    reference and the fastest hand-written contender), and conv nets on the scan loop."""
    on_gpu = doc["machine"]["backend"] == "gpu"
    out = []
    for case_name, key in GOAL_FIGURE.items():
        results = doc["cases"].get(case_name, {"summary": {}})
        netc = median(results, "netc", key)
        rivals = {n: median(results, n, key) for n in FLAX[case_name]}
        rivals = {n: v for n, v in rivals.items() if v}
        if not (netc and rivals):
            out.append({"goal": f"{case_name}: netc step >= 0.9x hand-written Flax",
                        "met": None, "measured": "not measured"})
            continue
        best = min(rivals, key=rivals.get)
        ref = CASES[case_name].reference
        speed = {n: v / netc for n, v in rivals.items()}  # > 1: netc faster
        out.append({"goal": f"{case_name}: netc step >= 0.9x hand-written Flax",
                    "figure": key, "netc": netc, "rivals": rivals,
                    "speed_vs_reference": speed.get(ref), "speed_vs_best": speed[best],
                    "best": best, "met": speed[best] >= 0.9 if on_gpu else None})
    loops = doc["machine"].get("loop") or {}
    lenet_runs = doc["cases"].get("lenet", {}).get("runs", {}).get("netc", [])
    ran = sorted({r.get("loop") for r in lenet_runs if r.get("loop")})
    conv_loops = {s: loops.get(s) for s in CONV_SPECS}
    out.append({"goal": "conv nets train on the fused loop (scan) on a GPU",
                "picked": conv_loops, "lenet_run_json_loop": ran,
                "met": (all(v == "scan" for v in conv_loops.values())
                        and (ran == ["scan"] or "lenet" not in doc["cases"]))
                if on_gpu else None})
    return out


def markdown(doc) -> str:
    """RESULTS-gpu.md: report.py's header and tables, then utilisation, loops and goals."""
    lines = header(doc)
    lines[0] = "# netc benchmark results on a GPU (benchmarks/gpu_check.py)"
    if doc.get("written_after", "the end") != "the end":
        lines[1:1] = ["", f"**Incomplete**: written after {doc['written_after']}; the check "
                      "was stopped before its end (the device tool's time limit?)."]
    m = doc["machine"]
    lines[lines.index("## Machine") + 2:lines.index("## Machine") + 2] = [
        f"- GPU: {m.get('gpu') or 'none'}; JAX backend {m.get('backend')}, devices "
        f"{', '.join(m.get('devices') or [])}",
        f"- tests: {doc['tests'].get('summary')} (`{' '.join(doc['tests'].get('files', []))}`)"]
    for name, results in doc["cases"].items():
        case = CASES[name]
        lines += [f"## {case.title}{case.sizes_in_title(doc['settings'])}", ""]
        lines += table(case, results) + [""] + case.notes(case, results)
    lines += ["## GPU utilisation and netc's loop", "",
              "Utilisation over each contender process, nvidia-smi every 200 ms (median over "
              "the repeats): `busy` averages the samples above 0 %, when the GPU ran "
              "anything; `mean` includes the process's start and compile.", "",
              "| case | contender | loop | util busy % | util mean % | util max % | "
              "memory max MiB |", "|---|---|---|---|---|---|---|"]
    for name, results in doc["cases"].items():
        for contender in results["runs"]:
            loops = sorted({r["loop"] for r in results["runs"][contender] if r.get("loop")})
            cells = [median(results, contender, k) for k in
                     ("gpu_util_busy", "gpu_util_mean", "gpu_util_max", "gpu_mem_max_mib")]
            lines.append(f"| {name} | `{contender}` | {', '.join(loops) or '–'} | " + " | ".join(
                "–" if c is None else f"{c:,.0f}" for c in cells) + " |")
    lines += ["", "The loop `netc train` picks on this backend (`choose_loop`, auto): "
              + ", ".join(f"{k} {v}" for k, v in (m.get("loop") or {}).items()), "",
              "## Issue #14's goals on this machine", "", "| goal | measured | met? |",
              "|---|---|---|"]
    for g in doc["goals"]:
        if "speed_vs_best" in g:
            rivals = ", ".join(f"{n} {v:.4g}" for n, v in g["rivals"].items())
            measured = (f"{g['figure']}: netc {g['netc']:.4g}, {rivals}; netc's speed "
                        f"{g['speed_vs_best']:.2f}x the fastest ({g['best']})")
        else:
            measured = g.get("measured") or json.dumps(
                {"picked": g.get("picked"), "lenet run.json": g.get("lenet_run_json_loop")})
        met = {True: "yes", False: "**no**",
               None: f"n/a (backend {m.get('backend')}, not gpu)"}[g["met"]]
        lines.append(f"| {g['goal']} | {measured} | {met} |")
    return "\n".join(lines) + "\n"


def write_reports(doc, out: Path, show: bool = True) -> None:
    """results-gpu.json (the figures first), the goals into doc, then results-gpu.json again,
    RESULTS-gpu.md and summary.json in out (each replaced whole); with `show`, the end of
    RESULTS-gpu.md (utilisation, loops, goals) to the output."""
    replace_text(out / "results-gpu.json", json.dumps(doc, indent=1))
    doc["goals"] = goals(doc)
    replace_text(out / "results-gpu.json", json.dumps(doc, indent=1))
    text = markdown(doc)
    replace_text(out / "RESULTS-gpu.md", text)
    machine = doc["machine"]
    summary = {"machine": {k: machine.get(k) for k in ("gpu", "backend", "devices", "loop")},
               "written_after": doc.get("written_after", "the end"),
               "tests": doc["tests"], "goals": doc["goals"], "total_s": doc.get("total_s"),
               "medians": {c: {n: {k: s["median"] for k, s in summ.items()}
                               for n, summ in r["summary"].items()}
                           for c, r in doc["cases"].items()}}
    replace_text(out / "summary.json", json.dumps(summary, indent=1))
    if show:
        print("## GPU utilisation" + text.split("## GPU utilisation")[-1])


def replace_text(path: Path, text: str) -> None:
    """`path` replaced by `text` whole (written beside it, then renamed over it): a kill
    mid-write leaves the earlier file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "gpu-check-out"))
    p.add_argument("--dry-run", action="store_true", help="tiny sizes, one repeat (CPU)")
    p.add_argument("--budget", type=float, default=400,
                   help="seconds for the whole check (the tests at most a quarter)")
    p.add_argument("--cases", default=",".join(CONTENDERS),
                   help="comma-separated subset of moons,lenet,resnet (a rerun of some)")
    p.add_argument("--skip-tests", action="store_true", help="no test subset")
    p.add_argument("--render", metavar="RESULTS_GPU_JSON",
                   help="only rewrite RESULTS-gpu.md and summary.json in --out from a "
                   "results-gpu.json (no measuring)")
    a = p.parse_args(argv)
    if a.render:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        write_reports(json.loads(Path(a.render).read_text()), Path(a.out))
        return 0
    t_start = time.time()
    deadline = t_start + a.budget - 15  # the writing of the files after the last run
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = gpu_settings(a.dry_run)
    cases = [c for c in a.cases.split(",") if c]
    if unknown := set(cases) - set(CONTENDERS):
        p.error(f"--cases: unknown {', '.join(sorted(unknown))} (moons, lenet, resnet)")
    byte_compile_netc()

    probe = probe_machine(out / "env.txt")
    print(f"backend {probe.get('backend')}, devices {probe.get('devices')}, "
          f"gpu {probe.get('gpu')}, loops {probe.get('loop')}", flush=True)
    if "error" in probe:
        print("the probe failed:\n" + probe["error"], flush=True)
    machine = {**machine_info(), **{k: probe.get(k) for k in ("backend", "devices", "gpu",
                                                             "loop")}}
    doc = {"command": "python benchmarks/gpu_check.py " + " ".join(argv or sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
           "settings": dataclasses.asdict(settings), "machine": machine,
           "versions": {**versions(), **(probe.get("versions") or {})},
           "tests": {"summary": "not run (--skip-tests)" if a.skip_tests else "not run yet",
                     "files": []}}

    def save(after: str) -> None:  # the files so far: a kill at the limit keeps them
        doc["written_after"] = after
        doc["cases"] = {c: case_results(c, by_name) for c, by_name in rounds.runs.items()}
        doc["total_s"] = time.time() - t_start
        write_reports(doc, out, show=after == "the end")

    with open(out / "gpu-samples.csv", "w", newline="") as f:
        rounds = Rounds(settings, deadline, sys.stdout, f, cases, ran=save)
        rounds.run(1)  # every case measured once before anything else
        if not a.skip_tests:
            if timeout := tests_timeout(a.budget, deadline, time.time()):
                doc["tests"] = tests = run_tests(DRY_TESTS if a.dry_run else TESTS,
                                                 out / "pytest.log", timeout)
                print(f"tests ({tests['seconds']} s, rc {tests['rc']}): {tests['summary']}",
                      flush=True)
            else:
                doc["tests"]["summary"] = (f"not run ({deadline - time.time():.0f} s left "
                                           f"before the budget's end)")
                print(f"tests: {doc['tests']['summary']}", flush=True)
            save("the tests")
        rounds.run(settings.repeats - 1)
    save("the end")
    print(f"wrote {out} in {doc['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
