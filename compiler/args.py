"""Arguments: evaluating expressions and binding them to a typed schema.

Layer kinds (compiler/layers/) and train settings (settings.py) describe their arguments
with `Arg` entries; `bind` matches the written positional and key=value arguments against
them, converts each value with its type and reports every problem as a diagnostic at the
argument's span.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netc.dsl import nodes as n
from netc.dsl.diagnostics import Diagnostic, error


class Sym(str):
    """A bare word used as a value (`same`, `true`, `adam`), as opposed to a quoted string."""


class ArgTypeError(Exception):
    """A value of the wrong type or range; the message completes 'KEY expects ...'."""

    def __init__(self, message: str, help: str = ""):
        super().__init__(message)
        self.help = help


REQUIRED = object()


@dataclass(frozen=True)
class Arg:
    """One argument of a layer or setting: name, converter, default, whether it is positional."""

    name: str
    convert: Callable[[Any], Any]
    default: Any = REQUIRED
    positional: bool = False
    doc: str = ""        # the help when it is missing, e.g. "e.g. fc 120"
    expects: str = ""    # what a missing positional value should be, e.g. "none or standard"


def suggest(word: str, choices) -> str:
    """A 'did you mean X?' hint, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]}?" if close else ""


# ---- expression evaluation ------------------------------------------------------------


def evaluate(expr: n.Expr, env: dict[str, Any]) -> Any:
    """An expression's value. Words bound in `env` (def parameters) are replaced by their value;
    other words stay words (Sym). Raises _EvalError with a diagnostic."""
    if isinstance(expr, n.Number):
        return expr.value
    if isinstance(expr, n.Dims):
        return expr.value
    if isinstance(expr, n.String):
        return expr.value
    if isinstance(expr, n.Word):
        return env[expr.name] if expr.name in env else Sym(expr.name)
    if isinstance(expr, n.Neg):
        value = evaluate(expr.operand, env)
        _require_number(value, expr.operand, env)
        return -value
    left = evaluate(expr.left, env)
    right = evaluate(expr.right, env)
    _require_number(left, expr.left, env)
    _require_number(right, expr.right, env)
    if expr.op == "+":
        return left + right
    if expr.op == "-":
        return left - right
    if expr.op == "*":
        return left * right
    if right == 0:
        raise EvalError(error("E205", "division by zero", expr.span))
    if isinstance(left, float) or isinstance(right, float):
        return float(left // right)
    return left // right


class EvalError(Exception):
    """An expression that has no value; `name` is the unknown word, if that is why."""

    def __init__(self, diagnostic: Diagnostic, name: str | None = None):
        self.diagnostic = diagnostic
        self.name = name


def _require_number(value, expr, env):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, Sym):
            hint = suggest(value, env) if env else ""
            names = ", ".join(env) if env else "none here"
            raise EvalError(error(
                "E204", f"unknown name '{value}' in an expression", expr.span,
                help=hint or f"the names in scope are the def's parameters ({names})"),
                name=str(value))
        raise EvalError(error("E204", f"arithmetic needs numbers, got {show(value)}", expr.span))


def show(value: Any) -> str:
    """A value as the user would write it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    if isinstance(value, Sym):
        return str(value)
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value) if isinstance(value, float) else str(value)


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "//": 2}


def show_expr(expr: n.Expr) -> str:
    """An expression as the user would write it: `2*n`, `(c+1)//2`, `same`."""
    if isinstance(expr, n.Number | n.Dims):
        return show(expr.value)
    if isinstance(expr, n.Word):
        return expr.name
    if isinstance(expr, n.String):
        return show(expr.value)
    if isinstance(expr, n.Neg):
        inner = show_expr(expr.operand)
        return f"-({inner})" if isinstance(expr.operand, n.BinOp) else f"-{inner}"
    prec = _PRECEDENCE[expr.op]
    left, right = show_expr(expr.left), show_expr(expr.right)
    if isinstance(expr.left, n.BinOp) and _PRECEDENCE[expr.left.op] < prec:
        left = f"({left})"
    if isinstance(expr.right, n.BinOp) and _PRECEDENCE[expr.right.op] <= prec:
        right = f"({right})"
    return f"{left}{expr.op}{right}"


# ---- binding ---------------------------------------------------------------------------


def bind(written: tuple[n.Arg, ...], schema: tuple[Arg, ...], env: dict, what: str,
         span: n.Span, diags: list[Diagnostic], extra_ok: bool = False,
         setting_keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Match written arguments against `schema`. Returns {name: value} with defaults filled in.

    Problems are appended to `diags`; the returned dict then lacks the bad entries. With
    `extra_ok`, unknown keys are kept (unconverted) for the caller to judge.
    `what` names the layer or setting in messages (e.g. "conv"). `setting_keys` says the
    arguments belong to a train setting (one per line, no '->'), and which keys start one.

    A stray word where no positional value is left most likely begins the next layer (a
    missing '->') or the next setting: it is reported once, and the words after it are not
    judged as this layer's. Only the first surplus positional value is reported.
    """
    by_name = {a.name: a for a in schema}
    positional = [a for a in schema if a.positional]
    values: dict[str, Any] = {}
    next_pos = 0
    surplus = False
    for arg in written:
        if arg.key is None:
            if next_pos >= len(positional):
                diag, stray = _too_many_positional(arg, env, what, positional, setting_keys)
                if stray or not surplus:
                    diags.append(diag)
                if stray:
                    break
                surplus = True
                continue
            target = positional[next_pos]
            next_pos += 1
        else:
            target = by_name.get(arg.key)
            if target is None:
                if extra_ok:
                    values[arg.key] = _evaluate_into(arg, env, diags)
                    continue
                named = [a.name for a in schema if not a.positional]
                hint = suggest(arg.key, named)
                takes = f"{what} takes: {', '.join(named)}" if named else \
                    f"{what} takes no key=value arguments"
                diags.append(error("E202", f"{what} has no argument '{arg.key}'", arg.span,
                                   help=(hint + " " if hint else "") + takes))
                continue
            if target.name in values:
                diags.append(error("E203", f"{what}: '{target.name}' is given twice", arg.span))
                continue
        value = _evaluate_into(arg, env, diags)
        if value is _INVALID:
            values[target.name] = _INVALID
            continue
        try:
            values[target.name] = target.convert(value)
        except ArgTypeError as exc:
            shown = show(value) if arg.key is None else f"{arg.key}={show(value)}"
            diags.append(error("E206", f"{what} {shown}: {exc}", arg.span, help=exc.help))
            values[target.name] = _INVALID
    missing_positional = False
    for a in schema:
        if a.name not in values:
            if a.default is REQUIRED:
                if a.positional and missing_positional:
                    continue  # one missing positional value is reported, not each
                if a.positional:
                    missing_positional = True
                    needed = a.expects or "a value"
                    example = f"e.g. {what} 3"
                else:
                    needed, example = f"{a.name}=", f"e.g. {what} {a.name}=3"
                diags.append(error("E201", f"{what} needs {needed}", span,
                                   help=a.doc or example))
            else:
                values[a.name] = a.default
    return {k: v for k, v in values.items() if v is not _INVALID}


_INVALID = object()


def _evaluate_into(arg: n.Arg, env: dict, diags: list) -> Any:
    try:
        return evaluate(arg.value, env)
    except EvalError as exc:
        diags.append(exc.diagnostic)
        return _INVALID


def _too_many_positional(arg: n.Arg, env, what: str, positional,
                         setting_keys) -> tuple[Diagnostic, bool]:
    """The diagnostic for a positional value with no place left, and whether it is a stray
    word (which ends this layer's or setting's arguments)."""
    try:
        value = evaluate(arg.value, env)
    except EvalError as exc:
        return exc.diagnostic, False
    if isinstance(value, Sym):
        if setting_keys is None:
            hint = f"is a '->' missing before {value}?"
        elif value in setting_keys:
            hint = f"each setting goes on its own line: start a new line before {value}"
        else:
            hint = "each setting goes on its own line: a key, then its arguments"
        return error("E207", f"unexpected '{value}' after {what}", arg.span, help=hint), True
    count = len(positional)
    if setting_keys is not None and count:
        return error("E207", f"{what} takes {_count_words(count)}, got another: {show(value)}",
                     arg.span), False
    if positional:
        return error("E207", f"{what} takes {count} positional value{'s' * (count != 1)}, "
                     f"got another: {show(value)}", arg.span,
                     help="name the others, e.g. key=value"), False
    return error("E207", f"{what} takes no positional value ({show(value)}); "
                 "arguments are written key=value", arg.span), False


def _count_words(count: int) -> str:
    return "one argument" if count == 1 else f"{count} arguments"


# ---- converters ------------------------------------------------------------------------


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


MAX_INT = 2**31 - 1


def positive_int(v):
    if _is_int(v) and v > MAX_INT:
        raise ArgTypeError(f"is too large (at most {MAX_INT})")
    if _is_int(v) and v > 0:
        return v
    if isinstance(v, float) and v.is_integer() and v > 0:
        raise ArgTypeError("expects a whole number", help=f"write {int(v)}")
    raise ArgTypeError("expects a positive integer")


def nonneg_int(v):
    if _is_int(v) and v > MAX_INT:
        raise ArgTypeError(f"is too large (at most {MAX_INT})")
    if _is_int(v) and v >= 0:
        return v
    raise ArgTypeError("expects an integer >= 0")


def size2(v):
    """A window or stride: an integer n (n x n) or HxW."""
    if (_is_int(v) and v > MAX_INT) or (isinstance(v, tuple) and max(v, default=0) > MAX_INT):
        raise ArgTypeError(f"is too large (at most {MAX_INT})")
    if _is_int(v) and v > 0:
        return (v, v)
    if isinstance(v, tuple) and len(v) == 2 and all(x > 0 for x in v):
        return v
    raise ArgTypeError("expects a positive integer or HxW (e.g. 3 or 1x7)")


def padding(v):
    """Padding: same, valid, an integer p, or PHxPW."""
    if isinstance(v, Sym) and v in ("same", "valid"):
        return str(v) if v == "same" else (0, 0)
    if (_is_int(v) and v > MAX_INT) or (isinstance(v, tuple) and max(v, default=0) > MAX_INT):
        raise ArgTypeError(f"is too large (at most {MAX_INT})")
    if _is_int(v) and v >= 0:
        return (v, v)
    if isinstance(v, tuple) and len(v) == 2:
        return v
    raise ArgTypeError("expects same, valid, an integer or PHxPW",
                       help=suggest(str(v), ["same", "valid"]) if isinstance(v, Sym) else "")


def boolean(v):
    if isinstance(v, Sym) and v in ("true", "false"):
        return v == "true"
    raise ArgTypeError("expects true or false")


def number(v):
    if _is_int(v) or isinstance(v, float):
        return float(v)
    raise ArgTypeError("expects a number")


def positive_number(v):
    x = number(v)
    if x > 0:
        return x
    raise ArgTypeError("expects a number > 0")


def nonneg_number(v):
    x = number(v)
    if x >= 0:
        return x
    raise ArgTypeError("expects a number >= 0")


def fraction_open(v):
    """A number in [0, 1): decay rates and betas."""
    x = number(v)
    if 0 <= x < 1:
        return x
    raise ArgTypeError("expects a number in [0, 1)")


def choice(*options: str):
    def convert(v):
        if isinstance(v, Sym) and v in options:
            return str(v)
        hint = suggest(str(v), options) if isinstance(v, str) else ""
        raise ArgTypeError("expects one of: " + ", ".join(options),
                           help=hint)
    return convert


def anything(v):
    return v
