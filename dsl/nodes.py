"""The abstract syntax tree of a .net file: frozen dataclasses that carry their source span.

The parser builds these; the checker (netc.compiler.check) turns them into the typed IR.
Nothing here knows what a layer means.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A region of the source: 1-based line and column; `end_col` is one past the last character."""

    line: int
    col: int
    end_line: int
    end_col: int

    @staticmethod
    def of(meta_or_token) -> Span:
        """The span of a Lark token or a tree's `meta` (with propagate_positions)."""
        m = meta_or_token
        return Span(m.line, m.column, m.end_line, m.end_column)

    def to(self, other: Span) -> Span:
        """The span from the start of this one to the end of `other`."""
        return Span(self.line, self.col, other.end_line, other.end_col)


# ---- values and expressions ------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    value: int | float
    span: Span


@dataclass(frozen=True)
class Dims:
    value: tuple[int, ...]
    span: Span


@dataclass(frozen=True)
class Word:
    """A bare word: a keyword value (`same`, `true`) or, inside a def, a parameter reference."""

    name: str
    span: Span


@dataclass(frozen=True)
class String:
    value: str
    span: Span


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * //
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class Neg:
    operand: Expr
    span: Span


Expr = Number | Dims | Word | String | BinOp | Neg


@dataclass(frozen=True)
class Arg:
    """A positional (`key is None`) or keyword argument."""

    key: str | None
    value: Expr
    span: Span


# ---- the model chain --------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    kind: str
    args: tuple[Arg, ...]
    alias: str | None
    span: Span
    kind_span: Span


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Arg, ...]
    alias: str | None
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Residual:
    body: Chain
    shortcut: Chain | None
    alias: str | None
    span: Span


@dataclass(frozen=True)
class Concat:
    branches: tuple[Chain, ...]
    alias: str | None
    span: Span


@dataclass(frozen=True)
class Repeat:
    count: Expr
    body: Chain
    span: Span


Element = Layer | Call | Residual | Concat | Repeat


@dataclass(frozen=True)
class Chain:
    elements: tuple[Element, ...]
    span: Span


# ---- top-level statements ---------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    default: Expr | None
    span: Span


@dataclass(frozen=True)
class Def:
    name: str
    params: tuple[Param, ...]
    body: Chain
    span: Span
    name_span: Span


@dataclass(frozen=True)
class NetDecl:
    name: str
    span: Span


@dataclass(frozen=True)
class InputDecl:
    dims: tuple[int, ...]
    span: Span


@dataclass(frozen=True)
class Setting:
    key: str
    args: tuple[Arg, ...]
    span: Span
    key_span: Span


@dataclass(frozen=True)
class TrainBlock:
    settings: tuple[Setting, ...]
    span: Span


Statement = NetDecl | InputDecl | Def | Chain | TrainBlock


@dataclass(frozen=True)
class Module:
    """A parsed file: its statements in source order, plus where it came from."""

    statements: tuple[Statement, ...]
    filename: str
    source: str
