"""`--set KEY=VALUE` overrides of the train section, applied to the spec text.

`epochs=5` replaces (or adds) the `epochs` setting; `optimizer.lr=0.01` changes one option
of a setting and keeps the rest. The result is the spec as run: its train block rewritten,
everything before it untouched (so error positions in the model still hold).
Each override is first checked on its own, so a bad value is reported against `--set`.
"""

from __future__ import annotations

from netc.dsl import nodes as n
from netc.dsl.diagnostics import SpecError
from netc.dsl.parser import parse

from .settings import KEYS, TrainConfig, check_train


class OverrideError(Exception):
    """A --set that cannot be applied; the message is one line naming it."""

_DEFAULT_NAMES = {"optimizer": TrainConfig().optimizer.name, "schedule": "constant",
                  "init": "he"}


def _text(source: str, span: n.Span) -> str:
    lines = source.split("\n")
    if span.line == span.end_line:
        return lines[span.line - 1][span.col - 1:span.end_col - 1]
    parts = [lines[span.line - 1][span.col - 1:]] + lines[span.line:span.end_line - 1]
    return " ".join(parts + [lines[span.end_line - 1][:span.end_col - 1]])


def _one_line(where: str, text: str):
    """Parse and check `text` as the only setting of a train block."""
    fake = f"train {{\n{text}\n}}"
    try:
        module = parse(fake, where)
        block = next(s for s in module.statements if isinstance(s, n.TrainBlock))
    except SpecError as exc:
        raise OverrideError(f"{where}: {exc.diagnostics[0].message}") from None
    diags = []
    check_train(block, diags)
    if diags:
        hint = f" ({diags[0].help})" if diags[0].help else ""
        raise OverrideError(f"{where}: {diags[0].message}{hint}")
    return block.settings[0]


def apply_overrides(source: str, overrides: list[str], filename: str = "<spec>") -> str:
    """The spec text with the overrides applied to its train block."""
    if not overrides:
        return source
    module = parse(source, filename)
    block = next((s for s in module.statements if isinstance(s, n.TrainBlock)), None)
    settings: dict[str, str] = {}
    if block is not None:
        for s in block.settings:
            settings[s.key] = _text(source, s.span)
    for item in overrides:
        where = f"--set {item}"
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        base, _, option = key.partition(".")
        if not sep or not base or not value:
            raise OverrideError(f"{where}: write KEY=VALUE, e.g. --set epochs=5")
        if base not in KEYS:
            raise OverrideError(f"{where}: unknown train setting '{base}' (settings: "
                                + ", ".join(KEYS) + ")")
        if option:
            current = settings.get(base) or f"{base} {_DEFAULT_NAMES.get(base, '')}".strip()
            words = [w for w in current.split() if not w.startswith(option + "=")]
            text = " ".join(words + [f"{option}={value}"])
        else:
            text = f"{base} {value}"
        _one_line(where, text)
        settings[base] = text
    body = "".join(f"  {t}\n" for t in settings.values())
    new_block = f"train {{\n{body}}}"
    if block is None:
        return source.rstrip("\n") + "\n\n" + new_block + "\n"
    lines = source.split("\n")
    start, end = block.span, block.span
    head = "\n".join(lines[:start.line - 1] + [lines[start.line - 1][:start.col - 1]])
    tail = lines[end.end_line - 1][end.end_col - 1:]
    rest = "\n".join([tail] + lines[end.end_line:])
    return head + new_block + rest
