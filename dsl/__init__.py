"""The netc language front end: grammar, parser, AST nodes and diagnostics. No JAX here."""

from .diagnostics import Diagnostic, SpecError, render
from .nodes import Module, Span
from .parser import decode_source, parse

__all__ = ["Diagnostic", "Module", "Span", "SpecError", "decode_source", "parse", "render"]
