"""`netc train` end to end, in process: parameter trajectories against the independent numpy
reference (tests/numpy_reference.py), schedules, minibatches, seeds, loops, the course's
example nets, the run folder, `netc eval` / `netc predict`, and --set overrides."""

from __future__ import annotations

import functools
import json
import math
import os
import re
import stat
from pathlib import Path

import jax
import numpy as np
import numpy_reference as R  # tests/numpy_reference.py (conftest puts tests/ on sys.path)
import pytest
from conftest import (
    EXAMPLES,
    SHARED_SPECS,
    assert_trees_close,
    metrics_of,
    moons_mlp,
    one_error_line,
    params_of,
    run_cli,
    write_spec,
)
from netc.compiler.check import check_source
from netc.runtime.checkpoint import load_tensors
from netc.runtime.run import train_run
from netc.runtime.sharded_checkpoint import list_checkpoints, load_arrays

# --------------------------------------------------------------------------------- helpers


def train_spec(text: str, folder: Path, name: str = "run", **kwargs) -> Path:
    """Write `text` to folder/NAME.net, train it in process into folder/NAME; the run dir."""
    spec = write_spec(folder, text, f"{name}.net")
    out = folder / name
    train_run(check_source(text, str(spec)), out, base_dir=folder, **kwargs)
    return out


def example_text(name: str) -> str:
    """examples/NAME if present, else the shared corpus' copy."""
    for folder in (EXAMPLES, SHARED_SPECS):
        if (folder / name).exists():
            return (folder / name).read_text()
    pytest.skip(f"{name} is in neither examples/ nor the shared specs")


# ------------------------------------------------------------- logistic regression data

M, N_FEATURES, EPOCHS = 40, 4, 30


@pytest.fixture(scope="module")
def lr_data(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A folder with lr.npz: X (40, 4) float32, Y (40, 1) in {0, 1} from a noisy linear rule."""
    folder = tmp_path_factory.mktemp("logreg")
    rng = np.random.default_rng(20240611)
    x = rng.normal(size=(M, N_FEATURES)).astype(np.float32)
    w = np.array([1.5, -2.0, 1.0, -0.7])
    y = ((x @ w + 0.8 * rng.normal(size=M)) > 0).astype(np.float32).reshape(-1, 1)
    np.savez(folder / "lr.npz", x=x, y=y)
    return folder, x, y


def logreg_spec(optimizer: str, *, schedule: str = "", l2: float = 0.0, epochs: int = EPOCHS,
                batch: str = "full", extra: str = "") -> str:
    return f"""net logreg
input {N_FEATURES}
sigmoid 1
train {{
  data "lr.npz"
  split 1 0 0
  init zeros
  optimizer {optimizer}
  {schedule}
  l2 {l2}
  batch {batch}
  epochs {epochs}
  {extra}
}}
"""


# ----------------------------------------------- 1. trajectories against numpy reference

OPTIMIZERS = [  # name, spec options, reference kwargs, lr
    ("gd", "", {}, 0.5),
    ("momentum", "beta=0.8", {"beta": 0.8}, 0.5),
    ("rmsprop", "beta=0.9 eps=1e-8", {"beta": 0.9, "eps": 1e-8}, 0.01),
    ("adam", "b1=0.9 b2=0.999 eps=1e-8", {"b1": 0.9, "b2": 0.999, "eps": 1e-8}, 0.05),
    # the reference's AdamW is optax.adamw's formula: W -= lr*(adam + wd*W), biases included
    ("adamw", "wd=0.1", {"wd": 0.1}, 0.05),
]


@pytest.mark.parametrize("l2", [0.0, 2.0], ids=["no_l2", "l2"])
@pytest.mark.parametrize("decay", [None, 0.3], ids=["constant", "inverse_time"])
@pytest.mark.parametrize("opt,options,kwargs,lr", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_logistic_regression_matches_numpy_reference(lr_data, tmp_path, opt, options, kwargs,
                                                     lr, decay, l2):
    folder, x, y = lr_data
    schedule = f"schedule inverse_time decay={decay}" if decay else ""
    text = logreg_spec(f"{opt} lr={lr} {options}", schedule=schedule, l2=l2)
    run = train_spec(text, folder, name=tmp_path.name)

    sched = functools.partial(R.inverse_time, decay=decay) if decay else None
    W, b, costs = R.logistic_regression_train(x, y, optimizer=opt, lr=lr, epochs=EPOCHS, l2=l2,
                                              schedule=sched, **kwargs)
    params = params_of(run)["sigmoid_1"]
    assert params["kernel"].shape == (N_FEATURES, 1)
    np.testing.assert_allclose(params["kernel"], W, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(params["bias"].reshape(()), b, rtol=1e-4, atol=1e-6)

    # "loss" of epoch k is the cost at the parameters before that epoch's (single) step,
    # with the L2 term included
    records = metrics_of(run)
    assert [r["epoch"] for r in records] == list(range(1, EPOCHS + 1))
    np.testing.assert_allclose([r["loss"] for r in records], costs, rtol=1e-5, atol=1e-6)
    if decay:
        np.testing.assert_allclose([r["lr"] for r in records],
                                   [sched(lr, e) for e in range(EPOCHS)], rtol=1e-6)
    if l2:  # the L2 term is really part of the logged loss (not the plain cross-entropy)
        _, _, plain = R.logistic_regression_train(x, y, optimizer=opt, lr=lr, epochs=EPOCHS,
                                                  l2=0.0, schedule=sched, **kwargs)
        assert abs(records[-1]["loss"] - plain[-1]) > 1e-3


SCHEDULES = [  # spec text, formula of (lr, e), epochs
    ("", lambda lr, e: lr),
    ("schedule constant", lambda lr, e: lr),
    ("schedule inverse_time decay=0.5 every=3",
     lambda lr, e: lr / (1 + 0.5 * math.floor(e / 3))),
    ("schedule exponential rate=0.8 every=2", lambda lr, e: lr * 0.8 ** math.floor(e / 2)),
    ("schedule exponential", lambda lr, e: lr * 0.95 ** e),
    ("schedule inverse_sqrt k=2", lambda lr, e: lr * 2 / math.sqrt(e + 1)),
    ("schedule cosine", functools.partial(R.cosine, epochs=12)),
    ("schedule cosine min=0.01",
     lambda lr, e: 0.01 + (lr - 0.01) * 0.5 * (1 + math.cos(math.pi * e / 12))),
]


@pytest.mark.parametrize("schedule,formula", SCHEDULES, ids=[s[0] or "default" for s in SCHEDULES])
def test_schedule_rate_per_epoch(lr_data, tmp_path, schedule, formula):
    """metrics' lr of epoch k is schedule(lr, e) with e = k - 1, and it is the rate the
    optimiser really used (gd's trajectory equals the reference run with that schedule)."""
    folder, x, y = lr_data
    text = logreg_spec("gd lr=0.3", schedule=schedule, epochs=12)
    run = train_spec(text, folder, name=tmp_path.name)
    records = metrics_of(run)
    expected = [formula(0.3, e) for e in range(12)]
    np.testing.assert_allclose([r["lr"] for r in records], expected, rtol=1e-6, atol=1e-7)
    W, b, _ = R.logistic_regression_train(x, y, optimizer="gd", lr=0.3, epochs=12,
                                          schedule=formula)
    np.testing.assert_allclose(params_of(run)["sigmoid_1"]["kernel"], W, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------- minibatches, seeds


def test_minibatches_with_partial_last_batch_match_reference(lr_data, tmp_path):
    """batch 16 of m=40: ceil(40/16) = 3 steps per epoch (16, 16, 8), reshuffled each epoch
    as documented (numpy's default_rng([seed, e]).permutation(m)); the L2 term uses each minibatch's
    own size m; the logged loss is the example-weighted mean of the minibatch costs."""
    folder, x, y = lr_data
    epochs, batch, lam, lr, seed = 5, 16, 3.0, 0.05, 11
    text = logreg_spec(f"adam lr={lr}", l2=lam, epochs=epochs, batch=str(batch),
                       extra=f"seed {seed}")
    run = train_spec(text, folder, name=tmp_path.name)

    steps = math.ceil(M / batch)
    params = {"W": np.zeros((N_FEATURES, 1)), "b": np.zeros(())}
    opt = R.Adam()
    losses = []
    for e in range(epochs):
        order = np.random.default_rng([seed, e]).permutation(M)
        total = 0.0
        for i in range(steps):
            idx = order[i * batch:(i + 1) * batch]
            xb, yb = x[idx], y[idx]
            total += len(idx) * R.logistic_regression_cost(xb, yb, params["W"], params["b"],
                                                           lam)
            dW, db = R.logistic_regression_grads(xb, yb, params["W"], params["b"], lam)
            params = opt.step(params, {"W": dW, "b": np.asarray(db)}, lr)
        losses.append(total / M)
    assert opt.t == epochs * steps

    got = params_of(run)["sigmoid_1"]
    np.testing.assert_allclose(got["kernel"], params["W"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["bias"].reshape(()), params["b"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose([r["loss"] for r in metrics_of(run)], losses, rtol=1e-5)
    # the optimiser's step count in the last checkpoint: epochs * ceil(m / batch)
    _, newest = list_checkpoints(run / "checkpoints")[-1]
    tensors, meta = load_arrays(newest)
    assert meta["epoch"] == epochs
    counts = [int(v.reshape(-1)[0]) for k, v in tensors.items()
              if k.startswith("opt/") and v.size == 1 and np.issubdtype(v.dtype, np.integer)]
    assert counts and set(counts) == {epochs * steps}


def mlp(dropout: str = "", seed: int = 0, **options) -> str:
    """conftest's moons net, 8 relu then 6 tanh units, optionally dropout after the relu."""
    return moons_mlp(f"fc 8 -> relu -> {dropout}fc 6 -> tanh -> sigmoid 1", seed=seed, **options)


def test_same_seed_same_run_other_seed_differs(tmp_path):
    a = params_of(train_spec(mlp(seed=4), tmp_path, "a"))
    b = params_of(train_spec(mlp(seed=4), tmp_path, "b"))
    c = params_of(train_spec(mlp(seed=5), tmp_path, "c"))
    assert_trees_close(a, b, atol=0.0)  # bitwise
    assert not all(np.array_equal(p, q) for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(c)))
    assert [r["loss"] for r in metrics_of(tmp_path / "a")] == \
        [r["loss"] for r in metrics_of(tmp_path / "b")]


@pytest.mark.parametrize("dropout", ["", "dropout keep=0.7 -> "], ids=["no_dropout", "dropout"])
def test_step_and_scan_loops_agree(tmp_path, dropout):
    text = mlp(dropout, seed=2)
    step = params_of(train_spec(text, tmp_path, "step", loop="step"))
    scan = params_of(train_spec(text, tmp_path, "scan", loop="scan"))
    assert_trees_close(step, scan, atol=1e-5)
    np.testing.assert_allclose([r["loss"] for r in metrics_of(tmp_path / "step")],
                               [r["loss"] for r in metrics_of(tmp_path / "scan")], rtol=1e-5)


# --------------------------------------------------------------------- the course's nets


@pytest.mark.slow
def test_moons_adam_reaches_course_accuracy(tmp_path):
    """Course 2 week 2: 3-layer net, minibatch Adam, ~94% train accuracy."""
    run = train_spec(example_text("moons_adam.net"), tmp_path)
    info = json.loads((run / "run.json").read_text())
    assert info["epochs_done"] == 10000
    assert info["final"]["train"]["accuracy"] >= 0.92


DIGITS_INLINE = """net digits_small
input 8x8x1
conv f=3 p=same c=16 -> relu -> maxpool f=2 -> conv f=3 p=same c=32 -> relu -> flatten
-> softmax 10
train {
  data digits
  split 0.8 0.1 0.1
  optimizer adam lr=0.003
  batch 64
  epochs 30
}
"""


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("digits")
    text = (EXAMPLES / "digits_convnet.net").read_text() \
        if (EXAMPLES / "digits_convnet.net").exists() else DIGITS_INLINE
    return train_spec(text, folder)


@pytest.mark.slow
def test_digits_convnet_test_accuracy(digits_run):
    info = json.loads((digits_run / "run.json").read_text())
    assert info["examples"] == {"train": 1439, "dev": 179, "test": 179}
    assert info["final"]["test"]["accuracy"] >= 0.97


@pytest.mark.slow
def test_eval_json_report_is_consistent(digits_run):
    code, out, _ = run_cli("eval", digits_run, "--json")
    assert code == 0
    report = json.loads(out)
    test = report["splits"]["test"]
    assert test["examples"] == 179
    info = json.loads((digits_run / "run.json").read_text())
    assert test["accuracy"] == pytest.approx(info["final"]["test"]["accuracy"])
    confusion = np.array(test["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 179
    assert np.trace(confusion) / 179 == pytest.approx(test["accuracy"])
    assert sum(row["support"] for row in test["per_class"]) == 179
    for row in test["per_class"]:
        c = row["class"]
        tp = confusion[c, c]
        precision = tp / confusion[:, c].sum() if confusion[:, c].sum() else 0.0
        recall = tp / confusion[c].sum() if confusion[c].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        assert row["support"] == confusion[c].sum()
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx(
            (precision, recall, f1))
    code, out, _ = run_cli("eval", digits_run, "--json", "--split", "all")
    assert code == 0
    sizes = {k: v["examples"] for k, v in json.loads(out)["splits"].items()}
    assert sizes == {"train": 1439, "dev": 179, "test": 179}
    for name, split in json.loads(out)["splits"].items():
        assert np.array(split["confusion"]).sum() == sizes[name]


@pytest.mark.slow
def test_predict_digits_writes_probabilities(digits_run, tmp_path):
    from sklearn.datasets import load_digits

    images = (load_digits().images[:13] / 16.0).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=images.reshape(13, 64))  # flat rows are reshaped
    code, _, err = run_cli("predict", digits_run, tmp_path / "in.npz", "--out",
                           tmp_path / "pred.npz")
    assert code == 0, err
    assert re.search(r"^13 predictions\b", err, re.M), err  # not a 13 in a tmp path
    with np.load(tmp_path / "pred.npz") as pred:
        assert pred["outputs"].shape == (13, 10)
        np.testing.assert_allclose(pred["outputs"].sum(axis=1), 1.0, rtol=1e-5)
        assert pred["classes"].shape == (13,)
        assert (pred["classes"] == load_digits().target[:13]).mean() >= 0.9


@pytest.fixture(scope="module")
def flower_run(tmp_path_factory) -> Path:
    """Course 1 week 3: 4 tanh units on the planar flower, gd lr=1.2, batch full."""
    text = example_text("planar_flower.net")
    text = text.replace("epochs 10000", "epochs 3000")
    assert "epochs 3000" in text and "data flower" in text
    return train_spec(text, tmp_path_factory.mktemp("flower"))


@pytest.mark.slow
def test_flower_eval_and_decision_boundary(flower_run):
    from PIL import Image

    info = json.loads((flower_run / "run.json").read_text())
    assert info["final"]["train"]["accuracy"] > 0.85
    code, out, _ = run_cli("eval", flower_run, "--json")
    assert code == 0
    train = json.loads(out)["splits"]["train"]
    assert train["examples"] == 400 and np.array(train["confusion"]).sum() == 400
    assert 0.85 < train["accuracy"] <= 1.0
    png = flower_run / "decision_boundary.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as img:
        img.verify()
    with Image.open(png) as img:
        assert img.format == "PNG" and min(img.size) > 50
    # the human-readable report names the plot (on a line that rich may wrap anywhere)
    code, out, err = run_cli("eval", flower_run)
    assert code == 0, err
    assert f"decisionboundary:{png}" in "".join(out.split())


@pytest.mark.slow
def test_predict_flower_shapes(flower_run, tmp_path):
    x = np.random.default_rng(0).normal(size=(25, 2)).astype(np.float32)
    np.savez(tmp_path / "pts.npz", x=x)
    code, _, _ = run_cli("predict", flower_run, tmp_path / "pts.npz", "--out",
                         tmp_path / "p.npz")
    assert code == 0
    with np.load(tmp_path / "p.npz") as pred:
        assert pred["outputs"].shape == (25, 1)
        assert ((pred["outputs"] > 0) & (pred["outputs"] < 1)).all()
        np.testing.assert_array_equal(pred["classes"], (pred["outputs"][:, 0] > 0.5))
    code, _, _ = run_cli("predict", flower_run, tmp_path / "pts.npz", "--out",
                         tmp_path / "p.csv")
    assert code == 0
    csv_text = (tmp_path / "p.csv").read_text().splitlines()
    assert csv_text[0] == "output,class"
    rows = np.loadtxt(csv_text[1:], delimiter=",")
    with np.load(tmp_path / "p.npz") as pred:
        np.testing.assert_allclose(rows[:, 0], pred["outputs"][:, 0], rtol=1e-6)
        np.testing.assert_array_equal(rows[:, 1], pred["classes"])


# ------------------------------------------------------------------------ the run folder


@pytest.mark.slow
def test_run_folder_layout(flower_run):
    from PIL import Image

    for name in ("spec.net", "run.json", "metrics.jsonl", "model.safetensors",
                 "learning_curve.png"):
        assert (flower_run / name).is_file(), name
    assert list((flower_run / "checkpoints").glob("ckpt_*/carry"))
    assert "net planar_flower" in (flower_run / "spec.net").read_text()
    records = metrics_of(flower_run)
    assert [r["epoch"] for r in records] == list(range(1, 3001))
    for r in records:
        assert {"epoch", "lr", "loss", "seconds"} <= set(r)
        assert r["lr"] == pytest.approx(1.2) and r["seconds"] >= 0
    info = json.loads((flower_run / "run.json").read_text())
    assert info["input"] == [2] and info["output"] == [1]
    assert info["loss"] == "binary_cross_entropy" and info["epochs_done"] == 3000
    tensors, meta = load_tensors(flower_run / "model.safetensors")
    assert meta["epochs"] == 3000
    assert {k: v.shape for k, v in tensors.items()} == {
        "params/fc_1/kernel": (2, 4), "params/fc_1/bias": (4,),
        "params/sigmoid_1/kernel": (4, 1), "params/sigmoid_1/bias": (1,)}
    with Image.open(flower_run / "learning_curve.png") as img:
        img.verify()


def test_run_files_respect_the_umask(lr_data, tmp_path):
    """Files of a run folder are created like any other file (0666 & ~umask), under a umask
    other than the usual 022, so that a hard-coded 0644 would show."""
    folder, _, _ = lr_data
    saved = os.umask(0o027)
    try:
        run = train_spec(logreg_spec("gd lr=0.1", epochs=2), folder, name=tmp_path.name)
    finally:
        os.umask(saved)
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in run.iterdir() if p.is_file()}
    assert {"spec.net", "run.json", "metrics.jsonl", "model.safetensors"} <= set(modes)
    assert modes == dict.fromkeys(modes, oct(0o640))


# ------------------------------------------------------------------------------- --set


def test_set_overrides_are_applied(lr_data, tmp_path):
    folder, _, _ = lr_data
    spec = write_spec(folder, logreg_spec("momentum lr=0.01 beta=0.8", epochs=40),
                      f"{tmp_path.name}.net")
    out = tmp_path / "run"
    code, _, err = run_cli("train", spec, "--out", out, "--quiet", "--set", "epochs=3",
                           "--set", "optimizer.lr=0.5")
    assert code == 0, err
    text = (out / "spec.net").read_text()
    assert "epochs 3" in text and "epochs 40" not in text
    assert "lr=0.5" in text and "beta=0.8" in text and "momentum" in text
    records = metrics_of(out)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert all(r["lr"] == pytest.approx(0.5) for r in records)
    assert json.loads((out / "run.json").read_text())["epochs_done"] == 3


@pytest.mark.parametrize("item", ["epochs=abc", "optimizer.lr=-1", "epoch=3", "epochs"])
def test_bad_set_exits_1_naming_set(lr_data, tmp_path, item):
    folder, _, _ = lr_data
    spec = write_spec(folder, logreg_spec("gd lr=0.1", epochs=2), f"{tmp_path.name}.net")
    code, out, err = run_cli("train", spec, "--out", tmp_path / "run", "--set", item)
    assert code == 1
    assert f"--set {item}" in one_error_line(err)
    assert not (tmp_path / "run").exists()


def test_bad_set_is_one_line_not_pinned_to_the_spec(lr_data, tmp_path):
    folder, _, _ = lr_data
    spec = write_spec(folder, logreg_spec("gd lr=0.1", epochs=2), f"{tmp_path.name}.net")
    code, _, err = run_cli("train", spec, "--out", tmp_path / "run", "--set", "epochs=abc")
    assert code == 1
    assert f"{spec}:1:1" not in one_error_line(err)


# ------------------------------------------- netc.load, eval with a relative data path


def test_netc_load_returns_model_and_variables(lr_data, tmp_path):
    import netc

    folder, _, _ = lr_data
    run = train_spec(logreg_spec("gd lr=0.1", epochs=2), folder, name=tmp_path.name)
    model, variables = netc.load(str(run))
    assert variables["params"]["sigmoid_1"]["kernel"].shape == (N_FEATURES, 1)
    assert model.input_shape == (N_FEATURES,)


def test_eval_finds_relative_data_file(lr_data, tmp_path):
    folder, _, _ = lr_data
    spec = write_spec(folder, logreg_spec("gd lr=0.1", epochs=2), f"{tmp_path.name}.net")
    out = tmp_path / "run"  # not the spec's folder
    code, _, err = run_cli("train", spec, "--out", out, "--quiet")
    assert code == 0, err
    code, out_text, err = run_cli("eval", out, "--json")
    assert code == 0, err
    assert json.loads(out_text)["splits"]["train"]["examples"] == M


@pytest.mark.parametrize(("body", "cpu_loop"), [
    ("fc 8 -> relu -> sigmoid 1", "scan"),
    ("conv f=3 c=4 -> relu -> flatten -> softmax 3", "scan"),      # im2col: fuses well
    ("conv f=3 c=4 -> conv f=3 c=4 -> flatten -> softmax 3", "scan"),
    ("conv f=1 c=16 -> conv f=3 c=4 -> flatten -> softmax 3", "step"),  # a direct conv
])
def test_auto_loop_fuses_unless_a_conv_stays_direct_on_cpu(body, cpu_loop, monkeypatch):
    from netc.runtime.train import choose_loop

    net = check_source(f"input 8x8x2\n{body}")
    assert choose_loop(net, "step") == "step" and choose_loop(net, "scan") == "scan"
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert choose_loop(net) == cpu_loop
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert choose_loop(net) == "scan"


@pytest.mark.parametrize(("body", "platform", "beside"), [
    ("fc 8 -> relu -> fc 6 -> tanh -> sigmoid 1", "cpu", True),  # 70 multiply-adds an example
    ("fc 64 -> relu -> fc 64 -> tanh -> sigmoid 1", "cpu", False),  # 4,288: XLA:CPU takes both
    ("fc 64 -> relu -> fc 64 -> tanh -> sigmoid 1", "gpu", True),  # the device computes
])
def test_orbax_is_imported_beside_the_epochs_only_when_they_leave_a_core_idle(
        tmp_path, monkeypatch, body, platform, beside):
    """On CPU a small net's epochs leave a core idle, so Orbax is imported on a thread after
    the first chunk; a larger net's first save imports it, not the epochs beside it. On an
    accelerator the host's cores are free."""
    from netc.runtime import sharded_checkpoint as sharded

    monkeypatch.setattr(jax, "default_backend", lambda: platform)
    calls = []
    preload, save = sharded.CheckpointWriter.preload, sharded.CheckpointWriter.save

    def record_preload(self):
        calls.append("preload")
        return preload(self)

    def record_save(self, *args):
        calls.append("save")
        return save(self, *args)
    monkeypatch.setattr(sharded.CheckpointWriter, "preload", record_preload)
    monkeypatch.setattr(sharded.CheckpointWriter, "save", record_save)
    train_spec(moons_mlp(body, epochs=3), tmp_path, report_every=1,
               checkpoint_seconds=1e9)  # no save due by the clock on a slow machine
    assert calls[0] == ("preload" if beside else "save")
    assert calls.count("save") == 1  # at the end only: report_every saves nothing


def test_an_output_that_is_not_a_vector_trains_one_column_per_value(tmp_path):
    """A conv net ending in an elementwise sigmoid (4x4x2 outputs) trains with labels of 32
    columns, one per value, as LANGUAGE.md's binary cross-entropy has them: its cost is
    numpy's over the flattened outputs; mse likewise; cross-entropy (classes on the last
    axis) is a one-line error."""
    import netc

    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 4, 4, 1)).astype(np.float32)
    y = (rng.random((48, 32)) > 0.5).astype(np.float32)
    np.savez(tmp_path / "maps.npz", x=x, y=y)
    body = "input 4x4x1\nconv f=3 c=2 p=same -> {head}\ntrain {{\n  data \"maps.npz\"\n" \
           "  batch 16\n  epochs 2\n}}\n"
    for head in ("sigmoid", "relu"):  # binary cross-entropy, mse
        out = train_spec(body.format(head=head), tmp_path, head)
        assert len(metrics_of(out)) == 2
        model = netc.compile(body.format(head=head))
        variables = netc.load(str(out))[1]
        a = np.asarray(model.apply(variables, x)).reshape(48, -1)
        per = np.asarray(model.per_example_loss(model.forward(variables, x)[0], y))
        want = (-(y * np.log(a) + (1 - y) * np.log(1 - a))).sum(axis=1) if head == "sigmoid" \
            else ((a - y) ** 2).mean(axis=1)
        np.testing.assert_allclose(per, want, rtol=2e-5, atol=1e-6)
    np.savez(tmp_path / "maps.npz", x=x, y=rng.integers(0, 2, 48))
    path = write_spec(tmp_path, body.format(head="softmax"), "classes.net")
    code, _, err = run_cli("train", path, "--out", tmp_path / "classes")
    assert code == 1 and one_error_line(err) == (
        "netc: error: cross-entropy takes a vector of class scores, but this net's output is "
        "4x4x2: flatten it before the head (-> flatten -> softmax N), or end in sigmoid for "
        "one yes/no per value")


@pytest.mark.parametrize("batch", ["16", "full"], ids=["shuffled", "full_batch"])
def test_scan_chunks_and_step_loop_agree(tmp_path, batch):
    """Chunks of 3 over 8 epochs (a short last chunk, prefetched orders) and the step loop
    end with the same parameters and per-epoch losses, shuffled or not (batch full)."""
    text = mlp(seed=5, batch=batch, split="0.8 0.2 0")
    step = train_spec(text, tmp_path, "step", loop="step")
    scan = train_spec(text, tmp_path, "scan", loop="scan", checkpoint_every=3)
    assert_trees_close(params_of(step), params_of(scan), atol=1e-5)
    for key in ("loss", "dev_loss"):
        np.testing.assert_allclose([r[key] for r in metrics_of(tmp_path / "step")],
                                   [r[key] for r in metrics_of(tmp_path / "scan")], rtol=1e-5)
    timing = json.loads((tmp_path / "scan" / "run.json").read_text())["timing"]
    assert timing["loop"] == "scan" and timing["steps"] == 8 * (5 if batch == "16" else 1)
    assert {"seconds", "compile_seconds", "train_seconds", "step_us"} <= set(timing)
