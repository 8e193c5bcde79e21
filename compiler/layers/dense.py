"""fc, flatten and the heads: `softmax N` / `sigmoid N` are fc N then the activation (bare
`softmax` / `sigmoid` is the activation alone). A net that ends in a head is trained on its
logits by the matching loss (compiler/losses.py)."""

from __future__ import annotations

import math

from ..args import Arg, boolean, choice, positive_int
from ..lazy_jax import jax
from .base import INITIALIZERS, WEIGHT, ZEROS, Head, Inferred, LayerKind

_init = Arg("init", choice(*INITIALIZERS), None, doc="he, xavier, glorot, random or zeros")
_bias = Arg("bias", boolean, None)  # None: yes, unless the next layer is batchnorm


def infer_dense(attrs: dict, in_shape) -> Inferred:
    n_in, units = math.prod(in_shape), attrs["units"]
    params = {"kernel": (n_in, units)}
    if attrs["bias"]:
        params["bias"] = (units,)
    return Inferred((units,), params, macs=n_in * units)


def infer_head(attrs: dict, in_shape) -> Inferred:
    if attrs["units"] is None:
        return Inferred(in_shape)
    return infer_dense(attrs, in_shape)


def lower_dense(node, target):
    """x flattened row-major to (m, n_in), times the kernel, plus the bias. The heads' logits."""
    def forward(ctx, x, params, state):
        y = x.reshape(x.shape[0], -1) @ ctx.cast(params["kernel"])
        return y + ctx.cast(params["bias"]) if "bias" in params else y
    return forward


def lower_head_logits(node, target):
    """A head's logits: fc N's for `softmax N`, the input itself for a bare `softmax`."""
    if node.attrs.get("units"):
        return lower_dense(node, target)
    return lambda ctx, x, params, state: x


def head(activation) -> Head:
    return Head(activation, lower_head_logits)


def lower_with_activation(activation):
    def lower(node, target):
        logits = lower_head_logits(node, target)
        return lambda ctx, x, params, state: activation(logits(ctx, x, params, state))
    return lower


def softmax(x):
    return jax.nn.softmax(x)


def sigmoid(x):
    return jax.nn.sigmoid(x)


# ---- ONNX ----------------------------------------------------------------------------------


def onnx_dense(node, graph, x, params, state, name=None):
    """Gemm on the input flattened in netc's row-major order (an image back to NHWC first),
    the kernel as netc holds it, (n_in, units)."""
    name = name or node.name
    flat = graph.flat(x, node.in_shape, name)
    inputs = [flat, graph.constant(f"{node.name}/kernel", params["kernel"])]
    if "bias" in params:
        inputs.append(graph.constant(f"{node.name}/bias", params["bias"]))
    return graph.op("Gemm", inputs, name=name)


def onnx_flatten(node, graph, x, params, state):
    if len(node.in_shape) == 1:
        return graph.op("Identity", [x], name=node.name)
    x = graph.to_netc(x, node.in_shape, f"{node.name}/to_nhwc")  # an image: NCHW -> NHWC
    return graph.op("Flatten", [x], name=node.name, axis=1)


def onnx_head(op_type: str):
    """softmax N / sigmoid N: Gemm (node LAYER/fc), then the activation on the channels;
    bare softmax / sigmoid: the activation alone."""
    def mapping(node, graph, x, params, state):
        if node.attrs.get("units"):
            x = onnx_dense(node, graph, x, params, state, name=f"{node.name}/fc")
        if op_type == "Softmax":
            return graph.op(op_type, [x], name=node.name,
                            axis=graph.channel_axis(node.out_shape))
        return graph.op(op_type, [x], name=node.name)
    return mapping


def _head_args():
    return (Arg("units", positive_int, None, positional=True), _bias, _init)


KINDS = (
    LayerKind("fc", (Arg("units", positive_int, positional=True, doc="e.g. fc 120"), _bias,
                     _init),
              infer_dense, lower_dense, "fully connected; flattens its input",
              aliases=("dense",), params={"kernel": WEIGHT, "bias": ZEROS}, onnx=onnx_dense),
    LayerKind("flatten", (), lambda attrs, in_shape: Inferred((math.prod(in_shape),)),
              lambda node, target: lambda ctx, x, params, state: x.reshape(x.shape[0], -1),
              "reshape to a vector", onnx=onnx_flatten),
    LayerKind("softmax", _head_args(), infer_head, lower_with_activation(softmax),
              "softmax N = fc N -> softmax; bare softmax is the activation",
              params={"kernel": WEIGHT, "bias": ZEROS}, head=head(softmax),
              onnx=onnx_head("Softmax")),
    LayerKind("sigmoid", _head_args(), infer_head, lower_with_activation(sigmoid),
              "sigmoid N = fc N -> sigmoid; bare sigmoid is the activation",
              params={"kernel": WEIGHT, "bias": ZEROS}, head=head(sigmoid),
              onnx=onnx_head("Sigmoid")),
)
