"""Grouped convolutions (`conv ... groups=G`) and depthwise convolutions (`dwconv`), against
LANGUAGE.md section 7: numpy references for values and gradients, Flax's
nn.Conv(feature_group_count=...) given the same kernels, the course's gradient check, the
contract's parameter and MAC formulas, initialisation fan-in and the shape errors."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import netc
import numpy as np
import numpy_reference as R
import pytest
from netc.dsl.diagnostics import SpecError
from netc.runtime import gradcheck as G

# (input, layer, groups given to the reference, stride, padding)
CASES = [
    ((6, 7, 4), "conv f=3 c=6 groups=2", 2, (1, 1), ((0, 0), (0, 0))),
    ((6, 7, 6), "conv f=3 s=2 p=1 c=9 groups=3 bias=false", 3, (2, 2), ((1, 1), (1, 1))),
    ((5, 5, 4), "conv f=1 c=8 groups=4", 4, (1, 1), ((0, 0), (0, 0))),
    ((6, 7, 3), "dwconv f=3", 3, (1, 1), ((0, 0), (0, 0))),
    ((6, 7, 3), "dwconv f=3 s=2 p=same m=2", 3, (2, 2), ((0, 1), (1, 1))),
    ((5, 6, 2), "dwconv f=2x3 p=1 m=3 bias=false", 2, (1, 1), ((1, 1), (1, 1))),
]
IDS = [c[1] for c in CASES]


def build(in_shape, layer, seed=0):
    model = netc.compile(f"input {'x'.join(map(str, in_shape))}\n{layer}")
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    variables = jax.tree.map(lambda a: rng.standard_normal(a.shape).astype(np.float32), shapes)
    x = rng.standard_normal((2, *in_shape)).astype(np.float32)
    name = model.net.leaves()[0].name
    return model, variables, variables["params"][name], x


@pytest.mark.parametrize("in_shape, layer, groups, stride, pad", CASES, ids=IDS)
def test_values_match_the_numpy_reference(in_shape, layer, groups, stride, pad):
    model, variables, p, x = build(in_shape, layer)
    want = R.grouped_conv2d(x, p["kernel"], p.get("bias"), stride, pad, groups)
    np.testing.assert_allclose(model.apply(variables, x), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("in_shape, layer, groups, stride, pad", CASES, ids=IDS)
def test_gradients_match_finite_differences_of_the_numpy_reference(in_shape, layer, groups,
                                                                   stride, pad):
    """d/dW sum(sin(conv(x, W))) by backprop through netc's lowering, against two-sided
    differences of the numpy reference (float64), on a sample of kernel entries."""
    model, variables, p, x = build(in_shape, layer)
    name = model.net.leaves()[0].name

    def cost(kernel):
        params = {name: {**variables["params"][name], "kernel": kernel}}
        return jnp.sum(jnp.sin(model.apply({"params": params, "state": {}}, x)))

    grad = np.asarray(jax.grad(cost)(jnp.asarray(p["kernel"])), np.float64)
    kernel = np.float64(p["kernel"])
    rng = np.random.default_rng(1)
    picks = rng.choice(kernel.size, size=min(kernel.size, 12), replace=False)
    eps = 1e-6
    for flat in picks:
        i = np.unravel_index(flat, kernel.shape)
        plus, minus = kernel.copy(), kernel.copy()
        plus[i] += eps
        minus[i] -= eps
        ref = lambda k: np.sum(np.sin(R.grouped_conv2d(x, k, p.get("bias"), stride, pad,  # noqa: E731
                                                       groups)))
        approx = (ref(plus) - ref(minus)) / (2 * eps)
        np.testing.assert_allclose(grad[i], approx, rtol=2e-3, atol=2e-3, err_msg=str(i))


@pytest.mark.parametrize("in_shape, layer, groups, stride, pad", CASES, ids=IDS)
def test_agrees_with_flax_feature_group_count(in_shape, layer, groups, stride, pad):
    model, variables, p, x = build(in_shape, layer)
    leaf = model.net.leaves()[0]
    conv = nn.Conv(features=leaf.out_shape[-1], kernel_size=p["kernel"].shape[:2],
                   strides=stride, padding=pad, feature_group_count=groups,
                   use_bias="bias" in p)
    flax_params = {"params": {k: jnp.asarray(v) for k, v in p.items()}}
    assert jax.tree.map(np.shape, conv.init(jax.random.key(0), x)) == jax.tree.map(
        np.shape, flax_params)
    np.testing.assert_allclose(model.apply(variables, x), conv.apply(flax_params, x),
                               rtol=1e-5, atol=1e-5)


def test_relu6_values_and_gradient():
    model = netc.compile("input 9\nrelu6")
    x = np.array([[-3.0, -0.5, 0.5, 2.0, 5.9, 6.1, 8.0, 0.25, 3.0]], np.float32)
    np.testing.assert_array_equal(model.apply({"params": {}, "state": {}}, x), R.relu6(x))
    grad = jax.grad(lambda x: jnp.sum(model.apply({"params": {}, "state": {}}, x)))(x)
    np.testing.assert_array_equal(grad, ((x > 0) & (x < 6)).astype(np.float32))
    assert netc.check("input 4x4x2\nrelu6").params == 0


def test_the_gradient_check_passes_through_grouped_and_depthwise():
    model = netc.compile("input 6x6x4\nconv f=3 p=same c=6 groups=2 -> relu -> dwconv f=3 "
                         "s=2 p=same m=2 -> bn -> relu6 -> conv f=1 c=4 groups=4 -> fc 3 "
                         "-> softmax 3")
    rng = np.random.default_rng(0)
    x = 2 * rng.standard_normal((5, 6, 6, 4))
    result = G.gradcheck(model, x, rng.integers(0, 3, 5), samples=300)
    assert result["difference"] < 1e-7, G.format_report("grouped", result)
    assert {"conv_1", "dwconv_1", "conv_2"} <= set(result["layers"])


@pytest.mark.parametrize("in_shape, layer, params, macs", [
    # f*f*(c_in/G)*c (+c) and H_out*W_out*c*f*f*(c_in/G)
    ((8, 8, 4), "conv f=3 c=6 groups=2", 3 * 3 * 2 * 6 + 6, 6 * 6 * 6 * 3 * 3 * 2),
    ((8, 8, 6), "conv f=1 s=2 c=9 groups=3 bias=false", 2 * 9, 4 * 4 * 9 * 2),
    # f*f*c_in*m (+c_in*m) and H_out*W_out*c_in*m*f*f
    ((8, 8, 5), "dwconv f=3", 3 * 3 * 5 + 5, 6 * 6 * 5 * 9),
    ((8, 8, 5), "dwconv f=3 s=2 p=same m=3", 3 * 3 * 15 + 15, 4 * 4 * 15 * 9),
])
def test_parameter_and_mac_counts_follow_the_contract(in_shape, layer, params, macs):
    net = netc.check(f"input {'x'.join(map(str, in_shape))}\n{layer}")
    assert (net.params, net.macs) == (params, macs)


def test_dwconv_names_output_and_no_bias_before_batchnorm():
    net = netc.check("input 8x8x3\ndwconv f=3 p=same m=2 -> bn -> dwconv f=3 -> relu")
    first, _, second, last = net.leaves()
    assert (first.name, second.name, last.name) == ("dwconv_1", "dwconv_2", "relu_1")
    assert first.params == {"kernel": (3, 3, 1, 6)}
    assert second.params == {"kernel": (3, 3, 1, 6), "bias": (6,)}
    assert net.output_shape == (6, 6, 6)


@pytest.mark.parametrize("layer, fan_in", [
    ("conv f=3 c=256 groups=4", 3 * 3 * 64 // 4),
    ("dwconv f=3 m=4", 3 * 3),
    ("dwconv f=5 m=2", 5 * 5),
])
def test_he_initialisation_uses_the_grouped_fan_in(layer, fan_in):
    """he: std sqrt(2/fan_in), fan_in f*f*c_in/G for a grouped conv and f*f for a dwconv."""
    model = netc.compile(f"input 9x9x64\n{layer}")
    kernel = np.asarray(model.init(jax.random.key(0))["params"][model.net.leaves()[0].name]
                        ["kernel"])
    assert kernel.size >= 1600
    assert abs(kernel.std() / math.sqrt(2 / fan_in) - 1) < 0.06


def errors_of(source: str) -> list:
    with pytest.raises(SpecError) as info:
        netc.check(source)
    return info.value.diagnostics


def test_groups_that_do_not_divide_the_channels_are_a_shape_error():
    [d] = errors_of("input 8x8x6\nconv f=3 c=8 groups=4")
    assert d.code == "E301" and (d.span.line, d.span.col) == (2, 1)
    assert "6 % 4 = 2" in d.message and "8 % 4 = 0" in d.message
    assert d.help == "groups that divide both: 1, 2"
    [d] = errors_of("input 8x8x6\nconv f=3 c=9 groups=2")
    assert "9 % 2 = 1" in d.message


def test_dwconv_on_a_vector_and_bad_arguments_are_errors():
    [d] = errors_of("input 10\ndwconv f=3")
    assert d.code == "E301" and "dwconv needs an HxWxC image" in d.message
    assert "vector 10" in d.message
    [d] = errors_of("input 8x8x3\ndwconv f=3 m=0")
    assert d.code.startswith("E2") and "m" in d.message
    [d] = errors_of("input 8x8x3\ndwconv f=3 c=4")
    assert d.code.startswith("E2") and "'c'" in d.message
    [d] = errors_of("input 8x8x3\nconv f=3 c=4 groups=0")
    assert d.code.startswith("E2") and "groups" in d.message
    [d] = errors_of("input 4x4x3\ndwconv f=5")
    assert d.code == "E301" and "(4 + 2*0 - 5)/1 + 1 = 0" in d.message
