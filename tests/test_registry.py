"""The layer registry (compiler/layers/): every kind is complete, and every kind is tested.

EXAMPLES holds one layer of every registered kind with its numpy reference
(tests/numpy_reference.py). A kind added to the registry without an entry here fails
test_every_kind_has_an_example; an entry for a kind that is not registered fails too. Each
example is then checked (parameter and state roles), lowered and compared with the
reference, so a kind whose lowering is missing or wrong cannot pass.
"""

from __future__ import annotations

import functools
import math
import subprocess
import sys

import jax
import netc
import numpy as np
import numpy_reference as R
import pytest
from netc.compiler import layers
from netc.compiler.layers import KINDS, ONES, WEIGHT, ZEROS, LayerKind, check_kind
from netc.compiler.model import Model

PAD1 = ((1, 1), (1, 1))


def dense_head(activation):
    return lambda x, p, s: activation(R.dense(x, p["kernel"], p["bias"]))


# kind -> (input shape, the layer as written, reference(x, params, state) -> y at inference)
EXAMPLES = {
    "conv": ((6, 7, 4), "conv f=3 s=2 p=1 c=6 groups=2",
             lambda x, p, s: R.grouped_conv2d(x, p["kernel"], p["bias"], (2, 2), PAD1, 2)),
    "dwconv": ((6, 7, 3), "dwconv f=3 s=2 p=1 m=2",
               lambda x, p, s: R.grouped_conv2d(x, p["kernel"], p["bias"], (2, 2), PAD1, 3)),
    "maxpool": ((6, 7, 2), "maxpool f=3 s=2 p=1",
                lambda x, p, s: R.maxpool(x, (3, 3), (2, 2), PAD1)),
    "avgpool": ((6, 7, 2), "avgpool f=3 s=2 p=1",
                lambda x, p, s: R.avgpool(x, (3, 3), (2, 2), PAD1)),
    "globalavgpool": ((3, 4, 2), "globalavgpool", lambda x, p, s: R.global_avgpool(x)),
    "globalmaxpool": ((3, 4, 2), "globalmaxpool", lambda x, p, s: x.max(axis=(1, 2))),
    "fc": ((2, 3, 2), "fc 5", lambda x, p, s: R.dense(x, p["kernel"], p["bias"])),
    "flatten": ((2, 3, 2), "flatten", lambda x, p, s: x.reshape(len(x), -1)),
    "relu": ((7,), "relu", lambda x, p, s: R.relu(x)),
    "relu6": ((7,), "relu6", lambda x, p, s: R.relu6(x)),
    "tanh": ((7,), "tanh", lambda x, p, s: R.tanh(x)),
    "leaky_relu": ((7,), "leaky_relu a=0.2", lambda x, p, s: R.leaky_relu(x, 0.2)),
    "elu": ((7,), "elu a=0.5", lambda x, p, s: R.elu(x, 0.5)),
    "gelu": ((7,), "gelu", lambda x, p, s: R.gelu_tanh(x)),
    "silu": ((7,), "silu", lambda x, p, s: R.silu(x)),
    "softmax": ((4,), "softmax 3", dense_head(R.softmax)),
    "sigmoid": ((4,), "sigmoid 2", dense_head(R.sigmoid)),
    "dropout": ((7,), "dropout keep=0.5", lambda x, p, s: x),
    "batchnorm": ((3, 3, 2), "batchnorm eps=0.001",
                  lambda x, p, s: R.batchnorm_eval(x, p["gamma"], p["beta"], s["mean"],
                                                   s["var"], eps=1e-3)),
}


def test_every_kind_has_an_example():
    assert set(EXAMPLES) == set(KINDS)


@functools.cache
def example(kind: str):
    in_shape, layer, _ = EXAMPLES[kind]
    net = netc.check(f"input {'x'.join(map(str, in_shape))}\n{layer}")
    return net, net.leaves()[0]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_is_complete(kind):
    record = KINDS[kind]
    check_kind(record, {})
    net, leaf = example(kind)
    assert leaf.kind == kind
    assert set(leaf.params) <= set(record.params)
    assert set(leaf.state) <= set(record.state)
    # the weights are the WEIGHT parameters the layer has: L2, init and freezing read them
    assert layers.weights_of(leaf) == tuple(p for p in leaf.params
                                            if record.params[p] == WEIGHT)
    assert len({a.name for a in record.args}) == len(record.args)
    assert record.doc


def random_variables(model, seed=0):
    """Every variable drawn at random (variances positive), from the abstract init."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0))

    def draw(path, a):
        if path[-1].key == "var":
            return rng.uniform(0.5, 2.0, a.shape).astype(np.float32)
        return rng.standard_normal(a.shape).astype(np.float32)
    return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_lowers_to_its_reference(kind):
    in_shape, layer, reference = EXAMPLES[kind]
    net, leaf = example(kind)
    model = Model(net)
    variables = random_variables(model)
    x = (2 * np.random.default_rng(1).standard_normal((3, *in_shape))).astype(np.float32)
    y = np.asarray(model.apply(variables, x))
    params = variables["params"].get(leaf.name, {})
    state = variables["state"].get(leaf.name, {})
    want = reference(x.astype(np.float64), {k: np.float64(v) for k, v in params.items()},
                     {k: np.float64(v) for k, v in state.items()})
    assert y.shape == want.shape == (3, *leaf.out_shape)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_starts_from_its_roles(kind):
    """Fresh variables: WEIGHT parameters drawn (he: std sqrt(2/fan_in)), the others 0 or 1."""
    net, leaf = example(kind)
    variables = Model(net).init(jax.random.key(0))
    record = KINDS[kind]
    for group, roles in (("params", record.params), ("state", record.state)):
        for name, shape in getattr(leaf, group).items():
            value = np.asarray(variables[group][leaf.name][name])
            assert value.shape == shape
            if roles[name] == ZEROS:
                assert not value.any(), name
            elif roles[name] == ONES:
                assert (value == 1).all(), name
            else:
                fan_in = layers.fans(shape)[0]
                assert 0 < np.abs(value).max() < 6 * math.sqrt(2 / fan_in), name


def without(record: LayerKind, **changes) -> LayerKind:
    import dataclasses

    return dataclasses.replace(record, **changes)


def test_an_incomplete_or_clashing_kind_is_refused():
    relu = KINDS["relu"]
    with pytest.raises(ValueError, match="has no lower"):
        check_kind(without(relu, name="new_relu", lower=None), KINDS)
    with pytest.raises(ValueError, match="has no infer"):
        check_kind(without(relu, name="new_relu", infer=None), KINDS)
    with pytest.raises(ValueError, match="roles"):
        check_kind(without(relu, name="new_relu", params={"kernel": "normal"}), KINDS)
    with pytest.raises(ValueError, match="relu already taken"):
        check_kind(relu, KINDS)
    with pytest.raises(ValueError, match="dense already taken"):
        check_kind(without(relu, name="new_relu", aliases=("dense",)), KINDS)
    check_kind(without(relu, name="new_relu"), KINDS)  # complete and new: accepted


def test_the_registry_and_checking_import_no_jax():
    layers_used = " -> ".join(layer for _, layer, _ in EXAMPLES.values()
                              if not layer.startswith(("global", "flatten", "fc", "softmax",
                                                       "sigmoid")))
    code = ("import sys, netc\n"
            f"net = netc.check('input 8x8x4\\n{layers_used} -> flatten -> fc 3 -> softmax 2')\n"
            "assert len(net.leaves()) > 10\n"
            "import netc.compiler.losses, netc.compiler.layers\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'optax')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
