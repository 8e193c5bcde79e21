"""benchmarks/gpu_check.py without a GPU: issue #14's goals judged from a results document
(`--render`), and the utilisation sampler reading an nvidia-smi stand-in. The measuring
itself runs in `bash benchmarks/gpu_check.sh --dry-run` (a minute: benchmarks/README.md)."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest
from conftest import ROOT, run_python

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"

pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason="benchmarks/ not in this checkout")

LOOPS = {"moons_adam.net": "scan", "lenet5.net": "scan", "digits_convnet.net": "scan",
         "digits_resnet.net": "scan", "zoo/resnet50.net": "scan", "zoo/mobilenet_v2.net": "scan"}


def results_doc(backend, lenet_ms, resnet_s, loops=LOOPS, lenet_loop="scan"):
    """A results-gpu.json with one run per contender: lenet_ms and resnet_s are netc's,
    {"flax_optax": 1.0, "flax_scan": 0.5} ms and 0.010 s the hand-written ones."""
    def case(figure, values, loop=None):
        runs = {name: [{figure: v, **({"loop": loop} if loop and name == "netc" else {})}]
                for name, v in values.items()}
        return {"runs": runs, "summary": {
            name: {figure: {"min": v, "median": v, "max": v, "n": 1}}
            for name, v in values.items()}}

    return {
        "command": "test", "date": "now", "tests": {"summary": "1 passed", "files": []},
        "settings": {"repeats": 1, "quick": False, "moons_epochs": 10, "lenet_n": 8,
                     "lenet_epochs": 1, "resnet_tiny": False},
        "machine": {"cpu_model": "x", "logical_cpus": 1, "physical_cores": 1,
                    "affinity_cpus": 1, "mem_gb": 1.0, "platform": "linux",
                    "backend": backend, "devices": ["cuda:0"], "gpu": "H200",
                    "loop": loops},
        "versions": {"jax": "0"},
        "cases": {"moons": case("step_us", {"jax_loop": 30.0, "netc": 10.0}),
                  "lenet": case("step_ms", {"flax_optax": 1.0, "flax_scan": 0.5,
                                            "netc": lenet_ms}, lenet_loop),
                  "resnet": case("step_s", {"flax": 0.010, "netc": resnet_s})}}


def goals_of(tmp_path, doc):
    (tmp_path / "in.json").write_text(json.dumps(doc))
    proc = run_python(SCRIPT, "--render", tmp_path / "in.json", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "## Issue #14's goals" in (tmp_path / "out" / "RESULTS-gpu.md").read_text()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    return {g["goal"].split(":")[0] if ":" in g["goal"] else "loop": g
            for g in summary["goals"]}


def test_the_goals_compare_netc_with_the_fastest_flax_on_a_gpu(tmp_path):
    # netc 0.54 ms against flax_scan's 0.5: 0.926x, met; ResNet 0.012 s against 0.010: 0.83x
    goals = goals_of(tmp_path, results_doc("gpu", lenet_ms=0.54, resnet_s=0.012))
    assert goals["lenet"]["best"] == "flax_scan"
    assert goals["lenet"]["speed_vs_best"] == pytest.approx(0.5 / 0.54)
    assert goals["lenet"]["speed_vs_reference"] == pytest.approx(1.0 / 0.54)
    assert goals["lenet"]["met"] is True
    assert goals["resnet"]["speed_vs_best"] == pytest.approx(0.010 / 0.012)
    assert goals["resnet"]["met"] is False
    assert goals["loop"]["met"] is True


def test_a_conv_net_on_the_step_loop_fails_the_loop_goal(tmp_path):
    step = {**LOOPS, "zoo/resnet50.net": "step"}
    assert goals_of(tmp_path, results_doc("gpu", 0.5, 0.01, loops=step))["loop"]["met"] is False
    ran_step = results_doc("gpu", 0.5, 0.01, lenet_loop="step")
    assert goals_of(tmp_path, ran_step)["loop"]["met"] is False


def test_on_cpu_the_goals_are_not_judged(tmp_path):
    goals = goals_of(tmp_path, results_doc("cpu", lenet_ms=5.0, resnet_s=1.0))
    assert [g["met"] for g in goals.values()] == [None, None, None]
    assert goals["lenet"]["speed_vs_best"] == pytest.approx(0.1)


def test_the_sampler_reads_utilisation_and_memory(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"  # prints "util, MiB" lines as `nvidia-smi -lms` does
    fake.write_text("#!/bin/sh\necho '0, 1000'\necho '40, 1500'\necho '80, 2000'\n"
                    "echo '[N/A], 2100'\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    monkeypatch.delitem(sys.modules, "gpu_check", raising=False)
    from gpu_check import GpuSampler

    printed = len("0, 1000\n40, 1500\n80, 2000\n[N/A], 2100\n")
    with GpuSampler() as sampler:
        deadline = time.time() + 30
        while os.fstat(sampler.file.fileno()).st_size < printed and time.time() < deadline:
            time.sleep(0.05)  # until the stand-in has printed its lines
    assert sampler.samples == [(0, 0.0, 1000.0), (1, 40.0, 1500.0), (2, 80.0, 2000.0)]
    assert sampler.figures() == {"gpu_util_mean": 40.0, "gpu_util_max": 80.0,
                                 "gpu_util_busy": 60.0, "gpu_mem_max_mib": 2000.0,
                                 "gpu_samples": 3}


def import_gpu_check(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    monkeypatch.delitem(sys.modules, "gpu_check", raising=False)
    import gpu_check

    return gpu_check


def test_the_tests_get_a_quarter_of_the_budget_and_never_run_past_its_end(monkeypatch):
    gpu_check = import_gpu_check(monkeypatch)
    timeout = gpu_check.tests_timeout
    assert timeout(budget=400, deadline=1000, now=600) == 100  # a quarter of the budget
    assert timeout(budget=400, deadline=1000, now=880) == 60  # a minute left for the rounds
    assert timeout(budget=400, deadline=1000, now=950) == 30  # 30 s, as long as they fit
    assert timeout(budget=400, deadline=1000, now=980) == 20  # up to the deadline
    assert timeout(budget=400, deadline=1000, now=995) == 0  # under 10 s: skipped
    assert timeout(budget=400, deadline=1000, now=1020) == 0  # past it: skipped


def test_a_check_killed_mid_round_keeps_the_figures_of_the_runs_that_ended(tmp_path,
                                                                           monkeypatch):
    gpu_check = import_gpu_check(monkeypatch)
    machine = {"backend": "gpu", "devices": ["cuda:0"], "gpu": "H200", "loop": LOOPS}
    monkeypatch.setattr(gpu_check, "byte_compile_netc", lambda: None)
    monkeypatch.setattr(gpu_check, "probe_machine", lambda env_txt: dict(machine))
    figures = {"lenet": {"flax_optax": 1.0, "flax_scan": 0.5, "netc": 0.54},
               "resnet": {"flax": 0.010, "netc": 0.012}}

    def run_one(argv, settings, i):  # a run's figures, as its contender prints them
        case_name, name = argv
        if killed_in == (case_name, name):  # the device tool's limit
            raise KeyboardInterrupt
        return {f.key: figures[case_name].get(name, 1.0)
                for f in gpu_check.CASES[case_name].figures}

    def tests_pass(files, log, timeout_s):
        return {"rc": 0, "seconds": 1.0, "files": list(files), "summary": "3 passed"}

    killed_in = ("resnet", "netc")  # the last run of the first round
    case_class = type(gpu_check.CASES["lenet"])
    monkeypatch.setattr(case_class, "argv", lambda case, contender, s: [case.name,
                                                                         contender.name])
    monkeypatch.setattr(gpu_check, "run_one", run_one)
    monkeypatch.setattr(gpu_check, "run_tests", tests_pass)
    with pytest.raises(KeyboardInterrupt):
        gpu_check.main(["--out", str(tmp_path), "--cases", "lenet,resnet"])
    doc = json.loads((tmp_path / "results-gpu.json").read_text())
    assert doc["written_after"] == "round 1, resnet/flax"  # the last run that ended
    assert [run["step_ms"] for run in doc["cases"]["lenet"]["runs"]["netc"]] == [0.54]
    assert doc["cases"]["resnet"]["runs"]["netc"] == []
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["written_after"] == "round 1, resnet/flax"
    lenet = next(g for g in summary["goals"] if g["goal"].startswith("lenet"))
    assert lenet["speed_vs_best"] == pytest.approx(0.5 / 0.54)
    assert summary["medians"]["resnet"]["flax"]["step_s"] == 0.010
    report = (tmp_path / "RESULTS-gpu.md").read_text()
    assert "**Incomplete**: written after round 1, resnet/flax" in report
    with open(tmp_path / "gpu-samples.csv") as f:
        assert f.readline().startswith("case,contender,repeat")

    killed_in = None  # not killed: every round, and the tests
    assert gpu_check.main(["--out", str(tmp_path), "--cases", "lenet,resnet"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["written_after"] == "the end"
    assert summary["tests"]["summary"] == "3 passed"
    runs = json.loads((tmp_path / "results-gpu.json").read_text())["cases"]["lenet"]["runs"]
    assert [len(runs[name]) for name in ("flax_optax", "netc", "netc_step")] == [3, 3, 1]
    assert "Incomplete" not in (tmp_path / "RESULTS-gpu.md").read_text()
