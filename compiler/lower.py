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
import numpy as np

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


def init_variables(net: Net, key, dtype=jnp.float32, random_scale=None,
                   normal_bits=None) -> dict:
    """Fresh variables. WEIGHT parameters are drawn by the layer's `init=` or the spec's
    `init` (compiler/layers/base.py init_scale), the others start at zeros or ones;
    `random_scale` (a float or a traced scalar) replaces the spec's `init random scale=`. Every
    weight is a slice of ONE standard normal draw (in layer order) times its scale: XLA
    compiles each random draw separately, and one draw per kernel made LeNet-5's init take
    1.6 s to compile against 0.3 s for a single draw. `normal_bits`, the draw's random bits
    from the host (normal_bits(), the same bits threefry gives in the program), leaves the
    key unused and threefry out of the program: its compile was most of a small net's
    init (benchmarks/FINDINGS.md). assemble_variables builds the same variables outside a
    trace."""
    total = drawn_count(net)
    if not total:
        normal = None
    elif normal_bits is not None:
        normal = _normal_of_bits(normal_bits, dtype)
    else:
        normal = jax.random.normal(key, (total,), dtype)
    return _variables_of_draw(net, normal, dtype, jnp, random_scale)


def assemble_variables(net: Net, normal: np.ndarray | None, dtype) -> dict:
    """init_variables' variables as numpy arrays, from its standard normal draw made by
    `jax.random.normal(key, (drawn_count(net),), dtype)` (float32 or float64): the same
    arithmetic (slices, and one correctly rounded product by each weight's scale), so the
    same values. A program that returns each weight as a slice of the draw compiles one loop
    per output, ~12-25 ms each on CPU: ResNet-50's 267 variables took ~1.7 s of CPU to
    compile against ~0.2 s for the draw alone (benchmarks/FINDINGS.md)."""
    return _variables_of_draw(net, normal, np.dtype(dtype), np)


def _variables_of_draw(net: Net, normal, dtype, xp, random_scale=None) -> dict:
    """The variables of init_variables and assemble_variables, with `xp` (jax.numpy inside
    a trace, numpy outside) for the arrays: zeros and ones, and each weight a slice of the
    standard normal draw `normal` times its scale (one correctly rounded product)."""
    fixed, drawn = init_layout(net, random_scale)
    variables = {"params": {}, "state": {}}
    for group, layer, name, shape, one in fixed:
        variables[group].setdefault(layer, {})[name] = (xp.ones if one else xp.zeros)(
            shape, dtype if group == "params" else xp.float32)
    offset = 0
    for layer, pname, shape, scale in drawn:
        size = math.prod(shape)
        draw = normal[offset:offset + size].reshape(shape)
        variables["params"].setdefault(layer, {})[pname] = draw * xp.asarray(scale, dtype)
        offset += size
    return _in_layer_order(net, variables)


def init_layout(net: Net, random_scale=None) -> tuple[list, list]:
    """What init_variables makes: (fixed, drawn), fixed = [(group, layer, name, shape, one)]
    for the parameters and state that start at zeros or ones (one: True for ones), drawn =
    [(layer, parameter, shape, scale)] for the weights, in the order of the draw."""
    default = net.train.init
    fixed, drawn = [], []
    for leaf in net.leaves():
        kind = KINDS[leaf.kind]
        for pname, shape in leaf.params.items():
            role = kind.params[pname]
            if role == WEIGHT:
                choice = leaf.attrs.get("init") or default.name
                options = default.options if choice == default.name else {}
                if choice == default.name == "random" and random_scale is not None:
                    options = {**options, "scale": random_scale}
                drawn.append((leaf.name, pname, shape, init_scale(choice, options, shape)))
            else:
                fixed.append(("params", leaf.name, pname, shape, role == ONES))
        for sname, shape in (leaf.state or {}).items():
            fixed.append(("state", leaf.name, sname, shape, kind.state[sname] == ONES))
    return fixed, drawn


def _in_layer_order(net: Net, variables: dict) -> dict:
    """{"params", "state"} with layers and their entries in the net's own order."""
    out = {"params": {}, "state": {}}
    for leaf in net.leaves():
        if leaf.params:
            made = variables["params"][leaf.name]
            out["params"][leaf.name] = {p: made[p] for p in leaf.params}
        if leaf.state:
            made = variables["state"][leaf.name]
            out["state"][leaf.name] = {s: made[s] for s in leaf.state}
    return out


def drawn_count(net: Net) -> int:
    """How many standard normals init_variables draws (every WEIGHT's size)."""
    return sum(math.prod(shape) for leaf in net.leaves() for pname, shape in leaf.params.items()
               if KINDS[leaf.kind].params[pname] == WEIGHT)


_UINT = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}
# numpy's threefry takes ~60-90 ns a number on the 2-core VM: past about a million numbers
# it costs more than threefry's compile (~0.2-0.3 s) and the program's own draw
HOST_DRAW_LIMIT = 1 << 20


def normal_bits(seed, count: int, dtype) -> np.ndarray | None:
    """On the host, the random bits of `jax.random.normal(k, (count,), dtype)` where k is
    `jax.random.split(jax.random.key(seed), 3)[0]` (the Trainer's init key): threefry2x32
    in numpy, integer arithmetic, so the very bits the program would draw (tested against
    JAX). None where it does not apply (another dtype or seed, JAX's non-default
    `threefry_partitionable=False` layout) or would be slower (more than HOST_DRAW_LIMIT
    numbers: ResNet-50's 25.6M took ~1.5 s): the program draws them then."""
    dtype = np.dtype(dtype)
    if (dtype not in _UINT or not isinstance(seed, int) or not 0 <= seed < 2**31
            or not 0 < count <= HOST_DRAW_LIMIT or not jax.config.jax_threefry_partitionable
            or jax.config.jax_default_prng_impl != "threefry2x32"):
        return None
    zero = np.zeros(1, np.uint32)
    # key(seed) = (0, seed); split(., 3)[0] = threefry of the counter (0, 0)
    key = threefry2x32(zero, np.full(1, seed, np.uint32), zero, zero)
    return _bits_of_key(key[0], key[1], count, dtype)


def _bits_of_key(k1, k2, count: int, dtype) -> np.ndarray:
    """jax.random.bits of threefry key (k1, k2) for `count` numbers of `dtype`'s width."""
    lo = np.arange(count, dtype=np.uint32)
    hi, low = threefry2x32(k1, k2, np.zeros(count, np.uint32), lo)
    if np.dtype(dtype) == np.float32:
        return hi ^ low
    return (hi.astype(np.uint64) << np.uint64(32)) | low.astype(np.uint64)


def draw_normals(key, count: int, dtype) -> np.ndarray:
    """init_variables' draw, `jax.random.normal(key, (count,), dtype)`, made outside a trace
    for a concrete key: threefry's bits on the host where normal_bits would apply (threefry
    compiled was most of a small net's init), else in a program of its own."""
    dtype = np.dtype(dtype)
    data = jax.random.key_data(key)
    impl = (str(jax.random.key_impl(key)) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
            else jax.config.jax_default_prng_impl)
    if (dtype in _UINT and 0 < count <= HOST_DRAW_LIMIT and data.shape == (2,)
            and impl == "threefry2x32" and jax.config.jax_threefry_partitionable):
        k1, k2 = np.asarray(data, np.uint32)
        return np.asarray(_normals_from_bits(_bits_of_key(k1, k2, count, dtype), dtype))
    return np.asarray(_normals_from_key(key, count, dtype))


_normals_from_bits = jax.jit(lambda bits, dtype: _normal_of_bits(bits, dtype), static_argnums=1)
_normals_from_key = jax.jit(lambda key, count, dtype: jax.random.normal(key, (count,), dtype),
                            static_argnums=(1, 2))


def threefry2x32(k1, k2, x1, x2) -> tuple[np.ndarray, np.ndarray]:
    """The Threefry-2x32 hash (20 rounds) of counters (x1, x2) under key (k1, k2), uint32
    numpy arrays, as JAX computes it (jax/_src/random/threefry2x32.py)."""
    k1, k2 = np.asarray(k1, np.uint32), np.asarray(k2, np.uint32)
    ks = [k1, k2, k1 ^ k2 ^ np.uint32(0x1BD11BDA)]
    rotations = ((13, 15, 26, 6), (17, 29, 16, 24))
    a, b = x1 + ks[0], x2 + ks[1]
    for i in range(5):
        for r in rotations[i % 2]:
            a = a + b
            b = (b << np.uint32(r)) | (b >> np.uint32(32 - r))
            b = a ^ b
        a = a + ks[(i + 1) % 3]
        b = b + ks[(i + 2) % 3] + np.uint32(i + 1)
    return a, b


def _normal_of_bits(bits, dtype):
    """jax.random.normal's transformation of its random bits (jax/_src/random/core.py's
    _normal_real and _uniform, op for op) for float32/float64."""
    dtype = np.dtype(dtype)
    finfo = np.finfo(dtype)
    nbits, nmant = finfo.bits, finfo.nmant
    uint = _UINT[dtype]
    lo = np.nextafter(np.array(-1., dtype), np.array(0., dtype), dtype=dtype)
    hi = np.array(1., dtype)
    minval = jax.lax.convert_element_type(lo, dtype)
    maxval = jax.lax.convert_element_type(hi, dtype)
    minval, maxval = (jax.lax.broadcast_to_rank(v, 1) for v in (minval, maxval))
    float_bits = jax.lax.shift_right_logical(bits, jnp.array(nbits - nmant, uint))
    float_bits = jax.lax.bitwise_or(float_bits, jnp.asarray(np.array(1.0, dtype).view(uint),
                                                            dtype=uint))
    floats = jax.lax.bitcast_convert_type(float_bits, dtype) - jnp.array(1., dtype)
    u = jax.lax.max(minval, jax.lax.reshape(floats * (maxval - minval) + minval,
                                             bits.shape))
    return jax.lax.mul(np.array(np.sqrt(2), dtype), jax.lax.erf_inv(u))


def weight_names(net: Net) -> list[tuple[str, str]]:
    """(layer, parameter) of every WEIGHT: what L2 decays (conv and fc kernels, heads too)."""
    return [(leaf.name, p) for leaf in net.leaves() for p in weights_of(leaf)]
