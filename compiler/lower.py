"""Lowering: the checked IR -> pure JAX functions over flat variables.

Each leaf is lowered by its kind's record (compiler/layers/); blocks compose the leaves like
stax combinators. Parameters live in flat dicts keyed by the readable layer names that
`netc check` prints: {"params": {"conv_1": {"kernel", "bias"}, ...}, "state":
{"batchnorm_1": {"mean", "var"}}}. Shapes come from the IR, never recomputed.

A lowered node is `forward(ctx, x, params, state) -> (y, updates)`: `params` and `state` are
the whole net's dicts and `updates` maps layer names to their new state (BatchNorm in
training), returned rather than written anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import jax
import jax.numpy as jnp

from .ir import Net, Node
from .layers import KINDS, ONES, WEIGHT, Target, init_scale, weights_of

Forward = Callable  # (ctx, x, params, state) -> (y, updates)


def lower_leaf(node: Node, target: Target, lower: Callable | None = None) -> Forward:
    """A leaf through its kind's lowering (or `lower`, with the same signature), reading its
    own parameters and state out of the net's dicts."""
    kind = KINDS[node.kind]
    forward = (lower or kind.lower)(node, target)
    name = node.name
    if kind.state and name in target.frozen:  # frozen BatchNorm: its running statistics
        def frozen(ctx, x, params, state):
            y, _ = forward(replace(ctx, train=False), x, params.get(name, {}), state[name])
            return y, {}
        return frozen
    if kind.state:
        def stateful(ctx, x, params, state):
            y, new_state = forward(ctx, x, params.get(name, {}), state[name])
            return y, {name: new_state}
        return stateful
    return lambda ctx, x, params, state: (forward(ctx, x, params.get(name, {}), {}), {})


def lower_sequence(nodes: Sequence[Node], target: Target) -> Forward:
    steps = [lower_node(node, target) for node in nodes]

    def sequence(ctx, x, params, state):
        updates = {}
        for step in steps:
            x, new = step(ctx, x, params, state)
            updates.update(new)
        return x, updates
    return sequence


def lower_node(node: Node, target: Target) -> Forward:
    if node.kind == "sequence":
        return lower_sequence(node.children, target)
    if node.kind == "residual":
        body_node, shortcut_node = node.children
        body = lower_node(body_node, target)
        shortcut = lower_node(shortcut_node, target) if shortcut_node is not None else None

        def residual(ctx, x, params, state):
            y, updates = body(ctx, x, params, state)
            if shortcut is None:
                return y + x, updates
            s, more = shortcut(ctx, x, params, state)
            return y + s, {**updates, **more}
        return residual
    if node.kind == "concat":
        branches = [lower_node(b, target) for b in node.children]

        def concat(ctx, x, params, state):
            outs, updates = [], {}
            for branch in branches:
                y, new = branch(ctx, x, params, state)
                outs.append(y)
                updates.update(new)
            return jnp.concatenate(outs, axis=-1), updates
        return concat
    return lower_leaf(node, target)


# ---- initialisation --------------------------------------------------------------------


def init_variables(net: Net, key, dtype=jnp.float32, random_scale=None) -> dict:
    """Fresh variables. WEIGHT parameters are drawn by the layer's `init=` or the spec's
    `init` (compiler/layers/base.py init_scale), the others start at zeros or ones;
    `random_scale` (a float or a traced scalar) replaces the spec's `init random scale=`. Every
    weight is a slice of ONE standard normal draw (in layer order) times its scale: XLA
    compiles each random draw separately, and one draw per kernel made LeNet-5's init take
    1.6 s to compile against 0.3 s for a single draw."""
    default = net.train.init
    params, state = {}, {}
    drawn = []  # (layer, parameter, shape, scale)
    for leaf in net.leaves():
        kind = KINDS[leaf.kind]
        if leaf.params:
            p = {}
            for pname, shape in leaf.params.items():
                role = kind.params[pname]
                if role == WEIGHT:
                    choice = leaf.attrs.get("init") or default.name
                    options = default.options if choice == default.name else {}
                    if choice == default.name == "random" and random_scale is not None:
                        options = {**options, "scale": random_scale}
                    drawn.append((leaf.name, pname, shape, init_scale(choice, options, shape)))
                    p[pname] = None  # drawn below
                else:
                    p[pname] = (jnp.ones if role == ONES else jnp.zeros)(shape, dtype)
            params[leaf.name] = p
        if leaf.state:
            state[leaf.name] = {s: (jnp.ones if kind.state[s] == ONES else jnp.zeros)(
                shape, jnp.float32) for s, shape in leaf.state.items()}
    total = sum(math.prod(shape) for _, _, shape, _ in drawn)
    normal = jax.random.normal(key, (total,), dtype) if total else None
    offset = 0
    for layer, pname, shape, scale in drawn:
        size = math.prod(shape)
        draw = normal[offset:offset + size].reshape(shape)
        params[layer][pname] = draw * jnp.asarray(scale, dtype)
        offset += size
    return {"params": params, "state": state}


def weight_names(net: Net) -> list[tuple[str, str]]:
    """(layer, parameter) of every WEIGHT: what L2 decays (conv and fc kernels, heads too)."""
    return [(leaf.name, p) for leaf in net.leaves() for p in weights_of(leaf)]
