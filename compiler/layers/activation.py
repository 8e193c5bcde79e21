"""Elementwise activations: the shape is unchanged, no parameters. (The heads' softmax and
sigmoid are in dense.py.)"""

from __future__ import annotations

import math

from ..args import Arg, number, positive_number
from ..lazy_jax import jax, jnp
from .base import Inferred, LayerKind

DOC = "elementwise activation; shape unchanged"


def same_shape(attrs: dict, in_shape) -> Inferred:
    return Inferred(in_shape)


def activation(name: str, fn, args: tuple[Arg, ...] = (), aliases: tuple[str, ...] = (),
               doc: str = DOC, onnx=None) -> LayerKind:
    """A kind computing fn(x, **attrs) elementwise; `onnx(graph, x, name, **attrs) -> y`
    writes it as ONNX operators."""
    def lower(node, target):
        attrs = {a.name: node.attrs[a.name] for a in args}
        return lambda ctx, x, params, state: fn(x, **attrs)

    def mapping(node, graph, x, params, state):
        return onnx(graph, x, node.name, **{a.name: node.attrs[a.name] for a in args})
    return LayerKind(name, args, same_shape, lower, doc, aliases=aliases,
                     onnx=mapping if onnx is not None else None)


# ---- ONNX: each `onnx(graph, x, name, **attrs)` names its last node after the layer --------


def onnx_op(op_type: str, **fixed):
    """One ONNX operator; the kind's arguments become its attributes (a= is alpha=)."""
    def mapping(graph, x, name, **attrs):
        renamed = {"alpha" if k == "a" else k: float(v) for k, v in attrs.items()}
        return graph.op(op_type, [x], name=name, **fixed, **renamed)
    return mapping


def onnx_relu6(graph, x, name):
    """Clip(x, 0, 6)."""
    low, high = graph.constant(f"{name}/min", 0.0), graph.constant(f"{name}/max", 6.0)
    return graph.op("Clip", [x, low, high], name=name)


def onnx_silu(graph, x, name):
    """x * Sigmoid(x)."""
    return graph.op("Mul", [x, graph.op("Sigmoid", [x], name=f"{name}/sigmoid")], name=name)


def onnx_gelu(graph, x, name):
    """jax.nn.gelu's tanh approximation, x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))),
    in opset 17's operators (ONNX's Gelu approximate="tanh" needs opset 20)."""
    def const(what, value):
        return graph.constant(f"{name}/{what}", value)

    cube = graph.op("Mul", [x, graph.op("Mul", [x, x], name=f"{name}/square")],
                    name=f"{name}/cube")
    inner = graph.op("Add", [x, graph.op("Mul", [cube, const("c", 0.044715)],
                                         name=f"{name}/c_cube")], name=f"{name}/inner")
    scaled = graph.op("Mul", [inner, const("sqrt_2_over_pi", math.sqrt(2 / math.pi))],
                      name=f"{name}/scaled")
    one_plus = graph.op("Add", [graph.op("Tanh", [scaled], name=f"{name}/tanh"),
                                const("one", 1.0)], name=f"{name}/one_plus")
    cdf = graph.op("Mul", [one_plus, const("half", 0.5)], name=f"{name}/cdf")
    return graph.op("Mul", [x, cdf], name=name)


KINDS = (
    activation("relu", lambda x: jax.nn.relu(x), onnx=onnx_op("Relu")),
    activation("relu6", lambda x: jax.nn.relu6(x), doc="min(max(x, 0), 6); shape unchanged",
               onnx=onnx_relu6),
    activation("tanh", lambda x: jnp.tanh(x), onnx=onnx_op("Tanh")),
    activation("leaky_relu", lambda x, a: jax.nn.leaky_relu(x, a), (Arg("a", number, 0.01),),
               onnx=onnx_op("LeakyRelu")),
    activation("elu", lambda x, a: jax.nn.elu(x, a), (Arg("a", positive_number, 1.0),),
               onnx=onnx_op("Elu")),
    activation("gelu", lambda x: jax.nn.gelu(x), onnx=onnx_gelu),
    activation("silu", lambda x: jax.nn.silu(x), aliases=("swish",), onnx=onnx_silu),
)
