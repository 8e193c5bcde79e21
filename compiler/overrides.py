"""`--set KEY=VALUE` overrides of the train section, applied to the spec text.

`epochs=5` replaces (or adds) the `epochs` setting; `optimizer.lr=0.01` changes one option
of a setting and keeps the rest. The result is the spec as run: its train block rewritten,
everything before it untouched (so error positions in the model still hold).
Each override is first checked on its own, so a bad value is reported against `--set`.
"""

from __future__ import annotations

import difflib

from netc.dsl import nodes as n
from netc.dsl.diagnostics import SpecError
from netc.dsl.parser import parse

from .layer_overrides import (
    PREFIX,
    LayerOverrideError,
    apply_layer_overrides,
    is_layer_key,
    layer_named,
)
from .losses import LOSS_NAMES
from .settings import (
    BUILTIN_DATA,
    FILE_OPTIONS,
    INIT_FROM,
    KEYS,
    OPTIMIZER_ALIASES,
    OPTIMIZERS,
    SCHEDULES,
    TrainConfig,
    check_train,
    setting_slot,
)


class OverrideError(Exception):
    """A --set that cannot be applied; the message is one line naming it."""

_DEFAULT_NAMES = {"optimizer": TrainConfig().optimizer.name, "schedule": "constant",
                  "init": "he"}
# the settings written `KEY NAME option=value ...` whose options depend on the NAME
_NAMED = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES}


def _option_owners() -> dict[str, str]:
    """{option: the setting it is an option of}: lr -> optimizer, decay -> schedule."""
    owners: dict[str, str] = {}
    for setting, table in _NAMED.items():
        for args in table.values():
            for arg in args:
                owners.setdefault(arg.name, setting)
    for options in (*BUILTIN_DATA.values(), FILE_OPTIONS):
        for option in options:
            owners.setdefault(option, "data")
    owners.setdefault("scale", "init")
    return owners


def _value_owners() -> dict[str, str]:
    """{name: the setting it is a value of}: adam -> optimizer, moons -> data."""
    owners: dict[str, str] = {}
    for setting, names in (("optimizer", [*OPTIMIZERS, *OPTIMIZER_ALIASES]),
                           ("schedule", SCHEDULES), ("data", BUILTIN_DATA),
                           ("loss", LOSS_NAMES)):
        for name in names:
            owners.setdefault(name, setting)
    return owners


def _close(word: str, choices) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6) or \
        difflib.get_close_matches(word.lower(), list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_key_hint(key: str, value: str) -> str:
    """'did you mean --set X?' for an unknown --set KEY (no dot): a setting of a similar name
    (epoch -> epochs), the setting an option belongs to (lr -> optimizer.lr), or the setting
    a name is a value of (momentum -> optimizer=momentum); '' when nothing fits."""
    options, values = _option_owners(), _value_owners()
    if key in options:
        return f"did you mean --set {options[key]}.{key}={value}?"
    if key in values:
        return f"did you mean --set {values[key]}={key}?"
    setting = _close(key, KEYS)
    if setting is not None:
        return f"did you mean --set {setting}={value}?"
    option = _close(key, options)
    if option is not None:
        return f"did you mean --set {options[option]}.{option}={value}?"
    return ""


def _options_of(base: str, current: str) -> tuple[str, list[str]] | None:
    """(what, its option names) for the current text of a setting whose options depend on
    the name in it: ("optimizer adam", ["lr", "b1", "b2", "eps"]); None for other settings
    or an unknown name (the check of the whole setting reports those)."""
    words = current.split()
    if len(words) < 2:
        return None
    if base in _NAMED:
        table = _NAMED[base]
        name = OPTIMIZER_ALIASES.get(words[1], words[1]) if base == "optimizer" else words[1]
        if name in table:
            return f"{base} {words[1]}", [a.name for a in table[name]]
    if base == "data":
        if words[1] in BUILTIN_DATA:
            return f"data {words[1]}", list(BUILTIN_DATA[words[1]])
        if words[1].startswith(('"', "'")):
            return "data", list(FILE_OPTIONS)
    return None


def unknown_option(base: str, what: str, names: list[str], option: str, value: str) -> str:
    """The message for `--set BASE.OPTION=VALUE` when the current `what` (optimizer adam)
    has no OPTION: a close name of its own, or the other names of BASE that take OPTION."""
    takes = f"{what} takes: {', '.join(names)}" if names else \
        f"{what} takes no key=value arguments"
    close = _close(option, names)
    if close is not None:
        return (f"{what} has no argument '{option}' (did you mean --set {base}.{close}={value}? "
                f"{takes})")
    others = [other for other, args in _NAMED.get(base, {}).items()
              if any(a.name == option for a in args)]
    if others:
        return (f"{what} has no argument '{option}'; {option} is an argument of {base} "
                f"{', '.join(others)} (e.g. --set {base}={others[0]} --set {base}.{option}="
                f"{value})")
    return f"{what} has no argument '{option}' ({takes})"


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
    if len(block.settings) != 1 or block.settings[0].span != n.Span(2, 1, 2, len(text) + 1):
        left = "'#' starts a comment" if "#" in text else "more follows the setting"
        raise OverrideError(f"{where}: the value is not all read ({left}; write the value "
                            "alone)")
    diags = []
    check_train(block, diags)
    if diags:
        hint = f" ({diags[0].help})" if diags[0].help else ""
        raise OverrideError(f"{where}: {diags[0].message}{hint}")
    return block.settings[0]


def _init_from_text(where: str, current: str | None, option: str, value: str) -> str:
    """The `init from=...` line after `--set init.from=DIR` or `--set init.layers=NAMES`."""
    if value[:1] not in "\"'":
        value = f'"{value}"'
    if current is None:
        if option == "layers":
            raise OverrideError(f"{where}: the spec has no init from= line to narrow (add "
                                "--set init.from=RUN_DIR)")
        return f"init from={value}"
    module = parse(f"train {{\n{current}\n}}", where)
    block = next(s for s in module.statements if isinstance(s, n.TrainBlock))
    parts = {a.key: _text(f"train {{\n{current}\n}}", a.span)
             for a in block.settings[0].args}
    parts[option] = f"{option}={value}"
    return "init " + " ".join(parts.values())


def apply_overrides(source: str, overrides: list[str], filename: str = "<spec>") -> str:
    """The spec text with the overrides applied: train keys to its train block, then
    NAME.OPTION keys to the named layers' text (compiler/layer_overrides.py)."""
    if not overrides:
        return source
    for item in overrides:
        if "\n" in item or "\r" in item:
            shown = item.replace("\r", "\\r").replace("\n", "\\n")
            raise OverrideError(f"--set {shown}: a --set is one line (this one holds a line "
                                "break)")
    layer_items = [item for item in overrides
                   if is_layer_key(item.partition("=")[0].strip(), KEYS)]
    try:
        source = _apply_train(source, [item for item in overrides if item not in layer_items],
                              filename)
    except OverrideError as exc:
        raise OverrideError(str(exc) + _layer_hint(source, str(exc), overrides, filename)) \
            from None
    edits = []
    for item in layer_items:
        key, _, value = (part.strip() for part in item.partition("="))
        if not value:
            raise OverrideError(f"--set {item}: write KEY=VALUE, e.g. --set dropout_1.keep=0.8")
        edits.append((key, value))
    try:
        return apply_layer_overrides(source, edits, filename, KEYS)
    except LayerOverrideError as exc:
        items = [layer_items[i] for i in exc.which]
        key = edits[exc.which[0]][0]
        base = key.partition(".")[0]
        if exc.unknown_name and not key.startswith(PREFIX) and _close(base, KEYS):
            _apply_train(source, items, filename)  # raises: a mistyped train setting
        raise OverrideError(" ".join(f"--set {item}" for item in items) + f": {exc}") \
            from None


def _layer_hint(source: str, message: str, overrides: list[str], filename: str) -> str:
    """'; a layer is named optimizer: --set layer:optimizer.units=4' when the train key a
    message is about is also the name of a layer; '' otherwise."""
    item = next((i for i in overrides if message.startswith(f"--set {i}:")), None)
    base, _, option = (item or "").partition("=")[0].strip().partition(".")
    if not option:  # no option to set (`--set fc_1.=3` is told it is missing)
        return ""
    if not layer_named(source, base, filename):
        return ""
    return f"; a layer is named {base} too: --set {PREFIX}{item.strip()} sets its option"


def _apply_train(source: str, overrides: list[str], filename: str) -> str:
    """The spec text with the train overrides applied to its train block."""
    if not overrides:
        return source
    module = parse(source, filename)
    block = next((s for s in module.statements if isinstance(s, n.TrainBlock)), None)
    settings: dict[str, str] = {}
    if block is not None:
        for s in block.settings:  # `init from=` keeps its own line beside a plain `init`
            settings[setting_slot(s)] = _text(source, s.span)
    for item in overrides:
        where = f"--set {item}"
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        base, dot, option = key.partition(".")
        if sep and dot and not base and option and not option.startswith("."):
            raise OverrideError(f"{where}: the name before '.{option}' is missing: write "
                                f"NAME.{option}=VALUE, NAME a train setting (optimizer.lr) "
                                "or a layer as `netc check` lists them (fc_1.units)")
        if not sep or not base or not value:
            raise OverrideError(f"{where}: write KEY=VALUE, e.g. --set epochs=5")
        if dot and not option:
            raise OverrideError(f"{where}: the option is missing: write {base}.OPTION=VALUE, "
                                f"or {base}=VALUE for the whole setting")
        if base not in KEYS:
            hint = _close(base, KEYS) if option else unknown_key_hint(base, value)
            if option and hint:
                hint = f"did you mean --set {hint}.{option}={value}?"
            raise OverrideError(f"{where}: unknown train setting '{base}' ("
                                + (f"{hint} " if hint else "") + "settings: "
                                + ", ".join(KEYS) + ")")
        if base == "init" and option in ("from", "layers"):
            text = _init_from_text(where, settings.get(INIT_FROM), option, value)
            _one_line(where, text)
            settings[INIT_FROM] = text
            continue
        if option:
            current = settings.get(base) or f"{base} {_DEFAULT_NAMES.get(base, '')}".strip()
            known = _options_of(base, current)
            if known is not None and option not in known[1]:
                raise OverrideError(f"{where}: {unknown_option(base, *known, option, value)}")
            words = [w for w in current.split() if not w.startswith(option + "=")]
            text = " ".join(words + [f"{option}={value}"])
        else:
            text = f"{base} {value}"
        settings[setting_slot(_one_line(where, text))] = text
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
