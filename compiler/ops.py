"""The layer kinds: one entry each, with its arguments and its shape rule.

`infer(attrs, in_shape) -> Inferred` computes the output shape, parameter and state shapes,
multiply-accumulates and the attributes lowering needs (such as resolved padding), or raises
ShapeError. The checker and the lowering (lower.py, keyed by the same kind names) both read
this table, so they cannot disagree. Shapes are per example, channels last; no batch axis.

Output size of conv and pools per spatial axis: floor((n + p_lo + p_hi - f) / s) + 1, with
p=same giving ceil(n / s) (XLA/TF SAME: the total padding split low = total // 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from .args import (
    Arg,
    ArgTypeError,
    boolean,
    choice,
    fraction_open,
    number,
    padding,
    positive_int,
    positive_number,
    size2,
)

Shape = tuple[int, ...]

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
class OpSpec:
    kind: str
    args: tuple[Arg, ...]
    infer: Callable[[dict, Shape], Inferred]
    doc: str
    aliases: tuple[str, ...] = ()


def show_shape(shape: Shape | None) -> str:
    if shape is None:
        return "?"
    return "x".join(str(d) for d in shape) if len(shape) != 1 else f"vector {shape[0]}"


# ---- spatial arithmetic -----------------------------------------------------------------


def _need_image(kind: str, in_shape: Shape) -> tuple[int, int, int]:
    if len(in_shape) != 3:
        raise ShapeError(f"{kind} needs an HxWxC image, but its input is {show_shape(in_shape)}",
                         help="conv and pooling layers must come before fc/flatten")
    return in_shape  # type: ignore[return-value]


def _window(kind: str, in_shape, f_hw, s_hw, pad, args_text: str):
    """Per-axis output size and (low, high) padding; raises ShapeError with the arithmetic."""
    out, pads, warnings = [], [], []
    for n, f, s, axis in zip(in_shape[:2], f_hw, s_hw, ("rows", "columns")):
        if pad == "same":
            o = -(-n // s)
            total = max((o - 1) * s + f - n, 0)
            lo, hi = total // 2, total - total // 2
        else:
            p = pad[0] if axis == "rows" else pad[1]
            lo = hi = p
            o = (n + 2 * p - f) // s + 1
            if o < 1:
                shown = "x".join(str(x) for x in in_shape)
                raise ShapeError(
                    f"{args_text} does not fit a {shown} input: "
                    f"({n} + 2*{p} - {f})/{s} + 1 = {o}",
                    label=f"output would be {o} {axis}",
                    help=f"pad with p={(f - 1) // 2 or 1} or p=same, or use a smaller f")
            skipped = (n + 2 * p - f) % s - p  # left-over cells beyond the padding
            if skipped > 0:
                warnings.append(
                    f"{args_text} on {n} {axis}: ({n} + 2*{p} - {f}) = {n + 2 * p - f} is not "
                    f"divisible by s={s}, so the last {skipped} of the {axis} are never "
                    "visited")
        out.append(o)
        pads.append((lo, hi))
    return tuple(out), tuple(pads), tuple(warnings)


def _args_text(kind, attrs) -> str:
    f = attrs["f"]
    return f"{kind} f={f[0] if f[0] == f[1] else 'x'.join(map(str, f))}" + (
        f" s={attrs['s'][0]}" if attrs["s"] != (1, 1) and attrs["s"] != f else "")


# ---- infer functions ------------------------------------------------------------------


def _conv(attrs, in_shape):
    h, w, c_in = _need_image("conv", in_shape)
    (fh, fw), c = attrs["f"], attrs["c"]
    (ho, wo), pads, warnings = _window("conv", in_shape, attrs["f"], attrs["s"], attrs["p"],
                                       _args_text("conv", attrs))
    params = {"kernel": (fh, fw, c_in, c)}
    if attrs["bias"]:
        params["bias"] = (c,)
    return Inferred((ho, wo, c), params, macs=ho * wo * c * fh * fw * c_in,
                    attrs={"padding": pads}, warnings=warnings)


def _pool(kind):
    def infer(attrs, in_shape):
        h, w, c = _need_image(kind, in_shape)
        if attrs["s"] is None:
            attrs = {**attrs, "s": attrs["f"]}
        p = attrs["p"]
        if p != "same" and any(2 * pi > fi for pi, fi in zip(p, attrs["f"])):
            raise ShapeError(f"{kind} padding p={p[0]} is more than half the window "
                             f"f={attrs['f'][0]}",
                             help="padding of at most f/2 keeps every window over real cells")
        (ho, wo), pads, warnings = _window(kind, in_shape, attrs["f"], attrs["s"], p,
                                           _args_text(kind, attrs))
        return Inferred((ho, wo, c), attrs={"padding": pads, "s": attrs["s"]}, warnings=warnings)
    return infer


def _global_pool(kind):
    def infer(attrs, in_shape):
        _, _, c = _need_image(kind, in_shape)
        return Inferred((c,))
    return infer


def _dense(attrs, in_shape):
    n_in, units = math.prod(in_shape), attrs["units"]
    params = {"kernel": (n_in, units)}
    if attrs["bias"]:
        params["bias"] = (units,)
    return Inferred((units,), params, macs=n_in * units)


def _head(attrs, in_shape):
    """softmax N / sigmoid N: fc N then the activation; bare softmax/sigmoid: activation only."""
    if attrs["units"] is None:
        return Inferred(in_shape)
    return _dense(attrs, in_shape)


def _flatten(attrs, in_shape):
    return Inferred((math.prod(in_shape),))


def _same_shape(attrs, in_shape):
    return Inferred(in_shape)


def _dropout(attrs, in_shape):
    keep, rate = attrs["keep"], attrs["rate"]
    if (keep is None) == (rate is None):
        raise ShapeError("dropout needs exactly one of keep=P (the course's keep_prob) or rate=Q",
                         help="e.g. dropout keep=0.8  (the same as dropout rate=0.2)")
    return Inferred(in_shape, attrs={"keep": keep if keep is not None else 1.0 - rate})


def _batchnorm(attrs, in_shape):
    c = in_shape[-1]
    return Inferred(in_shape, {"gamma": (c,), "beta": (c,)}, {"mean": (c,), "var": (c,)})


# ---- argument types ---------------------------------------------------------------------


def _keep(v):
    x = number(v)
    if 0 < x <= 1:
        return x
    raise ArgTypeError("expects a probability in (0, 1]", help="keep is the chance to keep a unit")


def _rate(v):
    x = number(v)
    if 0 <= x < 1:
        return x
    raise ArgTypeError("expects a probability in [0, 1)", help="rate is the chance to drop a unit")


_init = Arg("init", choice(*INITIALIZERS), None, doc="he, xavier, glorot, random or zeros")
_bias = Arg("bias", boolean, None)  # None: yes, unless the next layer is batchnorm
_window_args = (Arg("f", size2, doc="the window, e.g. f=2"), Arg("s", size2, None),
                Arg("p", padding, (0, 0)))
_activation_doc = "elementwise activation; shape unchanged"

OPS: dict[str, OpSpec] = {}


def _register(*specs: OpSpec) -> None:
    for spec in specs:
        OPS[spec.kind] = spec


_register(
    OpSpec("conv", (Arg("c", positive_int, doc="the number of filters, e.g. c=16"),
                    Arg("f", size2, doc="the filter size, e.g. f=3"), Arg("s", size2, (1, 1)),
                    Arg("p", padding, (0, 0)), _bias, _init),
           _conv, "2-D convolution, NHWC, kernel f x f x c_in x c", aliases=("conv2d",)),
    OpSpec("maxpool", _window_args, _pool("maxpool"), "max pooling; padding never wins"),
    OpSpec("avgpool", _window_args, _pool("avgpool"), "average pooling over the real cells"),
    OpSpec("globalavgpool", (), _global_pool("globalavgpool"), "mean over H and W",
           aliases=("gap",)),
    OpSpec("globalmaxpool", (), _global_pool("globalmaxpool"), "max over H and W"),
    OpSpec("fc", (Arg("units", positive_int, positional=True, doc="e.g. fc 120"), _bias, _init),
           _dense, "fully connected; flattens its input", aliases=("dense",)),
    OpSpec("flatten", (), _flatten, "reshape to a vector"),
    OpSpec("relu", (), _same_shape, _activation_doc),
    OpSpec("tanh", (), _same_shape, _activation_doc),
    OpSpec("leaky_relu", (Arg("a", number, 0.01),), _same_shape, _activation_doc),
    OpSpec("elu", (Arg("a", positive_number, 1.0),), _same_shape, _activation_doc),
    OpSpec("gelu", (), _same_shape, _activation_doc),
    OpSpec("silu", (), _same_shape, _activation_doc, aliases=("swish",)),
    OpSpec("softmax", (Arg("units", positive_int, None, positional=True), _bias, _init),
           _head, "softmax N = fc N -> softmax; bare softmax is the activation"),
    OpSpec("sigmoid", (Arg("units", positive_int, None, positional=True), _bias, _init),
           _head, "sigmoid N = fc N -> sigmoid; bare sigmoid is the activation"),
    OpSpec("dropout", (Arg("keep", _keep, None), Arg("rate", _rate, None)), _dropout,
           "inverted dropout: a * mask / keep in training, identity at inference"),
    OpSpec("batchnorm", (Arg("momentum", fraction_open, 0.9), Arg("eps", positive_number, 1e-5)),
           _batchnorm, "batch normalisation over all axes but channels", aliases=("bn",)),
)

ALIASES: dict[str, str] = {a: spec.kind for spec in OPS.values() for a in spec.aliases}
# The name of each kind's positional argument (`fc 120` is `fc units=120`), aliases included:
# the parser's hint for `fc 2*n` names it.
POSITIONAL: dict[str, str] = {
    kind: next(a.name for a in OPS[ALIASES.get(kind, kind)].args if a.positional)
    for kind in [*OPS, *ALIASES] if any(a.positional for a in OPS[ALIASES.get(kind, kind)].args)}


def lookup(kind: str) -> OpSpec | None:
    """The entry for a kind or one of its aliases."""
    return OPS.get(ALIASES.get(kind, kind))


def has_weights(kind: str, attrs: dict) -> bool:
    """Layers whose kernel counts for L2 and initialisation: conv, fc and the dense heads."""
    return kind in ("conv", "fc") or (kind in ("softmax", "sigmoid") and attrs.get("units"))
