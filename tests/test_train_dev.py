"""The `train_dev F` setting (LANGUAGE.md section 7): the course's train-dev split, held out
of the training data (or brought by a .npz), never trained on, evaluated like dev."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from netc.compiler.check import check_source
from netc.compiler.overrides import apply_overrides
from netc.runtime import cli
from netc.runtime.data import DataError, load_source, make_splits

SPEC = """net td
input 2
fc 4 -> relu -> sigmoid 1
train {{
  data {data}
  split {split}
  {train_dev}
  batch 32
  epochs 3
  seed 5
}}
"""


def rows(ds) -> set[bytes]:
    return {r.tobytes() for r in np.asarray(ds.x)}


# ---- the setting --------------------------------------------------------------------


def test_setting_is_read_and_defaults_to_none():
    net = check_source(SPEC.format(data="moons", split="0.8 0.1 0.1", train_dev="train_dev 0.05"))
    assert net.train.train_dev == 0.05
    assert check_source(SPEC.format(data="moons", split="0.8 0.1 0.1",
                                    train_dev="")).train.train_dev is None


def test_set_override_adds_the_setting():
    source = apply_overrides(SPEC.format(data="moons", split="0.8 0.1 0.1", train_dev=""),
                             ["train_dev=0.2"], "td.net")
    assert check_source(source).train.train_dev == 0.2


# ---- the split --------------------------------------------------------------------------


def test_held_out_of_train_leaving_dev_and_test_alone():
    arrays = load_source("moons", {"n": 500}, seed=1)
    plain = make_splits(arrays, split=(0.8, 0.1, 0.1), seed=4)
    held = make_splits(arrays, split=(0.8, 0.1, 0.1), seed=4, train_dev=0.15)
    assert plain.train_dev is None
    n_train = len(plain.train)
    assert len(held.train_dev) == int(0.15 * n_train) == 60
    assert len(held.train) + len(held.train_dev) == n_train
    # dev and test are the very same examples; train-dev comes out of train, disjoint
    np.testing.assert_array_equal(held.dev.x, plain.dev.x)
    np.testing.assert_array_equal(held.test.x, plain.test.x)
    assert rows(held.train) | rows(held.train_dev) == rows(plain.train)
    assert not rows(held.train) & rows(held.train_dev)
    assert [name for name, _ in held.parts()] == ["train", "train_dev", "dev", "test"]


def test_deterministic_by_the_seed():
    arrays = load_source("moons", {"n": 200}, seed=0)
    a = make_splits(arrays, split=(1, 0, 0), seed=3, train_dev=0.1)
    b = make_splits(arrays, split=(1, 0, 0), seed=3, train_dev=0.1)
    c = make_splits(arrays, split=(1, 0, 0), seed=4, train_dev=0.1)
    np.testing.assert_array_equal(a.train_dev.x, b.train_dev.x)
    np.testing.assert_array_equal(a.train.x, b.train.x)
    assert rows(a.train_dev) != rows(c.train_dev)
    # with split 1 0 0 the train-dev rows are still a seeded draw, not the last rows
    assert len(a.train_dev) == 20 and rows(a.train_dev) != {r.tobytes() for r in
                                                            arrays["x"][-20:]}


def test_too_small_to_hold_out_anything():
    arrays = load_source("moons", {"n": 20}, seed=0)
    with pytest.raises(DataError, match=r"train_dev 0.01 of the 16 training examples holds "
                                        r"out none; raise it to at least 0.0625"):
        make_splits(arrays, split=(0.8, 0.1, 0.1), seed=0, train_dev=0.01)
    with pytest.raises(DataError, match="between 0 and 1"):
        make_splits(arrays, split=(0.8, 0.1, 0.1), seed=0, train_dev=1.0)


def test_npz_brings_its_own_train_dev(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 2)).astype(np.float32), (np.arange(40) % 2).reshape(-1, 1)
    xtd = (rng.normal(size=(7, 2)) * 255).clip(0, 255).astype(np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=y, x_train_dev=xtd, y_train_dev=np.ones((7, 1)))
    arrays = load_source("d.npz", {}, base_dir=tmp_path)
    for fraction in (None, 0.5):  # brought arrays are used as given; the fraction is ignored
        splits = make_splits(arrays, split=(1, 0, 0), seed=0, train_dev=fraction)
        np.testing.assert_array_equal(splits.train_dev.x, xtd / np.float32(255))
        np.testing.assert_array_equal(splits.train.x, x)  # nothing cut: original order
    np.savez(tmp_path / "half.npz", x=x, y=y, x_train_dev=xtd)
    with pytest.raises(DataError, match="only one of 'x_train_dev' and 'y_train_dev'"):
        load_source("half.npz", {}, base_dir=tmp_path)


# ---- a run: final figures in run.json and netc eval -------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("td")
    spec = folder / "td.net"
    spec.write_text(SPEC.format(data="moons n=400 seed=2", split="0.7 0.15 0.15",
                                train_dev="train_dev 0.1"))
    out = folder / "run"
    assert cli.main(["train", str(spec), "--out", str(out), "--quiet"]) == 0
    return out


def test_run_json_has_train_dev_final_figures(trained):
    info = json.loads((trained / "run.json").read_text())
    assert list(info["final"]) == ["train", "train_dev", "dev", "test"]
    assert info["examples"] == {"train": 252, "train_dev": 28, "dev": 60, "test": 60}
    assert set(info["final"]["train_dev"]) == {"loss", "accuracy"}
    # the figures are the trained net's over exactly the held-out examples
    import netc

    model, variables = netc.load(str(trained))
    arrays = load_source("moons", {"n": 400, "seed": 2})
    held = make_splits(arrays, split=(0.7, 0.15, 0.15), seed=5, train_dev=0.1).train_dev
    p = np.asarray(model.apply(variables, held.x))[:, 0]
    y = np.asarray(held.y)[:, 0]
    accuracy = float(np.mean((p > 0.5) == (y == 1)))
    loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert info["final"]["train_dev"]["accuracy"] == pytest.approx(accuracy)
    assert info["final"]["train_dev"]["loss"] == pytest.approx(loss, rel=1e-4)


def test_eval_reports_train_dev(trained, capsys):
    assert cli.main(["eval", str(trained), "--split", "all", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    info = json.loads((trained / "run.json").read_text())
    assert list(report["splits"]) == ["train", "train_dev", "dev", "test"]
    figures = report["splits"]["train_dev"]
    assert figures["examples"] == 28
    assert figures["accuracy"] == pytest.approx(info["final"]["train_dev"]["accuracy"])
    assert figures["loss"] == pytest.approx(info["final"]["train_dev"]["loss"], rel=1e-6)
    assert cli.main(["eval", str(trained), "--split", "train_dev", "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["splits"]) == ["train_dev"]
