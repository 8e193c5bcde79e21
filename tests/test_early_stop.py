"""`early_stop patience=N min_delta=D on=dev_loss|dev_accuracy` (LANGUAGE.md section 7): the
run's final parameters are the best epoch's however it ends, no epoch runs after patience
runs out (inside a fused chunk too), and run.json records best_epoch and stopped_epoch."""

from __future__ import annotations

import json
from pathlib import Path

import netc
import numpy as np
import pytest
from conftest import (
    Crash,
    CrashAfter,
    assert_trees_close,
    metrics_of,
    params_of,
    run_cli,
    write_spec,
)
from netc.dsl.diagnostics import SpecError
from netc.runtime.run import train_run
from netc.runtime.sharded_checkpoint import latest_variables

# A wide net on 30 noisy moons: its dev loss is lowest early (epoch 5) and then rises.
SPEC = """input 2
fc 32 -> relu -> fc 32 -> relu -> sigmoid 1
train {{
  data moons n=60 noise=0.35 seed=1
  split 0.5 0.5 0
  optimizer adam lr=0.005
  batch 10
  epochs {epochs}
  seed 0
{stop}
}}
"""


def net(epochs=40, stop="  early_stop patience=10"):
    return netc.check(SPEC.format(epochs=epochs, stop=stop))


def run_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def plain(tmp_path: Path, epochs: int, loop: str) -> Path:
    """The same run without early stopping, for `epochs` epochs."""
    out = tmp_path / f"plain-{epochs}-{loop}"
    train_run(net(epochs, stop=""), out, base_dir=tmp_path, loop=loop)
    return out


def dev_losses(run_dir: Path) -> list[float]:
    return [r["dev_loss"] for r in metrics_of(run_dir)]


@pytest.mark.parametrize("loop", ["scan", "step"])
def test_patience_ends_the_run_with_the_best_epochs_parameters(tmp_path, loop):
    run = train_run(net(), tmp_path / "run", base_dir=tmp_path, loop=loop)
    info = run_json(run.out_dir)
    losses = dev_losses(run.out_dir)
    best = int(np.argmin(losses)) + 1
    assert info["best_epoch"] == best and 1 < best < 30
    # patience 10: the run stops 10 epochs after its best, and metrics.jsonl ends there
    assert info["stopped_epoch"] == best + 10 == len(losses) == info["epochs_done"]
    assert all(x >= losses[best - 1] for x in losses[best:])
    # the final parameters are those of a plain run of `best` epochs (not best + 1)
    assert_trees_close(params_of(run.out_dir), params_of(plain(tmp_path, best, loop)),
                       atol=1e-6)
    with pytest.raises(AssertionError):
        assert_trees_close(params_of(run.out_dir), params_of(plain(tmp_path, best + 1, loop)),
                           atol=1e-6)
    assert run.final["dev"]["loss"] == pytest.approx(losses[best - 1], rel=1e-5)


def test_no_epoch_runs_after_patience_inside_a_fused_chunk(tmp_path):
    """One scan dispatch holds all 40 epochs; the checkpoint at the stop holds the current
    parameters of epoch best + 10, exactly a plain run's of that many epochs."""
    run = train_run(net(), tmp_path / "run", base_dir=tmp_path, loop="scan")
    stopped = run_json(run.out_dir)["stopped_epoch"]
    assert stopped < 40
    variables, epochs = latest_variables(run.out_dir / "checkpoints")
    assert epochs == stopped
    reference = params_of(plain(tmp_path, stopped, "scan"))
    assert_trees_close(variables["params"], reference, atol=1e-6)


def test_the_best_epoch_is_restored_when_patience_never_runs_out(tmp_path):
    run = train_run(net(30, stop="  early_stop patience=100"), tmp_path / "run",
                    base_dir=tmp_path)
    info = run_json(run.out_dir)
    best = int(np.argmin(dev_losses(run.out_dir))) + 1
    assert info["stopped_epoch"] is None and info["epochs_done"] == 30
    assert info["best_epoch"] == best < 30
    assert_trees_close(params_of(run.out_dir), params_of(plain(tmp_path, best, "scan")),
                       atol=1e-6)


def test_min_delta_and_dev_accuracy(tmp_path):
    """on=dev_accuracy keeps the first epoch reaching the highest dev accuracy (ties do not
    improve); a large min_delta makes no later epoch an improvement."""
    run = train_run(net(stop="  early_stop patience=10 on=dev_accuracy"), tmp_path / "acc",
                    base_dir=tmp_path)
    accuracies = [r["dev_accuracy"] for r in metrics_of(run.out_dir)]
    assert run_json(run.out_dir)["best_epoch"] == int(np.argmax(accuracies)) + 1
    run = train_run(net(stop="  early_stop patience=3 min_delta=10"), tmp_path / "delta",
                    base_dir=tmp_path)
    info = run_json(run.out_dir)
    assert (info["best_epoch"], info["stopped_epoch"]) == (1, 4)


def test_a_diverging_run_ends_with_its_best_epoch(tmp_path):
    text = SPEC.format(epochs=40, stop="  early_stop patience=30\n"
                       "  schedule exponential rate=100")  # lr x100 an epoch: NaN by epoch 10
    code, _, err = run_cli("train", write_spec(tmp_path, text), "--out", tmp_path / "run",
                           "--quiet")
    assert code == 0, err
    info = run_json(tmp_path / "run")
    assert "the loss became" in info["stop_reason"]
    good = metrics_of(tmp_path / "run")
    assert 1 <= info["best_epoch"] <= len(good) == info["stopped_epoch"] < 40
    assert info["best_epoch"] == int(np.argmin([r["dev_loss"] for r in good])) + 1
    assert all(np.isfinite(np.asarray(a)).all()
               for layer in params_of(tmp_path / "run").values() for a in layer.values())


def test_a_resumed_run_keeps_its_early_stopping_record(tmp_path):
    """Killed after epoch 8 (past the best epoch), resumed: the same best epoch, stop and
    parameters as an uninterrupted run."""
    whole = train_run(net(), tmp_path / "whole", base_dir=tmp_path, loop="step")
    with pytest.raises(Crash):
        train_run(net(), tmp_path / "cut", base_dir=tmp_path, loop="step", checkpoint_every=1,
                  reporter=CrashAfter(9))
    resumed = train_run(net(), tmp_path / "cut", base_dir=tmp_path, loop="step",
                        resume=True)
    for key in ("best_epoch", "stopped_epoch", "epochs_done"):
        assert run_json(resumed.out_dir)[key] == run_json(whole.out_dir)[key], key
    assert_trees_close(params_of(resumed.out_dir), params_of(whole.out_dir), atol=1e-6)


@pytest.mark.parametrize(("stop", "split", "message"), [
    ("early_stop patience=3", "split 1 0 0", "early_stop watches the dev split"),
    ("early_stop patience=0", "split 0.5 0.5 0", "patience"),
    ("early_stop patience=3 on=train_loss", "split 0.5 0.5 0", "on"),
])
def test_early_stop_is_checked(stop, split, message):
    with pytest.raises(SpecError) as info:
        netc.check(SPEC.format(epochs=5, stop="  " + stop).replace("split 0.5 0.5 0", split))
    assert message in info.value.diagnostics[0].message
