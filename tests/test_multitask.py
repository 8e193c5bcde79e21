"""Multi-task heads: `sigmoid N` with N yes/no labels per example, NaN where a label is
unknown (LANGUAGE.md section 4). Unknown labels add nothing to the cost, its gradient or the
accuracy; every figure is checked against numpy written here (forward and backward pass by
hand), and a run reports accuracy per task in run.json, every epoch's in metrics.jsonl,
`netc eval` and at the end of `netc train`.

The cost netc minimises: J = -(1/m) sum_i sum_{j known in row i} [y log a + (1-y) log(1-a)]:
each example sums over its known labels, the mean is over all m examples of the minibatch
(a row with no known label adds 0 and still counts in m)."""

from __future__ import annotations

import json

import jax
import netc
import numpy as np
import pytest
from conftest import metrics_of, run_cli, write_spec
from netc.compiler.check import check_file
from netc.runtime.run import train_run
from netc.runtime.split_figures import evaluate
from netc.runtime.task_metrics import is_multitask, task_figures

NAN = np.nan
SPEC = "input 5\nfc 4 -> tanh -> sigmoid 3"
# 6 examples, 3 tasks: row 4 has no known label, task 1 is known twice
Y = np.array([[1, NAN, 0], [0, NAN, NAN], [NAN, 1, 1], [1, 0, 0], [NAN, NAN, NAN],
              [0, NAN, 1]], np.float32)


def _net(spec: str = SPEC, seed: int = 0):
    model = netc.compile(spec)
    variables = model.init(jax.random.key(0))
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda a: rng.normal(0, 0.8, a.shape).astype(np.float32),
                          variables["params"])
    x = rng.normal(size=(len(Y), 5)).astype(np.float32)
    return model, {"params": params, "state": variables["state"]}, x


def _reference(params, x, y):
    """The masked binary cross-entropy of `fc 4 -> tanh -> sigmoid 3` and its gradients, by
    hand in float64: J = -(1/m) sum over known entries of [y log a + (1-y) log(1-a)]."""
    p = {layer: {k: np.asarray(v, np.float64) for k, v in d.items()}
         for layer, d in params.items()}
    x = np.asarray(x, np.float64)
    m = len(x)
    known = ~np.isnan(y)
    h = np.tanh(x @ p["fc_1"]["kernel"] + p["fc_1"]["bias"])
    a = 1 / (1 + np.exp(-(h @ p["sigmoid_1"]["kernel"] + p["sigmoid_1"]["bias"])))
    yk = np.where(known, y, 0.0)
    cost = -np.sum(np.where(known, yk * np.log(a) + (1 - yk) * np.log(1 - a), 0.0)) / m
    dz = np.where(known, a - yk, 0.0) / m            # dJ/dz of the head: 0 where unknown
    dh = dz @ p["sigmoid_1"]["kernel"].T
    dz1 = dh * (1 - h ** 2)
    grads = {"sigmoid_1": {"kernel": h.T @ dz, "bias": dz.sum(axis=0)},
             "fc_1": {"kernel": x.T @ dz1, "bias": dz1.sum(axis=0)}}
    return cost, grads


def _cost_and_grads(model, variables, x, y):
    (cost, _), grads = model.loss_and_grad(variables["params"], variables["state"], x, y, None)
    return float(cost), jax.tree.map(np.asarray, grads)


def test_unknown_labels_leave_the_cost_and_its_gradient_as_numpy_computes_them():
    model, variables, x = _net()
    cost, grads = _cost_and_grads(model, variables, x, Y)
    ref_cost, ref_grads = _reference(variables["params"], x, Y)
    assert cost == pytest.approx(ref_cost, rel=1e-5)
    for layer in ref_grads:
        for name in ref_grads[layer]:
            np.testing.assert_allclose(grads[layer][name], ref_grads[layer][name],
                                       rtol=1e-4, atol=1e-6, err_msg=f"{layer}/{name}")
    # m counts the row with no known label: the same examples without it cost 6/5 as much
    keep = ~np.isnan(Y).all(axis=1)
    fewer, _ = _cost_and_grads(model, variables, x[keep], Y[keep])
    assert cost == pytest.approx(fewer * keep.sum() / len(Y), rel=1e-5)


def test_outputs_at_unknown_positions_change_neither_cost_nor_gradients_nor_accuracy():
    model, variables, x = _net()
    y = Y.copy()
    y[:, 1] = NAN  # task 1 is unknown in every example of this batch
    moved = jax.tree.map(np.array, variables)
    moved["params"]["sigmoid_1"]["kernel"][:, 1] += 3.0  # only task 1's output changes
    moved["params"]["sigmoid_1"]["bias"][1] -= 2.0
    probs, probs_moved = (np.asarray(model.apply(v, x)) for v in (variables, moved))
    assert not np.allclose(probs[:, 1], probs_moved[:, 1])
    np.testing.assert_array_equal(probs[:, [0, 2]], probs_moved[:, [0, 2]])

    cost, grads = _cost_and_grads(model, variables, x, y)
    cost_moved, grads_moved = _cost_and_grads(model, moved, x, y)
    assert cost_moved == pytest.approx(cost, rel=1e-6)
    for name in ("kernel", "bias"):
        np.testing.assert_allclose(grads_moved["fc_1"][name], grads["fc_1"][name], rtol=1e-5,
                                   atol=1e-7)
    np.testing.assert_allclose(grads_moved["sigmoid_1"]["kernel"][:, [0, 2]],
                               grads["sigmoid_1"]["kernel"][:, [0, 2]], rtol=1e-5, atol=1e-7)
    for g in (grads, grads_moved):  # no gradient at all reaches the unknown task's weights
        assert not g["sigmoid_1"]["kernel"][:, 1].any() and g["sigmoid_1"]["bias"][1] == 0
        assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(g))
    # nor do the unknown outputs count in the accuracy
    ones = np.ones(len(x), np.float32)
    figures = [model.evaluate_batch(v, x, y, ones) for v in (variables, moved)]
    assert float(figures[0]["hits"]) == float(figures[1]["hits"])
    assert float(figures[0]["counted"]) == float(figures[1]["counted"]) == (~np.isnan(y)).sum()


def _numpy_task_accuracy(probs, y):
    known = ~np.isnan(y)
    right = ((probs > 0.5) == (np.nan_to_num(y) > 0.5)) & known
    return right.sum(axis=0), known.sum(axis=0)


@pytest.mark.parametrize("batch", [6, 4, 1])  # whole, padded last batch, one by one
def test_per_task_accuracy_against_numpy(batch):
    model, variables, x = _net(seed=3)
    y = Y.copy()
    y[:, 1] = NAN  # a task with no known label has no accuracy
    assert is_multitask(model)
    hits, known = _numpy_task_accuracy(np.asarray(model.apply(variables, x)), y)
    figures = task_figures(model, variables, x, y, batch)
    assert figures["task_known"] == known.tolist() == [4, 0, 4]
    assert figures["task_accuracy"][1] is None
    for j in (0, 2):
        assert figures["task_accuracy"][j] == pytest.approx(hits[j] / known[j])
    # the split's accuracy counts every known label once: all hits over all known labels
    overall = evaluate(model, variables, x, y, batch)
    assert overall["accuracy"] == pytest.approx(hits.sum() / known.sum())


def test_single_output_and_softmax_nets_have_no_task_figures():
    for spec in ("input 5\nfc 3 -> sigmoid 1", "input 5\nsoftmax 3", "input 5\nfc 3"):
        model = netc.compile(spec)
        assert not is_multitask(model)
        x = np.zeros((2, 5), np.float32)
        assert task_figures(model, model.init(jax.random.key(0)), x, np.zeros((2, 1)), 2) == {}


# ---- a run ------------------------------------------------------------------------------------


def _multitask_data(folder, seed=0):
    """Three tasks on 4 features, each a sign of a feature, with a third of labels unknown;
    dev and test given, so each split's examples are known here."""
    rng = np.random.default_rng(seed)

    def part(m):
        x = rng.normal(size=(m, 4)).astype(np.float32)
        y = (x[:, :3] > 0).astype(np.float32)
        y[rng.random(y.shape) < 0.3] = NAN
        return x, y
    (x, y), (xd, yd), (xt, yt) = part(120), part(40), part(30)
    yt[:, 2] = NAN  # no test label of task 2 is known
    np.savez(folder / "tasks.npz", x=x, y=y, x_dev=xd, y_dev=yd, x_test=xt, y_test=yt)
    return {"train": y, "dev": yd, "test": yt}, xt


MULTITASK_RUN = """net tasks
input 4
fc 8 -> relu -> sigmoid 3
train {
  data "tasks.npz"
  optimizer adam lr=0.05
  batch 32
  epochs 30
}
"""


def test_a_multitask_run_reports_accuracy_per_task(tmp_path):
    labels, x_test = _multitask_data(tmp_path)
    spec = write_spec(tmp_path, MULTITASK_RUN)
    out = tmp_path / "run"
    code, _, err = run_cli("train", spec, "--out", out)
    assert code == 0, err
    info = json.loads((out / "run.json").read_text())
    for split, y in labels.items():
        figures = info["final"][split]
        assert figures["task_known"] == (~np.isnan(y)).sum(axis=0).tolist()
        assert len(figures["task_accuracy"]) == 3
    assert info["final"]["test"]["task_accuracy"][2] is None
    assert all(a > 0.8 for a in info["final"]["train"]["task_accuracy"])
    assert " tasks " in err  # the summary at the end of netc train
    # the test split's per-task accuracy, recomputed from netc predict's outputs
    np.savez(tmp_path / "x_test.npz", x=x_test)
    code, _, err = run_cli("predict", out, tmp_path / "x_test.npz", "--out", tmp_path / "p.npz")
    assert code == 0, err
    with np.load(tmp_path / "p.npz") as pred:
        assert pred["classes"].shape == (30, 3)
        np.testing.assert_array_equal(pred["classes"], pred["outputs"] > 0.5)
        hits, known = _numpy_task_accuracy(pred["outputs"], labels["test"])
    test = info["final"]["test"]
    assert test["task_accuracy"][:2] == pytest.approx((hits / np.maximum(known, 1))[:2])
    # netc eval: the same figures as JSON, and a per-task table
    code, stdout, _ = run_cli("eval", out, "--json", "--split", "all")
    assert code == 0
    report = json.loads(stdout)
    for split in labels:
        got = report["splits"][split]
        assert got["task_known"] == info["final"][split]["task_known"]
        assert got["task_accuracy"] == pytest.approx(info["final"][split]["task_accuracy"])
        assert "confusion" not in got  # tasks are not classes of one prediction
    code, stdout, _ = run_cli("eval", out)
    assert code == 0
    assert "per task" in stdout and "known labels" in stdout


@pytest.mark.parametrize("loop, stream", [("scan", "off"), ("step", "off"), ("step", "on"),
                                          ("scan", "on")])
def test_each_epoch_reports_accuracy_per_task(tmp_path, loop, stream):
    """metrics.jsonl has every epoch's task_accuracy and dev_task_accuracy, in the scan loop,
    the step loop and the host-fed ones (`stream on`): each epoch's tasks, weighted by their
    known labels, make its overall accuracy, and the last epoch's dev figures are the run's
    final ones and numpy's from the trained net's outputs."""
    labels, _ = _multitask_data(tmp_path)
    text = MULTITASK_RUN.replace("epochs 30", f"epochs 6\n  stream {stream}")
    spec = write_spec(tmp_path, text)
    out = tmp_path / "run"
    train_run(check_file(spec), out, base_dir=tmp_path, loop=loop)
    records = metrics_of(out)
    known = {split: (~np.isnan(y)).sum(axis=0) for split, y in labels.items()}
    for r in records:
        for prefix, split in (("", "train"), ("dev_", "dev")):
            tasks = r[f"{prefix}task_accuracy"]
            assert len(tasks) == 3
            overall = np.dot(tasks, known[split]) / known[split].sum()
            assert overall == pytest.approx(r[f"{prefix}accuracy"], rel=1e-6)
    final = json.loads((out / "run.json").read_text())["final"]["dev"]["task_accuracy"]
    assert records[-1]["dev_task_accuracy"] == pytest.approx(final, rel=1e-6)
    model, variables = netc.load(str(out))
    with np.load(tmp_path / "tasks.npz") as data:
        hits, known = _numpy_task_accuracy(np.asarray(model.apply(variables, data["x_dev"])),
                                           data["y_dev"])
    assert final == pytest.approx((hits / known).tolist(), rel=1e-6)
    assert records[0]["task_accuracy"] != records[-1]["task_accuracy"]  # it learns


def test_a_task_without_a_known_label_has_no_accuracy_in_an_epoch(tmp_path):
    labels, _ = _multitask_data(tmp_path)
    with np.load(tmp_path / "tasks.npz") as data:
        arrays = dict(data)
    arrays["y_dev"][:, 1] = NAN  # no dev label of task 1
    np.savez(tmp_path / "tasks.npz", **arrays)
    spec = write_spec(tmp_path, MULTITASK_RUN.replace("epochs 30", "epochs 2"))
    train_run(check_file(spec), tmp_path / "run", base_dir=tmp_path)
    for r in metrics_of(tmp_path / "run"):
        assert r["dev_task_accuracy"][1] is None
        assert None not in r["task_accuracy"]


def test_population_members_report_their_tasks_as_their_separate_runs(tmp_path):
    """A tuning population's members (runtime/population.py): run.json's per-task figures
    and every epoch's, as `netc train` of the member's spec gives them."""
    from netc.compiler.overrides import apply_overrides
    from netc.runtime.population import train_population

    _multitask_data(tmp_path)
    text = MULTITASK_RUN.replace("epochs 30", "epochs 4")
    nets = [check_file(write_spec(tmp_path, apply_overrides(text, [f"optimizer.lr={lr}"]),
                                  f"m{lr}.net")) for lr in (0.05, 0.01)]
    results = train_population(nets, [tmp_path / f"p{i}" for i in range(2)], base_dir=tmp_path)
    for net, result in zip(nets, results):
        alone = tmp_path / f"alone{net.train.optimizer.options['lr']}"
        train_run(net, alone, base_dir=tmp_path)
        got, want = (json.loads((d / "run.json").read_text())["final"]
                     for d in (result.out_dir, alone))
        for split in ("train", "dev", "test"):
            assert got[split]["task_known"] == want[split]["task_known"]
            assert_tasks_close(got[split]["task_accuracy"], want[split]["task_accuracy"])
        for a, b in zip(metrics_of(result.out_dir), metrics_of(alone)):
            assert_tasks_close(a["dev_task_accuracy"], b["dev_task_accuracy"])


def assert_tasks_close(got: list, want: list) -> None:
    """Per-task accuracies equal to 1e-6, None (no known label) in the same places."""
    assert [g is None for g in got] == [w is None for w in want]
    assert [g for g in got if g is not None] == \
        pytest.approx([w for w in want if w is not None], rel=1e-6)
