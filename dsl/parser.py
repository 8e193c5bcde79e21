"""Text -> AST. Lark LALR(1) with the grammar in grammar.lark, positions on every node.

    >>> m = parse("input 2\\nfc 4 -> tanh -> sigmoid 1")
    >>> [type(s).__name__ for s in m.statements]
    ['InputDecl', 'Chain']
"""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Mapping

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from . import nodes as n
from .diagnostics import Diagnostic, SpecError, error
from .tables import lark_parser

# How terminals read in "expected ..." messages.
TERMINAL_WORDS = {
    "ARROW": "'->'", "BAR": "'|'", "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('",
    "RPAR": "')'", "COMMA": "','", "EQUAL": "'='", "PLUS": "'+'", "MINUS": "'-'",
    "STAR": "'*'", "DSLASH": "'//'", "NAME": "a name", "INT": "an integer",
    "FLOAT": "a number", "DIMS": "dimensions such as 28x28x1", "STRING": "a quoted string",
    "_NL": "a line break", "$END": "end of file", "NET": "'net'", "INPUT": "'input'",
    "DEF": "'def'", "TRAIN": "'train'", "RESIDUAL": "'residual'", "CONCAT": "'concat'",
    "REPEAT": "'repeat'", "SHORTCUT": "'shortcut'", "AS": "'as'",
}
# Order in which expected terminals are listed (the most helpful first).
_EXPECTED_ORDER = ["ARROW", "RBRACE", "RPAR", "LBRACE", "BAR", "EQUAL", "COMMA", "NAME",
                   "INT", "FLOAT", "DIMS", "STRING", "_NL", "$END"]


class _LineBreaks:
    """Post-lexer: line breaks are whitespace, except inside `train { }` where each setting is
    one line. Also remembers, for syntax errors, the unclosed '{' and '(' (so an unexpected end
    of file can point at them), each '}' that closed nothing, and the last few tokens."""

    always_accept = ("_NL",)

    def __init__(self):
        self.open_braces: list[Token] = []
        self.open_parens: list[Token] = []
        self.stray_closers: set[int] = set()  # start_pos of each '}' that closed no '{'
        self.recent: deque[Token] = deque(maxlen=4)  # the last tokens passed on, newest last
        self.in_train = False  # whether the last token passed on is inside train { }

    def process(self, stream):
        self.open_braces = open_braces = []
        self.open_parens = open_parens = []
        self.stray_closers = stray = set()
        self.recent = recent = deque(maxlen=4)
        self.in_train = in_train = train_next = False
        last_type = None
        for tok in stream:
            kind = tok.type
            if kind == "_NL":
                if in_train and last_type not in ("_NL", "LBRACE"):
                    last_type = kind
                    recent.append(tok)
                    yield tok
                continue
            if kind == "TRAIN":
                train_next = True
            elif kind == "LBRACE":
                open_braces.append(tok)
                in_train, train_next = train_next, False
            elif kind == "RBRACE":
                if open_braces:
                    open_braces.pop()
                else:
                    stray.add(tok.start_pos)
                in_train = False
            elif kind == "LPAR":
                open_parens.append(tok)
            elif kind == "RPAR" and open_parens:
                open_parens.pop()
            last_type = kind
            recent.append(tok)
            self.in_train = in_train
            yield tok


@functools.lru_cache(maxsize=1)
def _parser() -> tuple[Lark, _LineBreaks]:
    postlex = _LineBreaks()  # the tables come from grammar_tables.json (see tables.py)
    return lark_parser(postlex), postlex


class _Abort(Exception):
    """Raised inside the Transformer with a diagnostic; arrives wrapped in VisitError."""

    def __init__(self, diagnostic: Diagnostic):
        self.diagnostic = diagnostic


def _int(tok: Token) -> int:
    try:
        return int(tok)
    except ValueError:  # more digits than Python converts
        raise _Abort(error("E104", f"number too large: {str(tok)[:20]}... "
                           f"({len(tok)} digits)", n.Span.of(tok))) from None


def _float(tok: Token) -> float:
    value = float(tok)
    if value in (float("inf"), float("-inf")):
        raise _Abort(error("E104", f"number out of range: {tok}", n.Span.of(tok)))
    return value


@v_args(meta=True)
class _ToAST(Transformer):
    """Parse tree -> nodes. Every node gets the span of the text it came from."""

    def start(self, meta, children):
        return tuple(children)

    def net_decl(self, meta, children):
        return n.NetDecl(str(children[0]), n.Span.of(meta))

    def input_decl(self, meta, children):
        tok = children[0]
        if tok.type == "INT":
            dims = (_int(tok),)
        else:
            dims = tuple(_int(Token("INT", part, *_pos(tok))) for part in tok.split("x"))
        return n.InputDecl(dims, n.Span.of(meta))

    # ---- chain ---------------------------------------------------------------------
    def chain(self, meta, children):
        return n.Chain(tuple(c for c in children if not isinstance(c, Token)), n.Span.of(meta))

    def layer(self, meta, children):
        kind, *rest = children
        args, alias = _split_alias(rest)
        return n.Layer(str(kind), tuple(_as_arg(a) for a in args), alias, n.Span.of(meta),
                       n.Span.of(kind))

    def call(self, meta, children):
        name, call_args, *rest = children
        _, alias = _split_alias(rest)
        return n.Call(str(name), tuple(call_args or ()), alias, n.Span.of(meta), n.Span.of(name))

    def call_args(self, meta, children):
        return tuple(_as_arg(c) for c in children)

    def residual(self, meta, children):
        body, _shortcut_kw, shortcut, *rest = children
        _, alias = _split_alias(rest)
        return n.Residual(body, shortcut, alias, n.Span.of(meta))

    def concat(self, meta, children):
        branches, alias = _split_alias([c for c in children if not isinstance(c, Token)])
        return n.Concat(tuple(branches), alias, n.Span.of(meta))

    def repeat(self, meta, children):
        count, body = children
        return n.Repeat(count, body, n.Span.of(meta))

    def alias(self, meta, children):
        return ("alias", str(children[0]))

    # ---- defs ----------------------------------------------------------------------
    def def_decl(self, meta, children):
        name, params, body = children
        return n.Def(str(name), tuple(params or ()), body, n.Span.of(meta), n.Span.of(name))

    def params(self, meta, children):
        return tuple(children)

    def param(self, meta, children):
        name, default = children
        return n.Param(str(name), default, n.Span.of(meta))

    # ---- values --------------------------------------------------------------------
    def kwarg(self, meta, children):
        key, value = children
        return n.Arg(str(key), value, n.Span.of(meta))

    setting_kwarg = kwarg

    def names(self, meta, children):
        """Layer names joined by ',' or '/' in a setting: the same as their quoted text."""
        return n.String(str(children[0]), n.Span.of(children[0]))

    def binop(self, meta, children):
        left, op, right = children
        return n.BinOp(str(op), left, right, n.Span.of(meta))

    def neg(self, meta, children):
        return n.Neg(children[1], n.Span.of(meta))

    def negative(self, meta, children):
        return n.Neg(self.number(meta, children[1:]), n.Span.of(meta))

    def number(self, meta, children):
        tok = children[0]
        value = _int(tok) if tok.type == "INT" else _float(tok)
        return n.Number(value, n.Span.of(tok))

    def dims(self, meta, children):
        tok = children[0]
        parts = tuple(_int(Token("INT", p, *_pos(tok))) for p in tok.split("x"))
        return n.Dims(parts, n.Span.of(tok))

    def word(self, meta, children):
        return n.Word(str(children[0]), n.Span.of(children[0]))

    def string(self, meta, children):
        return n.String(str(children[0])[1:-1], n.Span.of(children[0]))

    # ---- train ---------------------------------------------------------------------
    def train_block(self, meta, children):
        return n.TrainBlock(tuple(children), n.Span.of(meta))

    def setting(self, meta, children):
        key, *args = children
        return n.Setting(str(key), tuple(_as_arg(a) for a in args), n.Span.of(meta),
                         n.Span.of(key))


def _pos(tok: Token):
    return (tok.start_pos, tok.line, tok.column, tok.end_line, tok.end_column, tok.end_pos)


def _split_alias(items):
    if items and isinstance(items[-1], tuple) and items[-1][:1] == ("alias",):
        return list(items[:-1]), items[-1][1]
    return list(items), None


def _as_arg(item) -> n.Arg:
    return item if isinstance(item, n.Arg) else n.Arg(None, item, item.span)


# ---- source text and syntax errors ----------------------------------------------------


def decode_source(data: bytes, filename: str) -> str:
    """Bytes -> text. A file that is not UTF-8 is an error at the first bad byte."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8", errors="replace")
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        raise SpecError([error("E101", f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x})",
                               n.Span(line, col, line, col + 1),
                               help="save the spec as UTF-8 text")]) from None
    return text


MAX_NESTING = 100  # blocks in blocks, or operators in an expression; deeper is a mistake
_NESTING = {"residual": "blocks", "concat": "blocks", "repeat": "blocks",
            "binop": "expression", "neg": "expression"}


def parse(source: str, filename: str = "<spec>", *,
          positional_names: Mapping[str, str] | None = None) -> n.Module:
    """Parse a spec. Raises SpecError (with one syntax diagnostic) on malformed text.

    `positional_names` maps a layer kind to the name of its positional argument (fc: units);
    it only makes hints more precise (`fc 2*n` -> write fc units=2*n)."""
    source = source.replace("\r\n", "\n").replace("\r", "\n")
    lark, postlex = _parser()
    tree = None
    try:
        tree = lark.parse(source)
        _check_nesting(tree)
        statements = _ToAST().transform(tree)
    except UnexpectedInput as exc:
        raise SpecError([_syntax_error(exc, source, postlex, positional_names or {})]) from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, _Abort):
            raise SpecError([exc.orig_exc.diagnostic]) from None
        raise
    except RecursionError:  # not expected after _check_nesting; point at the deepest part
        deepest = _walk_nesting(tree)[1] if tree is not None else None
        span = n.Span.of(deepest.meta) if deepest is not None else n.Span(1, 1, 1, 2)
        raise SpecError([error("E105", "the spec is nested too deeply to read", span)]) from None
    return n.Module(statements, filename, source)


def _check_nesting(tree: Tree) -> None:
    """E105 where blocks (or an expression's operators) first nest more than MAX_NESTING
    deep, before the recursive Transformer and checker would run out of stack."""
    node = _walk_nesting(tree)[0]
    if node is None:
        return
    what = _NESTING[node.data]
    if what == "blocks":
        message = f"blocks are nested more than {MAX_NESTING} deep"
        help = "write repeated structure with repeat N { ... } or a def"
    else:
        message = f"the expression nests more than {MAX_NESTING} operators deep"
        help = "split it, e.g. into a def parameter"
    raise SpecError([error("E105", message, n.Span.of(node.meta),
                           label=f"level {MAX_NESTING + 1}", help=help)])


def _walk_nesting(tree: Tree) -> tuple[Tree | None, Tree | None]:
    """(the first node, in source order, nested more than MAX_NESTING deep; the deepest
    node of the tree), without recursion."""
    first = deepest = None
    most = -1
    stack = [(tree, 0, 0)]
    while stack:
        node, nesting, depth = stack.pop()
        if node.data in _NESTING:
            nesting += 1
            if nesting > MAX_NESTING and first is None:
                first = node
        if depth > most and not node.meta.empty:
            most, deepest = depth, node
        stack.extend((c, nesting, depth + 1) for c in reversed(node.children)
                     if isinstance(c, Tree))
    return first, deepest


def end_of_file(source: str) -> n.Span:
    """The position just after the last non-blank character (1:1 for an empty file)."""
    text = source.rstrip()
    line = text.count("\n") + 1
    col = len(text) - (text.rfind("\n") + 1) + 1
    return n.Span(line, col, line, col + 1)


def _describe(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    if tok.type == "_NL":
        return "line break"
    if tok.type in ("NAME", "INT", "FLOAT", "DIMS", "STRING"):
        return f"'{tok}'"
    return TERMINAL_WORDS.get(tok.type, f"'{tok}'")


def _expected(names) -> str:
    names = {x for x in names if x in TERMINAL_WORDS and x != "_NL"}
    if "NAME" in names:  # keywords are names too; listing them all is noise
        names -= {"NET", "INPUT", "DEF", "TRAIN", "RESIDUAL", "CONCAT", "REPEAT", "SHORTCUT"}
    ordered = [x for x in _EXPECTED_ORDER if x in names]
    ordered += sorted(names - set(ordered))
    words = [TERMINAL_WORDS[x] for x in ordered][:6]
    if not words:
        return ""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _syntax_error(exc: UnexpectedInput, source: str, postlex: _LineBreaks,
                  positional_names: Mapping[str, str]) -> Diagnostic:
    open_braces = postlex.open_braces
    if isinstance(exc, UnexpectedCharacters):
        ch = source[exc.pos_in_stream] if exc.pos_in_stream < len(source) else ""
        span = n.Span(exc.line, exc.column, exc.line, exc.column + 1)
        if ch in "\"'" and ch:
            rest = source[exc.pos_in_stream + 1:].split("\n", 1)[0]
            if ch not in rest:  # the string never ends on its line
                return error("E102", f"unclosed string: the closing quote {ch} is missing",
                             span, label="this string is never closed",
                             help=f"a string ends on its own line: {ch}{rest.rstrip()}{ch}")
        help = _CHARACTER_HELP.get(ch, "")
        if ch == "/" and postlex.in_train:
            help = _quoted_list_help(source, exc.pos_in_stream) or help
        shown = repr(ch) if ch.isprintable() else f"U+{ord(ch):04X}" if ch else "?"
        return error("E102", f"unexpected character {shown}", span, help=help)

    tok = exc.token if isinstance(exc, UnexpectedToken) else Token("$END", "")
    expected = exc.expected
    if tok.type == "$END" or isinstance(exc, UnexpectedEOF):
        span = end_of_file(source)
        if "RBRACE" in expected and open_braces:
            brace = open_braces[-1]
            return error("E103", "unexpected end of file: a '{' is never closed", span,
                         notes=(f"the '{{' opened at line {brace.line}, column {brace.column}",),
                         help="add the missing '}'")
        if "RPAR" in expected:
            notes = ()
            if postlex.open_parens:
                paren = postlex.open_parens[-1]
                notes = (f"the '(' opened at line {paren.line}, column {paren.column}",)
            return error("E103", "unexpected end of file: missing ')'", span, notes=notes,
                         help="add the missing ')'")
        what = _expected(expected)
        return error("E103", "unexpected end of file" + (f"; expected {what}" if what else ""),
                     span)

    span = n.Span.of(tok)
    if postlex.in_train:  # the LALR states for arguments are shared with layers
        expected = set(expected) - {"ARROW", "BAR"}
    what = _expected(expected)
    message = f"unexpected {_describe(tok)}" + (f"; expected {what}" if what else "")
    return error("E103", message, span,
                 help=_token_help(tok, expected, postlex, source, positional_names))


_CHARACTER_HELP = {
    ":": "use '=' between a key and its value, e.g. f=3",
    ";": "layers are joined with '->', settings go one per line",
    "[": "write dimensions as 28x28x1",
    "\t": "",
    "\u2192": "write '->' (a hyphen and a greater-than sign)",  # →
    "\u27f6": "write '->' (a hyphen and a greater-than sign)",  # ⟶
    "\u21d2": "write '->' (a hyphen and a greater-than sign)",  # ⇒
    "\u2013": "write '->' with a plain hyphen '-', or '-' for minus",  # – en dash
    "\u2014": "write '->' with a plain hyphen '-', or '-' for minus",  # — em dash
    "\u2212": "write minus as a plain hyphen '-'",  # − minus sign
    "\u00d7": "write dimensions with the letter x: 28x28x1",  # ×
    "\u201c": "use straight quotes: \"data/train.npz\"",  # “
    "\u201d": "use straight quotes: \"data/train.npz\"",  # ”
    "\u2018": "use straight quotes: 'data/train.npz'",  # ‘
    "\u2019": "use straight quotes: 'data/train.npz'",  # ’
}
# A positional value followed by arithmetic, e.g. `2*n` in `fc 2*n -> relu`.
_SIMPLE_EXPR = re.compile(r"[\w.]+(?:\s*(?:\*|//|\+|-(?!>))\s*\(*\s*[\w.]+\s*\)*)+")
_OPERATORS = ("STAR", "DSLASH", "PLUS", "MINUS")
_VALUES = ("INT", "FLOAT", "NAME", "DIMS")


def _token_help(tok: Token, expected, postlex: _LineBreaks, source: str,
                positional_names: Mapping[str, str]) -> str:
    # The tokens before `tok`. The contextual lexer reports a token that no rule could take
    # next before it reaches the post-lexer, so `tok` itself may or may not be among them.
    recent = list(postlex.recent)
    passed_on = bool(recent) and recent[-1].start_pos == tok.start_pos
    if passed_on:
        recent.pop()
    prev = recent[-1].type if recent else None
    if tok.type == "COMMA":
        if postlex.in_train and len(recent) >= 2 and recent[-2].type == "EQUAL":
            return _quoted_list_help(source, tok.start_pos) or ""
        return "separate arguments with spaces, not commas (conv f=3 c=8)"
    if ("RPAR" in expected and postlex.open_parens
            and tok.type in ("ARROW", "RBRACE", "LBRACE", "BAR", "_NL")):
        paren = postlex.open_parens[-1]
        return (f"add the missing ')': the '(' at line {paren.line}, column {paren.column} "
                "is never closed")
    if tok.type in _OPERATORS and tok.type not in expected and prev in _VALUES:
        return _arithmetic_help(recent, postlex.in_train, source, positional_names)
    if tok.type == "ARROW" and "ARROW" not in expected:
        return "'->' joins two layers: put a layer on both sides of it"
    if tok.type == "RBRACE" and "RBRACE" not in expected:
        if (tok.start_pos in postlex.stray_closers if passed_on else not postlex.open_braces):
            return "this '}' closes nothing"
        if prev == "BAR":
            return "a concat branch needs at least one layer: remove the last '|' or add one"
        if prev == "LBRACE":
            return "a block needs at least one layer"
        if prev == "ARROW":
            return "'->' joins two layers: put a layer after it"
        return ""
    if tok.type == "BAR" and prev in ("LBRACE", "BAR"):
        return "a concat branch needs at least one layer"
    if tok.type == "EQUAL":
        return "only key=value arguments use '=', and keys are names (f=3, c=16)"
    if tok.type in ("INT", "FLOAT", "DIMS") and "ARROW" in expected:
        return "a layer takes at most its positional value, then key=value arguments"
    return ""


_KEY_AND_LIST = re.compile(r"([A-Za-z_]\w*)=([\w/,]+)$")


def _quoted_list_help(source: str, pos: int) -> str:
    """`layers=fc_1,fc_2` or `layers=layer1/conv_1` in a train setting: a list of names, or
    a name with '/', is written as a quoted string."""
    line_start = source.rfind("\n", 0, pos) + 1
    end = pos
    while end < len(source) and (source[end].isalnum() or source[end] in "_/,"):
        end += 1
    words = source[line_start:end].split()
    match = _KEY_AND_LIST.match(words[-1]) if words else None
    if match is None:
        return ""
    return f'quote a list of names, or a name with \'/\': {match[1]}="{match[2]}"'


def _arithmetic_help(before: list[Token], in_train: bool, source: str,
                     positional_names: Mapping[str, str]) -> str:
    """`fc 2*n`: arithmetic in a positional value. Name the argument: fc units=2*n.
    `before` holds the tokens up to the value, the last of them."""
    if in_train:  # no setting takes arithmetic
        return "a setting's values are plain numbers or words, without arithmetic"
    value = before[-1]
    kind = before[-2] if len(before) >= 2 and before[-2].type == "NAME" else None
    name = positional_names.get(str(kind)) if kind is not None else None
    general = "positional values are plain; arithmetic goes in key=value arguments"
    if name is None:
        return general + " (c=2*n)"
    match = _SIMPLE_EXPR.match(source, value.start_pos)
    expr = match.group(0).strip() if match else "..."
    return f"{general}: {kind} {name}={expr}"

