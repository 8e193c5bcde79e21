"""Diagnostics reached through the calls of a def, and errors in a parameter's default.

A mistake inside a def's body is reported once per call; :func:`fold_calls` folds those
into one diagnostic with a note per further call (:func:`call_site` writes the note, and
:func:`within` tells a mistake in the call's own text from one in the body).
:func:`default_error` explains an error in a parameter's default.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace

from netc.dsl import nodes as n
from netc.dsl.diagnostics import Diagnostic

from .args import EvalError, show, show_expr

__all__ = ["MAX_AGAIN", "call_site", "default_error", "fold_calls", "what_differs", "within"]


def call_site(el: n.Call, bound: dict | None) -> str:
    """The note naming a call of a def: its arguments (as bound, when they are) and place."""
    if bound is None:
        args = ", ".join(show_expr(a.value) if a.key is None else f"{a.key}={show_expr(a.value)}"
                         for a in el.args)
    else:
        args = ", ".join(f"{k}={show(v)}" for k, v in bound.items())
    return f"in the call {el.name}({args}) at line {el.span.line}, column {el.span.col}"


def within(span: n.Span, outer: n.Span) -> bool:
    """Whether ``span`` lies inside ``outer``."""
    return ((outer.line, outer.col) <= (span.line, span.col)
            and (span.end_line, span.end_col) <= (outer.end_line, outer.end_col))


MAX_AGAIN = 3
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def fold_calls(diags: list[Diagnostic], numbers_may_differ: bool = False) -> list[Diagnostic]:
    """One diagnostic per mistake: the same message at the same place, reached through
    several calls of a def, becomes one with a note per further call.

    With `numbers_may_differ` (warnings), messages that differ only in their numbers fold
    too, and a further call's note ends with the words of its own message that differ
    (`...: …on 28 rows: (28 + 2*0 - 1) = 27…`). Within one call nothing folds: the k-th such
    warning of a call folds with the k-th of each other call (a repeat in the def's body
    warns once per copy, each about another layer)."""
    kept: dict[tuple, int] = {}
    again: dict[int, list[str]] = {}
    out: list[Diagnostic] = []
    in_call: Counter = Counter()
    for d in diags:
        key: tuple = (d.severity, d.code, d.message, d.span, d.label, d.help)
        if numbers_may_differ:
            key = (*key[:2], NUMBER.sub("#", d.message), *key[3:])
            in_call[key, d.notes] += 1
            key += (in_call[key, d.notes],)
        if key not in kept:
            kept[key] = len(out)
            out.append(d)
            continue
        first = out[kept[key]]
        new = [note for note in d.notes if note not in first.notes]
        site = "and " + new[-1] if new else ""
        if site and d.message != first.message:
            site += ": " + what_differs(first.message, d.message)
        again.setdefault(kept[key], []).append(site)
    for i, sites in again.items():
        sites = [s for s in sites if s]
        extra = tuple(sites[:MAX_AGAIN])
        if len(sites) > MAX_AGAIN:
            more = len(sites) - MAX_AGAIN
            extra += (f"and in {more} more call{'s' * (more != 1)}",)
        out[i] = replace(out[i], notes=out[i].notes + extra)
    return out


def what_differs(first: str, other: str) -> str:
    """The words of `other` from the one before its first difference from `first` to its
    last, with '…' for the shared words left out: '…on 28 rows: (28 + 2*0 - 1) = 27…'."""
    a, b = first.split(" "), other.split(" ")
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    start = max(start - 1, 0)  # one shared word before, so that the numbers say what they are
    return ("…" if start else "") + " ".join(b[start:len(b) - end]) + ("…" if end else "")


def default_error(exc: EvalError, d: n.Def, i: int) -> Diagnostic:
    """An error in the default of the i-th parameter, with a hint when it names a
    parameter that is not yet known (defaults may use only earlier parameters)."""
    diag = exc.diagnostic
    p = d.params[i]
    names = [q.name for q in d.params]
    if exc.name is None:
        return diag
    if exc.name in names[i:]:
        order = list(d.params)
        later = order.pop(names.index(exc.name))
        order.insert(i, later)
        signature = ", ".join(q.name if q.default is None else f"{q.name}={show_expr(q.default)}"
                              for q in order)
        return replace(diag, help=f"a default may use only the parameters before it: declare "
                       f"{exc.name} before {p.name}, e.g. def {d.name}({signature})")
    if diag.help.startswith("did you mean"):
        return diag
    if i == 0:
        hint = f"{p.name} is the first parameter, so its default cannot use any"
    else:
        hint = "a default may use only the parameters before it: " + ", ".join(names[:i])
    return replace(diag, help=hint)
