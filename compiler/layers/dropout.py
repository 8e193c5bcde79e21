"""dropout: the course's inverted dropout, a * mask / keep in training (mask ~ Bernoulli(keep),
drawn from the pass's key folded with the layer's name), the identity at inference."""

from __future__ import annotations

from ..args import Arg, ArgTypeError, number
from ..lazy_jax import jax, jnp
from .base import Inferred, LayerKind, ShapeError


def keep_probability(v):
    x = number(v)
    if 0 < x <= 1:
        return x
    raise ArgTypeError("expects a probability in (0, 1]", help="keep is the chance to keep a unit")


def drop_probability(v):
    x = number(v)
    if 0 <= x < 1:
        return x
    raise ArgTypeError("expects a probability in [0, 1)", help="rate is the chance to drop a unit")


def infer_dropout(attrs: dict, in_shape) -> Inferred:
    keep, rate = attrs["keep"], attrs["rate"]
    if (keep is None) == (rate is None):
        raise ShapeError("dropout needs exactly one of keep=P (the course's keep_prob) or rate=Q",
                         help="e.g. dropout keep=0.8  (the same as dropout rate=0.2)")
    return Inferred(in_shape, attrs={"keep": keep if keep is not None else 1.0 - rate})


def lower_dropout(node, target):
    keep = node.attrs["keep"]

    def forward(ctx, x, params, state):
        if not ctx.train or keep >= 1.0:
            return x
        mask = jax.random.bernoulli(ctx.key_for(node.name), keep, x.shape)
        return jnp.where(mask, x / keep, jnp.zeros((), x.dtype))
    return forward


KINDS = (
    LayerKind("dropout", (Arg("keep", keep_probability, None),
                          Arg("rate", drop_probability, None)),
              infer_dropout, lower_dropout,
              "inverted dropout: a * mask / keep in training, identity at inference",
              onnx=lambda node, graph, x, params, state: graph.op("Identity", [x],
                                                                  name=node.name)),
)
