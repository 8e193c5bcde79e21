"""batchnorm: normalise over every axis but the channels with the batch's statistics in
training (keeping running averages as state), with the running averages at inference.

    training    y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta
                running = momentum * running + (1 - momentum) * batch statistic
    inference   the same with the running mean and variance
"""

from __future__ import annotations

from ..args import Arg, fraction_open, positive_number
from ..lazy_jax import jnp, lax
from .base import ONES, ZEROS, Inferred, LayerKind


def infer_batchnorm(attrs: dict, in_shape) -> Inferred:
    c = in_shape[-1]
    return Inferred(in_shape, {"gamma": (c,), "beta": (c,)}, {"mean": (c,), "var": (c,)})


def lower_batchnorm(node, target):
    momentum, eps = node.attrs["momentum"], node.attrs["eps"]
    axes = tuple(range(len(node.in_shape)))  # all but channels (axis 0 is the batch)

    def forward(ctx, x, params, state):
        if ctx.train:
            x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
            mean, var = jnp.mean(x32, axes), jnp.var(x32, axes)
            new_state = {
                "mean": momentum * state["mean"] + (1 - momentum) * lax.stop_gradient(mean),
                "var": momentum * state["var"] + (1 - momentum) * lax.stop_gradient(var)}
        else:
            mean, var, new_state = state["mean"], state["var"], state
        scale = params["gamma"] * lax.rsqrt(var + eps)
        shift = params["beta"] - mean * scale
        return x * scale.astype(x.dtype) + shift.astype(x.dtype), new_state
    return forward


def onnx_batchnorm(node, graph, x, params, state):
    """BatchNormalization (inference: the running statistics) where the channels are ONNX's
    axis 1 (an NCHW image, a vector); otherwise (channels last) x * scale + shift."""
    name, eps = node.name, node.attrs["eps"]
    if graph.channel_axis(node.in_shape) == 1:
        inputs = [x] + [graph.constant(f"{name}/{k}", v) for k, v in (
            ("gamma", params["gamma"]), ("beta", params["beta"]), ("mean", state["mean"]),
            ("var", state["var"]))]
        return graph.op("BatchNormalization", inputs, name=name, epsilon=float(eps))
    scale = params["gamma"].astype("float64") / (state["var"].astype("float64") + eps) ** 0.5
    shift = params["beta"] - state["mean"] * scale
    scaled = graph.op("Mul", [x, graph.constant(f"{name}/scale", scale)], name=f"{name}/scale")
    return graph.op("Add", [scaled, graph.constant(f"{name}/shift", shift)], name=name)


KINDS = (
    LayerKind("batchnorm", (Arg("momentum", fraction_open, 0.9),
                            Arg("eps", positive_number, 1e-5)),
              infer_batchnorm, lower_batchnorm,
              "batch normalisation over all axes but channels", aliases=("bn",),
              params={"gamma": ONES, "beta": ZEROS}, state={"mean": ZEROS, "var": ONES},
              onnx=onnx_batchnorm),
)
