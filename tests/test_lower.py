"""The lowering (compiler/lower.py, compiler/model.py) against tests/numpy_reference.py.

Every layer kind is built as spec text, given random parameters (not just the init) and run
on small random inputs; the float32 output must match the float64 numpy reference to
float32 tolerance: rtol = atol = 1e-5 (float32's unit roundoff is 6e-8; the sums here have
at most a few hundred O(1) terms, so their rounding error stays below ~1e-6).

Then: losses, L2, initialisers, the spec corpus (parameter/state counts, output shapes,
each leaf's lowering against the checker's shape, MACs against XLA's own flop count),
compilation caching and one ResNet-50 forward pass when that example exists.
"""

from __future__ import annotations

import functools
import glob
import json
import math
import os

import jax
import jax.numpy as jnp
import netc
import numpy as np
import numpy_reference as R
import optax
import pytest
from conftest import ROOT as REPO
from conftest import SHARED_SPECS as SHARED
from netc.compiler.layers import Context, Target, conv
from netc.compiler.lower import lower_leaf
from netc.compiler.model import Model

ROOT = str(REPO)
SHARED_SPECS = str(SHARED)
TOL = {"rtol": 1e-5, "atol": 1e-5}


# ---- helpers ----------------------------------------------------------------------------


def randomize(variables, seed=0, scale=0.5):
    """Random values for every variable: kernels/biases/beta N(0, scale^2), gamma 1 + N(0,
    0.3^2), running means N(0, 1), running variances U(0.5, 2)."""
    rng = np.random.default_rng(seed)

    def draw(path, a):
        name = path[-1].key
        shape = np.shape(a)
        if name == "var":
            v = rng.uniform(0.5, 2.0, shape)
        elif name == "gamma":
            v = 1.0 + 0.3 * rng.standard_normal(shape)
        elif name == "mean":
            v = rng.standard_normal(shape)
        else:
            v = scale * rng.standard_normal(shape)
        return jnp.asarray(v, a.dtype)

    return jax.tree_util.tree_map_with_path(draw, variables)


def dims(shape) -> str:
    return "x".join(map(str, shape))


def build(body: str, in_shape, m=2, seed=0, x=None):
    """(model, variables with random values, x, model.apply(variables, x) as numpy)."""
    model = netc.compile(f"input {dims(in_shape)}\n{body}")
    # random values on the abstract init: no XLA compilation of the initialisers needed
    variables = randomize(jax.eval_shape(model.init, jax.random.key(seed)), seed)
    if x is None:
        x = np.random.default_rng(seed + 100).standard_normal((m, *in_shape)).astype(np.float32)
    return model, variables, x, np.asarray(model.apply(variables, x))


def to_np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def pads(in_hw, f, s, p):
    """Reference padding ((top, bottom), (left, right)) for p = 'same' | int | (ph, pw)."""
    if p == "same":
        return tuple(R.same_padding(n, fi, si) for n, fi, si in zip(in_hw, f, s))
    ph, pw = (p, p) if isinstance(p, int) else p
    return ((ph, ph), (pw, pw))


# ---- conv -------------------------------------------------------------------------------

CONV_CASES = [
    # (input, spec, f, s, p)
    ((7, 9, 3), "conv f=3 s=2 p=same c=4", (3, 3), (2, 2), "same"),
    ((8, 6, 2), "conv f=3 s=2 p=same c=3", (3, 3), (2, 2), "same"),  # asymmetric (0, 1)
    ((6, 8, 2), "conv f=2 p=same c=3", (2, 2), (1, 1), "same"),  # even f: (0, 1)
    ((8, 8, 2), "conv f=4 s=2 p=same c=2", (4, 4), (2, 2), "same"),  # (1, 2)
    ((7, 9, 3), "conv f=3 s=3 p=same c=2", (3, 3), (3, 3), "same"),
    ((7, 9, 3), "conv f=3 c=4", (3, 3), (1, 1), 0),
    ((7, 9, 3), "conv f=3 s=2 p=valid c=2", (3, 3), (2, 2), 0),
    ((7, 9, 3), "conv f=3 s=2 p=1 c=4", (3, 3), (2, 2), 1),
    ((7, 9, 3), "conv2d f=5 p=2 c=3", (5, 5), (1, 1), 2),
    ((7, 9, 3), "conv f=1x3 p=same c=4", (1, 3), (1, 1), "same"),
    ((7, 9, 2), "conv f=3x2 s=2x1 p=2x1 c=3", (3, 2), (2, 1), (2, 1)),
    ((5, 5, 2), "conv f=5 c=3", (5, 5), (1, 1), 0),
    ((7, 9, 3), "conv f=3 c=4 bias=false", (3, 3), (1, 1), 0),
]


@pytest.mark.parametrize("in_shape, spec, f, s, p", CONV_CASES, ids=[c[1] for c in CONV_CASES])
def test_conv_matches_reference(in_shape, spec, f, s, p):
    model, v, x, y = build(spec, in_shape)
    params = to_np(v["params"]["conv_1"])
    assert ("bias" in params) == ("bias=false" not in spec)
    pad = pads(in_shape[:2], f, s, p)
    ref = R.conv2d(x, params["kernel"], params.get("bias"), stride=s, pad=pad)
    expected_hw = tuple(R.output_size(n, fi, si, *pi)
                        for n, fi, si, pi in zip(in_shape[:2], f, s, pad))
    assert ref.shape[1:3] == expected_hw
    if p == "same":
        assert expected_hw == tuple(-(-n // si) for n, si in zip(in_shape[:2], s))
    assert y.shape == ref.shape == (x.shape[0], *model.output_shape)
    np.testing.assert_allclose(y, ref, **TOL)


@pytest.mark.parametrize("layer", ["conv f=3 c=4", "fc 4"])
def test_no_bias_before_batchnorm(layer):
    in_shape = (6, 6, 2)
    model, v, x, y = build(f"{layer} -> bn", in_shape)
    name = layer.split()[0] + "_1"
    assert set(v["params"][name]) == {"kernel"}
    p, bn, st = (to_np(v["params"][name]), to_np(v["params"]["batchnorm_1"]),
                 to_np(v["state"]["batchnorm_1"]))
    z = R.conv2d(x, p["kernel"]) if layer.startswith("conv") else R.dense(x, p["kernel"])
    ref = R.batchnorm_eval(z, bn["gamma"], bn["beta"], st["mean"], st["var"])
    np.testing.assert_allclose(y, ref, **TOL)
    forced = netc.compile(f"input 6x6x2\n{layer} bias=true -> bn")
    assert set(jax.eval_shape(forced.init, jax.random.key(0))["params"][name]) == {"kernel",
                                                                                 "bias"}


# ---- pooling ----------------------------------------------------------------------------

POOL_CASES = [
    # (input, spec, f, s, p); inputs are negative for max and positive for avg, so padding
    # that won a max (a 0 instead of -inf) or counted in an average would show.
    ((7, 9, 3), "maxpool f=2", (2, 2), (2, 2), 0),
    ((7, 9, 3), "maxpool f=2 p=valid", (2, 2), (2, 2), 0),
    ((5, 5, 2), "maxpool f=3 s=2 p=1", (3, 3), (2, 2), 1),
    ((4, 6, 2), "maxpool f=3 s=1 p=same", (3, 3), (1, 1), "same"),
    ((5, 5, 2), "maxpool f=2 p=same", (2, 2), (2, 2), "same"),
    ((6, 7, 2), "maxpool f=2 s=1 p=same", (2, 2), (1, 1), "same"),
    ((6, 5, 2), "maxpool f=3x2 s=2x1", (3, 2), (2, 1), 0),
    ((7, 9, 3), "avgpool f=2", (2, 2), (2, 2), 0),
    ((5, 5, 2), "avgpool f=3 s=2 p=1", (3, 3), (2, 2), 1),
    ((4, 6, 2), "avgpool f=3 s=1 p=same", (3, 3), (1, 1), "same"),
    ((5, 5, 2), "avgpool f=2 p=same", (2, 2), (2, 2), "same"),
    ((6, 7, 2), "avgpool f=2 s=1 p=same", (2, 2), (1, 1), "same"),
    ((8, 8, 2), "avgpool f=3 s=2 p=same", (3, 3), (2, 2), "same"),
]


@pytest.mark.parametrize("in_shape, spec, f, s, p", POOL_CASES, ids=[c[1] for c in POOL_CASES])
def test_pool_matches_reference(in_shape, spec, f, s, p):
    rng = np.random.default_rng(1)
    is_max = spec.startswith("max")
    x = (np.abs(rng.standard_normal((2, *in_shape))) + 0.1).astype(np.float32)
    x = -x if is_max else x
    model, v, x, y = build(spec, in_shape, x=x)
    pad = pads(in_shape[:2], f, s, p)
    ref = (R.maxpool if is_max else R.avgpool)(x, f, s, pad)
    assert y.shape == ref.shape == (2, *model.output_shape)
    np.testing.assert_allclose(y, ref, **TOL)


def test_pool_corners_by_hand():
    """p=1, f=3, s=2 on 5x5: the corner window holds 4 real cells of 9."""
    x = -np.arange(1, 26, dtype=np.float32).reshape(1, 5, 5, 1)
    _, _, _, ymax = build("maxpool f=3 s=2 p=1", (5, 5, 1), x=x)
    _, _, _, yavg = build("avgpool f=3 s=2 p=1", (5, 5, 1), x=-x)
    assert ymax[0, 0, 0, 0] == -1.0  # max of -1, -2, -6, -7; a zero pad would give 0
    assert ymax[0, 2, 2, 0] == -19.0  # max of -19, -20, -24, -25
    assert yavg[0, 0, 0, 0] == pytest.approx((1 + 2 + 6 + 7) / 4)  # not / 9
    assert yavg[0, 0, 1, 0] == pytest.approx((2 + 3 + 4 + 7 + 8 + 9) / 6)
    assert yavg[0, 1, 1, 0] == pytest.approx(np.mean([7, 8, 9, 12, 13, 14, 17, 18, 19]))


@pytest.mark.parametrize("kind", ["globalavgpool", "gap", "globalmaxpool"])
def test_global_pools(kind):
    model, v, x, y = build(kind, (5, 7, 3))
    ref = R.global_avgpool(x) if kind != "globalmaxpool" else x.astype(np.float64).max((1, 2))
    assert y.shape == (2, 3) and model.output_shape == (3,)
    np.testing.assert_allclose(y, ref, **TOL)


# ---- fc, flatten, activations, heads ---------------------------------------------------


@pytest.mark.parametrize("in_shape, spec", [((3, 4, 2), "fc 5"), ((6,), "fc 4"),
                                            ((6,), "dense 4"), ((3, 4, 2), "fc 3 bias=false")])
def test_fc_matches_reference(in_shape, spec):
    model, v, x, y = build(spec, in_shape)
    p = to_np(v["params"]["fc_1"])
    assert p["kernel"].shape == (math.prod(in_shape), int(spec.split()[1]))
    np.testing.assert_allclose(y, R.dense(x, p["kernel"], p.get("bias")), **TOL)


def test_fc_flattens_row_major():
    """Kernel row (i*W + j)*C + c multiplies x[i, j, c], as x.reshape(m, -1) in the course."""
    model = netc.compile("input 3x4x2\nfc 1 bias=false")
    x = np.zeros((1, 3, 4, 2), np.float32)
    x[0, 2, 1, 1] = 1.0
    kernel = np.arange(24, dtype=np.float32).reshape(24, 1)
    y = model.apply({"params": {"fc_1": {"kernel": jnp.asarray(kernel)}}, "state": {}}, x)
    assert float(y[0, 0]) == (2 * 4 + 1) * 2 + 1


def test_flatten():
    model, v, x, y = build("flatten", (3, 4, 2))
    assert model.output_shape == (24,)
    np.testing.assert_array_equal(y, x.reshape(2, -1))
    m2, v2, _, y2 = build("flatten -> fc 3", (3, 4, 2))
    ref = R.dense(x, *map(np.asarray, (v2["params"]["fc_1"]["kernel"],
                                       v2["params"]["fc_1"]["bias"])))
    np.testing.assert_allclose(y2, ref, **TOL)


ACTIVATIONS = [
    ("relu", R.relu), ("tanh", R.tanh), ("sigmoid", R.sigmoid), ("softmax", R.softmax),
    ("leaky_relu a=0.2", functools.partial(R.leaky_relu, a=0.2)),
    ("leaky_relu", functools.partial(R.leaky_relu, a=0.01)),
    ("elu", R.elu), ("elu a=0.5", functools.partial(R.elu, a=0.5)),
    ("gelu", R.gelu_tanh), ("silu", R.silu), ("swish", R.silu),
]


@pytest.mark.parametrize("spec, ref", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
@pytest.mark.parametrize("in_shape", [(7,), (2, 3, 4)], ids=["vector", "image"])
def test_activation_matches_reference(spec, ref, in_shape):
    x = (3 * np.random.default_rng(2).standard_normal((3, *in_shape))).astype(np.float32)
    model, v, x, y = build(spec, in_shape, x=x)
    assert v["params"] == {} and model.output_shape == in_shape
    np.testing.assert_allclose(y, ref(x.astype(np.float64)), **TOL)


@pytest.mark.parametrize("in_shape, spec", [((5,), "softmax 4"), ((2, 2, 3), "softmax 4"),
                                            ((5,), "sigmoid 3"), ((2, 2, 3), "sigmoid 1")])
def test_heads_are_fc_then_activation(in_shape, spec):
    model, v, x, y = build(spec, in_shape)
    kind, units = spec.split()
    p = to_np(v["params"][f"{kind}_1"])
    assert p["kernel"].shape == (math.prod(in_shape), int(units))
    z = R.dense(x, p["kernel"], p["bias"])
    np.testing.assert_allclose(y, R.softmax(z) if kind == "softmax" else R.sigmoid(z), **TOL)
    if kind == "softmax":
        np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-6)


# ---- dropout ----------------------------------------------------------------------------


@pytest.mark.parametrize("spec, keep", [("dropout keep=0.8", 0.8), ("dropout rate=0.25", 0.75)])
def test_dropout(spec, keep):
    n = 1000
    x = (np.abs(np.random.default_rng(3).standard_normal((1, n))) + 0.5).astype(np.float32)
    model, v, x, y = build(spec, (n,), x=x)
    np.testing.assert_array_equal(y, x)  # inference: the identity

    def draw(key):
        return model.apply(v, x, train=True, rng=key)[0][0]

    keys = jax.random.split(jax.random.key(0), 400)
    ys = np.asarray(jax.vmap(draw)(keys))  # (400, n)
    kept = ys != 0
    # every value is 0 or x / keep
    np.testing.assert_allclose(ys[kept], np.broadcast_to(x[0] / keep, ys.shape)[kept],
                               rtol=1e-6)
    assert abs(kept.mean() - keep) < 0.005  # 400k Bernoulli(keep) draws: sd < 0.001
    # the expectation of inverted dropout is the input: per element, the mean of 400 draws
    # has sd x*sqrt((1-keep)/(keep*400)) <= 0.025x; 1000 elements stay within 6 sd
    np.testing.assert_allclose(ys.mean(0), x[0], rtol=0.15)
    assert abs(ys.mean() / x.mean() - 1) < 0.01
    # the same rng gives the same mask; another rng another one
    a, b = draw(jax.random.key(7)), draw(jax.random.key(7))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, draw(jax.random.key(8)))


def test_dropout_layers_draw_different_masks_and_need_an_rng():
    model = netc.compile("input 500\nconcat { dropout keep=0.5 | dropout keep=0.5 }")
    x = np.ones((1, 500), np.float32)
    y, _ = model.apply({"params": {}, "state": {}}, x, train=True, rng=jax.random.key(0))
    y = np.asarray(y)[0]
    assert not np.array_equal(y[:500] != 0, y[500:] != 0)
    with pytest.raises(ValueError, match="rng"):
        model.apply({"params": {}, "state": {}}, x, train=True)


# ---- batch norm -------------------------------------------------------------------------


@pytest.mark.parametrize("in_shape, spec, momentum, eps", [
    ((4, 5, 3), "bn", 0.9, 1e-5),
    ((6,), "batchnorm momentum=0.8 eps=0.001", 0.8, 1e-3),
])
def test_batchnorm_train_and_inference(in_shape, spec, momentum, eps):
    x = (2 + 3 * np.random.default_rng(4).standard_normal((8, *in_shape))).astype(np.float32)
    model, v, x, y_inf = build(spec, in_shape, x=x)
    p, st = to_np(v["params"]["batchnorm_1"]), to_np(v["state"]["batchnorm_1"])
    assert set(v["params"]["batchnorm_1"]) == {"gamma", "beta"}
    assert set(v["state"]["batchnorm_1"]) == {"mean", "var"}
    ref = R.batchnorm_eval(x, p["gamma"], p["beta"], st["mean"], st["var"], eps=eps)
    np.testing.assert_allclose(y_inf, ref, **TOL)

    y, new_state = model.apply(v, x, train=True)
    ref, mean, var = R.batchnorm_train(x, p["gamma"], p["beta"], st["mean"], st["var"],
                                       momentum=momentum, eps=eps)
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(new_state["batchnorm_1"]["mean"]), mean, **TOL)
    np.testing.assert_allclose(np.asarray(new_state["batchnorm_1"]["var"]), var, **TOL)


# ---- blocks -----------------------------------------------------------------------------


def test_residual_identity():
    model, v, x, y = build(
        "residual { conv f=3 p=same c=3 -> relu -> conv f=3 p=same c=3 } -> relu", (5, 5, 3))
    p = to_np(v["params"])
    assert set(p) == {"residual_1/conv_1", "residual_1/conv_2"}
    same = ((1, 1), (1, 1))
    a = R.relu(R.conv2d(x, p["residual_1/conv_1"]["kernel"], p["residual_1/conv_1"]["bias"],
                        pad=same))
    z = R.conv2d(a, p["residual_1/conv_2"]["kernel"], p["residual_1/conv_2"]["bias"], pad=same)
    np.testing.assert_allclose(y, R.relu(z + x), **TOL)


def test_residual_explicit_shortcut():
    model, v, x, y = build(
        "residual { conv f=3 s=2 p=same c=4 } shortcut { avgpool f=2 -> conv f=1 c=4 }",
        (6, 6, 3))
    p = to_np(v["params"])
    assert set(p) == {"residual_1/conv_1", "residual_1/conv_2"}
    body = R.conv2d(x, p["residual_1/conv_1"]["kernel"], p["residual_1/conv_1"]["bias"],
                    stride=2, pad=pads((6, 6), (3, 3), (2, 2), "same"))
    short = R.conv2d(R.avgpool(x, 2, 2), p["residual_1/conv_2"]["kernel"],
                     p["residual_1/conv_2"]["bias"])
    np.testing.assert_allclose(y, body + short, **TOL)


@pytest.mark.parametrize("in_shape, stride", [((7, 7, 3), 2), ((9, 6, 2), 3)])
def test_residual_automatic_projection(in_shape, stride):
    model, v, x, y = build(f"residual {{ conv f=3 s={stride} p=same c=5 }}", in_shape)
    p = to_np(v["params"])
    ws = p["residual_1/projection"]
    assert ws["kernel"].shape == (1, 1, in_shape[2], 5) and ws["bias"].shape == (5,)
    pad = pads(in_shape[:2], (3, 3), (stride, stride), "same")
    body = R.conv2d(x, p["residual_1/conv_1"]["kernel"], p["residual_1/conv_1"]["bias"],
                    stride=stride, pad=pad)
    short = R.conv2d(x, ws["kernel"], ws["bias"], stride=stride)
    assert body.shape == short.shape
    np.testing.assert_allclose(y, body + short, **TOL)
    names = [leaf.name for leaf in model.net.leaves()]
    assert names == ["residual_1/conv_1", "residual_1/projection"]


def test_residual_vector_projection():
    model, v, x, y = build("residual { fc 4 -> relu }", (6,))
    p = to_np(v["params"])
    body = R.relu(R.dense(x, p["residual_1/fc_1"]["kernel"], p["residual_1/fc_1"]["bias"]))
    ref = body + R.dense(x, p["residual_1/projection"]["kernel"],
                         p["residual_1/projection"]["bias"])
    np.testing.assert_allclose(y, ref, **TOL)


def test_concat_joins_branches_on_channels_in_order():
    model, v, x, y = build(
        "concat { conv f=1 c=2 | conv f=3 p=same c=3 -> relu | maxpool f=3 s=1 p=same }",
        (5, 5, 3))
    p = to_np(v["params"])
    assert set(p) == {"concat_1/conv_1", "concat_1/conv_2"}
    b1 = R.conv2d(x, p["concat_1/conv_1"]["kernel"], p["concat_1/conv_1"]["bias"])
    b2 = R.relu(R.conv2d(x, p["concat_1/conv_2"]["kernel"], p["concat_1/conv_2"]["bias"],
                         pad=((1, 1), (1, 1))))
    b3 = R.maxpool(x, 3, 1, ((1, 1), (1, 1)))
    assert model.output_shape == (5, 5, 8)
    np.testing.assert_allclose(y, np.concatenate([b1, b2, b3], axis=-1), **TOL)


def test_repeat_and_def_names_counts_and_forward():
    spec = ("def blk(n, k=2) { fc units=n*k -> relu -> fc n }\n"
            "repeat 2 { blk(3) -> tanh } -> blk(2, k=3) as last -> sigmoid 2")
    model, v, x, y = build(spec, (6,))
    p = to_np(v["params"])
    shapes = {name: tuple(q["kernel"].shape) for name, q in p.items()}
    assert shapes == {"blk_1/fc_1": (6, 6), "blk_1/fc_2": (6, 3), "blk_2/fc_1": (3, 6),
                      "blk_2/fc_2": (6, 3), "last/fc_1": (3, 6), "last/fc_2": (6, 2),
                      "sigmoid_1": (2, 2)}
    count = sum(a.size for a in jax.tree.leaves(v["params"]))
    assert count == model.net.params == 36 + 6 + 18 + 3 + 18 + 6 + 18 + 3 + 18 + 6 + 12 + 2 + 6
    # each copy has its own parameters
    fresh = model.init(jax.random.key(0))["params"]
    assert not np.allclose(fresh["blk_2/fc_2"]["kernel"], fresh["blk_1/fc_2"]["kernel"])

    def blk(a, name):
        h = R.relu(R.dense(a, p[f"{name}/fc_1"]["kernel"], p[f"{name}/fc_1"]["bias"]))
        return R.dense(h, p[f"{name}/fc_2"]["kernel"], p[f"{name}/fc_2"]["bias"])

    a = np.tanh(blk(np.tanh(blk(x, "blk_1")), "blk_2"))
    ref = R.sigmoid(R.dense(blk(a, "last"), p["sigmoid_1"]["kernel"], p["sigmoid_1"]["bias"]))
    np.testing.assert_allclose(y, ref, **TOL)


# ---- losses and L2 ----------------------------------------------------------------------


def cost(model, v, x, y, **kw):
    return float(model.loss(v["params"], v["state"], x, y, train=False, **kw)[0])


def test_cross_entropy_with_ids_and_one_hot_rows():
    model, v, x, probs = build("fc 6 -> relu -> softmax 4", (5,), m=6)
    ids = np.array([0, 3, 1, 2, 3, 0])
    ref = R.cross_entropy(probs.astype(np.float64), ids)
    assert cost(model, v, x, ids) == pytest.approx(ref, rel=1e-5)
    assert cost(model, v, x, np.eye(4, dtype=np.float32)[ids]) == pytest.approx(ref, rel=1e-5)
    soft = np.random.default_rng(0).dirichlet(np.ones(4), 6).astype(np.float32)
    assert cost(model, v, x, soft) == pytest.approx(R.cross_entropy(probs, soft), rel=1e-5)


def test_binary_cross_entropy_leaves_out_nan_labels():
    model, v, x, probs = build("sigmoid 3", (5,), m=4)
    y = np.array([[1, 0, np.nan], [np.nan, np.nan, 1], [0, 1, 1], [np.nan, 0, np.nan]],
                 np.float32)
    ref = R.binary_cross_entropy(probs.astype(np.float64), y)
    assert cost(model, v, x, y) == pytest.approx(ref, rel=1e-5)
    grads = model.loss_and_grad(v["params"], v["state"], x, y, None)[1]
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_mse_and_explicit_loss():
    model, v, x, out = build("fc 4 -> tanh -> fc 3", (5,), m=4)
    y = np.random.default_rng(5).standard_normal((4, 3)).astype(np.float32)
    assert model.loss_name == "mse"
    assert cost(model, v, x, y) == pytest.approx(R.mse(out, y), rel=1e-5)
    # loss mse after a sigmoid head: on the probabilities, not the logits
    model, v, x, probs = build("sigmoid 3\ntrain { loss mse }", (5,), m=4)
    assert cost(model, v, x, y) == pytest.approx(R.mse(probs, y), rel=1e-5)


L2_BODY = ("conv f=3 c=3 -> bn -> relu -> residual { conv f=3 s=2 p=same c=4 } -> relu "
           "-> fc 5 -> relu -> softmax 3")


def test_l2_is_lambda_over_2m_times_squared_kernels_only():
    with_l2 = netc.compile(f"input 6x6x2\n{L2_BODY}\ntrain {{ l2 0.7 }}")
    without = netc.compile(f"input 6x6x2\n{L2_BODY}")
    # big biases and BN parameters: counting them would show
    v = randomize(jax.eval_shape(without.init, jax.random.key(0)), scale=1.5)
    m = 5
    x = np.random.default_rng(6).standard_normal((m, 6, 6, 2)).astype(np.float32)
    y = np.array([0, 1, 2, 1, 0])
    kernels = ["conv_1", "residual_1/conv_1", "residual_1/projection", "fc_1", "softmax_1"]
    p = to_np(v["params"])
    assert {n for n in p if "kernel" in p[n]} == set(kernels)
    expected = R.l2_cost([p[n]["kernel"] for n in kernels], 0.7, m)
    diff = cost(with_l2, v, x, y) - cost(without, v, x, y)
    assert diff == pytest.approx(expected, rel=1e-4)
    # its gradient: (lambda/m) W on kernels, nothing on biases, gamma or beta
    def grads(model):
        return jax.jit(jax.grad(lambda p: model.loss(p, v["state"], x, y, train=False)[0]))(
            v["params"])

    g1, g0 = grads(with_l2), grads(without)
    for name, leaves in p.items():
        for pname, value in leaves.items():
            d = np.asarray(g1[name][pname]) - np.asarray(g0[name][pname])
            want = 0.7 / m * value if pname == "kernel" else np.zeros_like(value)
            np.testing.assert_allclose(d, want, rtol=1e-4, atol=1e-5, err_msg=f"{name}.{pname}")


def test_loss_and_grad_accepts_the_loss_keywords():
    model = netc.compile("input 3\nfc 2 -> bn -> softmax 2")
    v = model.init(jax.random.key(0))
    x, y = np.zeros((2, 3), np.float32), np.array([0, 1])
    v = randomize(model.init(jax.random.key(0)))
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    (cost, (state, _)), _ = model.loss_and_grad(v["params"], v["state"], x, y, None,
                                                train=False)
    # inference mode leaves the running statistics alone; training moves them
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(v["state"])):
        np.testing.assert_array_equal(a, b)
    (_, (moved, _)), _ = model.loss_and_grad(v["params"], v["state"], x, y, None, train=True)
    assert not np.allclose(moved["batchnorm_1"]["mean"], v["state"]["batchnorm_1"]["mean"])
    # l2= overrides the spec's lambda: J + (lambda / 2m) * sum of squared kernels
    (with_l2, _), _ = model.loss_and_grad(v["params"], v["state"], x, y, None, train=False,
                                          l2=0.5)
    kernels = [np.asarray(v["params"][k]["kernel"], np.float64) for k in ("fc_1", "softmax_1")]
    np.testing.assert_allclose(with_l2 - cost, R.l2_cost(kernels, 0.5, 2), rtol=1e-5)


# ---- initialisers ---------------------------------------------------------------------

INIT_CASES = [  # (init setting or layer option, expected std as a function of (fan_in, fan_out))
    ("he", lambda i, o: math.sqrt(2 / i)),
    ("xavier", lambda i, o: math.sqrt(1 / i)),
    ("glorot", lambda i, o: math.sqrt(2 / (i + o))),
    ("random", lambda i, o: 0.01),
    ("random scale=0.05", lambda i, o: 0.05),
    ("zeros", lambda i, o: 0.0),
]


@pytest.mark.parametrize("init, std", INIT_CASES, ids=[c[0] for c in INIT_CASES])
def test_initialisers_by_statistics(init, std):
    src = ("input 6x6x64\nconv f=3 c=256 -> bn -> flatten -> fc 400 -> fc 300 init=xavier"
           f"\ntrain {{ init {init} }}")
    model = netc.compile(src)
    v = model.init(jax.random.key(1))
    conv, fc = np.asarray(v["params"]["conv_1"]["kernel"]), v["params"]["fc_1"]
    for kernel, (fan_in, fan_out) in [(conv, (9 * 64, 9 * 256)),
                                      (np.asarray(fc["kernel"]), (4096, 400))]:
        want = std(fan_in, fan_out)
        assert kernel.std() == pytest.approx(want, rel=0.02, abs=1e-12)  # n >= 147k: sd 0.2%
        assert abs(kernel.mean()) <= 4 * want / math.sqrt(kernel.size) + 1e-12
    np.testing.assert_array_equal(fc["bias"], 0)
    np.testing.assert_array_equal(v["params"]["batchnorm_1"]["gamma"], 1)
    np.testing.assert_array_equal(v["params"]["batchnorm_1"]["beta"], 0)
    np.testing.assert_array_equal(v["state"]["batchnorm_1"]["mean"], 0)
    np.testing.assert_array_equal(v["state"]["batchnorm_1"]["var"], 1)
    # a layer's own init= wins over the train setting
    own = np.asarray(v["params"]["fc_2"]["kernel"])
    assert own.std() == pytest.approx(math.sqrt(1 / 400), rel=0.02)


def test_layer_init_option_and_independent_keys():
    model = netc.compile("input 300\nfc 300 init=random -> fc 300 init=zeros -> fc 300 "
                         "-> fc 300 init=glorot")
    p = model.init(jax.random.key(0))["params"]
    assert np.asarray(p["fc_1"]["kernel"]).std() == pytest.approx(0.01, rel=0.02)
    np.testing.assert_array_equal(p["fc_2"]["kernel"], 0)
    assert np.asarray(p["fc_3"]["kernel"]).std() == pytest.approx(math.sqrt(2 / 300), rel=0.02)
    assert np.asarray(p["fc_4"]["kernel"]).std() == pytest.approx(math.sqrt(2 / 600), rel=0.02)
    a, b = np.asarray(p["fc_3"]["kernel"]), np.asarray(p["fc_4"]["kernel"])
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.02  # different keys per layer
    again = model.init(jax.random.key(0))["params"]
    np.testing.assert_array_equal(again["fc_3"]["kernel"], p["fc_3"]["kernel"])
    other = model.init(jax.random.key(1))["params"]
    assert not np.array_equal(other["fc_3"]["kernel"], p["fc_3"]["kernel"])


# ---- the spec corpus: counts, shapes, per-leaf lowering, MACs vs XLA ---------------------


def _spec_files():
    files = sorted(glob.glob(os.path.join(SHARED_SPECS, "*.net")))
    files += sorted(glob.glob(os.path.join(ROOT, "examples", "**", "*.net"), recursive=True))
    return files


SPEC_FILES = _spec_files()
SPEC_PARAMS = [pytest.param(f, id=os.path.relpath(f, os.path.dirname(ROOT)))
               for f in SPEC_FILES] or [
    pytest.param(None, marks=pytest.mark.skip(reason="no spec files found"))]


def _size(tree) -> int:
    return sum(math.prod(a.shape) for a in jax.tree.leaves(tree))


@pytest.mark.parametrize("path", SPEC_PARAMS)
def test_spec_counts_and_shapes(path):
    net = netc.check(path)
    model = netc.compile(path)
    shapes = jax.eval_shape(model.init, jax.random.key(0))  # no memory for VGG's 138M
    assert _size(shapes["params"]) == net.params
    assert _size(shapes["state"]) == net.state
    assert {name for name in shapes["params"]} == {x.name for x in net.leaves() if x.params}
    for leaf in net.leaves():
        for pname, shape in leaf.params.items():
            assert shapes["params"][leaf.name][pname].shape == shape
    expected_file = os.path.join(os.path.dirname(path), "expected.json")
    if os.path.exists(expected_file):
        with open(expected_file) as fh:
            expected = json.load(fh).get(net.name)
        if expected is not None and os.path.dirname(path) == SHARED_SPECS:
            assert (net.params, net.state, list(net.output_shape)) == (
                expected["params"], expected["state"], expected["output"])
    x = jax.ShapeDtypeStruct((2, *net.input_shape), jnp.float32)
    out = jax.eval_shape(model.apply, shapes, x)
    assert out.shape == (2, *net.output_shape)
    out, state = jax.eval_shape(functools.partial(model.apply, train=True,
                                                  rng=jax.random.key(0)), shapes, x)
    assert out.shape == (2, *net.output_shape)
    assert jax.tree.map(lambda a: a.shape, state) == jax.tree.map(lambda a: a.shape,
                                                                 shapes["state"])


def _leaf_output_shape(leaf):
    """Run one leaf's lowering abstractly on (2, *in_shape) and return its output shape."""
    forward = lower_leaf(leaf, Target(jax.default_backend()))
    f32 = jnp.float32
    params = {leaf.name: {k: jax.ShapeDtypeStruct(s, f32) for k, s in leaf.params.items()}}
    state = {leaf.name: {k: jax.ShapeDtypeStruct(s, f32) for k, s in leaf.state.items()}}

    def run(params, state, x):
        return forward(Context(False, None, f32), x, params, state)[0]

    x = jax.ShapeDtypeStruct((2, *leaf.in_shape), f32)
    return jax.eval_shape(run, params, state, x).shape[1:]


@pytest.mark.parametrize("path", SPEC_PARAMS)
def test_spec_every_leaf_lowering_agrees_with_the_checker(path):
    net = netc.check(path)
    for leaf in net.leaves():
        assert _leaf_output_shape(leaf) == leaf.out_shape, leaf.name


CHAINS = {  # one-line chains without blocks, compiled prefix by prefix
    "card": ("28x28x1", "conv f=3 s=1 p=same c=10 -> relu -> maxpool f=2 -> fc 120 "
             "-> softmax 10"),
    "lenet": ("32x32x1", "conv f=5 c=6 -> tanh -> avgpool f=2 -> conv f=5 c=16 -> tanh "
              "-> avgpool f=2 -> fc 120 -> tanh -> fc 84 -> softmax 10"),
    "digits": ("8x8x1", "conv f=3 p=same c=16 -> bn -> relu -> maxpool f=2 -> conv f=3 s=2 "
               "p=same c=32 -> avgpool f=3 s=1 p=1 -> flatten -> dropout keep=0.8 -> sigmoid 3"),
    "odd": ("7x9x3", "conv f=1x3 s=2 p=same c=4 -> maxpool f=3 s=2 p=1 -> globalmaxpool "
            "-> leaky_relu a=0.2 -> fc 5 -> bn -> gelu -> softmax 2"),
}


@pytest.mark.parametrize("name", list(CHAINS))
def test_per_layer_shapes_by_prefix(name):
    in_shape, chain = CHAINS[name]
    parts = [p.strip() for p in chain.split("->")]
    leaves = netc.check(f"input {in_shape}\n{chain}").leaves()
    assert len(leaves) == len(parts)
    for k in range(1, len(parts) + 1):
        model = netc.compile(f"input {in_shape}\n{' -> '.join(parts[:k])}")
        shapes = jax.eval_shape(model.init, jax.random.key(0))
        x = jax.ShapeDtypeStruct((3, *model.input_shape), jnp.float32)
        out = jax.eval_shape(model.apply, shapes, x)
        assert out.shape[1:] == leaves[k - 1].out_shape == model.output_shape, parts[k - 1]


def _in_bounds_taps(n, f, s, lo, out):
    """Sum over output positions of the window taps that fall on real (unpadded) cells."""
    return sum(sum(1 for k in range(f) if 0 <= o * s - lo + k < n) for o in range(out))


def real_macs(leaf) -> int:
    """The MACs of conv/fc leaves counting only taps on real cells (what XLA counts)."""
    if leaf.kind not in ("conv", "dwconv"):
        return leaf.macs
    (h, w, c_in), (ho, wo, c_out) = leaf.in_shape, leaf.out_shape
    (fh, fw), (sh, sw) = leaf.attrs["f"], leaf.attrs["s"]
    (top, _), (left, _) = leaf.attrs["padding"]
    groups = leaf.attrs["groups"]  # a dwconv's are its input channels
    return _in_bounds_taps(h, fh, sh, top, ho) * _in_bounds_taps(w, fw, sw, left, wo) * (
        c_in // groups * c_out)


def flop_allowance(leaf) -> int:
    """An upper bound on the flops a leaf adds beyond 2 MACs: (f*f + 1) per pooled output,
    one per input of a global pool (+1 per output), 8 per output element otherwise (bias add,
    activation, batch norm's scale and shift, softmax's max/sub/sum/div)."""
    out, inp = math.prod(leaf.out_shape), math.prod(leaf.in_shape)
    if leaf.kind in ("maxpool", "avgpool"):
        return (math.prod(leaf.attrs["f"]) + 1) * out
    if leaf.kind in ("globalavgpool", "globalmaxpool"):
        return inp + out
    if leaf.kind in ("flatten", "dropout"):
        return 0
    return 8 * out


@functools.cache
def _compiled(path):
    """(model, XLA executable of jit(apply) at batch 1): compiled once per file."""
    model = netc.compile(path)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct((1, *model.input_shape), jnp.float32)
    return model, jax.jit(model.apply).lower(shapes, x).compile()


def _flops(compiled) -> float:
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):
        ca = ca[0]
    return float(ca["flops"])


@pytest.mark.parametrize("path", SPEC_PARAMS)
def test_macs_against_xla_cost_analysis(path):
    """XLA counts 2 flops per multiply-accumulate but skips taps that land on padding, so
    2 * real_MACs <= flops <= 2 * real_MACs + allowance, where real_MACs <= netc's MACs and
    equals it for unpadded convs and every fc. A MAC count off by one layer's worth, or an
    XLA program doing extra work, falls outside."""
    if path.endswith("resnet50.net"):
        pytest.skip("compiled once, in test_resnet50_forward")
    net = netc.check(path)
    _, compiled = _compiled(path)
    flops = _flops(compiled)
    real = sum(real_macs(leaf) for leaf in net.leaves())
    allowance = sum(flop_allowance(leaf) for leaf in net.leaves())
    assert real <= net.macs
    for leaf in net.leaves():
        if leaf.kind == "conv" and leaf.attrs["padding"] == ((0, 0), (0, 0)):
            assert real_macs(leaf) == leaf.macs
    assert 2 * real <= flops <= 2 * real + allowance, (net.macs, real, flops, allowance)


def test_macs_of_one_unpadded_conv_are_exactly_half_of_xla_flops():
    path_free = "input 10x10x8\nconv f=3 c=16 bias=false"
    net = netc.check(path_free)
    model = netc.compile(path_free)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    compiled = jax.jit(model.apply).lower(
        shapes, jax.ShapeDtypeStruct((1, 10, 10, 8), jnp.float32)).compile()
    assert net.macs == 8 * 8 * 16 * 9 * 8
    assert _flops(compiled) == 2 * net.macs


# ---- compilation caching --------------------------------------------------------------


def test_compile_cache_and_no_retracing():
    src = "input 4x4x1\nconv f=3 p=same c=2 -> relu -> fc 3 -> softmax 3"
    model = netc.compile(src)
    assert netc.compile(src) is model
    assert netc.compile(src + "\n") is not model  # another text, another model
    v = model.init(jax.random.key(0))
    x = np.zeros((5, 4, 4, 1), np.float32)
    before = model.traces
    model.predict(v, x)
    model.predict(v, x + 1)
    assert model.traces == before + 1
    model.predict(v, np.zeros((7, 4, 4, 1), np.float32))  # a new batch size traces again
    assert model.traces == before + 2
    model.predict(v, x)
    assert model.traces == before + 2


def test_train_step_traces_once():
    model = netc.compile("input 6\nfc 8 -> relu -> dropout keep=0.9 -> bn -> sigmoid 2")
    tx = optax.adam(1e-3)
    v = model.init(jax.random.key(0))
    params, state, opt_state = v["params"], v["state"], tx.init(v["params"])
    step = model.train_step(tx)
    rng = np.random.default_rng(0)
    before = model.traces
    costs = []
    for i in range(3):
        x = rng.standard_normal((16, 6)).astype(np.float32)
        y = (rng.random((16, 2)) < 0.5).astype(np.float32)
        params, state, opt_state, c, metrics = step(params, state, opt_state, x, y,
                                                    jax.random.key(i))
        costs.append(float(c))
    assert model.traces == before + 1
    assert all(np.isfinite(costs))  # sigmoid 2: two tasks, each with its own sums
    assert set(metrics) == {"hits", "counted", "task_hits", "task_known"}
    assert not np.allclose(state["batchnorm_1"]["mean"], 0)  # the running stats moved


# ---- ResNet-50, once -------------------------------------------------------------------

RESNET50 = os.path.join(ROOT, "examples", "zoo", "resnet50.net")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(RESNET50), reason="examples/zoo/resnet50.net not written")
def test_resnet50_forward():
    """One batch-1 forward pass on CPU (one XLA compile, ~10-20 s), plus the MACs check."""
    model, compiled = _compiled(RESNET50)
    net = model.net
    assert net.output_shape == (1000,)
    v = model.init(jax.random.key(0))
    x = np.random.default_rng(0).standard_normal((1, *net.input_shape)).astype(np.float32)
    y = np.asarray(compiled(v, x))
    assert y.shape == (1, 1000)
    assert np.isfinite(y).all() and (y >= 0).all()
    assert float(y.sum()) == pytest.approx(1.0, abs=1e-4)
    real = sum(real_macs(leaf) for leaf in net.leaves())
    allowance = sum(flop_allowance(leaf) for leaf in net.leaves())
    assert 2 * real <= _flops(compiled) <= 2 * real + allowance


# ---- conv as one matmul over patches (im2col), chosen on CPU for few input channels ----


@pytest.mark.parametrize(("in_shape", "layer"), [
    ((9, 9, 1), "conv f=3 c=4"),
    ((10, 7, 3), "conv f=3 s=2 p=same c=5"),
    ((11, 11, 6), "conv f=5 s=2 p=1 c=16"),
    ((8, 8, 2), "conv f=1x3 s=1x2 p=same c=3 bias=false"),
    ((12, 12, 20), "conv f=3 s=3 p=same c=4"),   # more channels than the im2col limit
    ((7, 9, 4), "conv f=4 s=3 c=2"),             # strides that skip the last cells
    ((20, 20, 8), "conv f=5 p=same c=4"),        # patches as rows (200 values, 400 positions)
    ((24, 22, 3), "conv f=6x5 s=1x2 p=1x3 c=5"),  # rows: 90 values, 21x12 positions
])
def test_conv_lowerings_agree_in_values_and_gradients(in_shape, layer):
    """The im2col lowering and lax.conv_general_dilated give the same outputs and gradients
    for strides, SAME/explicit/asymmetric padding and non-square windows."""
    model, variables, x, _ = build(layer, in_shape, m=3)
    node = model.net.leaves()[0]
    direct, as_matmul = conv.conv_direct(node), conv.conv_im2col(node)
    ctx = Context(False, None, jnp.float32)

    def loss(params, lowering, x):
        return jnp.sum(jnp.sin(lowering(ctx, x, params[node.name], {})))

    params = variables["params"]
    for lowering in (direct, as_matmul):
        assert lowering(ctx, x, params[node.name], {}).shape == (3, *node.out_shape)
    want = jax.grad(loss, argnums=(0, 2))(params, direct, x)
    got = jax.grad(loss, argnums=(0, 2))(params, as_matmul, x)
    np.testing.assert_allclose(as_matmul(ctx, x, params[node.name], {}),
                               direct(ctx, x, params[node.name], {}), **TOL)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_im2col_is_chosen_only_for_few_channels_ungrouped_on_cpu():
    def chosen(spec, platform="cpu"):
        leaf = netc.check(spec).leaves()[0]
        return conv.conv_as_matmul(leaf, platform)

    assert conv.IM2COL_MAX_CHANNELS >= 3
    assert chosen("input 8x8x3\nconv f=3 c=4")
    assert not chosen("input 8x8x3\nconv f=3 c=4", platform="gpu")
    assert not chosen("input 8x8x9\nconv f=3 c=4")              # too many channels
    assert not chosen("input 224x224x3\nconv f=7 s=2 p=3 c=64")  # too many positions
    assert not chosen("input 8x8x4\nconv f=3 c=4 groups=2")     # grouped: direct only
    assert not chosen("input 8x8x4\ndwconv f=3")


def test_im2col_puts_the_positions_last_for_short_rows_or_few_patch_values():
    """The layout chosen per conv (benchmarks/FINDINGS.md's table of 20 shapes): positions
    last for LeNet-5's convs, rows of patches for long rows over many positions."""
    def positions_last(spec):
        return conv.patches_positions_last(netc.check(spec).leaves()[0])

    assert positions_last("input 32x32x1\nconv f=5 c=6")      # a row of 25 values
    assert positions_last("input 14x14x6\nconv f=5 c=16")     # 150 values x 100 positions
    assert positions_last("input 64x64x3\nconv f=3 p=same c=16")  # 27 values
    assert not positions_last("input 32x32x4\nconv f=5 p=same c=16")  # 100 x 1,024
    assert not positions_last("input 16x16x8\nconv f=3 p=same c=16")  # 72 x 256


def test_the_model_lowers_for_its_platform():
    """The lowering is picked for the Model's platform, which is part of the cache key."""
    net = netc.check("input 8x8x3\nconv f=3 c=4")
    cpu = Model(net, platform="cpu")
    gpu = Model(net, platform="gpu")
    variables = cpu.init(jax.random.key(0))
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
    # both run here (the gpu lowering is plain lax.conv), and agree
    np.testing.assert_allclose(cpu.apply(variables, x), gpu.apply(variables, x), **TOL)
    program = {m.platform: str(jax.make_jaxpr(m.apply)(variables, x)) for m in (cpu, gpu)}
    assert "conv_general_dilated" not in program["cpu"]  # im2col: a matmul over patches
    assert "conv_general_dilated" in program["gpu"]
