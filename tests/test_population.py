"""Populations (runtime/population.py): members that differ only in hyperparameters train as
one program, and each member is the run `netc train --set ...` makes with its values."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import netc
import numpy as np
import pytest
from conftest import EXAMPLES, assert_trees_close, metrics_of, params_of, run_cli
from netc.compiler.check import check_source
from netc.compiler.overrides import apply_overrides
from netc.runtime.population import program_key, train_population
from netc.runtime.run import train_run

MOONS = (EXAMPLES / "moons_adam.net").read_text()


def member(text: str, *overrides: str):
    return check_source(apply_overrides(text, list(overrides)), "member.net")


def final_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())["final"]


@pytest.mark.slow
def test_members_equal_separate_netc_train_runs_after_2000_epochs(tmp_path):
    """The course's moons model, 2,000 epochs, four learning rates from slow to fast: each
    member's final loss is the separate run's within 1e-3 (relative)."""
    rates = ["0.0003", "0.0007", "0.003", "0.01"]
    nets = [member(MOONS, f"optimizer.lr={lr}", "epochs=2000") for lr in rates]
    results = train_population(nets, [tmp_path / f"m{i}" for i in range(4)],
                               base_dir=EXAMPLES)
    for lr, result in zip(rates, results):
        out = tmp_path / f"single-{lr}"
        code, _, err = run_cli("train", EXAMPLES / "moons_adam.net", "--quiet", "--out", out,
                               "--set", f"optimizer.lr={lr}", "--set", "epochs=2000")
        assert code == 0, err
        single = final_of(out)["train"]
        assert result.failed is None
        assert result.final == final_of(result.out_dir)
        np.testing.assert_allclose(result.final["train"]["loss"], single["loss"], rtol=1e-3)
        assert abs(result.final["train"]["accuracy"] - single["accuracy"]) <= 1 / 300
    losses = [r.final["train"]["loss"] for r in results]
    assert len(set(losses)) == 4  # the members really trained with different rates


SCHEDULED = """input 2
fc 6 -> tanh -> fc 3 -> relu -> sigmoid 1
train {
  data moons n=120 noise=0.25 seed=1
  split 0.75 0.25 0
  optimizer momentum lr=0.05 beta=0.9
  schedule exponential rate=0.9 every=5
  batch 32
  epochs 40
  seed 2
}
"""


def test_every_kind_of_hyperparameter_matches_its_separate_run(tmp_path):
    """Learning rate, beta, the schedule's rate and l2 all vary across members; each member's
    parameters and per-epoch figures are those of train_run with the same values."""
    variants = [(), ("optimizer.beta=0.5",), ("schedule.rate=0.5", "l2=0.3"),
                ("optimizer.lr=0.2", "l2=0.05")]
    nets = [member(SCHEDULED, *v) for v in variants]
    assert len({program_key(net) for net in nets}) == 1
    results = train_population(nets, [tmp_path / f"m{i}" for i in range(len(nets))],
                               base_dir=tmp_path)
    for net, variant, result in zip(nets, variants, results):
        single = train_run(net, tmp_path / ("single" + "-".join(variant)), base_dir=tmp_path)
        for got, want in zip(metrics_of(result.out_dir), single.history):
            assert got["epoch"] == want["epoch"]
            np.testing.assert_allclose(got["lr"], want["lr"], rtol=1e-6)
            np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
            np.testing.assert_allclose(got["dev_loss"], want["dev_loss"], rtol=1e-5)
        assert_trees_close(params_of(result.out_dir), params_of(single.out_dir), atol=1e-5)
        for split, figures in single.final.items():
            assert result.final[split] == pytest.approx(figures, rel=1e-5)
    # the schedule's rate reached the optimiser: epoch 6 runs at lr * rate
    rates = [metrics_of(r.out_dir)[5]["lr"] for r in results]
    np.testing.assert_allclose(rates, [0.05 * 0.9, 0.05 * 0.9, 0.05 * 0.5, 0.2 * 0.9],
                               rtol=1e-6)


def test_a_diverging_member_fails_alone(tmp_path):
    nets = [member(SCHEDULED, "optimizer.lr=1e30"), member(SCHEDULED)]
    diverged, fine = train_population(nets, [tmp_path / "a", tmp_path / "b"],
                                      base_dir=tmp_path)
    assert diverged.failed and "epoch" in diverged.failed and diverged.final is None
    info = json.loads((tmp_path / "a" / "run.json").read_text())
    assert info["failed"] == diverged.failed and info["final"] is None
    assert all(np.isfinite(r["loss"]) for r in metrics_of(tmp_path / "a"))
    assert not (tmp_path / "a" / "model.safetensors").exists()
    assert fine.failed is None and len(metrics_of(tmp_path / "b")) == 40


def test_member_folders_load_like_runs(tmp_path):
    nets = [member(SCHEDULED, f"optimizer.lr={lr}") for lr in (0.02, 0.1)]
    results = train_population(nets, [tmp_path / "a", tmp_path / "b"], base_dir=tmp_path)
    for result, net in zip(results, nets):
        assert (result.out_dir / "spec.net").read_text() == net.source
        info = json.loads((result.out_dir / "run.json").read_text())
        assert info["population"]["members"] == 2 and info["epochs_done"] == 40
        model, variables = netc.load(result.out_dir)
        x = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
        assert model.apply(variables, x).shape == (5, 1)
        assert jax.tree.leaves(variables)


def test_program_key_separates_what_changes_the_program():
    base = program_key(member(SCHEDULED))
    same = ["optimizer.lr=0.3", "optimizer.beta=0.99", "schedule.rate=0.7", "l2=0.1"]
    for item in same:
        assert program_key(member(SCHEDULED, item)) == base, item
    other = ["batch=16", "epochs=41", "optimizer=adam", "schedule.every=2", "seed=3",
             "data.n=100", "split=0.5 0.5 0"]
    for item in other:
        assert program_key(member(SCHEDULED, item)) != base, item
    wider = SCHEDULED.replace("fc 6", "fc 7")
    assert program_key(member(wider)) != base
    with pytest.raises(ValueError, match="only in hyperparameters"):
        train_population([member(SCHEDULED), member(wider)], [Path("a"), Path("b")],
                         base_dir=Path("."))


def test_the_step_loop_runs_a_population_too(tmp_path):
    """The per-minibatch loop (conv nets on CPU) steps every member in one dispatch."""
    nets = [member(SCHEDULED, "epochs=6", f"optimizer.lr={lr}") for lr in (0.02, 0.1)]
    results = train_population(nets, [tmp_path / "a", tmp_path / "b"], base_dir=tmp_path,
                               loop="step")
    for net, result in zip(nets, results):
        single = train_run(net, tmp_path / f"single{net.train.optimizer.options['lr']}",
                           base_dir=tmp_path, loop="step")
        assert json.loads((result.out_dir / "run.json").read_text())["timing"]["loop"] == "step"
        for got, want in zip(metrics_of(result.out_dir), single.history):
            np.testing.assert_allclose([got["loss"], got["dev_loss"]],
                                       [want["loss"], want["dev_loss"]], rtol=1e-5)
        assert_trees_close(params_of(result.out_dir), params_of(single.out_dir), atol=1e-5)


@pytest.mark.parametrize("stream", ["off", "on"])
def test_members_stop_early_one_by_one_as_their_separate_runs(tmp_path, stream):
    """early_stop in the step loop (and the host-fed one, `stream on`): each member stops
    after its own epoch, keeps its best epoch's variables, and logs the epochs its separate
    run logs, with the same figures; a stopped member no longer trains while the others go
    on."""
    rng = np.random.default_rng(4)  # noisy labels: the dev loss soon stops improving
    x = rng.normal(size=(160, 2)).astype(np.float32)
    y = (x[:, :1] + rng.normal(scale=0.8, size=(160, 1)) > 0).astype(np.float32)
    np.savez(tmp_path / "points.npz", x=x, y=y)  # a file streams (`data moons` cannot)
    text = SCHEDULED.replace("data moons n=120 noise=0.25 seed=1", 'data "points.npz"').replace(
        "epochs 40", f"epochs 30\n  early_stop patience=2 min_delta=0.002\n  stream {stream}")
    rates = (0.3, 0.1, 0.02)
    nets = [member(text, f"optimizer.lr={lr}") for lr in rates]
    results = train_population(nets, [tmp_path / f"m{i}" for i in range(3)],
                               base_dir=tmp_path, loop="step")
    stopped = set()
    for net, lr, result in zip(nets, rates, results):
        single = train_run(net, tmp_path / f"single{lr}", base_dir=tmp_path, loop="step")
        got, want = metrics_of(result.out_dir), single.history
        assert [r["epoch"] for r in got] == [r["epoch"] for r in want]
        for a, b in zip(got, want):
            np.testing.assert_allclose([a["loss"], a["dev_loss"]], [b["loss"], b["dev_loss"]],
                                       rtol=1e-5)
        run, alone = (json.loads((d / "run.json").read_text())
                      for d in (result.out_dir, single.out_dir))
        assert (run["best_epoch"], run["stopped_epoch"]) == \
            (alone["best_epoch"], alone["stopped_epoch"])
        assert_trees_close(params_of(result.out_dir), params_of(single.out_dir), atol=1e-5)
        stopped.add(run["stopped_epoch"])
    assert len(stopped) > 1  # the members stopped after different epochs


def test_init_scale_is_a_hyperparameter_too(tmp_path):
    """`init random scale=S` draws the weights as S * N(0, 1): members with other scales
    start (and end) as their separate runs do."""
    text = SCHEDULED.replace("  seed 2\n", "  seed 2\n  init random scale=0.1\n")
    nets = [member(text, f"init.scale={scale}", "epochs=5") for scale in (0.1, 0.5, 2.0)]
    assert len({program_key(net) for net in nets}) == 1
    results = train_population(nets, [tmp_path / f"m{i}" for i in range(3)], base_dir=tmp_path)
    first = None
    for net, result in zip(nets, results):
        single = train_run(net, tmp_path / f"single{net.train.init.options['scale']}",
                           base_dir=tmp_path)
        assert_trees_close(params_of(result.out_dir), params_of(single.out_dir), atol=1e-5)
        kernel = params_of(result.out_dir)["fc_1"]["kernel"]
        first = kernel if first is None else first
    assert not np.allclose(first, kernel)
