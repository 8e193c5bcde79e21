"""What a layer kind is: one `LayerKind` record holds everything netc knows about a kind.

    arguments       `args`, bound and type-checked by compiler/args.py
    shape rule      `infer(attrs, in_shape) -> Inferred` (output shape, parameter and state
                    shapes, multiply-accumulates, resolved attributes, warnings)
    parameters      `params`: each parameter's role. WEIGHT parameters are drawn by the
                    spec's initialiser and count for L2 (and for freezing and export);
                    ZEROS / ONES parameters start at 0 / 1 and are never decayed
    state           `state`: non-trained variables (BatchNorm's running statistics)
    lowering        `lower(node, target) -> forward`, the JAX half (see below)
    loops, heads    `scan_friendly(node, platform)`; `head` for kinds that can end a net
    ONNX export     `onnx(node, graph, x, params, state) -> y`, the kind as ONNX operators

The checker reads the first half and never imports JAX; `lower` imports JAX lazily
(compiler/lazy_jax.py), so a kind's two halves live in one module.

A forward function is `forward(ctx, x, params, state) -> y`, where `params`/`state` are the
layer's own dicts and `ctx` a `Context`; a kind that declares `state` returns
`(y, new_state)` instead. Shapes are per example, channels last (no batch axis), except in
forward functions, whose `x` has the batch axis first.

An ONNX mapping is `onnx(node, graph, x, params, state) -> y`, where `x` and `y` name tensors
of the ONNX graph, `params`/`state` are the layer's own numpy arrays (inference: BatchNorm's
running statistics) and `graph` the builder of compiler/onnx_export.py (`graph.op`,
`graph.constant`, `graph.channel_axis`, `graph.flat`). In the graph an image (HxWxC per
example) is NCHW, as ONNX's Conv and pools want it; every other tensor keeps netc's layout.
The mapping calls only the builder, so a kind's module never imports onnx.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ..args import Arg
from ..lazy_jax import jax

Shape = tuple[int, ...]

WEIGHT, ZEROS, ONES = "weight", "zeros", "ones"
INITIALIZERS = ("he", "xavier", "glorot", "random", "zeros")


class ShapeError(Exception):
    """A layer that cannot take its input; `label` goes under the caret, `help` below."""

    def __init__(self, message: str, label: str = "", help: str = ""):
        super().__init__(message)
        self.label = label
        self.help = help


@dataclass(frozen=True)
class Inferred:
    out_shape: Shape
    params: dict[str, Shape] = field(default_factory=dict)
    state: dict[str, Shape] = field(default_factory=dict)
    macs: int = 0
    attrs: dict = field(default_factory=dict)  # resolved attributes for lowering
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Context:
    """What one forward pass carries besides the data: training or inference, the dropout
    key and the dtype arithmetic runs in."""

    train: bool
    rng: object | None  # a jax.random key, or None
    compute_dtype: object

    def key_for(self, layer: str):
        """A key of this layer's own, folded from the pass's key and the layer's name."""
        if self.rng is None:
            raise ValueError(f"{layer}: dropout in training needs an rng: "
                             "model.apply(variables, x, train=True, rng=key)")
        return jax.random.fold_in(self.rng, stable_hash(layer))

    def cast(self, array):
        """A parameter in the compute dtype (bfloat16 compute keeps float32 parameters)."""
        return array.astype(self.compute_dtype)


def stable_hash(name: str) -> int:
    """A hash of a layer name that is the same in every process (Python's hash is not)."""
    h = 0
    for ch in name.encode():
        h = (h * 131 + ch) % 2_147_483_647
    return h


def _always(node, platform: str) -> bool:
    return True


@dataclass(frozen=True)
class Head:
    """A kind that ends a net as its output activation (softmax, sigmoid). The loss that pairs
    with it (compiler/losses.py) is computed from the logits, before `activation`, which is
    numerically stable; `lower_logits(node, target)` lowers the layer without it."""

    activation: Callable
    lower_logits: Callable


@dataclass(frozen=True)
class LayerKind:
    """One layer kind: see the module docstring for each part."""

    name: str
    args: tuple[Arg, ...]
    infer: Callable[[dict, Shape], Inferred]
    lower: Callable  # (node, target: Target) -> forward
    doc: str
    aliases: tuple[str, ...] = ()
    params: dict[str, str] = field(default_factory=dict)  # parameter name -> WEIGHT/ZEROS/ONES
    state: dict[str, str] = field(default_factory=dict)   # state name -> ZEROS/ONES
    # Whether the training loop may fuse this layer into `lax.scan` on `platform` without
    # leaving XLA's fast path (XLA:CPU's direct convolutions are 5x slower inside a scan).
    scan_friendly: Callable[[object, str], bool] = _always
    head: Head | None = None
    # The kind as ONNX operators (see the module docstring); None: it cannot be exported to
    # ONNX (StableHLO export goes through `lower` and needs nothing more)
    onnx: Callable | None = None

    @property
    def weights(self) -> tuple[str, ...]:
        return tuple(p for p, role in self.params.items() if role == WEIGHT)


@dataclass(frozen=True)
class Target:
    """What the lowering may depend on besides the node: the platform (cpu, gpu, tpu), part
    of the compiled model's cache key (compiler/model.py), and the frozen layers (`freeze`:
    a frozen layer with state, BatchNorm, runs in inference mode)."""

    platform: str
    frozen: frozenset[str] = frozenset()


def show_shape(shape: Shape | None) -> str:
    if shape is None:
        return "?"
    return "x".join(str(d) for d in shape) if len(shape) != 1 else f"vector {shape[0]}"


def fans(shape: Shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a kernel: dense (n_in, n_out); conv HWIO (f_h, f_w, c_in/G, c)
    gives f_h*f_w*c_in/G and f_h*f_w*c (a dwconv's (f, f, 1, c*m): f*f and f*f*c*m)."""
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return receptive * shape[-2], receptive * shape[-1]


def init_scale(name: str, options: dict, shape: Shape) -> float:
    """The course's initialisers as a scale on N(0, 1): he sqrt(2/fan_in), xavier
    sqrt(1/fan_in), glorot sqrt(2/(fan_in+fan_out)), random `scale` (0.01); zeros is 0."""
    if name == "zeros":
        return 0.0
    fan_in, fan_out = fans(shape)
    return {"he": math.sqrt(2 / fan_in), "xavier": math.sqrt(1 / fan_in),
            "glorot": math.sqrt(2 / (fan_in + fan_out)),
            "random": options.get("scale", 0.01)}[name]
