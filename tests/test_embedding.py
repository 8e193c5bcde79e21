"""examples/embed_in_jax.py: a compiled model inside the user's own JAX, Optax and Flax code."""

from __future__ import annotations

import importlib.util
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import EXAMPLES

_spec = importlib.util.spec_from_file_location("embed_in_jax", EXAMPLES / "embed_in_jax.py")
E = importlib.util.module_from_spec(_spec)
sys.modules["embed_in_jax"] = E  # Flax's dataclass transform looks the module up
_spec.loader.exec_module(E)


@pytest.fixture(scope="module")
def setup():
    import netc

    model = netc.compile(E.SPEC)
    variables = model.init(jax.random.key(0))
    x, y = E.load_digits()
    return model, variables, x, y


def test_jit_apply_equals_apply(setup):
    model, v, x, _ = setup
    probs = np.asarray(E.make_predict(model)(v, x[:16]))
    assert probs.shape == (16, 10)
    np.testing.assert_allclose(probs, np.asarray(model.apply(v, x[:16])), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_own_loss_and_grad_match_the_models(setup):
    model, v, x, y = setup
    xb, yb = x[:32], y[:32]
    grads = E.my_grads(model, v, xb, yb)
    assert jax.tree.structure(grads) == jax.tree.structure(v["params"])
    assert jax.tree.map(jnp.shape, grads) == jax.tree.map(jnp.shape, v["params"])
    # without weight decay, the user's loss from probabilities is the model's own
    # cross-entropy from logits, and so are the gradients
    own = jax.jit(jax.value_and_grad(E.my_loss), static_argnums=1)
    value, g = own(v["params"], model, v["state"], xb, yb, None, 0.0)
    ref_value, ref_g = jax.value_and_grad(
        lambda p: model.loss(p, v["state"], xb, yb, train=False)[0])(v["params"])
    assert float(value) == pytest.approx(float(ref_value), rel=1e-5)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(ref_g)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_vmap_over_single_examples_equals_the_batch(setup):
    model, v, x, _ = setup
    single = np.asarray(E.per_example_apply(model, v, x[:12]))
    np.testing.assert_allclose(single, np.asarray(model.apply(v, x[:12])), rtol=1e-5,
                               atol=1e-6)


def test_own_optax_loop_lowers_the_loss(setup):
    model, v, x, y = setup
    params, losses = E.train(model, v, x[:1500], y[:1500], steps=80, batch=128)
    assert len(losses) == 80 and all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
    before = E.accuracy(model, v, x[1500:], y[1500:])
    after = E.accuracy(model, {"params": params, "state": v["state"]}, x[1500:], y[1500:])
    assert after > max(0.7, before + 0.3)
    assert jax.tree.structure(params) == jax.tree.structure(v["params"])


def test_params_in_flax_and_pytree_utilities(setup):
    model, v, x, _ = setup
    module = E.WithNetc(model)
    fv = module.init(jax.random.key(1), x[:2])
    assert set(fv["params"]) == {"netc", "Dense_0"}
    inner = fv["params"]["netc"]
    assert jax.tree.structure(inner) == jax.tree.structure(v["params"])
    out = module.apply(fv, x[:4])
    dense = fv["params"]["Dense_0"]
    expected = model.apply({"params": inner, "state": {}}, x[:4]) @ dense["kernel"] + dense["bias"]
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-5, atol=1e-6)
    # gradients reach the netc parameters through the Flax module
    g = jax.grad(lambda p: jnp.sum(module.apply({"params": p}, x[:4]) ** 2))(fv["params"])
    assert any(float(jnp.abs(a).sum()) > 0 for a in jax.tree.leaves(g["netc"]))

    names = E.flat_names(v["params"])
    expected_names = {f"{leaf.name}/{p}": shape for leaf in model.net.leaves()
                      for p, shape in leaf.params.items()}
    assert names == expected_names
    assert E.count_params(v["params"]) == model.net.params


def test_freeze_all_but_the_head(setup):
    model, v, x, y = setup
    tx = E.freeze_all_but_last(v["params"])
    grads = E.my_grads(model, v, x[:32], y[:32])
    updates, _ = tx.update(grads, tx.init(v["params"]), v["params"])
    new = optax.apply_updates(v["params"], updates)
    for name in v["params"]:
        changed = any(not np.array_equal(new[name][k], v["params"][name][k])
                      for k in v["params"][name])
        assert changed == name.startswith("softmax"), name


def test_main_runs(capsys, monkeypatch):
    monkeypatch.setattr(E, "STEPS", 20)
    E.main()
    out = capsys.readouterr().out
    assert "vmap == batched: True" in out and "grad structure == params structure: True" in out
