"""`freeze NAME ... [until NAME]` (LANGUAGE.md section 7): frozen parameters get no gradient,
no optimiser state and no L2, frozen batchnorms use their running statistics, and the
parameters are bit-identical after training."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import netc
import numpy as np
import optax
import pytest
from conftest import moons_mlp, params_of, run_cli, write_spec
from netc.dsl.diagnostics import SpecError
from netc.runtime.run import train_run

BODY = "fc 6 -> bn -> relu -> residual { fc 6 -> relu } as block -> fc 4 as hidden -> relu " \
       "-> sigmoid 1"


def spec(freeze: str, **options) -> str:
    text = moons_mlp(BODY, **options)
    return text.replace("  seed 0\n", f"  seed 0\n  freeze {freeze}\n") if freeze else text


@pytest.mark.parametrize(("freeze", "frozen"), [
    ("fc_1", {"fc_1"}),
    ("block", {"block/fc_1", "block/relu_1"}),
    ('"block/fc_1" batchnorm_1', {"block/fc_1", "batchnorm_1"}),
    ("block/fc_1 batchnorm_1", {"block/fc_1", "batchnorm_1"}),  # nested names unquoted
    ("until batchnorm_1", {"fc_1", "batchnorm_1"}),
    ("hidden until relu_1", {"fc_1", "batchnorm_1", "relu_1", "hidden"}),
])
def test_names_prefixes_and_until_resolve_to_layers(freeze, frozen):
    assert netc.check(spec(freeze)).frozen == frozen


@pytest.mark.parametrize(("freeze", "message", "help"), [
    ("fc_9", "freeze: no layer is named 'fc_9'", "did you mean fc_1?"),
    ("blok", "freeze: no layer is named 'blok'", "did you mean block?"),
    ("until hiden", "freeze until: no layer is named 'hiden'", "did you mean hidden?"),
    ("until", "'until' needs a layer name after it", "e.g. freeze until fc_1"),
    ("fc_1 lr=3", "freeze takes layer names, not lr=...", ""),
])
def test_bad_freeze_lines_are_errors_at_the_name(freeze, message, help):
    with pytest.raises(SpecError) as info:
        netc.check(spec(freeze))
    [d] = info.value.diagnostics
    assert d.message == message and d.span.line == 12
    assert help in d.help


def test_check_shows_trainable_and_frozen_totals(tmp_path):
    net = netc.check(spec("until batchnorm_1"))
    frozen = 2 * 6 + 2 * 6  # fc_1's kernel (no bias before a bn), bn's gamma and beta
    assert net.frozen_params == frozen
    code, out, _ = run_cli("check", "--json", write_spec(tmp_path, spec("until batchnorm_1")))
    summary = json.loads(out)
    assert code == 0
    assert (summary["params"], summary["trainable"], summary["frozen"], summary["state"]) == (
        net.params, net.params - frozen, frozen, 12)  # BN statistics kept apart
    assert [x["name"] for x in summary["layers"] if x["frozen"]] == ["fc_1", "batchnorm_1"]
    code, out, _ = run_cli("check", write_spec(tmp_path, spec("until batchnorm_1")))
    assert f"trainable params: {net.params - frozen:,}   frozen params: {frozen}" in out
    assert "fc*" in out and "batchnorm*" in out and "relu*" not in out


def test_frozen_layers_are_bit_identical_after_training(tmp_path):
    """Trained with momentum and l2: the frozen layers' parameters and BN statistics end
    exactly where they started; the others moved."""
    text = spec("until batchnorm_1").replace("  init he\n", "  init he\n  l2 0.5\n")
    run = train_run(netc.check(text), tmp_path / "run", base_dir=tmp_path)
    fresh = netc.compile(text)
    from netc.runtime.train import Trainer  # the run's own start, from its seed

    start = Trainer(fresh.net, *_no_data(fresh)).init_state()
    after = params_of(run.out_dir)
    _, variables = netc.load(run.out_dir)
    for layer in ("fc_1", "batchnorm_1"):
        for name, value in start[0][layer].items():
            np.testing.assert_array_equal(after[layer][name], value)
    for name, value in start[1]["batchnorm_1"].items():
        np.testing.assert_array_equal(variables["state"]["batchnorm_1"][name], value)
    assert not np.array_equal(after["hidden"]["kernel"], start[0]["hidden"]["kernel"])


def _no_data(model):
    """Data stand-ins of the right shapes for building a Trainer (init_state reads none)."""
    from netc.runtime.train import Data

    m = 90
    return Data(jnp.zeros((m, 2)), jnp.zeros((m, 1))), None


class Recorder:
    """An optax transformation (plain SGD) that records which layers it is given gradients
    and state for."""

    def __init__(self):
        self.seen = []

    def transformation(self):
        def init(params):
            self.seen.append(("init", sorted(params)))
            return optax.EmptyState()

        def update(grads, state, params=None):
            self.seen.append(("update", sorted(grads)))
            return jax.tree.map(lambda g: -0.1 * g, grads), state
        return optax.GradientTransformation(init, update)


def test_frozen_parameters_get_no_gradient_and_no_optimiser_state():
    model = netc.compile(spec("until batchnorm_1"))
    recorder = Recorder()
    tx = recorder.transformation()
    variables = model.init(jax.random.key(0))
    trainable = model.trainable(variables["params"])
    opt = tx.init(trainable)
    x = np.random.default_rng(0).standard_normal((8, 2)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    step = jax.jit(model.step_fn(tx))
    params, state, _, _, _ = step(variables["params"], variables["state"], opt, x, y,
                                  jax.random.key(1))
    expected = sorted(set(variables["params"]) - {"fc_1", "batchnorm_1"})
    assert recorder.seen == [("init", expected), ("update", expected)]
    # the step's program differentiates the trainable subtree only: no cotangent for fc_1
    text = str(jax.make_jaxpr(model.step_fn(tx))(variables["params"], variables["state"],
                                                  opt, x, y, jax.random.key(1)))
    full = str(jax.make_jaxpr(netc.compile(spec("")).step_fn(tx))(
        variables["params"], variables["state"], tx.init(variables["params"]), x, y,
        jax.random.key(1)))
    assert text.count("dot_general") < full.count("dot_general")
    np.testing.assert_array_equal(params["fc_1"]["kernel"], variables["params"]["fc_1"]["kernel"])


def test_frozen_weights_get_no_l2():
    """J's L2 term sums the trainable kernels only: (lambda/2m) * sum ||W||^2."""
    text = spec("fc_1").replace("  init he\n", "  init he\n  l2 2.0\n")
    model = netc.compile(text)
    unfrozen = netc.compile(spec("").replace("  init he\n", "  init he\n  l2 2.0\n"))
    variables = model.init(jax.random.key(0))
    x = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
    y = np.ones((5, 1), np.float32)
    cost, _ = model.loss(variables["params"], variables["state"], x, y, train=False)
    full, _ = unfrozen.loss(variables["params"], variables["state"], x, y, train=False)
    squares = float(jnp.sum(jnp.square(variables["params"]["fc_1"]["kernel"])))
    np.testing.assert_allclose(full - cost, 2.0 / (2 * 5) * squares, rtol=1e-5)


def test_a_frozen_batchnorm_uses_its_running_statistics_in_training():
    model = netc.compile(spec("batchnorm_1"))
    variables = model.init(jax.random.key(0))
    variables["state"]["batchnorm_1"] = {"mean": jnp.full(6, 0.5), "var": jnp.full(6, 4.0)}
    x = np.random.default_rng(0).standard_normal((16, 2)).astype(np.float32)
    train_out, new_state = model.apply(variables, x, train=True, rng=jax.random.key(0))
    np.testing.assert_allclose(train_out, model.apply(variables, x), rtol=1e-6)
    assert new_state["batchnorm_1"] is variables["state"]["batchnorm_1"] or all(
        np.array_equal(new_state["batchnorm_1"][k], variables["state"]["batchnorm_1"][k])
        for k in ("mean", "var"))
