"""`netc draw`: the checked net as a diagram, written as SVG or PNG. No JAX, no Graphviz.

One layout (runtime/draw_layout.py), two renderers: `to_svg` writes the `Drawing` as plain
XML (every name a real <text>, every layer's full name its <title>); `write_png` draws the
same items with matplotlib's Agg canvas.
"""

from __future__ import annotations

import io
import os
import re
import sys
import tempfile
from pathlib import Path

from netc.compiler.ir import Net

from .draw_layout import (
    COLOURS,
    DETAIL_PX,
    FONT,
    FRAME_STROKE,
    INK,
    LABEL_PX,
    LINE,
    MAX_PNG_PIXELS,
    NAME_PX,
    NOTE,
    NOTE_PX,
    SVG_FONTS,
    Add,
    Box,
    Dot,
    Drawing,
    Frame,
    Line,
    Text,
    layout,
    text_width,
)

# ---- SVG ------------------------------------------------------------------------------------


def _esc(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _n(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _svg_text(t: Text, cls: str = "") -> str:
    weight = ' font-weight="bold"' if t.bold else ""
    klass = f' class="{cls}"' if cls else ""
    return (f'<text{klass} x="{_n(t.x)}" y="{_n(t.y)}" font-size="{_n(t.px)}" '
            f'text-anchor="{t.anchor}" fill="{t.colour}"{weight}>{_esc(t.text)}</text>')


def to_svg(d: Drawing) -> str:
    """The drawing as an SVG document (text)."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{d.width}" height="{d.height}" '
        f'viewBox="0 0 {d.width} {d.height}" font-family="{SVG_FONTS}">',
        f"<title>{_esc(d.title)}</title>",
        '<rect width="100%" height="100%" fill="#ffffff"/>',
    ]
    for f in sorted(d.of(Frame), key=lambda f: f.depth):
        dash = ' stroke-dasharray="5 3"' if f.style == "repeat" else ""
        out.append(f'<g class="group {f.style}"><title>{_esc(f.title)}</title>'
                   f'<rect x="{_n(f.x)}" y="{_n(f.y)}" width="{_n(f.w)}" height="{_n(f.h)}" '
                   f'rx="8" fill="{f.fill}" stroke="{FRAME_STROKE}"{dash}/></g>')
    for line in d.of(Line):
        pts = " ".join(f"{_n(x)},{_n(y)}" for x, y in line.points)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{LINE}" stroke-width="1.3"/>')
        if line.arrow:
            head = " ".join(f"{_n(x)},{_n(y)}" for x, y in line.head())
            out.append(f'<polygon points="{head}" fill="{LINE}"/>')
    for dot in d.of(Dot):
        out.append(f'<circle cx="{_n(dot.x)}" cy="{_n(dot.y)}" r="2.5" fill="{LINE}"/>')
    for b in d.of(Box):
        out.append(_svg_box(b))
    for a in d.of(Add):
        out.append(
            f'<g class="add"><title>{_esc(a.title)}</title>'
            f'<circle cx="{_n(a.x)}" cy="{_n(a.y)}" r="{_n(a.r)}" fill="#ffffff" '
            f'stroke="{INK}" stroke-width="1.3"/>'
            f'<path d="M{_n(a.x - a.r + 3)},{_n(a.y)}H{_n(a.x + a.r - 3)}M{_n(a.x)},'
            f'{_n(a.y - a.r + 3)}V{_n(a.y + a.r - 3)}" stroke="{INK}" stroke-width="1.5"/>'
            + _svg_text(_add_label(a), "name") + "</g>")
    for f in d.of(Frame):
        t = _frame_text(f)
        out.append(f'<rect x="{_n(t.x - 3)}" y="{_n(t.y - t.px)}" '
                   f'width="{_n(text_width(t.text, t.px) + 6)}" height="{_n(t.px + 4)}" '
                   f'fill="{f.fill}"/>' + _svg_text(t, "label"))
    for t in d.of(Text):
        out.append(_svg_text(t))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _svg_box(b: Box) -> str:
    fill, stroke = COLOURS[b.family]
    dash = ' stroke-dasharray="4 3"' if b.frozen else ""
    rx = 13 if b.cls == "input" else 5
    parts = [f'<g class="{b.cls} {b.family}"><title>{_esc(b.title)}</title>',
             f'<rect x="{_n(b.x)}" y="{_n(b.y)}" width="{_n(b.w)}" height="{_n(b.h)}" '
             f'rx="{rx}" fill="{fill}" stroke="{stroke}" stroke-width="1.2"{dash}/>']
    parts += [_svg_text(t, cls) for t, cls in zip(_box_texts(b), ("name", "detail"))]
    return "".join(parts) + "</g>"


def _box_texts(b: Box) -> list[Text]:
    cx = b.x + b.w / 2
    if not b.detail:
        return [Text(cx, b.y + b.h / 2 + NAME_PX * 0.35, b.name, NAME_PX, "middle", True)]
    return [Text(cx, b.y + 15, b.name, NAME_PX, "middle", True),
            Text(cx, b.y + 29, b.detail, DETAIL_PX, "middle", colour=NOTE)]


def _add_label(a: Add) -> Text:
    return Text(a.x - a.r - 5, a.y + NOTE_PX * 0.35, a.label, NOTE_PX, "end", colour=NOTE)


def _frame_text(f: Frame) -> Text:
    return Text(f.x + 8, f.y + 16, f.label, LABEL_PX, bold=f.style == "def",
                colour="#3d4a5c")


# ---- PNG ------------------------------------------------------------------------------------


class TooLarge(Exception):
    """A drawing too large for a PNG."""


def write_png(d: Drawing, path, scale: float = 1.0) -> None:
    """The same drawing, drawn by matplotlib's Agg canvas (no display, no pyplot)."""
    if d.width * d.height * scale * scale > MAX_PNG_PIXELS:
        raise TooLarge(f"the drawing is {d.width:,} x {d.height:,} pixels, too large for a "
                         "PNG; write an SVG (--out NAME.svg)")
    import matplotlib

    with matplotlib.rc_context({"text.hinting": "no_hinting"}):  # advances of exactly 0.6 em,
        _draw_png(d, path, scale)                                 # as the layout measures them


def _draw_png(d: Drawing, path, scale: float) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle, FancyBboxPatch

    fig = Figure(figsize=(d.width / 72, d.height / 72), dpi=72 * scale)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, d.width)
    ax.set_ylim(d.height, 0)
    ax.set_axis_off()

    def text(t: Text, z: float, **extra) -> None:
        ax.text(t.x, t.y, t.text, fontsize=t.px, family=FONT, ha={"start": "left", "middle":
                "center", "end": "right"}[t.anchor], va="baseline", color=t.colour,
                weight="bold" if t.bold else "normal", zorder=z, **extra)

    def rounded(x, y, w, h, r, fill, stroke, z, dashed=False, lw=1.2):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=f"round,pad=0,rounding_size={r}",
                                    facecolor=fill, edgecolor=stroke, linewidth=lw * 0.75,
                                    linestyle=(0, (5, 3)) if dashed else "solid", zorder=z))

    for f in d.of(Frame):
        rounded(f.x, f.y, f.w, f.h, 8, f.fill, FRAME_STROKE, 1 + f.depth * 0.01,
                dashed=f.style == "repeat", lw=1.0)
    lines = d.of(Line)
    ax.add_collection(LineCollection([line.points for line in lines], colors=LINE,
                                     linewidths=1.3 * 0.75, zorder=2, capstyle="butt",
                                     joinstyle="miter"))
    heads = [line.head() for line in lines if line.arrow]
    if heads:
        ax.add_collection(PolyCollection(heads, facecolors=LINE, edgecolors="none", zorder=2))
    for dot in d.of(Dot):
        ax.add_patch(Circle((dot.x, dot.y), 2.5, facecolor=LINE, edgecolor="none", zorder=2))
    for b in d.of(Box):
        fill, stroke = COLOURS[b.family]
        rounded(b.x, b.y, b.w, b.h, 13 if b.cls == "input" else 5, fill, stroke, 3,
                dashed=b.frozen)
        for t in _box_texts(b):
            text(t, 4)
    for a in d.of(Add):
        ax.add_patch(Circle((a.x, a.y), a.r, facecolor="#ffffff", edgecolor=INK,
                            linewidth=1.3 * 0.75, zorder=3))
        ax.add_collection(LineCollection([((a.x - a.r + 3, a.y), (a.x + a.r - 3, a.y)),
                                          ((a.x, a.y - a.r + 3), (a.x, a.y + a.r - 3))],
                                         colors=INK, linewidths=1.5 * 0.75, zorder=4))
        text(_add_label(a), 4)
    for f in d.of(Frame):
        t = _frame_text(f)
        ax.add_patch(FancyBboxPatch((t.x - 3, t.y - t.px), text_width(t.text, t.px) + 6,
                                    t.px + 4, boxstyle="square,pad=0", facecolor=f.fill,
                                    edgecolor="none", zorder=5))
        text(t, 6)
    for t in d.of(Text):
        text(t, 6)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=72 * scale, facecolor="#ffffff")
    # a diagram has few colours: 256 of them lose nothing visible and a third of the bytes
    from PIL import Image

    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT,
                                      dither=Image.Dither.NONE).save(path, format="PNG",
                                                                     optimize=True)


# ---- the command ---------------------------------------------------------------------------


def write(net: Net, out: Path) -> Drawing:
    """Lay out `net` and write it to `out` (.svg or .png), through a temporary file in the
    same folder so that a failure leaves no half-written drawing."""
    d = layout(net)
    folder = out.parent if str(out.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        if out.suffix.lower() == ".png":
            write_png(d, tmp)
        else:
            Path(tmp).write_text(to_svg(d), encoding="utf-8")
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return d


def cmd_draw(args) -> int:
    from .errors import EXIT_OK, RunError, UsageError
    from .specfile import load_net

    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".svg", ".png"):
        raise UsageError(f"--out must end in .svg or .png, got '{args.out}'")
    net = load_net(args.file)  # SpecError: reported by the command line, exit 1
    if out is None:  # NAME.svg here; "<stdin>" without a `net` line is no file name
        out = Path(f"{net.name if re.fullmatch(r'[A-Za-z0-9_.-]+', net.name) else 'net'}.svg")
    if not out.parent.is_dir():
        raise RunError(f"cannot write '{out}': no folder '{out.parent}'")
    try:
        d = write(net, out)
    except OSError as exc:
        raise RunError(f"cannot write '{out}': {exc.strerror or exc}") from None
    except TooLarge as exc:
        raise RunError(str(exc)) from None
    count = len(net.leaves())
    print(f"{net.name}: {count} layer{'s' * (count != 1)} drawn to {out} "
          f"({d.width} x {d.height} px)", file=sys.stderr)
    return EXIT_OK


__all__ = ["TooLarge", "cmd_draw", "to_svg", "write", "write_png"]
