"""The course's remedies for variance and too little data, as train settings (LANGUAGE.md
section 7): `freeze`, `augment` and `early_stop`. Each is checked here, before anything
runs; runtime/train.py carries them out. No JAX here.

    freeze NAME ... [until NAME]          layers, block prefixes (`layer1` is layer1/...),
                                          every layer up to and including the `until` one
    augment flip crop=P color=F           training batches of images only
    early_stop patience=N min_delta=D on=dev_loss|dev_accuracy
    accumulate K                          (memory, not variance) K micro-batches a step
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netc.dsl import nodes as n
from netc.dsl.diagnostics import Diagnostic, error

from .args import Arg, Sym, bind, choice, nonneg_int, nonneg_number, positive_int, suggest


@dataclass(frozen=True)
class Freeze:
    names: tuple[str, ...] = ()           # layers or block prefixes
    until: str | None = None              # every layer up to and including this one
    spans: tuple = field(default=(), compare=False)  # of names, then of until


@dataclass(frozen=True)
class Augment:
    flip: bool = False                    # mirror left-right with probability 0.5
    crop: int = 0                         # pad this many cells and crop back at random
    color: float = 0.0                    # brightness and contrast by up to +-color


@dataclass(frozen=True)
class EarlyStop:
    patience: int
    min_delta: float = 0.0
    on: str = "dev_loss"                  # or dev_accuracy

    @property
    def higher_is_better(self) -> bool:
        return self.on == "dev_accuracy"


# ---- freeze -----------------------------------------------------------------------------


def check_freeze(s: n.Setting, keys, diags: list[Diagnostic]) -> Freeze | None:
    """`freeze conv_1 layer1 "layer2/bottleneck_1" until fc_2`: names are words or quoted
    (a full name holds '/')."""
    names, spans, until, until_span = [], [], None, None
    args = list(s.args)
    if not args:
        diags.append(error("E404", "freeze needs the layers to freeze", s.span,
                           help="e.g. freeze conv_1 layer1, or freeze until fc_1"))
        return None
    i = 0
    while i < len(args):
        arg = args[i]
        value = arg.value
        if arg.key is not None:
            diags.append(error("E410", f"freeze takes layer names, not {arg.key}=...", arg.span,
                               help="e.g. freeze conv_1 layer1, or freeze until fc_1"))
            return None
        if isinstance(value, n.Word) and value.name == "until":
            following = args[i + 1].value if i + 1 < len(args) else None
            name = _name(following)
            if name is None or args[i + 1].key is not None:
                diags.append(error("E410", "'until' needs a layer name after it", value.span,
                                   help="e.g. freeze until fc_1"))
                return None
            if until is not None:
                diags.append(error("E410", "freeze has one 'until'", value.span))
                return None
            until, until_span = name, args[i + 1].span
            i += 2
            continue
        name = _name(value)
        if name is None:
            diags.append(error("E410", "freeze expects layer names", arg.span,
                               help='a name with a "/" is quoted: freeze "layer1/conv_2"'))
            return None
        names.append(name)
        spans.append(arg.span)
        i += 1
    return Freeze(tuple(names), until, tuple(spans) + ((until_span,) if until else ()))


def _name(value) -> str | None:
    if isinstance(value, n.Word):
        return value.name
    if isinstance(value, n.String) and value.value:
        return value.value
    return None


def resolve_freeze(freeze: Freeze, leaves: list, diags: list[Diagnostic]) -> frozenset[str]:
    """The names of the frozen leaves; a name that matches no layer is an error (E411)."""
    names = [leaf.name for leaf in leaves]
    prefixes = sorted({name.rsplit("/", k)[0] for name in names
                       for k in range(1, name.count("/") + 1)})
    frozen: set[str] = set()
    for name, span in zip(freeze.names, freeze.spans):
        matched = [x for x in names if x == name or x.startswith(name + "/")]
        if not matched:
            diags.append(_no_layer("freeze", name, span, names + prefixes))
        frozen.update(matched)
    if freeze.until is not None:
        span = freeze.spans[len(freeze.names)]
        if freeze.until in names:
            frozen.update(names[:names.index(freeze.until) + 1])
        else:
            diags.append(_no_layer("freeze until", freeze.until, span, names))
    return frozenset(frozen)


def _no_layer(what: str, name: str, span, candidates: list[str]) -> Diagnostic:
    hint = suggest(name, candidates)
    return error("E411", f"{what}: no layer is named '{name}'", span,
                 help=hint or "the layer names are those `netc check` prints")


# ---- augment ------------------------------------------------------------------------------


def _flip_word(v):
    if isinstance(v, Sym) and v == "flip":
        return True
    from .args import ArgTypeError
    raise ArgTypeError("expects flip, crop=P or color=F")


AUGMENT_ARGS = (Arg("flip", _flip_word, False, positional=True, expects="flip"),
                Arg("crop", nonneg_int, 0, doc="cells of zero padding to crop from"),
                Arg("color", nonneg_number, 0.0, doc="brightness and contrast change"))


def check_augment(s: n.Setting, keys, diags: list[Diagnostic]) -> Augment | None:
    before = len(diags)
    bound = bind(s.args, AUGMENT_ARGS, {}, "augment", s.span, diags, setting_keys=keys)
    if len(diags) > before:
        return None
    augment = Augment(bool(bound["flip"]), bound["crop"], float(bound["color"]))
    if augment == Augment():
        diags.append(error("E412", "augment needs at least one of flip, crop=P, color=F",
                           s.span, help="e.g. augment flip crop=4 color=0.2"))
        return None
    if augment.color >= 1:
        diags.append(error("E412", f"augment color={augment.color:g} would scale the contrast "
                           "by a factor down to 0 or below", s.span,
                           help="color is a fraction below 1, e.g. color=0.2"))
        return None
    return augment


def check_augment_input(augment: Augment, input_shape, span, diags) -> None:
    """Augmentation is for images: HxWxC (or HxW) inputs."""
    if input_shape is not None and len(input_shape) == 1:
        diags.append(error("E412", f"augment works on images, but the input is a vector of "
                           f"{input_shape[0]}", span,
                           help="remove augment, or declare an image input such as "
                           "input 28x28x1"))
        return
    if input_shape is not None and augment.crop:
        small = min(input_shape[:2])
        if augment.crop >= small:
            diags.append(error("E412", f"augment crop={augment.crop} is not smaller than the "
                               f"{small}-cell side of the input", span,
                               help=f"use crop of at most {max(small // 4, 1)}"))


# ---- early_stop -------------------------------------------------------------------------

EARLY_STOP_ARGS = (Arg("patience", positive_int, doc="epochs without improvement, e.g. 5"),
                   Arg("min_delta", nonneg_number, 0.0),
                   Arg("on", choice("dev_loss", "dev_accuracy"), "dev_loss"))


def check_early_stop(s: n.Setting, keys, diags: list[Diagnostic]) -> EarlyStop | None:
    before = len(diags)
    bound = bind(s.args, EARLY_STOP_ARGS, {}, "early_stop", s.span, diags, setting_keys=keys)
    if len(diags) > before:
        return None
    return EarlyStop(bound["patience"], float(bound["min_delta"]), str(bound["on"]))


def check_early_stop_split(train, loss: str | None, diags: list[Diagnostic]) -> None:
    """early_stop reads the dev split each epoch: it needs one (and accuracy needs a
    classifier)."""
    stop = train.early_stop
    span = train.spans.get("early_stop")
    data = train.data
    own_dev = data is not None and data.name == "file"  # an .npz/.h5 may bring x_dev
    if train.split[1] == 0 and not own_dev:
        diags.append(error("E413", "early_stop watches the dev split, but the split has no "
                           f"dev part ({' '.join(f'{f:g}' for f in train.split)})", span,
                           help="e.g. split 0.8 0.1 0.1"))
    if stop.on == "dev_accuracy" and loss == "mse":
        diags.append(error("E413", "early_stop on=dev_accuracy needs a classifier; this net "
                           "is trained with mse", span, help="use on=dev_loss"))


# ---- accumulate --------------------------------------------------------------------------


def check_accumulate(train, diags: list[Diagnostic]) -> None:
    """`accumulate K` splits each minibatch into K equal micro-batches: K must divide the
    batch (a full batch is checked against the data when the run starts)."""
    k, batch = train.accumulate, train.batch
    if k > 1 and batch is not None and batch % k:
        divisors = [d for d in range(2, batch + 1) if batch % d == 0][:6]
        diags.append(error("E414", f"accumulate {k} does not divide batch {batch} into equal "
                           f"micro-batches ({batch} % {k} = {batch % k})",
                           train.spans.get("accumulate"),
                           help="divisors of the batch: " + ", ".join(map(str, divisors))))


__all__ = ["AUGMENT_ARGS", "EARLY_STOP_ARGS", "Augment", "EarlyStop", "Freeze",
           "check_accumulate", "check_augment", "check_augment_input", "check_early_stop",
           "check_early_stop_split", "check_freeze", "resolve_freeze"]
