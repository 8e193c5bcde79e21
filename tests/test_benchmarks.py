"""The benchmark command works (on a tiny size): no timings are asserted, only that every
selected contender ran and its figures reached RESULTS.md and results.json."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, run_python

RUN = ROOT / "benchmarks" / "run.py"

pytestmark = pytest.mark.skipif(not RUN.exists(), reason="benchmarks/ not in this checkout")


def test_quick_benchmark_run_writes_results(tmp_path):
    out = tmp_path / "RESULTS.md"
    proc = run_python(RUN, "--quick", "--cases", "moons,check", "--only",
                      "jax_scan,netc,python,netc_json", "--quiet-wait", "0", "--out", out,
                      timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads((tmp_path / "results.json").read_text())
    moons = doc["cases"]["moons"]["runs"]
    for name in ("jax_scan", "netc"):
        (run,) = moons[name]
        assert "error" not in run, run
        assert run["e2e_s"] > 0 and run["step_us"] > 0
        assert 0.5 < run["train_acc"] <= 1.0
    assert moons["netc"][0]["loop"] == "scan"  # netc's choice for a dense net
    check = doc["cases"]["check"]["runs"]
    assert check["netc_json"][0]["rc"] == 0 and check["netc_json"][0]["wall_s"] > 0
    text = out.read_text()
    assert "| `netc` |" in text and "| `netc_json` |" in text


def test_a_warm_up_that_does_not_end_is_stopped_at_the_settings_timeout(tmp_path,
                                                                         monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import netc_cases
    from settings import Settings

    hangs = tmp_path / "hangs.py"  # a contender whose warm-up would not end
    hangs.write_text("import time\ntime.sleep(30)\n")
    monkeypatch.setattr(netc_cases, "BENCH", str(hangs))
    monkeypatch.setattr(netc_cases, "CACHE", tmp_path / "cache")
    command = netc_cases.warmed("moons", lambda s: ["--epochs", "3"])
    argv = command(Settings(timeout_s=1))  # returns: the warm-up was stopped after 1 s
    assert argv[1] == str(hangs) and argv[-2] == "--cache"
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
