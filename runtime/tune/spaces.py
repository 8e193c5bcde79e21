"""Search spaces of `netc tune --set KEY=SPACE` (LANGUAGE.md section 7), bounds inclusive:

    log(a, b)       10^U(log10 a, log10 b)        learning rates, l2
    1-log(a, b)     1 - 10^U(log10 a, log10 b)    betas: 1-log(1e-3, 1e-1) gives 0.9 ... 0.999
    uniform(a, b)   U(a, b)
    int(a, b)       an integer in a ... b, each equally likely
    choice(v, ...)  one of the values, each equally likely

Each space is a small frozen dataclass that knows its Optuna distribution (the "internal"
value Optuna samples and stores under `param`), how an internal value becomes the value a
user writes (`value`), and how that value is written as a `--set` override. `1-log` samples
the log-uniform of 1-x (its Optuna parameter is named `1-KEY`) and gives x. Floats are drawn
to 4 significant figures (of 1-x for `1-log`), so what a run used and what tune.jsonl and
best.net say are the same number.

`parse_set` reads one `--set` item: a space, or None for a fixed `KEY=VALUE`. No Optuna
here except inside `distribution()`, and no JAX.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any

SIGNIFICANT = 4  # figures a sampled float keeps
# --refine's box: [min, max] of the best trials' values, widened on each side by BOX_PAD of
# its own width and SPACE_PAD of the space's width, in the space's scale (log10 for log
# spaces, log10(1-x) for 1-log), clipped to the space
BOX_PAD, SPACE_PAD = 0.25, 0.05


class SpaceError(ValueError):
    """A --set KEY=SPACE that is not a valid space; the message is one line naming it."""


def round_sig(x: float, figures: int = SIGNIFICANT) -> float:
    return float(f"{x:.{figures}g}") if x and math.isfinite(x) else x


def format_number(x: float | int) -> str:
    """How a value is written into a spec: `0.003162`, `1e-05`, `64`."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    return repr(float(x))


def show(value) -> str:
    """A sampled value as printed: floats to 10 significant digits (exact for samples, which
    keep 4), `1e-05`, `1000000`."""
    return f"{value:.10g}" if isinstance(value, float) else str(value)


def _clip(x, low, high):
    return min(max(x, low), high)


def _outward(lo: float, hi: float) -> tuple[float, float]:
    """[lo, hi] rounded outward to SIGNIFICANT figures, so a box prints as it is."""
    def step(x):
        return 10.0 ** (math.floor(math.log10(abs(x))) - SIGNIFICANT + 1) if x else 1.0

    return (round_sig(math.floor(lo / step(lo)) * step(lo)),
            round_sig(math.ceil(hi / step(hi)) * step(hi)))


@dataclass(frozen=True)
class LogSpace:
    """log(a, b): 10^U(log10 a, log10 b)."""

    key: str
    low: float
    high: float
    log_scale = True

    @property
    def param(self) -> str:
        return self.key

    def distribution(self):
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high, log=True)

    def value(self, internal: float) -> float:
        return _clip(round_sig(internal), self.low, self.high)

    def internal(self, value: float) -> float:
        return value

    def text(self) -> str:
        return f"log({format_number(self.low)}, {format_number(self.high)})"

    def narrowed(self, values: list[float]) -> LogSpace:
        lo, hi = _box([math.log10(v) for v in values], math.log10(self.low),
                      math.log10(self.high))
        lo, hi = _outward(10 ** lo, 10 ** hi)
        return LogSpace(self.key, _clip(lo, self.low, self.high),
                        _clip(hi, self.low, self.high))


@dataclass(frozen=True)
class OneMinusLogSpace:
    """1-log(a, b): 1 - 10^U(log10 a, log10 b); Optuna samples d = 1-x log-uniformly."""

    key: str
    low: float   # bounds of 1-x
    high: float
    log_scale = True

    @property
    def param(self) -> str:
        return f"1-{self.key}"

    def distribution(self):
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high, log=True)

    def value(self, internal: float) -> float:
        d = _clip(round_sig(internal), self.low, self.high)
        # 1 - d to the decimals that d's significant figures reach: 1 - 0.001995 = 0.998005
        decimals = max(0, SIGNIFICANT - 1 - math.floor(math.log10(d))) if d > 0 else 12
        return round(1.0 - d, decimals)

    def internal(self, value: float) -> float:
        return 1.0 - value

    def text(self) -> str:
        return f"1-log({format_number(self.low)}, {format_number(self.high)})"

    def narrowed(self, values: list[float]) -> OneMinusLogSpace:
        lo, hi = _box([math.log10(1.0 - v) for v in values], math.log10(self.low),
                      math.log10(self.high))
        lo, hi = _outward(10 ** lo, 10 ** hi)
        return OneMinusLogSpace(self.key, _clip(lo, self.low, self.high),
                                _clip(hi, self.low, self.high))


@dataclass(frozen=True)
class UniformSpace:
    """uniform(a, b)."""

    key: str
    low: float
    high: float
    log_scale = False

    @property
    def param(self) -> str:
        return self.key

    def distribution(self):
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high)

    def value(self, internal: float) -> float:
        return _clip(round_sig(internal), self.low, self.high)

    def internal(self, value: float) -> float:
        return value

    def text(self) -> str:
        return f"uniform({format_number(self.low)}, {format_number(self.high)})"

    def narrowed(self, values: list[float]) -> UniformSpace:
        lo, hi = _outward(*_box(values, self.low, self.high))
        return UniformSpace(self.key, _clip(lo, self.low, self.high),
                            _clip(hi, self.low, self.high))


@dataclass(frozen=True)
class IntSpace:
    """int(a, b): a, a+1, ..., b."""

    key: str
    low: int
    high: int
    log_scale = False

    @property
    def param(self) -> str:
        return self.key

    def distribution(self):
        from optuna.distributions import IntDistribution

        return IntDistribution(self.low, self.high)

    def value(self, internal) -> int:
        return int(internal)

    def internal(self, value: int) -> int:
        return int(value)

    def text(self) -> str:
        return f"int({self.low}, {self.high})"

    def narrowed(self, values: list[int]) -> IntSpace:
        lo, hi = _box([float(v) for v in values], self.low, self.high)
        lo, hi = max(self.low, math.floor(lo)), min(self.high, math.ceil(hi))
        return IntSpace(self.key, int(lo), int(hi))


@dataclass(frozen=True)
class ChoiceSpace:
    """choice(v1, v2, ...): `values` as Optuna stores them (int, float or str), `texts` as
    the user wrote them (what goes into the spec)."""

    key: str
    values: tuple
    texts: tuple[str, ...]
    log_scale = False

    @property
    def param(self) -> str:
        return self.key

    def distribution(self):
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(self.values)

    def value(self, internal):
        return internal

    def internal(self, value):
        return value

    def text(self) -> str:
        return f"choice({', '.join(self.texts)})"

    def narrowed(self, values: list) -> ChoiceSpace:
        keep = [i for i, v in enumerate(self.values) if v in values] or range(len(self.values))
        return ChoiceSpace(self.key, tuple(self.values[i] for i in keep),
                           tuple(self.texts[i] for i in keep))

    def text_of(self, value) -> str:
        return self.texts[self.values.index(value)]


Space = LogSpace | OneMinusLogSpace | UniformSpace | IntSpace | ChoiceSpace


def override(space: Space, value: Any) -> str:
    """The `--set KEY=VALUE` that applies a sampled value."""
    text = space.text_of(value) if isinstance(space, ChoiceSpace) else format_number(value)
    return f"{space.key}={text}"


def _box(values: list[float], low: float, high: float) -> tuple[float, float]:
    """[min, max] of `values` widened on each side by BOX_PAD of its width and SPACE_PAD of
    the space's width [low, high], clipped to it; all in the space's scale."""
    lo, hi = min(values), max(values)
    pad = BOX_PAD * (hi - lo) + SPACE_PAD * (high - low)
    return max(low, lo - pad), min(high, hi + pad)


# ---- parsing ----------------------------------------------------------------------------

_CALL = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*\((.*)\)\s*$", re.S)
_TOKEN = re.compile(r"""\s*("[^"]*"|'[^']*'|[^,]*?)\s*(,|$)""")
KINDS = ("log", "1-log", "uniform", "int", "choice")
# what other tools call netc's spaces (Optuna's suggest_loguniform, scipy.stats' reciprocal
# and randint, Ray Tune's loguniform, randint and choice, Keras Tuner's Choice): the hint
# writes the same call with netc's name
OTHER_NAMES = {"loguniform": "log", "log_uniform": "log", "reciprocal": "log",
               "randint": "int", "integer": "int", "categorical": "choice"}
_EXAMPLES = {"log": "log(1e-4, 1)", "1-log": "1-log(1e-3, 1e-1)", "uniform": "uniform(0.5, 1)",
             "int": "int(16, 256)", "choice": "choice(32, 64, 128)"}


def _args(text: str) -> list[str]:
    if not text.strip():
        return []
    out, pos = [], 0
    while pos <= len(text):
        m = _TOKEN.match(text, pos)
        out.append(m.group(1))
        if not m.group(2):
            break
        pos = m.end()
    return out


def _number(word: str, where: str) -> float:
    try:
        x = float(word)
    except ValueError:
        raise SpaceError(f"{where}: '{word}' is not a number") from None
    if not math.isfinite(x):
        raise SpaceError(f"{where}: bounds must be finite numbers, got {word}")
    return x


def _choice_value(word: str):
    """The value Optuna stores for a choice: an int, a float, or the text (unquoted)."""
    if re.fullmatch(r"[-+]?\d+", word):
        return int(word)
    try:
        x = float(word)
    except ValueError:
        return word[1:-1] if word[:1] in "\"'" and word[-1:] == word[:1] else word
    return x if math.isfinite(x) else word


def _other_name_hint(key: str, kind: str, args: str) -> str:
    """'did you mean CALL? ' with netc's space for another tool's (OTHER_NAMES), when that
    call is one netc takes; else where netc's name and an example are."""
    ours, words = OTHER_NAMES[kind], _args(args.strip().strip("[]"))  # categorical([...])
    note = ""
    if kind == "randint" and len(words) == 2 and all(re.fullmatch(r"-?\d+", w) for w in words):
        words[1], note = str(int(words[1]) - 1), "(randint leaves its upper bound out, int " \
            "takes it) "
    call = f"{ours}({', '.join(words)})"
    try:
        parse_set(f"{key}={call}")
    except SpaceError:
        return f"netc's is {ours}, e.g. {_EXAMPLES[ours]}; "
    return f"did you mean {call}? {note}"


def parse_set(item: str) -> Space | None:
    """The space of a `--set KEY=SPACE` item; None for a fixed `KEY=VALUE` (no space function:
    apply_overrides checks it). Raises SpaceError with a one-line message."""
    key, sep, value = item.partition("=")
    key, value = key.strip(), value.strip()
    m = _CALL.match(value)
    if not sep or not key or m is None:
        return None
    where = f"--set {item}"
    kind, args = m.group(1), _args(m.group(2))
    if kind not in KINDS:
        close = difflib.get_close_matches(kind, KINDS, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]}? " if close else ""
        if kind.lower() in OTHER_NAMES:
            hint = _other_name_hint(key, kind.lower(), m.group(2))
        raise SpaceError(f"{where}: unknown search space '{kind}' ({hint}spaces: "
                         + ", ".join(_EXAMPLES.values()) + ")")
    if kind == "choice":
        if not args or any(not a for a in args):
            raise SpaceError(f"{where}: choice needs values separated by commas, e.g. "
                             f"{_EXAMPLES['choice']}")
        values = [_choice_value(a) for a in args]
        for i, v in enumerate(values):
            if v in values[:i]:
                raise SpaceError(f"{where}: choice lists {args[i]} twice")
        return ChoiceSpace(key, tuple(values), tuple(args))
    if len(args) != 2:
        raise SpaceError(f"{where}: {kind} takes two bounds, e.g. {_EXAMPLES[kind]}")
    if kind == "int":
        try:
            low, high = int(args[0]), int(args[1])
        except ValueError:
            raise SpaceError(f"{where}: int bounds must be integers, e.g. "
                             f"{_EXAMPLES['int']}") from None
    else:
        low, high = _number(args[0], where), _number(args[1], where)
    if low > high:
        raise SpaceError(f"{where}: the lower bound {args[0]} is above the upper bound "
                         f"{args[1]} (write {kind}({args[1]}, {args[0]}))")
    if kind in ("log", "1-log") and low <= 0:
        what = "1-x" if kind == "1-log" else "x"
        raise SpaceError(f"{where}: {kind} needs bounds > 0 ({what} is 10^U(log10 a, log10 b)), "
                         f"e.g. {_EXAMPLES[kind]}")
    cls = {"log": LogSpace, "1-log": OneMinusLogSpace, "uniform": UniformSpace,
           "int": IntSpace}[kind]
    return cls(key, low, high)


def representative(space: Space):
    """A value of the space that is typical of it (the geometric or plain middle, the first
    choice): used to check the KEY before any trial runs."""
    if isinstance(space, ChoiceSpace):
        return space.values[0]
    if isinstance(space, IntSpace):
        return (space.low + space.high) // 2
    if isinstance(space, LogSpace | OneMinusLogSpace):
        return space.value(math.sqrt(space.low * space.high))
    return space.value((space.low + space.high) / 2)


__all__ = ["BOX_PAD", "KINDS", "SIGNIFICANT", "SPACE_PAD", "ChoiceSpace", "IntSpace", "LogSpace",
           "OneMinusLogSpace", "Space", "SpaceError", "UniformSpace", "format_number",
           "override", "parse_set", "representative", "round_sig", "show"]
