"""Text -> AST. Lark LALR(1) with the grammar in grammar.lark, positions on every node.

    >>> m = parse("input 2\\nfc 4 -> tanh -> sigmoid 1")
    >>> [type(s).__name__ for s in m.statements]
    ['InputDecl', 'Chain']
"""

from __future__ import annotations

import functools

from lark import Lark, Token, Transformer, v_args
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
    one line. Also remembers unclosed '{' so an unexpected end of file can point at it."""

    always_accept = ("_NL",)

    def __init__(self):
        self.open_braces: list[Token] = []

    def process(self, stream):
        self.open_braces = open_braces = []
        in_train = train_next = False
        last_type = None
        for tok in stream:
            kind = tok.type
            if kind == "_NL":
                if in_train and last_type not in ("_NL", "LBRACE"):
                    last_type = kind
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
                in_train = False
            last_type = kind
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


def parse(source: str, filename: str = "<spec>") -> n.Module:
    """Parse a spec. Raises SpecError (with one syntax diagnostic) on malformed text."""
    source = source.replace("\r\n", "\n").replace("\r", "\n")
    lark, postlex = _parser()
    try:
        tree = lark.parse(source)
        statements = _ToAST().transform(tree)
    except UnexpectedInput as exc:
        raise SpecError([_syntax_error(exc, source, postlex.open_braces)]) from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, _Abort):
            raise SpecError([exc.orig_exc.diagnostic]) from None
        raise
    except RecursionError:
        raise SpecError([error("E105", "the spec is nested too deeply to read",
                               n.Span(1, 1, 1, 2))]) from None
    return n.Module(statements, filename, source)


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


def _syntax_error(exc: UnexpectedInput, source: str, open_braces: list[Token]) -> Diagnostic:
    if isinstance(exc, UnexpectedCharacters):
        ch = source[exc.pos_in_stream] if exc.pos_in_stream < len(source) else ""
        span = n.Span(exc.line, exc.column, exc.line, exc.column + 1)
        help = _CHARACTER_HELP.get(ch, "")
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
            return error("E103", "unexpected end of file: missing ')'", span)
        what = _expected(expected)
        return error("E103", "unexpected end of file" + (f"; expected {what}" if what else ""),
                     span)

    span = n.Span.of(tok)
    what = _expected(expected)
    message = f"unexpected {_describe(tok)}" + (f"; expected {what}" if what else "")
    return error("E103", message, span, help=_token_help(tok, expected))


_CHARACTER_HELP = {
    ":": "use '=' between a key and its value, e.g. f=3",
    ";": "layers are joined with '->', settings go one per line",
    "[": "write dimensions as 28x28x1",
    "\t": "",
}


def _token_help(tok: Token, expected) -> str:
    if tok.type == "COMMA":
        return "separate arguments with spaces, not commas (conv f=3 c=8)"
    if tok.type == "ARROW" and "ARROW" not in expected:
        return "'->' joins two layers: put a layer on both sides of it"
    if tok.type == "RBRACE" and "RBRACE" not in expected:
        return "this '}' closes nothing"
    if tok.type == "EQUAL":
        return "only key=value arguments use '=', and keys are names (f=3, c=16)"
    if tok.type in ("INT", "FLOAT", "DIMS") and "ARROW" in expected:
        return "a layer takes at most its positional value, then key=value arguments"
    return ""

