"""Lowering: the checked IR -> pure JAX functions `init(key)` and `apply(variables, x)`.

Each leaf kind has one lowering in LOWERINGS (keyed like ops.OPS); blocks compose them like
stax combinators. Parameters live in a flat dict keyed by the readable layer names that
`netc check` prints: variables = {"params": {"conv_1": {"kernel", "bias"}, ...},
"state": {"batchnorm_1": {"mean", "var"}}}. Shapes come from the IR, never recomputed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .ir import Net, Node
from .ops import has_weights

Array = jax.Array


@dataclass
class _Pass:
    """What one forward pass carries while it is traced: variables in, state updates out."""

    params: dict
    state: dict
    train: bool
    rng: Array | None
    new_state: dict
    compute_dtype: object

    def key_for(self, node: Node) -> Array:
        if self.rng is None:
            raise ValueError(f"{node.name}: dropout in training needs an rng: "
                             "model.apply(variables, x, train=True, rng=key)")
        return jax.random.fold_in(self.rng, _stable_hash(node.name))


def _stable_hash(name: str) -> int:
    h = 0
    for ch in name.encode():
        h = (h * 131 + ch) % 2_147_483_647
    return h


Forward = Callable[[_Pass, Array], Array]

# ---- leaves ----------------------------------------------------------------------------


def _weights(run: _Pass, node: Node):
    p = run.params[node.name]
    kernel = p["kernel"].astype(run.compute_dtype)
    bias = p["bias"].astype(run.compute_dtype) if "bias" in p else None
    return kernel, bias


def conv_as_matmul(node: Node) -> bool:
    """Whether this conv is lowered as im2col (see IM2COL_MAX_CHANNELS)."""
    return (node.in_shape[-1] <= IM2COL_MAX_CHANNELS
            and node.out_shape[0] * node.out_shape[1] <= IM2COL_MAX_POSITIONS
            and jax.default_backend() == "cpu")


def _conv(node: Node) -> Forward:
    return _conv_as_matmul(node) if conv_as_matmul(node) else _conv_direct(node)


def _conv_direct(node: Node) -> Forward:
    strides, padding = node.attrs["s"], node.attrs["padding"]

    def forward(run, x):
        kernel, bias = _weights(run, node)
        y = lax.conv_general_dilated(x, kernel, strides, padding,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y if bias is None else y + bias
    return forward


# XLA:CPU's convolutions are slow with few input channels: as one matmul over patches
# (im2col), LeNet-5 (1 and 6 channels in, 28x28 and 10x10 outputs) trains ~25% faster, while
# a ResNet with 16-32 channels trains 2x slower that way, and ResNet-50's stem (3 channels,
# 112x112 outputs) gains nothing per step but 0.5-1 s of compile (benchmarks/RESULTS.md).
IM2COL_MAX_CHANNELS = 8
IM2COL_MAX_POSITIONS = 64 * 64


def _conv_as_matmul(node: Node) -> Forward:
    """conv as im2col: the f_h*f_w shifted (strided) views of the padded input, concatenated
    on channels in HWIO order, times the kernel reshaped to (f_h*f_w*c_in, c_out)."""
    (sh, sw), ((pt, pb), (pl, pr)) = node.attrs["s"], node.attrs["padding"]
    oh, ow = node.out_shape[0], node.out_shape[1]

    def forward(run, x):
        kernel, bias = _weights(run, node)
        fh, fw, cin, cout = kernel.shape
        x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
        views = [x[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]
                 for i in range(fh) for j in range(fw)]
        y = jnp.concatenate(views, axis=-1) @ kernel.reshape(fh * fw * cin, cout)
        return y if bias is None else y + bias
    return forward


def _dense(node: Node) -> Forward:
    def forward(run, x):
        kernel, bias = _weights(run, node)
        y = x.reshape(x.shape[0], -1) @ kernel
        return y if bias is None else y + bias
    return forward


def _pool_window(node: Node):
    (fh, fw), (sh, sw) = node.attrs["f"], node.attrs["s"]
    pads = ((0, 0), *node.attrs["padding"], (0, 0))
    return (1, fh, fw, 1), (1, sh, sw, 1), pads


def _maxpool(node: Node) -> Forward:
    window, strides, pads = _pool_window(node)
    return lambda run, x: lax.reduce_window(x, -jnp.inf, lax.max, window, strides, pads)


def _real_cells(n: int, f: int, s: int, low: int, out: int) -> np.ndarray:
    """Along one axis of n cells padded by `low` in front: how many real cells each of the
    `out` windows (size f, stride s) covers."""
    start = np.arange(out) * s - low
    return np.minimum(start + f, n) - np.maximum(start, 0)


def _avgpool(node: Node) -> Forward:
    """Average over the real cells of each window: padded cells are not counted."""
    window, strides, pads = _pool_window(node)
    counts = np.outer(*(_real_cells(n, f, s, lo, out) for n, f, s, (lo, _), out in zip(
        node.in_shape[:2], node.attrs["f"], node.attrs["s"], node.attrs["padding"],
        node.out_shape[:2])))[None, :, :, None].astype(np.float32)

    def forward(run, x):
        total = lax.reduce_window(x, 0.0, lax.add, window, strides, pads)
        return total / counts.astype(x.dtype)
    return forward


def _head(activation) -> Callable[[Node], Forward]:
    """softmax N / sigmoid N (fc then the activation) or the bare activation."""
    def lower(node: Node) -> Forward:
        dense = _dense(node) if node.attrs.get("units") else None

        def forward(run, x):
            return activation(dense(run, x) if dense else x)
        return forward
    return lower


def _elementwise(fn) -> Callable[[Node], Forward]:
    return lambda node: (lambda run, x: fn(x))


def _dropout(node: Node) -> Forward:
    keep = node.attrs["keep"]

    def forward(run, x):
        if not run.train or keep >= 1.0:
            return x
        mask = jax.random.bernoulli(run.key_for(node), keep, x.shape)
        return jnp.where(mask, x / keep, jnp.zeros((), x.dtype))
    return forward


def _batchnorm(node: Node) -> Forward:
    momentum, eps = node.attrs["momentum"], node.attrs["eps"]
    axes = tuple(range(len(node.in_shape)))  # all but channels (axis 0 is the batch)

    def forward(run, x):
        p, s = run.params[node.name], run.state[node.name]
        if run.train:
            x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
            mean, var = jnp.mean(x32, axes), jnp.var(x32, axes)
            run.new_state[node.name] = {
                "mean": momentum * s["mean"] + (1 - momentum) * lax.stop_gradient(mean),
                "var": momentum * s["var"] + (1 - momentum) * lax.stop_gradient(var)}
        else:
            mean, var = s["mean"], s["var"]
        scale = p["gamma"] * lax.rsqrt(var + eps)
        shift = p["beta"] - mean * scale
        return x * scale.astype(x.dtype) + shift.astype(x.dtype)
    return forward


LOWERINGS: dict[str, Callable[[Node], Forward]] = {
    "conv": _conv,
    "fc": _dense,
    "maxpool": _maxpool,
    "avgpool": _avgpool,
    "globalavgpool": _elementwise(lambda x: jnp.mean(x, axis=(1, 2))),
    "globalmaxpool": _elementwise(lambda x: jnp.max(x, axis=(1, 2))),
    "flatten": _elementwise(lambda x: x.reshape(x.shape[0], -1)),
    "relu": _elementwise(jax.nn.relu),
    "tanh": _elementwise(jnp.tanh),
    "gelu": _elementwise(jax.nn.gelu),
    "silu": _elementwise(jax.nn.silu),
    "softmax": _head(jax.nn.softmax),
    "sigmoid": _head(jax.nn.sigmoid),
    "dropout": _dropout,
    "batchnorm": _batchnorm,
}
LOWERINGS["leaky_relu"] = lambda node: (lambda run, x: jax.nn.leaky_relu(x, node.attrs["a"]))
LOWERINGS["elu"] = lambda node: (lambda run, x: jax.nn.elu(x, node.attrs["a"]))


# ---- blocks ----------------------------------------------------------------------------


def lower_node(node: Node) -> Forward:
    if node.kind == "sequence":
        steps = [lower_node(c) for c in node.children]

        def sequence(run, x):
            for step in steps:
                x = step(run, x)
            return x
        return sequence
    if node.kind == "residual":
        body_node, shortcut_node = node.children
        body = lower_node(body_node)
        shortcut = lower_node(shortcut_node) if shortcut_node is not None else None
        return lambda run, x: body(run, x) + (shortcut(run, x) if shortcut else x)
    if node.kind == "concat":
        branches = [lower_node(b) for b in node.children]
        return lambda run, x: jnp.concatenate([b(run, x) for b in branches], axis=-1)
    return LOWERINGS[node.kind](node)


# ---- initialisation --------------------------------------------------------------------


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return receptive * shape[-2], receptive * shape[-1]


def init_scale(name: str, options: dict, shape) -> float:
    """The course's initialisers as a scale on N(0, 1): he sqrt(2/fan_in), xavier
    sqrt(1/fan_in), glorot sqrt(2/(fan_in+fan_out)), random `scale` (0.01); zeros is 0."""
    if name == "zeros":
        return 0.0
    fan_in, fan_out = _fans(shape)
    return {"he": math.sqrt(2 / fan_in), "xavier": math.sqrt(1 / fan_in),
            "glorot": math.sqrt(2 / (fan_in + fan_out)),
            "random": options.get("scale", 0.01)}[name]


def init_variables(net: Net, key: Array, dtype=jnp.float32) -> dict:
    """Fresh variables. Every kernel is a slice of ONE standard normal draw (in layer order)
    times its scale: XLA compiles each random draw separately, and one draw per kernel made
    LeNet-5's init take 1.6 s to compile against 0.3 s for a single draw."""
    default = net.train.init
    params, state = {}, {}
    kernels = []  # (leaf name, shape, scale)
    for leaf in net.leaves():
        if leaf.params:
            p = {}
            for pname, shape in leaf.params.items():
                if pname == "kernel":
                    choice = leaf.attrs.get("init") or default.name
                    opts = default.options if choice == default.name else {}
                    kernels.append((leaf.name, shape, init_scale(choice, opts, shape)))
                elif pname == "gamma":
                    p[pname] = jnp.ones(shape, dtype)
                else:  # bias, beta
                    p[pname] = jnp.zeros(shape, dtype)
            params[leaf.name] = p
        if leaf.state:
            state[leaf.name] = {"mean": jnp.zeros(leaf.state["mean"], jnp.float32),
                                "var": jnp.ones(leaf.state["var"], jnp.float32)}
    total = sum(math.prod(shape) for _, shape, _ in kernels)
    normal = jax.random.normal(key, (total,), dtype) if total else None
    offset = 0
    for name, shape, scale in kernels:
        size = math.prod(shape)
        draw = normal[offset:offset + size].reshape(shape)
        params[name]["kernel"] = draw * jnp.asarray(scale, dtype)
        offset += size
    return {"params": params, "state": state}


def l2_kernels(net: Net) -> list[str]:
    """Names of the leaves whose kernels count for L2: conv and fc kernels (heads too)."""
    return [leaf.name for leaf in net.leaves() if has_weights(leaf.kind, leaf.attrs)]
