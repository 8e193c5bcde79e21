#!/usr/bin/env python
"""Run the netc benchmark suite: every (case, contender) in its own subprocess.

    python benchmarks/run.py [--quick] [--repeats N] [--out benchmarks/RESULTS.md]
                             [--cases moons,lenet,ceilings,imports,resnet]

Writes RESULTS.md (tables: min / median over repeats, ratios against the reference
contender of each case; see report.py) and results.json (every raw figure) next to it.

The cases, their contenders and their figures are the records of cases.py.  A contender
prints, as the LAST line of its stdout, one JSON object with the figures of its case.
Repeats are interleaved (round-robin over the contenders of a case) so slow drifts in
machine load hit all contenders alike.  A moons contender should also carry ``t_trained``
(``time.time()`` when the model is trained) so that its end-to-end time is measured from
process spawn, and ``params`` (course layout, see moons_contenders.moons_metrics) for the
maths cross-check.
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
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cases import CASES  # noqa: E402
from report import write_markdown  # noqa: E402
from settings import Settings  # noqa: E402


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
def run_one(argv, settings, quiet_wait):
    """Run one contender process; returns its JSON figures plus wall_s, e2e_s and the
    background load before (bg_cores) and during (bg_during) the run, in busy cores."""
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


def measure(case, contenders, settings, quiet_wait, retries, discarded, t_start):
    """Every repeat of every contender of the case, interleaved -> {contender: [figures]}.
    A run spoiled by other processes is re-taken up to `retries` times; the spoiled ones
    go to `discarded`."""
    runs_by_name = {c.name: [] for c in contenders}
    for rep in range(settings.repeats):
        for contender in contenders:
            name = contender.name
            if any("skipped" in r for r in runs_by_name[name]):
                continue
            res = run_one(case.argv(contender, settings), settings, quiet_wait)
            for _ in range(retries):  # re-take figures spoiled by other processes
                if not contended(res) or "error" in res or "skipped" in res:
                    break
                print(
                    f"  {case.name}/{name}: contended (bg {res['bg_cores']:.2f} before, "
                    f"{res.get('bg_during', 0):.2f} during), retrying",
                    flush=True,
                )
                discarded.setdefault(f"{case.name}/{name}", []).append(res)
                res = run_one(case.argv(contender, settings), settings, quiet_wait)
            runs_by_name[name].append(res)
            show = {f.key: res[f.key] for f in case.figures if f.key in res}
            status = (
                (res.get("skipped") and f"skipped: {res['skipped']}")
                or res.get("error")
                or ", ".join(f"{k}={v:.4g}" for k, v in show.items())
            )
            print(
                f"[{time.time() - t_start:6.1f}s] {case.name}/{name} #{rep + 1} "
                f"(bg {res.get('bg_cores', float('nan')):.2f}/"
                f"{res.get('bg_during', float('nan')):.2f}): {status}",
                flush=True,
            )
    return runs_by_name


def summarise(runs, key):
    vals = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
    if not vals:
        return None
    return dict(min=min(vals), median=statistics.median(vals), max=max(vals), n=len(vals))


def selected(case, quick, only):
    """The contenders of `case` to run: those named in --only (all when empty), and with
    --quick only the case's quick ones."""
    chosen = [c for c in case.contenders if not only or c.name in only]
    if quick and case.quick_only:
        chosen = [c for c in chosen if c.name in case.quick_only]
    return chosen


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


# --------------------------------------------------------------------------------------
def byte_compile_netc() -> None:
    """Write the bytecode of netc's modules, as `pip install .` does: from an editable
    checkout, with PYTHONDONTWRITEBYTECODE set (as on the machines these figures come from),
    every netc contender would otherwise compile netc's sources anew at each import (moons
    first run 0.95x with an installed netc, benchmarks/FINDINGS.md)."""
    import compileall

    for package in ("api", "compiler", "dsl", "runtime"):
        compileall.compile_dir(HERE.parent / package, quiet=1)


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
    byte_compile_netc()
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
    for name in a.cases.split(","):
        case = CASES[name]
        runs_by_name = measure(case, selected(case, settings.quick, only), settings,
                               quiet_wait, retries, discarded, t_start)
        if case.derive:
            case.derive(case, runs_by_name)
        keys = [f.key for f in case.figures]
        summary = {
            n: {k: s for k in keys if (s := summarise(rs, k))} for n, rs in runs_by_name.items()
        }
        doc["cases"][name] = dict(runs=runs_by_name, summary=summary)
        if case.agreement:
            agree = case.agreement(case, runs_by_name)
            doc["cases"][name]["agreement"] = agree
            for k, v in agree.items():
                print(f"    maths check {k}: {v:.3g}")
    doc["discarded_contended_runs"] = discarded
    doc["total_s"] = time.time() - t_start
    out_json.write_text(json.dumps(doc, indent=1))
    write_markdown(out_md, doc)
    print(f"wrote {out_md} and {out_json} in {doc['total_s']:.1f}s")


if __name__ == "__main__":
    main()
