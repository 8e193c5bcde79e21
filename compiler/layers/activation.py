"""Elementwise activations: the shape is unchanged, no parameters. (The heads' softmax and
sigmoid are in dense.py.)"""

from __future__ import annotations

from ..args import Arg, number, positive_number
from ..lazy_jax import jax, jnp
from .base import Inferred, LayerKind

DOC = "elementwise activation; shape unchanged"


def same_shape(attrs: dict, in_shape) -> Inferred:
    return Inferred(in_shape)


def activation(name: str, fn, args: tuple[Arg, ...] = (), aliases: tuple[str, ...] = (),
               doc: str = DOC) -> LayerKind:
    """A kind computing fn(x, **attrs) elementwise."""
    def lower(node, target):
        attrs = {a.name: node.attrs[a.name] for a in args}
        return lambda ctx, x, params, state: fn(x, **attrs)
    return LayerKind(name, args, same_shape, lower, doc, aliases=aliases)


KINDS = (
    activation("relu", lambda x: jax.nn.relu(x)),
    activation("relu6", lambda x: jax.nn.relu6(x), doc="min(max(x, 0), 6); shape unchanged"),
    activation("tanh", lambda x: jnp.tanh(x)),
    activation("leaky_relu", lambda x, a: jax.nn.leaky_relu(x, a), (Arg("a", number, 0.01),)),
    activation("elu", lambda x, a: jax.nn.elu(x, a), (Arg("a", positive_number, 1.0),)),
    activation("gelu", lambda x: jax.nn.gelu(x)),
    activation("silu", lambda x: jax.nn.silu(x), aliases=("swish",)),
)
