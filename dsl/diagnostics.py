"""Diagnostics: errors and warnings that point at the source, rendered codespan-style.

    lenet.net:3:4: error: conv f=5 does not fit a 4x4 input: (4 + 2*0 - 5)/1 + 1 = 0
      3 | -> conv f=5 c=16 -> relu
        |    ^^^^^^^^^^^^^^ output would be 0x0
      = help: pad with p=2 or use a smaller f

Codes group messages by family so they can be searched and tested:
E1xx syntax, E2xx names and arguments, E3xx shapes, E4xx train settings; W3xx shape warnings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .nodes import Span


@dataclass(frozen=True)
class Diagnostic:
    severity: str  # "error" or "warning"
    code: str
    message: str
    span: Span
    label: str = ""
    help: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_json(self) -> dict:
        out = {"line": self.span.line, "col": self.span.col, "message": self.message,
               "code": self.code}
        if self.help:
            out["help"] = self.help
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def error(code: str, message: str, span: Span, label: str = "", help: str = "",
          notes: tuple[str, ...] = ()) -> Diagnostic:
    return Diagnostic("error", code, message, span, label, help, tuple(notes))


def warning(code: str, message: str, span: Span, label: str = "", help: str = "",
            notes: tuple[str, ...] = ()) -> Diagnostic:
    return Diagnostic("warning", code, message, span, label, help, tuple(notes))


class SpecError(Exception):
    """A spec that cannot be checked: one or more error diagnostics, sorted by position."""

    def __init__(self, diagnostics: list[Diagnostic], warnings: list[Diagnostic] = ()):
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.span.line, d.span.col))
        self.warnings = list(warnings)
        super().__init__(self.diagnostics[0].message if self.diagnostics else "spec error")


def _display(text: str) -> str:
    """A source line as shown, one cell per character so carets line up: a tab shows as a
    space and any other control character as '?'."""
    return "".join(" " if ch == "\t" else ch if ch >= " " else "?" for ch in text)


def render(diag: Diagnostic, source: str, filename: str) -> str:
    """The diagnostic as text: header line, the source line, a caret line, notes and help."""
    span = diag.span
    head = f"{filename}:{span.line}:{span.col}: {diag.severity}: {diag.message}"
    lines = source.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out = [head]
    if 1 <= span.line <= len(lines):
        text = _display(lines[span.line - 1])
        gutter = str(span.line)
        pad = " " * len(gutter)
        start = max(span.col - 1, 0)
        end_col = span.end_col if span.end_line == span.line else len(text) + 1
        width = max(1, min(end_col - 1, len(text)) - start)
        out.append(f"  {gutter} | {text}")
        caret = " " * start + "^" * width
        out.append(f"  {pad} | {caret}" + (f" {diag.label}" if diag.label else ""))
    for note in diag.notes:
        out.append(f"  = note: {note}")
    if diag.help:
        out.append(f"  = help: {diag.help}")
    return "\n".join(out)
