"""`--set NAME.OPTION=VALUE` overrides of one layer's options, applied to the spec text.

NAME is a leaf layer's name as `netc check` lists it (`dropout_1`, `layer1/conv_2`, an `as`
name) and OPTION an argument of its kind as the registry declares it (`keep`, `units`, `c`).
The layer's own text is rewritten in place: the argument replaced (a positional one stays
positional: `fc 64` becomes `fc 32`), or added: a positional one right after the kind
(`softmax init=he` becomes `softmax 3 init=he`), a keyword one after the last argument;
the other arguments, comments and every other line are untouched, so error positions
elsewhere still hold and the spec as run says what ran. dropout's `keep` and `rate` are
alternatives: writing one removes the other. `layer:NAME.OPTION=VALUE` reaches a layer
named like a train setting (`as optimizer`), since plain keys go to the train section first.

Several layer overrides are all written first and the result checked once, so a change
that only checks together with another (two concat branches that must agree) is allowed; a
failure is put on the override whose layer it points at, or on all of them. A layer whose
text several leaves share (in a def called more than once, or in a repeat) cannot change
for one of them alone: that is an error. No JAX here.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from netc.dsl import nodes as n
from netc.dsl.diagnostics import SpecError
from netc.dsl.parser import parse

from . import layers
from .check import check_source

PREFIX = "layer:"
# options of a kind that say the same thing two ways: writing one removes the others
ALTERNATIVES: dict[str, tuple[str, ...]] = {"dropout": ("keep", "rate")}
_LIST_AT_MOST = 12  # the layer names are listed in an error when there are no more than this


class LayerOverrideError(Exception):
    """A layer --set that cannot be applied; the message is one line (without `--set X:`).
    `unknown_name`: no layer has the name (it may be a mistyped train setting); `which`: the
    edits of apply_layer_overrides it is about."""

    def __init__(self, message: str, unknown_name: bool = False):
        super().__init__(message)
        self.unknown_name = unknown_name
        self.which: tuple[int, ...] = ()  # the indexes of the edits it is about


def is_layer_key(key: str, train_keys) -> bool:
    """Whether `--set KEY=...` is for a layer: `layer:NAME.OPTION`, or NAME.OPTION whose
    NAME is not a train setting (train settings keep precedence); `NAME.` too, to be told
    its option is missing."""
    if key.startswith(PREFIX):
        return True
    base, dot, _ = key.partition(".")
    return bool(dot and base) and base not in train_keys


def layer_named(source: str, name: str, filename: str = "<spec>") -> bool:
    """Whether the spec checks and has a leaf layer called `name` (for the hint that
    `layer:NAME.OPTION` reaches a layer named like a train setting)."""
    try:
        return any(leaf.name == name for leaf in check_source(source, filename).leaves())
    except SpecError:
        return False


def _offset(source: str, line: int, col: int) -> int:
    """The index in `source` of 1-based (line, col)."""
    lines = source.split("\n")
    return sum(len(x) + 1 for x in lines[:line - 1]) + col - 1


def _replace(source: str, span: n.Span, text: str) -> str:
    a = _offset(source, span.line, span.col)
    b = _offset(source, span.end_line, span.end_col)
    return source[:a] + text + source[b:]


def _written_layers(module: n.Module):
    """Every n.Layer of the module's text (def bodies included)."""
    def walk(element):
        if isinstance(element, n.Layer):
            yield element
        elif isinstance(element, n.Chain):
            for e in element.elements:
                yield from walk(e)
        elif isinstance(element, n.Residual):
            yield from walk(element.body)
            if element.shortcut is not None:
                yield from walk(element.shortcut)
        elif isinstance(element, n.Concat):
            for branch in element.branches:
                yield from walk(branch)
        elif isinstance(element, (n.Repeat, n.Def)):
            yield from walk(element.body)

    for statement in module.statements:
        yield from walk(statement)


def _unknown_name(name: str, names: list[str], settings: Sequence[str]) -> str:
    """No layer is `name`; with `settings` (a key without `layer:`), no train setting either."""
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    listed = ("layers: " + ", ".join(names) if len(names) <= _LIST_AT_MOST else
              "`netc check FILE` lists the layer names")
    if settings:
        return (f"no train setting or layer is named '{name}' ({hint}settings: "
                f"{', '.join(settings)}; {listed})")
    return f"no layer is named '{name}' ({hint}{listed})"


def _find_leaf(net, name: str, settings: Sequence[str]):
    leaves = net.leaves()
    leaf = next((x for x in leaves if x.name == name), None)
    if leaf is None:
        raise LayerOverrideError(_unknown_name(name, [x.name for x in leaves], settings),
                                 unknown_name=True)
    sharing = [x.name for x in leaves if x.span == leaf.span]
    if len(sharing) > 1:
        raise LayerOverrideError(
            f"{name} is written once for {len(sharing)} layers ({', '.join(sharing[:4])}"
            + (", ..." if len(sharing) > 4 else "") + ") in a def or a repeat, so --set cannot "
            "change it for one of them; edit the spec (or give it a parameter)")
    return leaf


def _one_value(kind: str, option: str, value: str, positional: bool) -> bool:
    """Whether VALUE reads as one argument written positionally (`fc 32`) or else as
    OPTION=VALUE (`fc units=2*8`, `keep=0.5`); not one value (`3 s=2`) is an error."""
    def reads_as_one(text: str) -> bool:
        """Whether `text` is one layer with one argument, its span the whole text (so a
        `# comment` or anything else left over is not silently dropped)."""
        try:
            module = parse(text, "<value>", positional_names=layers.POSITIONAL)
        except SpecError:
            return False
        chain = module.statements[0] if len(module.statements) == 1 else None
        layer = chain.elements[0] if isinstance(chain, n.Chain) and \
            len(chain.elements) == 1 else None
        return (isinstance(layer, n.Layer) and len(layer.args) == 1 and layer.alias is None
                and layer.span == n.Span(1, 1, 1, len(text) + 1))

    if positional and reads_as_one(f"{kind} {value}"):
        return True
    if reads_as_one(f"{kind} {option}={value}"):
        return False
    comment = "; '#' starts a comment" if "#" in value else ""
    raise LayerOverrideError(f"'{value}' is not one value for {option} (write one number, "
                             f"word or expression without spaces{comment})")


def _edit(source: str, layer: n.Layer, kind: layers.LayerKind, option: str, value: str) -> str:
    """The source with `layer`'s OPTION written as VALUE (see the module's docstring)."""
    positional = [a.name for a in kind.args if a.positional]
    target, position = None, 0
    for arg in layer.args:
        if arg.key is None:
            if position < len(positional) and positional[position] == option:
                target = arg
            position += 1
        elif arg.key == option:
            target = arg
    as_positional = _one_value(layer.kind, option, value, option in positional and
                               (target is None or target.key is None))
    group = ALTERNATIVES.get(kind.name, ())
    others = [o for o in group if o != option] if option in group else []
    removed = [a for a in layer.args if a.key in others]
    written = value if as_positional else f"{option}={value}"
    edits = [(target.span, written)] if target is not None else []
    if target is None and removed:  # keep=0.5 takes rate=0.3's place
        edits.append((removed.pop(0).span, written))
    elif target is None:  # a positional value right after the kind, else after the last
        last = layer.kind_span if as_positional or not layer.args else layer.args[-1].span
        edits.append((n.Span(last.end_line, last.end_col, last.end_line, last.end_col),
                      " " + written))
    edits += [(arg.span, None) for arg in removed]  # None: deleted with the blank before
    for span, text in sorted(edits, key=lambda e: (e[0].line, e[0].col), reverse=True):
        if text is None:
            a = _offset(source, span.line, span.col)
            while a > 0 and source[a - 1] in " \t":
                a -= 1
            source = source[:a] + source[_offset(source, span.end_line, span.end_col):]
        else:
            source = _replace(source, span, text)
    return source


def _resolve(net, key: str, settings: Sequence[str]) -> tuple[n.Span, layers.LayerKind, str]:
    """(the leaf's span, its kind, the option) that [layer:]NAME.OPTION names in `net`; an
    unknown NAME of a key without `layer:` names the train `settings` too."""
    name, _, option = key.removeprefix(PREFIX).rpartition(".")
    if not name:
        raise LayerOverrideError("write NAME.OPTION=VALUE for a layer, e.g. "
                                 "--set dropout_1.keep=0.8")
    leaf = _find_leaf(net, name, () if key.startswith(PREFIX) else settings)
    kind = layers.KINDS[leaf.kind]
    options = [a.name for a in kind.args]
    if not option:
        raise LayerOverrideError(f"the option is missing: write {name}.OPTION=VALUE "
                                 f"({leaf.kind} takes: {', '.join(options) or 'nothing'})")
    if option not in options:
        close = difflib.get_close_matches(option, options, n=1, cutoff=0.6)
        hint = f"did you mean {name}.{close[0]}? " if close else ""
        raise LayerOverrideError(f"{name} ({leaf.kind}) has no option '{option}' ({hint}"
                                 f"{leaf.kind} takes: {', '.join(options) or 'nothing'})")
    return leaf.span, kind, option


def _contains(outer: n.Span, inner: n.Span) -> bool:
    return ((outer.line, outer.col) <= (inner.line, inner.col)
            < (outer.end_line, outer.end_col))


def apply_layer_overrides(source: str, edits: list[tuple[str, str]],
                          filename: str = "<spec>", settings: Sequence[str] = ()) -> str:
    """`source` with each `--set KEY=VALUE` of `edits` ((KEY, VALUE) pairs, KEY
    [layer:]NAME.OPTION) written into the named layer's text, every edit unchecked and the
    result checked once (so edits that only agree together, like two concat branches, pass).
    Raises LayerOverrideError (one line, to be put after `--set ITEM:`; its `which` are the
    indexes of the edits it is about; an unknown name without `layer:` lists the train
    `settings` too), or SpecError when the spec itself does not check."""
    net = check_source(source, filename)
    module = parse(source, filename, positional_names=layers.POSITIONAL)
    spans = [x.span for x in _written_layers(module)]
    targets = []  # per edit: the index of its layer among the written ones
    for i, (key, value) in enumerate(edits):
        try:
            span, kind, option = _resolve(net, key, settings)
            if span not in spans:  # a residual's projection W_s: made by the checker
                raise LayerOverrideError(f"{key.removeprefix(PREFIX).rpartition('.')[0]} is "
                                         "made by its residual, not written in the spec, so "
                                         "--set cannot change it")
            # an edit rewrites one layer's arguments on its line: the layers keep their order
            index = spans.index(span)
            written = list(_written_layers(parse(source, filename,
                                                 positional_names=layers.POSITIONAL)))
            source = _edit(source, written[index], kind, option, value)
        except LayerOverrideError as exc:
            exc.which = (i,)
            raise
        targets.append(index)
    try:
        check_source(source, filename)
    except SpecError as exc:
        d = exc.diagnostics[0]
        hint = f" ({d.help})" if d.help else ""
        written = list(_written_layers(parse(source, filename,
                                             positional_names=layers.POSITIONAL)))
        owners = tuple(i for i, index in enumerate(targets)
                       if _contains(written[index].span, d.span))
        lines = {written[index].span.line for index in targets}
        where = "" if owners or d.span.line in lines else f"line {d.span.line} then fails: "
        error = LayerOverrideError(f"{where}{d.message}{hint}")
        error.which = owners or tuple(range(len(edits)))
        raise error from None
    return source


__all__ = ["ALTERNATIVES", "PREFIX", "LayerOverrideError", "apply_layer_overrides",
           "is_layer_key", "layer_named"]
