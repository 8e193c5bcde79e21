"""Writing `--set` values into a spec's text the way a person would edit it.

compiler/overrides.py's apply_overrides gives the spec as run: its train block rewritten
from the settings (comments inside the block dropped, options reordered). `write_settings`
gives the same settings but edits the text in place: `optimizer adam lr=0.001 b1=0.9` with
`optimizer.lr=0.0031` becomes `optimizer adam lr=0.0031 b1=0.9`, comments and every other
line unchanged; an absent option is added at the end of its setting, an absent setting as a
new line at the end of the train block, an absent train block as a new block at the end.
The result is checked: it must give exactly the train settings apply_overrides gives, or
apply_overrides's text is returned instead. A layer's option (`dropout_1.keep=0.7`) is
written in place by apply_overrides itself, all of them in one call (checked together). No JAX here.
"""

from __future__ import annotations

from collections.abc import Sequence

from netc.dsl import nodes as n
from netc.dsl.parser import parse


def _offset(source: str, line: int, col: int) -> int:
    """The index in `source` of 1-based (line, col)."""
    starts = [0]
    for i, ch in enumerate(source):
        if ch == "\n":
            starts.append(i + 1)
    return starts[line - 1] + col - 1


def _train_block(source: str, filename: str) -> n.TrainBlock | None:
    module = parse(source, filename)
    return next((s for s in module.statements if isinstance(s, n.TrainBlock)), None)


def _replace(source: str, span: n.Span, text: str) -> str:
    a = _offset(source, span.line, span.col)
    b = _offset(source, span.end_line, span.end_col)
    return source[:a] + text + source[b:]


def _insert(source: str, line: int, col: int, text: str) -> str:
    at = _offset(source, line, col)
    return source[:at] + text + source[at:]


def _setting_text(source: str, item: str, base: str, filename: str) -> str:
    """The text apply_overrides writes for setting `base` after `item` (a setting the spec
    lacks: `optimizer.b1=0.95` gives `optimizer adam b1=0.95`)."""
    from netc.compiler.overrides import apply_overrides

    applied = apply_overrides(source, [item], filename)
    block = _train_block(applied, filename)
    setting = next(s for s in block.settings if s.key == base)
    lines = applied.split("\n")
    return lines[setting.span.line - 1][setting.span.col - 1:setting.span.end_col - 1]


def _apply_one(source: str, item: str, filename: str) -> str:
    from netc.compiler.overrides import apply_overrides

    key, _, value = item.partition("=")
    key, value = key.strip(), value.strip()
    base, _, option = key.partition(".")
    block = _train_block(source, filename)
    if block is None:
        return apply_overrides(source, [item], filename)
    setting = next((s for s in block.settings if s.key == base), None)
    if setting is None:
        text = _setting_text(source, item, base, filename)
        first = block.settings[0].span if block.settings else None
        lines = source.split("\n")
        indent = "  "
        if first is not None:
            line = lines[first.line - 1]
            indent = line[:len(line) - len(line.lstrip())] or "  "
        end = block.span  # the closing brace is the character before end_col
        brace_line = lines[end.end_line - 1]
        before = brace_line[:end.end_col - 2]
        if before.strip():
            return _insert(source, end.end_line, end.end_col - 1, f"\n{indent}{text}\n")
        return _insert(source, end.end_line, 1, f"{indent}{text}\n")
    if option:
        arg = next((a for a in setting.args if a.key == option), None)
        if arg is not None:
            return _replace(source, arg.span, f"{option}={value}")
        last = setting.args[-1].span if setting.args else setting.key_span
        return _insert(source, last.end_line, last.end_col, f" {option}={value}")
    if not setting.args:
        k = setting.key_span
        return _insert(source, k.end_line, k.end_col, f" {value}")
    whole = n.Span(setting.args[0].span.line, setting.args[0].span.col,
                   setting.args[-1].span.end_line, setting.args[-1].span.end_col)
    return _replace(source, whole, value)


def write_settings(source: str, overrides: Sequence[str], filename: str = "<spec>") -> str:
    """`source` with each `--set KEY=VALUE` of `overrides` written into its train section in
    place (see the module's docstring). Raises OverrideError or SpecError as apply_overrides
    and the checker do for overrides that cannot be applied."""
    from netc.compiler.check import check_source
    from netc.compiler.layer_overrides import is_layer_key
    from netc.compiler.overrides import apply_overrides
    from netc.compiler.settings import KEYS
    from netc.dsl.diagnostics import SpecError

    expected_text = apply_overrides(source, list(overrides), filename)
    expected = check_source(expected_text, filename).train
    layer_items = [item for item in overrides
                   if is_layer_key(item.partition("=")[0].strip(), KEYS)]
    # a layer's options are written in place by apply_overrides, all of them together
    edited = apply_overrides(source, layer_items, filename) if layer_items else source
    try:
        for item in overrides:
            if item not in layer_items:
                edited = _apply_one(edited, item, filename)
        if check_source(edited, filename).train == expected:
            return edited
    except (SpecError, StopIteration, IndexError):
        pass
    return expected_text


__all__ = ["write_settings"]
