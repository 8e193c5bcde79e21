"""The `train { }` section: each setting's arguments, defaults and validation -> TrainConfig.

Formulas (optimisers, schedules, l2, init) are in docs/language.md and LANGUAGE.md section 4;
this module only checks and records what was written. No JAX here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from netc.dsl import nodes as n
from netc.dsl.diagnostics import Diagnostic, error

from .args import (
    Arg,
    ArgTypeError,
    Sym,
    anything,
    bind,
    boolean,
    choice,
    fraction_open,
    nonneg_int,
    nonneg_number,
    number,
    positive_int,
    positive_number,
    suggest,
)
from .layers import INITIALIZERS
from .losses import LOSS_NAMES
from .remedies import Augment, EarlyStop, Freeze, check_augment, check_early_stop, check_freeze

BUILTIN_DATA = {
    "moons": {"n": positive_int, "noise": nonneg_number, "seed": nonneg_int},
    "circles": {"n": positive_int, "noise": nonneg_number, "factor": positive_number,
                "seed": nonneg_int},
    "flower": {"n": positive_int, "petals": positive_int, "seed": nonneg_int},
    "digits": {},
}


def _quoted_path(v):
    """A split's own file (`test="test_catvnoncat.h5"`): a quoted, non-empty path."""
    if isinstance(v, str) and not isinstance(v, Sym) and v.strip():
        return v
    raise ArgTypeError('expects a quoted file path, e.g. "test_catvnoncat.h5"')


def _columns(v):
    """`onehot=color`, `onehot=color,size`, `onehot=2` or `onehot="0,3"`: csv columns by name
    or index (the data reader resolves them)."""
    if isinstance(v, bool) or not isinstance(v, (int, str)) or not str(v).strip():
        raise ArgTypeError("expects csv column names or indices",
                           help='e.g. onehot=color,size or onehot="0,3"')
    return v


FILE_OPTIONS = {"label": anything, "onehot": _columns, "size": anything,
                "mode": choice("rgb", "gray", "L", "RGB"),
                "dev": _quoted_path, "test": _quoted_path,
                "workers": nonneg_int,  # processes decoding a streamed split's batches
                "skip_bad": boolean}  # streaming: an unreadable example left out, counted

OPTIMIZERS: dict[str, tuple[Arg, ...]] = {
    "gd": (Arg("lr", positive_number, 0.01),),
    "momentum": (Arg("lr", positive_number, 0.01), Arg("beta", fraction_open, 0.9)),
    "rmsprop": (Arg("lr", positive_number, 0.001), Arg("beta", fraction_open, 0.9),
                Arg("eps", positive_number, 1e-8)),
    "adam": (Arg("lr", positive_number, 0.001), Arg("b1", fraction_open, 0.9),
             Arg("b2", fraction_open, 0.999), Arg("eps", positive_number, 1e-8)),
    "adamw": (Arg("lr", positive_number, 0.001), Arg("b1", fraction_open, 0.9),
              Arg("b2", fraction_open, 0.999), Arg("eps", positive_number, 1e-8),
              Arg("wd", nonneg_number, 0.01)),
}
OPTIMIZER_ALIASES = {"sgd": "gd"}

SCHEDULES: dict[str, tuple[Arg, ...]] = {
    "constant": (),
    "inverse_time": (Arg("decay", nonneg_number, 1.0), Arg("every", positive_int, 1)),
    "exponential": (Arg("rate", positive_number, 0.95), Arg("every", positive_int, 1)),
    "inverse_sqrt": (Arg("k", positive_number, 1.0),),
    "cosine": (Arg("min", nonneg_number, 0.0),),
}


@dataclass(frozen=True)
class Choice:
    """A named option with its hyper-parameters, e.g. adam {lr: 0.001, ...}."""

    name: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class InitFrom:
    """`init from="RUN_DIR" layers=NAME,...`: start from a trained run's variables
    (compiler/transfer_check.py matches them to this net's layers)."""

    path: str                              # as written; relative to the spec's folder
    layers: tuple[str, ...] | None = None  # layer names or block prefixes; None: every match
    # where it is written (the whole setting; the layers= argument), for messages
    span: n.Span | None = field(default=None, compare=False, repr=False)
    layers_span: n.Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class TrainConfig:
    data: Choice | None = None          # name = built-in or path; options["path"] for files
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    normalize: str = "none"
    batch: int | None = 64              # None: the full batch
    epochs: int = 10
    optimizer: Choice = Choice("adam", {"lr": 0.001, "b1": 0.9, "b2": 0.999, "eps": 1e-8})
    schedule: Choice = Choice("constant")
    l2: float = 0.0
    init: Choice = Choice("he")
    init_from: InitFrom | None = None   # `init from="RUN_DIR"`, a second `init` line
    loss: str | None = None             # None: follows the last layer
    seed: int = 0
    train_dev: float | None = None      # fraction of train held out as the train-dev split
    freeze: Freeze | None = None        # compiler/remedies.py: the course's remedies
    augment: Augment | None = None
    early_stop: EarlyStop | None = None
    accumulate: int = 1                 # micro-batches per minibatch, gradients summed
    stream: str = "auto"                # auto|on|off: read splits from disk while training
    skip_bad: bool = False              # streaming: leave out an unreadable example, counted
    spans: dict = field(default_factory=dict, compare=False)  # key -> Span, for later messages

    def batch_of(self, m: int) -> int:
        """The minibatch size for a train split of ``m`` examples: ``batch``, at most ``m``
        (``batch full``: ``m``). The Trainer's minibatches, and the batches every split is
        evaluated in (the final figures, `netc eval`, `--errors`)."""
        return min(self.batch or m, m)


def _one_value(key: str, convert, expects: str, example: str) -> tuple[Arg, ...]:
    """The schema of a setting written `KEY VALUE` (the value has no key=)."""
    return (Arg(key, convert, positional=True, doc=f"e.g. {example}", expects=expects),)


def _batch(v):
    if isinstance(v, Sym) and v == "full":
        return None
    try:
        return positive_int(v)
    except ArgTypeError:
        raise ArgTypeError("expects a positive integer or full") from None


def _fraction_between(v):
    """A fraction strictly between 0 and 1: the share of the train split held out."""
    try:
        x = number(v)
    except ArgTypeError:
        x = None
    if x is not None and 0 < x < 1:
        return x
    raise ArgTypeError("expects a fraction between 0 and 1 (both excluded)")


_SIMPLE = {
    "normalize": _one_value("normalize", choice("none", "standard"), "none or standard",
                            "normalize standard"),
    "batch": _one_value("batch", _batch, "a positive integer or full", "batch 64"),
    "epochs": _one_value("epochs", positive_int, "a positive integer", "epochs 10"),
    "l2": _one_value("l2", nonneg_number, "a number >= 0", "l2 0.0001"),
    "seed": _one_value("seed", nonneg_int, "an integer >= 0", "seed 0"),
    "loss": _one_value("loss", choice(*LOSS_NAMES), "one of: " + ", ".join(LOSS_NAMES),
                       "loss cross_entropy"),
    "accumulate": _one_value("accumulate", positive_int, "a positive integer", "accumulate 4"),
    "train_dev": _one_value("train_dev", _fraction_between, "a fraction between 0 and 1",
                            "train_dev 0.05"),
    "stream": _one_value("stream", choice("auto", "on", "off"), "auto, on or off",
                         "stream on"),
    "skip_bad": _one_value("skip_bad", boolean, "true or false", "skip_bad true"),
}
KEYS = ("data", "split", "normalize", "batch", "epochs", "optimizer", "schedule", "l2", "init",
        "loss", "seed", "train_dev", "freeze", "augment", "early_stop", "accumulate", "stream",
        "skip_bad")
_REMEDIES = {"freeze": check_freeze, "augment": check_augment, "early_stop": check_early_stop}
_SPLIT = tuple(Arg(p, nonneg_number, positional=True, expects="three fractions",
                   doc="e.g. split 0.8 0.1 0.1") for p in ("train", "dev", "test"))


def check_train(block: n.TrainBlock | None, diags: list[Diagnostic]) -> TrainConfig:
    """Validate a train block. Problems go to `diags`; the result holds the valid settings."""
    config = TrainConfig()
    if block is None:
        return config
    seen: dict[str, n.Setting] = {}
    values: dict = {}
    for setting in block.settings:
        key = setting.key
        if key not in KEYS:
            hint = suggest(key, KEYS)
            diags.append(error("E401", f"unknown train setting '{key}'", setting.key_span,
                               help=(hint + " " if hint else "") + "settings: " + ", ".join(KEYS)))
            continue
        slot = setting_slot(setting)  # `init from=` and `init he` may both be given
        if slot in seen:
            first = seen[slot].span
            diags.append(error("E402", f"'{slot}' is set twice (first at line {first.line})",
                               setting.key_span))
            continue
        seen[slot] = setting
        before = len(diags)
        value = _check_setting(setting, diags)
        if len(diags) == before and (value is not None or key == "batch"):
            values["init_from" if slot == INIT_FROM else key] = value
    spans = {k: s.span for k, s in seen.items()}
    return replace(config, **values, spans=spans)


INIT_FROM = "init from="  # the slot of an `init from=...` line (beside the plain `init`)


def setting_slot(s: n.Setting) -> str:
    """The key a setting occupies: its key, or INIT_FROM for `init from=...`, which may sit
    beside a plain `init` (each at most once)."""
    if s.key == "init" and s.args and s.args[0].key == "from":
        return INIT_FROM
    return s.key


def _check_setting(s: n.Setting, diags: list[Diagnostic]):
    before = len(diags)
    key = s.key
    if setting_slot(s) == INIT_FROM:
        return _check_init_from(s, diags)
    if key == "init" and any(a.key == "from" for a in s.args):
        diags.append(error("E404", "init from= goes on a line of its own", s.span,
                           help='e.g. init from="runs/base" (a plain init such as init he may '
                           "sit on another line)"))
        return None
    if key in _SIMPLE:
        value = bind(s.args, _SIMPLE[key], {}, key, s.span, diags, setting_keys=KEYS).get(key)
        return LOSS_NAMES.get(value, value) if key == "loss" else value  # batch None: full batch
    if key == "split":
        bound = bind(s.args, _SPLIT, {}, key, s.span, diags, setting_keys=KEYS)
        if len(diags) > before:
            return None
        fractions = (bound["train"], bound["dev"], bound["test"])
        if abs(sum(fractions) - 1) > 1e-6 or fractions[0] <= 0:
            diags.append(error("E403", f"split fractions must add up to 1 with a train part > 0, "
                               f"got {' + '.join(map(str, fractions))} = {sum(fractions):g}",
                               s.span, help="e.g. split 0.8 0.1 0.1"))
            return None
        return fractions
    if key == "data":
        return _check_data(s, diags)
    if key in _REMEDIES:
        return _REMEDIES[key](s, KEYS, diags)
    table, aliases, what = {
        "optimizer": (OPTIMIZERS, OPTIMIZER_ALIASES, "optimizer"),
        "schedule": (SCHEDULES, {}, "schedule"),
        "init": ({k: ((Arg("scale", positive_number, 0.01),) if k == "random" else ())
                  for k in INITIALIZERS}, {}, "init"),
    }[key]
    return _check_named(s, table, aliases, what, diags)


def _check_named(s: n.Setting, table: dict, aliases: dict, what: str, diags) -> Choice | None:
    """`optimizer adam lr=0.001`: a name from `table` then its key=value options."""
    if not s.args or s.args[0].key is not None or not isinstance(s.args[0].value, n.Word):
        diags.append(error("E404", f"{what} needs a name first: one of {', '.join(table)}",
                           s.span, help=f"e.g. {what} {next(iter(table))}"))
        return None
    word = s.args[0].value
    name = aliases.get(word.name, word.name)
    if name not in table:
        hint = suggest(word.name, list(table) + list(aliases))
        diags.append(error("E405", f"unknown {what} '{word.name}'", word.span,
                           help=(hint + " " if hint else "") + f"{what}s: " + ", ".join(table)))
        return None
    before = len(diags)
    options = bind(s.args[1:], table[name], {}, f"{what} {name}", s.span, diags,
                   setting_keys=KEYS)
    return Choice(name, options) if len(diags) == before else None


def _check_data(s: n.Setting, diags) -> Choice | None:
    if not s.args or s.args[0].key is not None or not isinstance(s.args[0].value,
                                                                  (n.Word, n.String)):
        diags.append(error("E404", "data needs a source: moons, circles, flower, digits or a "
                           'quoted path such as "data/train.npz"', s.span))
        return None
    source = s.args[0].value
    if isinstance(source, n.Word):
        if source.name not in BUILTIN_DATA:
            hint = suggest(source.name, BUILTIN_DATA)
            diags.append(error("E405", f"unknown data set '{source.name}'", source.span,
                               help=(hint + " " if hint else "") + "built-in: "
                               + ", ".join(BUILTIN_DATA) + '; files are quoted: "x.npz"'))
            return None
        schema = tuple(Arg(k, conv, None) for k, conv in BUILTIN_DATA[source.name].items())
        before = len(diags)
        options = bind(s.args[1:], schema, {}, f"data {source.name}", s.span, diags,
                       setting_keys=KEYS)
        if len(diags) > before:
            return None
        return Choice(source.name, {k: v for k, v in options.items() if v is not None})
    path = source.value
    if not path:
        diags.append(error("E406", "data path is empty", source.span))
        return None
    schema = tuple(Arg(k, conv, None) for k, conv in FILE_OPTIONS.items())
    before = len(diags)
    options = bind(s.args[1:], schema, {}, "data", s.span, diags, setting_keys=KEYS)
    if len(diags) > before:
        return None
    options = {k: v for k, v in options.items() if v is not None}
    return Choice("file", {"path": path, **options})


def _run_folder(v):
    if isinstance(v, str) and not isinstance(v, Sym) and v.strip():
        return v
    if isinstance(v, str) and not isinstance(v, Sym):
        raise ArgTypeError("is empty: name a run folder", help='e.g. init from="runs/base"')
    raise ArgTypeError("expects a quoted run folder", help='e.g. init from="runs/base"')


_LAYER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*")


def _layer_names(v):
    """`layers=conv_1` or `layers="layer1, fc_1"` (quoted: names with '/', or several)."""
    if isinstance(v, Sym):
        return (str(v),)
    if not isinstance(v, str):
        raise ArgTypeError("expects layer names", help='e.g. layers=conv_1 or '
                           'layers="layer1,fc_1"')
    names = tuple(part for part in re.split(r"[\s,]+", v) if part)
    bad = [name for name in names if not _LAYER_NAME.fullmatch(name)]
    if not names or bad:
        raise ArgTypeError(f"'{bad[0]}' is not a layer name" if bad else "names no layer",
                           help='layer names as netc check prints them, separated by commas: '
                           'layers="layer1,fc_1"')
    return names


_INIT_FROM = (Arg("from", _run_folder, doc='e.g. init from="runs/base"'),
              Arg("layers", _layer_names, None))


def _check_init_from(s: n.Setting, diags) -> InitFrom | None:
    before = len(diags)
    bound = bind(s.args, _INIT_FROM, {}, "init", s.span, diags, setting_keys=KEYS)
    if len(diags) > before:
        return None
    layers_span = next((a.span for a in s.args if a.key == "layers"), None)
    return InitFrom(bound["from"], bound["layers"], span=s.span, layers_span=layers_span)
