"""runtime/gradcheck.py: the course's gradient check, in float64, for every layer and block.

gradcheck() enables float64 only inside `jax.enable_x64(True)` (a context, not the global
flag), so these checks run in this process without disturbing other tests; one test makes
sure the flag is off again afterwards.

Every layer case must give a relative difference below 1e-6 (the course's "about 1e-7");
they give 1e-10 to 1e-8.
"""

from __future__ import annotations

import re
import types

import jax
import jax.numpy as jnp
import netc
import numpy as np
import numpy_reference as R  # tests/numpy_reference.py (conftest puts tests/ on sys.path)
import pytest
from conftest import one_error_line, run_cli, run_python, write_spec
from netc.dsl.diagnostics import SpecError
from netc.runtime import gradcheck as G

# (id, spec, options for gradcheck, label kind override)
CASES = [
    ("conv-stride-padding", "input 5x6x2\nconv f=3 s=2 p=same c=3 -> relu "
     "-> conv f=2 p=1 c=2 -> tanh -> conv f=1x3 s=2x1 p=2x1 c=2 -> fc 3", {}),
    ("pools-padded", "input 6x6x2\nconv f=1 c=2 -> maxpool f=3 s=2 p=1 "
     "-> avgpool f=2 s=1 p=same -> conv f=2 c=2 -> avgpool f=2 p=same -> fc 2", {}),
    ("pools-valid-and-global", "input 6x7x2\nconv f=3 p=same c=3 -> maxpool f=2 "
     "-> concat { globalavgpool | globalmaxpool } -> softmax 3", {}),
    ("fc-and-flatten", "input 3x4x2\nfc 5 -> relu -> flatten -> fc 4 bias=false -> fc 2", {}),
    ("activations", "input 4\nfc 5 -> relu -> fc 5 -> tanh -> fc 5 -> leaky_relu a=0.2 "
     "-> fc 5 -> elu -> fc 5 -> gelu -> fc 5 -> silu -> fc 5 -> sigmoid -> fc 5 -> softmax "
     "-> fc 2", {"samples": 400}),
    ("softmax-head-ids", "input 4\nfc 5 -> tanh -> softmax 3", {}),
    ("softmax-head-one-hot", "input 4\nfc 5 -> tanh -> softmax 3", {}),
    ("sigmoid-head-nan-labels", "input 4\nfc 5 -> tanh -> sigmoid 3", {}),
    ("batchnorm-train", "input 4x4x2\nconv f=3 p=same c=3 -> bn -> relu -> fc 4 -> bn "
     "-> softmax 3", {}),
    ("batchnorm-inference", "input 4x4x2\nconv f=3 p=same c=3 -> bn -> relu -> fc 4 -> bn "
     "-> softmax 3", {"bn": "inference"}),
    ("residual-projection", "input 6x6x2\nresidual { conv f=3 s=2 p=same c=3 -> relu "
     "-> conv f=3 p=same c=3 } -> relu -> fc 2", {}),
    ("residual-identity-and-shortcut", "input 4x4x2\nresidual { conv f=3 p=same c=2 } -> relu "
     "-> residual { conv f=3 s=2 p=same c=3 } shortcut { avgpool f=2 -> conv f=1 c=3 } "
     "-> fc 2", {}),
    ("concat-def-repeat", "input 5x5x2\ndef br(c) { conv f=1 c=c -> elu }\n"
     "concat { br(2) | conv f=3 p=same c=2 -> relu | maxpool f=3 s=1 p=same } "
     "-> repeat 2 { br(2) } -> fc 3 -> softmax 3", {}),
    ("mse-after-sigmoid", "input 3\nfc 4 -> relu -> sigmoid 2\ntrain { loss mse }", {}),
    ("l2", "input 4x4x1\nconv f=3 c=2 -> relu -> fc 3 -> softmax 3\ntrain { l2 0.5 }", {}),
    ("dropout-is-off", "input 4\nfc 5 -> dropout keep=0.5 -> softmax 3", {}),
]


def labels(case_id, model, m, rng):
    out = model.output_shape[-1]
    if case_id == "softmax-head-one-hot":
        return np.eye(out)[rng.integers(0, out, m)]
    if case_id == "sigmoid-head-nan-labels":
        y = rng.integers(0, 2, (m, out)).astype(np.float64)
        y[rng.random((m, out)) < 0.3] = np.nan
        return y
    return G.random_batch(model, m, seed=int(rng.integers(1 << 30)))[1]


def run_case(case_id, spec, options, m=6):
    model = netc.compile(spec)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, *model.input_shape))
    return G.gradcheck(model, x, labels(case_id, model, m, rng), **options)


@pytest.mark.parametrize("case_id, spec, options", [
    pytest.param(*c, id=c[0]) for c in CASES])
def test_gradients_of_every_layer_kind(case_id, spec, options):
    result = run_case(case_id, spec, options)
    assert result["total"] == netc.compile(spec).net.params  # the checker's count
    assert result["checked"] == min(result["total"], options.get("samples", 200))
    assert result["dtype"] == "float64"
    assert result["difference"] < 1e-6, G.format_report(case_id, result)
    assert result["passed"] and result["reading"].startswith("fine")


def test_dropout_is_off_and_x64_is_restored():
    """The check of a net with dropout equals the check of the same net without it."""
    variables = netc.compile("input 4\nfc 5 -> softmax 3").init(jax.random.key(0))
    a = run_case("x", "input 4\nfc 5 -> dropout keep=0.5 -> softmax 3",
                 {"variables": variables})
    b = run_case("x", "input 4\nfc 5 -> softmax 3", {"variables": variables})
    np.testing.assert_array_equal(a["grad"], b["grad"])
    np.testing.assert_array_equal(a["approx"], b["approx"])
    assert not jax.config.jax_enable_x64
    assert jnp.zeros(2).dtype == jnp.float32


def test_sampling_and_per_layer_report():
    model = netc.compile("input 6x6x3\nconv f=3 c=8 -> relu -> fc 10 -> softmax 4")
    total = model.net.params
    x = np.random.default_rng(0).standard_normal((4, 6, 6, 3))
    y = np.array([0, 1, 2, 3])
    r = G.gradcheck(model, x, y, samples=50, seed=3)
    assert (r["checked"], r["total"]) == (50, total)
    assert len(set(r["index"].tolist())) == 50 and r["index"].max() < total
    assert set(r["layers"]) <= {"conv_1", "fc_1", "softmax_1"}
    assert sum(info["checked"] for info in r["layers"].values()) == 50
    for name, info in r["layers"].items():
        shape = model.net.leaves()[[leaf.name for leaf in model.net.leaves()].index(name)]
        assert info["worst"]["param"] in shape.params
        assert len(info["worst"]["index"]) == len(shape.params[info["worst"]["param"]])
    again = G.gradcheck(model, x, y, samples=50, seed=3)
    np.testing.assert_array_equal(r["index"], again["index"])
    text = G.format_report("t", r)
    assert "relative difference" in text and "conv_1" in text and "50 of" in text


# ---- the check itself, on losses that do not go through Model.forward ---------------------

LOGREG = "input 3\nsigmoid 1"


def logreg_data():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 3))
    y = (rng.random((8, 1)) < 0.5).astype(np.float64)
    return x, y


def logreg_cost(params, x, y, sigmoid=jax.nn.sigmoid):
    w, b = params["sigmoid_1"]["kernel"], params["sigmoid_1"]["bias"]
    a = sigmoid(x @ w + b)
    return -jnp.mean(y * jnp.log(a) + (1 - y) * jnp.log(1 - a))


def scaled_sigmoid_grad(factor):
    """sigmoid whose backward pass is off by `factor` (a deliberately wrong gradient)."""
    @jax.custom_vjp
    def sig(z):
        return jax.nn.sigmoid(z)

    def fwd(z):
        s = jax.nn.sigmoid(z)
        return s, s

    def bwd(s, g):
        return (g * s * (1 - s) * factor,)

    sig.defvjp(fwd, bwd)
    return sig


def test_correct_gradient_reads_fine_and_matches_the_numpy_reference():
    model = netc.compile(LOGREG)
    x, y = logreg_data()
    variables = {"params": {"sigmoid_1": {"kernel": np.array([[0.3], [-0.2], [0.5]]),
                                          "bias": np.array([0.1])}}, "state": {}}
    r = G.gradcheck(model, x, y, variables=variables,
                    loss_fn=lambda p: logreg_cost(p, jnp.asarray(x), jnp.asarray(y)))
    assert r["dtype"] == "float64" and r["checked"] == r["total"] == 4
    assert r["difference"] < 1e-8 and r["passed"] and r["reading"].startswith("fine")
    # ravel order: bias, then kernel (dict keys sorted)
    w, b = variables["params"]["sigmoid_1"]["kernel"], 0.1
    dw, db = R.logistic_regression_grads(x, y, w, b)
    np.testing.assert_allclose(r["grad"], np.concatenate([[db], dw.ravel()]), rtol=1e-10)

    def numpy_cost(theta):
        return R.logistic_regression_cost(x, y, theta[1:].reshape(3, 1), theta[0])

    approx = R.grad_check(numpy_cost, np.concatenate([[b], w.ravel()]))
    np.testing.assert_allclose(r["approx"], approx, rtol=1e-6)
    assert G.relative_difference(r["grad"], r["approx"]) == pytest.approx(
        R.relative_difference(r["grad"], r["approx"]))


@pytest.mark.parametrize("factor, verdict", [(1.02, "likely a bug"), (1 + 4e-5, "look closer"),
                                             (-1.0, "likely a bug")])
def test_a_wrong_gradient_is_caught(factor, verdict):
    model = netc.compile(LOGREG)
    x, y = logreg_data()
    sig = scaled_sigmoid_grad(factor)
    r = G.gradcheck(model, x, y,
                    loss_fn=lambda p: logreg_cost(p, jnp.asarray(x), jnp.asarray(y), sig))
    assert r["reading"].startswith(verdict)
    assert not r["passed"]
    expected = abs(factor - 1) / (1 + abs(factor))  # every entry of g is scaled by factor
    assert r["difference"] == pytest.approx(expected, rel=1e-3)
    w = r["layers"]["sigmoid_1"]["worst"]
    assert w["grad"] == pytest.approx(factor * w["approx"], rel=1e-4)


def test_reading_thresholds():
    assert G.reading(1e-9).startswith("fine")
    assert G.reading(2e-7).startswith("fine")
    assert G.reading(1e-5).startswith("look closer")
    assert G.reading(1e-3).startswith("likely a bug")
    assert G.reading(float("nan")).startswith("likely a bug")
    assert G.relative_difference([0.0, 0.0], [0.0, 0.0]) == 0.0
    assert G.relative_difference([1.0], [-1.0]) == 1.0


# ---- the CLI pieces ------------------------------------------------------------------------


def test_random_batch_labels_suit_the_loss():
    for spec, check in [
        ("input 2x2x1\nsoftmax 5", lambda y: y.dtype.kind == "i" and set(y) <= set(range(5))),
        ("input 3\nsigmoid 2", lambda y: y.shape == (7, 2) and set(y.ravel()) <= {0.0, 1.0}),
        ("input 3\nfc 2", lambda y: y.shape == (7, 2) and y.dtype == np.float64),
    ]:
        model = netc.compile(spec)
        x, y = G.random_batch(model, 7, seed=0)
        assert x.shape == (7, *model.input_shape)
        assert check(y), spec


def _args(path, **kw):
    return types.SimpleNamespace(file=str(path), samples=kw.get("samples", 200),
                                 batch=kw.get("batch", 8), seed=kw.get("seed", 0))


LAYER_ROW = re.compile(r"^  (?P<layer>\S+) +(?P<checked>\d+)  (?P<difference>\S+)   \S+: ")


def layer_rows(report: str) -> dict[str, tuple[int, float]]:
    """{layer: (entries checked, relative difference)} from the per-layer table of a report."""
    rows = [LAYER_ROW.match(line) for line in report.splitlines()]
    return {m["layer"]: (int(m["checked"]), float(m["difference"])) for m in rows if m}


TINY = "net tiny\ninput 3\nfc 4 -> tanh -> softmax 3\n"  # fc_1: 3*4 + 4, softmax_1: 4*3 + 3


def test_netc_gradcheck_reports_a_sample_of_a_correct_net_and_exits_0(tmp_path):
    path = write_spec(tmp_path, TINY, "tiny.net")
    code, out, err = run_cli("gradcheck", path, "--samples", "10", "--batch", "4")
    assert code == 0, out + err  # a correct net, whatever the printed figures say
    assert "gradient check of tiny: 10 of 31 parameter entries" in out
    assert "fine" in out.splitlines()[1]
    rows = layer_rows(out)
    assert rows and set(rows) <= {"fc_1", "softmax_1"}, out
    assert sum(checked for checked, _ in rows.values()) == 10
    assert all(difference < 1e-6 for _, difference in rows.values()), out


def test_netc_gradcheck_checks_every_entry_of_a_small_net(tmp_path):
    path = write_spec(tmp_path, TINY, "tiny.net")
    code, out, err = run_cli("gradcheck", path)  # --samples 200 > 31 entries
    assert code == 0, out + err
    assert "31 of 31 parameter entries" in out
    assert {layer: checked for layer, (checked, _) in layer_rows(out).items()} == {
        "fc_1": 16, "softmax_1": 15}


def test_netc_gradcheck_exits_1_where_backprop_and_differences_disagree(tmp_path):
    """All of fc_1 zero: every relu sits on its kink, where backprop takes the slope 0 and
    the two-sided difference (relu(eps) - relu(-eps)) / (2 eps) sees 1/2."""
    path = write_spec(tmp_path, "net kink\ninput 3\nfc 4 init=zeros -> relu -> softmax 3\n",
                      "kink.net")
    code, out, err = run_cli("gradcheck", path)
    assert code == 1, out + err
    assert "likely a bug" in out.splitlines()[1]
    rows = layer_rows(out)
    assert rows["fc_1"][1] == pytest.approx(1.0)  # backprop gives 0 for every fc_1 entry
    assert rows["softmax_1"][1] < 1e-6


@pytest.mark.parametrize("factor, status", [(1.0, 0), (1.02, 1), (-1.0, 1)])
def test_netc_gradcheck_exit_status_with_a_deliberately_wrong_backward_pass(
        tmp_path, monkeypatch, factor, status):
    """`netc gradcheck` of logistic regression whose sigmoid's backward pass is scaled by
    `factor` (G.gradcheck is handed that cost): a right gradient exits 0, a wrong one 1."""
    real, calls = G.gradcheck, []

    def with_scaled_backward(model, x, y, **options):
        calls.append(factor)
        sig = scaled_sigmoid_grad(factor)
        return real(model, x, y, loss_fn=lambda p: logreg_cost(p, x, y, sig), **options)

    monkeypatch.setattr(G, "gradcheck", with_scaled_backward)
    code, out, err = run_cli("gradcheck", write_spec(tmp_path, LOGREG, "logreg.net"))
    assert calls == [factor], "netc gradcheck no longer goes through G.gradcheck"
    assert code == status, out + err
    assert ("fine" if status == 0 else "likely a bug") in out.splitlines()[1]


def test_netc_gradcheck_help_lists_its_options():
    proc = run_python("-m", "netc", "gradcheck", "--help")
    assert proc.returncode == 0, proc.stderr
    for option in ("--samples", "--batch", "--seed"):
        assert re.search(rf"^  {option}\b", proc.stdout, re.M), proc.stdout


@pytest.mark.parametrize("argv", [["--samples", "0"], ["--batch", "x"]])
def test_netc_gradcheck_bad_options_exit_2(tmp_path, argv):
    code, out, err = run_cli("gradcheck", write_spec(tmp_path, TINY, "tiny.net"), *argv)
    assert code == 2 and out == ""
    assert argv[0] in one_error_line(err)


def test_cmd_gradcheck_passes_on_a_correct_net(tmp_path, capsys):
    path = tmp_path / "ok.net"
    path.write_text("input 4x4x1\nconv f=3 p=same c=2 -> relu -> maxpool f=2 -> softmax 3\n")
    assert G.cmd_gradcheck(_args(path, batch=4)) == 0
    assert "fine" in capsys.readouterr().out


def test_cmd_gradcheck_lets_spec_errors_through(tmp_path):
    path = tmp_path / "bad.net"
    path.write_text("input 4x4x1\nconv f=9 c=2\n")
    with pytest.raises(SpecError):
        G.cmd_gradcheck(_args(path))
