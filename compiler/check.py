"""The checking pass: AST -> typed IR (ir.Net), or SpecError with every problem found.

One walk over the model chain. It expands defs and repeats, binds and validates arguments
(the layer registry, compiler/layers/), infers each shape with the kind's rule, names layers
(`<kind>_<k>` per scope, scopes joined by '/'), inserts the residual projection W_s, and
checks the train section.
After a shape error the rest of that chain is still checked for argument errors, but its
shapes are unknown (None) so one mistake does not cascade.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field, replace

from netc.dsl import nodes as n
from netc.dsl.diagnostics import Diagnostic, SpecError, error, warning
from netc.dsl.parser import end_of_file, parse

from . import layers, remedies
from .args import EvalError, Sym, bind, evaluate, show, show_expr, suggest
from .call_diagnostics import call_site, default_error, fold_calls, within
from .ir import Net, Node, Shape
from .losses import LOSSES, default_loss
from .settings import check_train

MAX_LAYERS = 100_000  # an expansion larger than this is a mistake (or an attack), not a net
MAX_DEF_DEPTH = 64
KEYWORDS = ("net", "input", "def", "train", "residual", "concat", "repeat", "shortcut", "as")


@dataclass
class _Scope:
    prefix: str = ""
    counters: Counter = field(default_factory=Counter)

    def name(self, base: str, alias: str | None) -> str:
        if alias is not None:
            return self.prefix + alias
        self.counters[base] += 1
        return f"{self.prefix}{base}_{self.counters[base]}"

    def child(self, name: str) -> _Scope:
        return _Scope(prefix=name + "/")


class _TooBig(Exception):
    """The expansion passed MAX_LAYERS: at `span` (a repeat) if known, with call-site notes."""

    def __init__(self, span: n.Span | None = None, label: str = ""):
        super().__init__(label)
        self.span = span
        self.label = label
        self.notes: list[str] = []


@dataclass
class _Checker:
    defs: dict[str, n.Def]
    diags: list[Diagnostic] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    names: dict[str, n.Span] = field(default_factory=dict)
    leaf_count: int = 0
    call_stack: tuple[str, ...] = ()
    input_decl: n.InputDecl | None = None

    # ---- names -----------------------------------------------------------------------
    def claim(self, name: str, span: n.Span) -> None:
        if name in self.names:
            first = self.names[name]
            self.diags.append(error("E208", f"layer name '{name}' is used twice "
                                    f"(first at line {first.line})", span,
                                    help="names given with 'as' must be unique in their scope"))
        else:
            self.names[name] = span

    # ---- chains ----------------------------------------------------------------------
    def chain(self, chain: n.Chain, in_shape: Shape | None, scope: _Scope, env: dict,
              name: str) -> Node:
        nodes: list[Node] = []
        repeats: list[tuple[int, int, int]] = []
        shape = in_shape
        elements = chain.elements
        for i, element in enumerate(elements):
            following = elements[i + 1] if i + 1 < len(elements) else None
            before = len(self.diags)
            node = self.element(element, shape, scope, env, following)
            if node is not None:
                if node.kind == "sequence" and not node.name:  # a repeat's copies
                    repeats += _shifted(node.attrs["repeats"], len(nodes))
                    nodes.extend(node.children)
                else:
                    nodes.append(node)
                shape = node.out_shape
            if len(self.diags) > before:
                shape = None
        return Node(name, "sequence", {"repeats": tuple(repeats)} if repeats else {}, in_shape,
                    shape, chain.span, children=tuple(nodes))

    def element(self, el, shape, scope, env, following) -> Node | None:
        if isinstance(el, n.Layer):
            return self.layer(el, shape, scope, env, following)
        if isinstance(el, n.Call):
            return self.call(el, shape, scope, env)
        if isinstance(el, n.Residual):
            return self.residual(el, shape, scope, env)
        if isinstance(el, n.Concat):
            return self.concat(el, shape, scope, env)
        return self.repeat(el, shape, scope, env)

    # ---- leaves ----------------------------------------------------------------------
    def layer(self, el: n.Layer, in_shape, scope: _Scope, env, following) -> Node | None:
        spec = layers.lookup(el.kind)
        if spec is None:
            self.unknown_kind(el)
            return None
        before = len(self.diags)
        attrs = bind(el.args, spec.args, env, el.kind, el.span, self.diags)
        if "bias" in attrs and attrs["bias"] is None:
            attrs["bias"] = not _is_batchnorm(following)
        name = scope.name(spec.name, el.alias)
        self.claim(name, el.span)
        self.leaf_count += 1
        if self.leaf_count > MAX_LAYERS:
            raise _TooBig
        if len(self.diags) > before or in_shape is None:
            return None
        try:
            inferred = spec.infer(attrs, in_shape)
        except layers.ShapeError as exc:
            self.diags.append(error("E301", str(exc), el.span, label=exc.label, help=exc.help))
            return None
        for text in inferred.warnings:
            self.warnings.append(warning("W301", text, el.span))
        return Node(name, spec.name, {**attrs, **inferred.attrs}, in_shape, inferred.out_shape,
                    el.span, inferred.params, inferred.state, inferred.macs)

    def unknown_kind(self, el: n.Layer) -> None:
        if self.spaced_dims(el):
            return
        if el.kind in self.defs:
            self.diags.append(error("E209", f"'{el.kind}' is a def; call it with parentheses",
                                    el.kind_span, help=f"{el.kind}(...)"))
            return
        kinds = list(layers.KINDS) + list(layers.ALIASES)
        hint = suggest(el.kind, kinds + list(self.defs))
        self.diags.append(error(
            "E210", f"unknown layer '{el.kind}'", el.kind_span,
            help=hint or "layers: " + ", ".join(sorted(layers.KINDS))))

    def spaced_dims(self, el: n.Layer) -> bool:
        """`input 28 x 28 x 1` reads as `input 28` then a layer 'x': suggest 28x28x1."""
        decl = self.input_decl
        if (decl is None or not _DIM_WORD.fullmatch(el.kind)
                or el.kind_span.line != decl.span.end_line):
            return False
        parts = [str(d) for d in decl.dims]
        end = el.kind_span
        want_number = el.kind[1:] == ""
        if not want_number:
            parts.append(el.kind[1:])
        for arg in el.args:
            value = arg.value
            if arg.key is None and want_number and isinstance(value, n.Number) \
                    and isinstance(value.value, int):
                parts.append(str(value.value))
                want_number = False
            elif arg.key is None and not want_number and isinstance(value, n.Word) \
                    and _DIM_WORD.fullmatch(value.name):
                want_number = value.name[1:] == ""
                if not want_number:
                    parts.append(value.name[1:])
            else:
                break
            end = arg.span
        if want_number:
            return False
        dims = "x".join(parts)
        self.diags.append(error("E219", "input dimensions are written without spaces",
                                decl.span.to(end), help=f"write input {dims}"))
        return True

    # ---- defs ------------------------------------------------------------------------
    def call(self, el: n.Call, in_shape, scope: _Scope, env) -> Node | None:
        d = self.defs.get(el.name)
        if d is None:
            spec = layers.lookup(el.name)
            if spec is not None:
                msg, hint = (f"'{el.name}' is a layer, not a def",
                             "write it without parentheses: " + _as_layer(el, spec))
            else:
                msg = f"unknown def '{el.name}'"
                hint = suggest(el.name, self.defs) or (
                    "defs here: " + ", ".join(self.defs) if self.defs else "no defs are declared")
            self.diags.append(error("E211", msg, el.name_span, help=hint))
            return None
        if len(self.call_stack) >= MAX_DEF_DEPTH:
            self.diags.append(error("E212", f"defs call each other more than {MAX_DEF_DEPTH} "
                                    "deep", el.span, help="flatten the chain of defs"))
            return None
        if el.name in self.call_stack:
            path = " -> ".join(self.call_stack[self.call_stack.index(el.name):] + (el.name,))
            self.diags.append(error("E212", f"def '{el.name}' calls itself ({path})", el.span,
                                    help="defs cannot be recursive; use repeat N { ... }"))
            return None
        before = len(self.diags), len(self.warnings)
        bound = self.bind_call(el, d, env)
        if bound is None:
            self.notecall_site(el, None, before)
            return None
        name = scope.name(el.name, el.alias)
        self.claim(name, el.span)
        self.call_stack += (el.name,)
        try:
            node = self.chain(d.body, in_shape, scope.child(name), bound, name)
        except _TooBig as exc:
            if exc.span is not None:  # a repeat in this def's body
                exc.notes.append(call_site(el, bound))
            raise
        finally:
            self.call_stack = self.call_stack[:-1]
        self.notecall_site(el, bound, before)
        args = {p.name: bound[p.name] for p in d.params}  # in the def's order
        return Node(name, "sequence", {**node.attrs, "def": el.name, "args": args}, in_shape,
                    node.out_shape, el.span, children=node.children)

    def notecall_site(self, el: n.Call, bound: dict | None, before: tuple[int, int]) -> None:
        """Tell each error and warning found inside the def's body (or its defaults) which
        call it came from; `finish` then folds the same mistake seen in several calls."""
        note = call_site(el, bound)
        for found, start in ((self.diags, before[0]), (self.warnings, before[1])):
            for i in range(start, len(found)):
                if not within(found[i].span, el.span):  # not about the call's own text
                    found[i] = replace(found[i], notes=found[i].notes + (note,))

    def finish(self) -> None:
        """Fold what one place in a def's body reports once per call into one diagnostic
        with a note per further call: errors when their words are the same; warnings also
        when only their numbers differ (the same layer seeing another input size in each
        call, as ResNet's stride-2 projection does on 56, 28 and 14), each further call's
        note then quoting what it says differently."""
        self.diags = fold_calls(self.diags)
        self.warnings = fold_calls(self.warnings, numbers_may_differ=True)

    def bind_call(self, el: n.Call, d: n.Def, env) -> dict | None:
        params = [p.name for p in d.params]
        values: dict = {}
        ok = True
        positional = [a for a in el.args if a.key is None]
        if len(positional) > len(params):
            self.diags.append(error(
                "E213", f"{d.name} takes {len(params)} argument{'s' * (len(params) != 1)} "
                f"({', '.join(params)}) but {len(positional)} were given", el.span))
            return None
        for arg in el.args:
            key = arg.key if arg.key is not None else params[len(values)]
            if key not in params:
                self.diags.append(error("E213", f"{d.name} has no parameter '{key}'", arg.span,
                                        help=suggest(key, params) or "parameters: " +
                                        ", ".join(params)))
                ok = False
                continue
            if key in values:
                self.diags.append(error("E213", f"{d.name}: '{key}' is given twice", arg.span))
                ok = False
                continue
            try:
                values[key] = evaluate(arg.value, env)
            except EvalError as exc:
                self.diags.append(exc.diagnostic)
                ok = False
        for i, p in enumerate(d.params):
            if p.name in values:
                continue
            if p.default is None:
                self.diags.append(error("E213", f"{d.name} needs a value for '{p.name}'", el.span,
                                        help=f"{d.name}({', '.join(params)})"))
                ok = False
                continue
            earlier = {q.name: values[q.name] for q in d.params[:i] if q.name in values}
            try:
                values[p.name] = evaluate(p.default, earlier)
            except EvalError as exc:
                self.diags.append(default_error(exc, d, i))
                ok = False
        return values if ok else None

    # ---- blocks ----------------------------------------------------------------------
    def residual(self, el: n.Residual, in_shape, scope: _Scope, env) -> Node:
        name = scope.name("residual", el.alias)
        self.claim(name, el.span)
        inner = scope.child(name)
        body = self.chain(el.body, in_shape, inner, env, name + "/body")
        out = body.out_shape
        if el.shortcut is not None:
            shortcut = self.chain(el.shortcut, in_shape, inner, env, name + "/shortcut")
            if out is not None and shortcut.out_shape is not None and shortcut.out_shape != out:
                self.diags.append(error(
                    "E303", f"residual: the body gives {layers.show_shape(out)} but the shortcut "
                    f"gives {layers.show_shape(shortcut.out_shape)}; they must match to be added",
                    el.shortcut.span))
                out = None
        elif in_shape is None or out is None or out == in_shape:
            shortcut = None
        else:
            shortcut = self.projection(el, in_shape, out, inner)
            if shortcut is None:
                out = None
        return Node(name, "residual", {}, in_shape, out, el.span, children=(body, shortcut))

    def projection(self, el: n.Residual, in_shape: Shape, out: Shape, scope: _Scope):
        """The course's W_s: conv f=1 s=k c=c_out (an fc for vectors) so the sum is defined."""
        name = scope.prefix + "projection"
        self.claim(name, el.span)
        if len(in_shape) == 1 and len(out) == 1:
            spec, attrs = layers.KINDS["fc"], {"units": out[0], "bias": True, "init": None}
        elif len(in_shape) == 3 and len(out) == 3:
            strides = [_stride_between(i, o) for i, o in zip(in_shape[:2], out[:2])]
            if None in strides:
                self.diags.append(error(
                    "E304", f"residual: the body turns {layers.show_shape(in_shape)} into "
                    f"{layers.show_shape(out)}, and no 1x1 convolution with an integer stride "
                    "maps one onto the other", el.span,
                    help="add an explicit shortcut { ... } that produces "
                    + layers.show_shape(out)))
                return None
            spec = layers.KINDS["conv"]
            attrs = {"c": out[2], "f": (1, 1), "s": tuple(strides), "p": (0, 0), "groups": 1,
                     "bias": True, "init": None}
        else:
            self.diags.append(error(
                "E304", f"residual: the body turns {layers.show_shape(in_shape)} into "
                f"{layers.show_shape(out)}; a shortcut cannot change the rank", el.span,
                help="add an explicit shortcut { ... }"))
            return None
        inferred = spec.infer(attrs, in_shape)
        leaf = Node(name, spec.name, {**attrs, **inferred.attrs, "projection": True}, in_shape,
                    inferred.out_shape, el.span, inferred.params, inferred.state, inferred.macs)
        return Node(scope.prefix + "shortcut", "sequence", {}, in_shape, out, el.span,
                    children=(leaf,))

    def concat(self, el: n.Concat, in_shape, scope: _Scope, env) -> Node:
        name = scope.name("concat", el.alias)
        self.claim(name, el.span)
        inner = scope.child(name)
        branches = tuple(self.chain(b, in_shape, inner, env, f"{name}/branch_{i + 1}")
                         for i, b in enumerate(el.branches))
        shapes = [b.out_shape for b in branches]
        out = None
        if None not in shapes:
            heads = {s[:-1] for s in shapes}
            if len(heads) == 1:
                out = shapes[0][:-1] + (sum(s[-1] for s in shapes),)
            else:
                listing = "; ".join(f"branch {i + 1} (line {b.span.line}) gives "
                                    f"{layers.show_shape(s)}" for i, (b, s)
                                    in enumerate(zip(el.branches, shapes)))
                self.diags.append(error(
                    "E305", "concat branches must agree on every axis but the channels: "
                    + listing, el.span,
                    help="give every branch the same spatial size (p=same, equal strides)"))
        return Node(name, "concat", {}, in_shape, out, el.span, children=branches)

    def repeat(self, el: n.Repeat, in_shape, scope: _Scope, env) -> Node | None:
        try:
            count = evaluate(el.count, env)
        except EvalError as exc:
            self.diags.append(exc.diagnostic)
            return None
        if isinstance(count, Sym):
            hint = suggest(count, env) or (
                "names in scope: " + ", ".join(env) if env
                else "a repeat count is a number, or inside a def an expression over its "
                "parameters")
            self.diags.append(error("E204", f"unknown name '{count}'", el.count.span,
                                    help=hint))
            return None
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            whole = isinstance(count, float) and count.is_integer() and count > 0
            self.diags.append(error("E214", f"repeat count must be a positive integer, got "
                                    f"{show(count)}", el.count.span,
                                    help=f"write {int(count)}" if whole else ""))
            return None
        nodes: list[Node] = []
        inner: list[tuple[int, int, int]] = []  # repeats within the copies
        shape = in_shape
        for i in range(count):
            before, leaves = len(self.diags), self.leaf_count
            seq = self.chain(el.body, shape, scope, env, "")
            inner += _shifted(seq.attrs.get("repeats", ()), len(nodes))
            nodes.extend(seq.children)
            shape = seq.out_shape
            if len(self.diags) > before:
                shape = None
                break  # the same mistake would repeat count times
            if i == 0:  # every copy has as many layers as the first: size before expanding
                per_copy = self.leaf_count - leaves
                if leaves + per_copy * count > MAX_LAYERS:
                    raise _TooBig(el.span, f"{count:,} copies of {per_copy:,} "
                                  f"layer{'s' * (per_copy != 1)}")
        # (start, stop, count): the copies are children start..stop-1 of the chain it is in
        outer = ((0, len(nodes), count),) if nodes else ()
        return Node("", "sequence", {"repeats": outer + tuple(inner)}, in_shape, shape,
                    el.span, children=tuple(nodes))


def _shifted(repeats, offset: int) -> list[tuple[int, int, int]]:
    return [(start + offset, stop + offset, count) for start, stop, count in repeats]


_DIM_WORD = re.compile(r"[xX][0-9]*")


def _as_layer(el: n.Call, spec: layers.LayerKind) -> str:
    """A layer written like a call, `fc(2*n)`, as a layer: `fc units=2*n`."""
    positional = [a.name for a in spec.args if a.positional]
    if sum(a.key is None for a in el.args) > len(positional):
        return f"{el.name} ..."
    words = [el.name]
    for arg in el.args:
        value = arg.value
        if arg.key is not None:
            words.append(f"{arg.key}={show_expr(value)}")
            continue
        name = positional.pop(0)
        plain = isinstance(value, n.Number | n.Word | n.Dims | n.String)
        words.append(show_expr(value) if plain else f"{name}={show_expr(value)}")
    return " ".join(words)


def _is_batchnorm(el) -> bool:
    return isinstance(el, n.Layer) and layers.ALIASES.get(el.kind, el.kind) == "batchnorm"


def _stride_between(n_in: int, n_out: int) -> int | None:
    """The stride k with floor((n_in - 1)/k) + 1 == n_out (a 1x1 conv, no padding), if any."""
    if n_out < 1 or n_out > n_in:
        return None
    k = max(1, -(-n_in // n_out))
    return k if (n_in - 1) // k + 1 == n_out else None


# ---- the whole file ---------------------------------------------------------------------


def check_module(module: n.Module) -> Net:
    """Check a parsed module. Raises SpecError listing every error, sorted by position."""
    diags: list[Diagnostic] = []
    nets = [s for s in module.statements if isinstance(s, n.NetDecl)]
    inputs = [s for s in module.statements if isinstance(s, n.InputDecl)]
    chains = [s for s in module.statements if isinstance(s, n.Chain)]
    trains = [s for s in module.statements if isinstance(s, n.TrainBlock)]
    defs: dict[str, n.Def] = {}
    for s in module.statements:
        if isinstance(s, n.Def):
            _check_def(s, defs, diags)
    for extra, what in ((nets[1:], "net"), (inputs[1:], "input"), (trains[1:], "train")):
        for s in extra:
            diags.append(error("E215", f"'{what}' is declared twice", s.span))
    for s in chains[1:]:
        diags.append(error("E216", "a spec holds one model chain; this is a second one", s.span,
                           help="join layers with '->' (a chain may span lines)"))
    end = end_of_file(module.source)
    if not inputs:  # at 1:1, where the declaration goes
        diags.append(error("E217", "missing 'input': declare the example shape first",
                           n.Span(1, 1, 1, 2),
                           help="e.g. input 28x28x1 (an image) or input 2 (a vector)"))
    if not chains:
        diags.append(error("E218", "the spec has no layers", end,
                           help="e.g. fc 4 -> tanh -> sigmoid 1"))
    input_shape = inputs[0].dims if inputs else None
    if input_shape is not None and (0 in input_shape or len(input_shape) not in (1, 2, 3)
                                    or max(input_shape) > 2**31 - 1):
        diags.append(error("E219", f"input must be N, HxW or HxWxC with sizes >= 1, got "
                           f"{'x'.join(map(str, input_shape))}", inputs[0].span))
        input_shape = None

    checker = _Checker(defs, input_decl=inputs[0] if inputs else None)
    body = None
    if chains:
        try:
            body = checker.chain(chains[0], input_shape, _Scope(), {}, "")
        except _TooBig as exc:
            diags.append(error("E220", f"the net expands to more than {MAX_LAYERS:,} layers",
                               exc.span or chains[0].span, label=exc.label,
                               notes=tuple(exc.notes),
                               help="check the repeat counts" if exc.span else
                               "check the repeat counts and the defs that call other defs"))
    checker.finish()
    diags += checker.diags
    train = check_train(trains[0] if trains else None, diags)
    if body is not None and body.out_shape is not None and train.loss is not None:
        _check_loss(train, body, diags)
    frozen = _check_remedies(train, body, input_shape, diags)
    if diags:
        raise SpecError(diags, checker.warnings)
    name = nets[0].name if nets else _stem(module.filename)
    return Net(name, input_shape, body, train, tuple(checker.warnings), module.filename,
               module.source, frozen)


def _check_remedies(train, body: Node | None, input_shape, diags) -> frozenset[str]:
    """freeze names layers of this net; augment needs images; early_stop a dev split.
    -> the frozen leaves' names."""
    remedies.check_accumulate(train, diags)
    if train.augment is not None:
        remedies.check_augment_input(train.augment, input_shape, train.spans.get("augment"),
                                     diags)
    if train.early_stop is not None:
        loss = train.loss
        if loss is None and body is not None and body.out_shape is not None:
            loss = default_loss(list(body.leaves())[-1].kind)
        remedies.check_early_stop_split(train, loss, diags)
    if train.freeze is None or body is None or body.out_shape is None:
        return frozenset()
    return remedies.resolve_freeze(train.freeze, list(body.leaves()), diags)


def _check_def(d: n.Def, defs: dict, diags) -> None:
    if d.name in defs:
        diags.append(error("E221", f"def '{d.name}' is declared twice (first at line "
                           f"{defs[d.name].span.line})", d.name_span))
        return
    if layers.lookup(d.name) is not None or d.name in KEYWORDS:
        diags.append(error("E221", f"def '{d.name}' has the name of a built-in layer or keyword",
                           d.name_span, help="choose another name"))
        return
    seen = set()
    for p in d.params:
        if p.name in seen:
            diags.append(error("E221", f"def '{d.name}': parameter '{p.name}' appears twice",
                               p.span))
        seen.add(p.name)
    defs[d.name] = d


def _check_loss(train, body: Node, diags) -> None:
    head = list(body.leaves())[-1]
    needs = LOSSES[train.loss].head
    if needs and head.kind != needs:
        span = train.spans.get("loss", body.span)
        diags.append(error("E407", f"loss {train.loss} needs the net to end in {needs}, but it "
                           f"ends in {head.kind}", span,
                           help=f"end the chain with {needs} N, or use loss mse"))


def _stem(filename: str) -> str:
    base = os.path.basename(filename)
    return base[:-4] if base.endswith(".net") else (base or "net")


def check_source(source: str, filename: str = "<spec>") -> Net:
    """Parse and check spec text. Raises SpecError."""
    return check_module(parse(source, filename, positional_names=layers.POSITIONAL))


def check_file(path) -> Net:
    """Read, parse and check a .net file. Raises SpecError (or OSError if it cannot be read)."""
    from netc.dsl.parser import decode_source
    with open(path, "rb") as fh:
        data = fh.read()
    return check_source(decode_source(data, str(path)), str(path))
