"""The layout of `netc draw`: `layout(net)` places everything from the checked IR alone and
returns a `Drawing`: boxes, add nodes, frames, lines and texts with coordinates in pixels.
runtime/draw.py renders it (SVG, PNG). No JAX, no Graphviz, no matplotlib here.

The layout, top to bottom:

- a box per layer: the last part of its name (bold), its kind and output shape; the scopes
  before that part are the labels around it, as in `netc check`'s table;
- a residual: its body on the axis and its shortcut (or the identity line) to the right,
  meeting at an add node (+) named after the block; a concat: its branches side by side,
  meeting at a concat box with the joined shape;
- a def call: a rounded frame labelled with the call, `layer1: stage(w=64, blocks=3, s=1)`;
  a repeat: a dashed frame, `repeat 5`, around its copies;
- a long chain wraps into columns, chosen so the whole is about as wide as a screen is
  (ResNet-50: five columns of ~2,000 px, not one of 10,000). A column breaks only between
  rows (a layer, or a whole residual or concat); a frame cut by a break goes on in the next
  column, labelled `(continued)`, and a line leads from the foot of a column to the head
  of the next.

Text is monospace (DejaVu Sans Mono, which matplotlib ships; an SVG viewer falls back to
another monospace font of the same advance), so text widths are known without a font
engine: 0.6 em a character.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from netc.compiler.args import show
from netc.compiler.ir import Net, Node

# ---- sizes (pixels) ---------------------------------------------------------------------

FONT = "DejaVu Sans Mono"
SVG_FONTS = "'DejaVu Sans Mono', Menlo, Consolas, 'Liberation Mono', monospace"
ADVANCE = 0.6  # a monospace character's width, in em
NAME_PX, DETAIL_PX, LABEL_PX, NOTE_PX, TITLE_PX = 12, 10.5, 11, 10, 15
BOX_H = 36  # a layer box: its name's baseline at 15, its detail's at 29
BOX_PAD = 9  # text to box edge, left and right
GAP = 18  # between consecutive rows of a chain: room for the arrow
HGAP = 22  # between the branches of a residual or concat
FORK = 20  # from a block's top (where the branches split) to its branches' first boxes
ADD_R = 8  # the add node's radius
FRAME_PAD = 8  # a frame's inset, each side, per level of nesting
FRAME_TOP = 24  # a frame's label band, above its first row
FRAME_BOTTOM = 8  # below a frame's last row
FRAME_GAP = 10  # before a frame that follows a row or another frame
COL_GAP = 56  # between columns
MARGIN = 20
ASPECT = 1.5  # the width/height the column count aims at
ONE_COLUMN = 1400  # a chain no taller than this is not wrapped
MAX_PNG_PIXELS = 120_000_000  # larger drawings go to SVG only (Agg would need GBs)

INK = "#333333"
LINE = "#5f6670"
NOTE = "#666666"
# kind family -> (fill, stroke)
COLOURS = {
    "conv": ("#dce9f7", "#4a78b0"),
    "pool": ("#fde8cc", "#c7873a"),
    "dense": ("#e9def5", "#7a58a6"),
    "norm": ("#ececec", "#8a8a8a"),
    "act": ("#ddf1d7", "#5a9a48"),
    "dropout": ("#f5f5f5", "#a8a8a8"),
    "reshape": ("#fff5c8", "#b59d3c"),
    "concat": ("#fff0b3", "#b8972e"),
    "input": ("#ffffff", "#555555"),
}
FRAME_FILLS = ("#f4f6f9", "#eaeef4", "#e0e6ee", "#d7dee9", "#ced7e4")
FRAME_STROKE = "#9aa6b6"


def text_width(text: str, px: float) -> float:
    return len(text) * ADVANCE * px


# ---- what a drawing holds -------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """A layer (cls "layer"), a concat's join (cls "concat") or the input (cls "input")."""

    x: float
    y: float
    w: float
    h: float
    name: str  # shown, bold
    detail: str  # shown under it
    title: str  # the full name and more: the SVG's tooltip
    family: str
    cls: str = "layer"
    frozen: bool = False

    def moved(self, dx: float, dy: float) -> Box:
        return replace(self, x=self.x + dx, y=self.y + dy)


@dataclass(frozen=True)
class Add:
    """A residual's join: a circle with a plus, the block's name to its left."""

    x: float
    y: float
    label: str
    title: str
    r: float = ADD_R

    def moved(self, dx: float, dy: float) -> Add:
        return replace(self, x=self.x + dx, y=self.y + dy)


@dataclass(frozen=True)
class Frame:
    """A def call's (style "def") or a repeat's (style "repeat") rounded frame."""

    x: float
    y: float
    w: float
    h: float
    label: str
    title: str
    style: str
    depth: int

    def moved(self, dx: float, dy: float) -> Frame:
        return replace(self, x=self.x + dx, y=self.y + dy)

    @property
    def fill(self) -> str:
        return FRAME_FILLS[min(self.depth, len(FRAME_FILLS) - 1)]


@dataclass(frozen=True)
class Line:
    points: tuple[tuple[float, float], ...]
    arrow: bool = False  # an arrowhead at the last point

    def moved(self, dx: float, dy: float) -> Line:
        return Line(tuple((x + dx, y + dy) for x, y in self.points), self.arrow)

    def head(self) -> tuple[tuple[float, float], ...]:
        """The arrowhead's triangle: its tip on the last point."""
        (x0, y0), (x1, y1) = self.points[-2], self.points[-1]
        length = math.hypot(x1 - x0, y1 - y0) or 1.0
        ux, uy = (x1 - x0) / length, (y1 - y0) / length
        bx, by = x1 - 7 * ux, y1 - 7 * uy
        return ((x1, y1), (bx - 3.5 * uy, by + 3.5 * ux), (bx + 3.5 * uy, by - 3.5 * ux))


@dataclass(frozen=True)
class Dot:
    """Where a block's branches split."""

    x: float
    y: float

    def moved(self, dx: float, dy: float) -> Dot:
        return Dot(self.x + dx, self.y + dy)


@dataclass(frozen=True)
class Text:
    x: float
    y: float  # the baseline
    text: str
    px: float
    anchor: str = "start"  # start | middle | end
    bold: bool = False
    colour: str = INK

    def moved(self, dx: float, dy: float) -> Text:
        return replace(self, x=self.x + dx, y=self.y + dy)


@dataclass
class Drawing:
    width: float
    height: float
    items: list
    title: str

    def of(self, kind: type) -> list:
        return [item for item in self.items if isinstance(item, kind)]


# ---- layout -----------------------------------------------------------------------------------


@dataclass
class _Piece:
    """A laid-out part: a rectangle with its items, entered from above and left below on
    the vertical line x = axis (the arrow in ends at entry_y, the arrow out starts at
    exit_y)."""

    w: float
    h: float
    axis: float
    items: list
    entry_y: float = 0.0
    exit_y: float | None = None
    arrow_in: bool = True  # the arrow in ends in a head (not where a block's branches split)

    def __post_init__(self):
        if self.exit_y is None:
            self.exit_y = self.h

    def placed(self, dx: float, dy: float) -> list:
        return [item.moved(dx, dy) for item in self.items]


@dataclass(eq=False)  # compared by identity: two calls of a def are two groups
class _Group:
    label: str
    title: str
    style: str


_Row = tuple[_Piece, tuple[_Group, ...]]  # a row and the groups it is in, outermost first


@dataclass
class _Column:
    """Rows stacked top to bottom with their frames, as `_Layout.pack` fills it."""

    carried: frozenset[int] = frozenset()  # ids of the groups the previous column cut
    y: float = 0.0
    last: str = ""  # what was added last: "row", "open", "close" or "" (nothing yet)
    open: list = field(default_factory=list)  # [group, top] of the open frames
    rows: list = field(default_factory=list)  # (piece, y, depth)
    frames: list = field(default_factory=list)  # (group, depth, top, bottom, continued)

    def common(self, stack: tuple[_Group, ...]) -> int:
        k = 0
        while k < min(len(self.open), len(stack)) and self.open[k][0] is stack[k]:
            k += 1
        return k

    def bottom_with(self, piece: _Piece, stack: tuple[_Group, ...]) -> float:
        """How tall the column would be with this row last."""
        k = self.common(stack)
        y, last = self.y + FRAME_BOTTOM * (len(self.open) - k), self.last
        if len(self.open) > k:
            last = "close"
        if len(stack) > k:
            y += (FRAME_GAP if last in ("row", "close") else 0) + FRAME_TOP * (len(stack) - k)
            last = "open"
        y += (GAP if last in ("row", "close") else 0) + piece.h
        return y + FRAME_BOTTOM * len(stack)

    def add(self, piece: _Piece, stack: tuple[_Group, ...]) -> None:
        k = self.common(stack)
        while len(self.open) > k:
            self.close()
        if len(stack) > k and self.last in ("row", "close"):
            self.y += FRAME_GAP
        for group in stack[k:]:
            self.open.append([group, self.y])
            self.y += FRAME_TOP
            self.last = "open"
        if self.last in ("row", "close"):
            self.y += GAP
        self.rows.append((piece, self.y, len(stack)))
        self.y += piece.h
        self.last = "row"

    def close(self) -> None:
        group, top = self.open.pop()
        self.y += FRAME_BOTTOM
        self.frames.append((group, len(self.open), top, self.y, id(group) in self.carried))
        self.last = "close"


class _Layout:
    def __init__(self, net: Net):
        self.net = net
        leaves = net.leaves()
        needed = [max(text_width(_last(leaf.name), NAME_PX), text_width(_detail(leaf), DETAIL_PX))
                  for leaf in leaves]
        self.box_w = max([120.0, *needed]) + 2 * BOX_PAD

    # -- rows: what a chain holds, flattened, each with its groups --------------------------
    def rows(self, seq: Node, stack: tuple[_Group, ...]) -> list[_Row]:
        repeats = [(start, stop, _Group(f"repeat {count}", f"repeat {count}", "repeat"))
                   for start, stop, count in sorted(seq.attrs.get("repeats", ()),
                                                    key=lambda r: (r[0], -r[1]))]
        out: list[_Row] = []
        for i, child in enumerate(seq.children):
            if child is None:
                continue
            here = stack + tuple(g for start, stop, g in repeats if start <= i < stop)
            if child.kind == "sequence":
                if "def" in child.attrs:
                    args = ", ".join(f"{k}={show(v)}" for k, v in child.attrs.get("args",
                                                                                 {}).items())
                    call = f"{child.attrs['def']}({args})"
                    here += (_Group(f"{_last(child.name)}: {call}", f"{child.name}: {call}",
                                    "def"),)
                out += self.rows(child, here)
            elif child.kind == "residual":
                out.append((self.residual(child), here))
            elif child.kind == "concat":
                out.append((self.concat(child), here))
            else:
                out.append((self.box(child), here))
        return out

    # -- pieces -----------------------------------------------------------------------------
    def box(self, leaf: Node) -> _Piece:
        frozen = leaf.name in self.net.frozen
        count = leaf.param_count
        title = (f"{leaf.name}: {leaf.kind} -> {_shape(leaf.out_shape)}"
                 + (f", {count:,} params" if count else "") + (" (frozen)" if frozen else ""))
        item = Box(0, 0, self.box_w, BOX_H, _last(leaf.name), _detail(leaf), title,
                   _family(leaf), frozen=frozen)
        return _Piece(self.box_w, BOX_H, self.box_w / 2, [item])

    def chain(self, seq: Node) -> _Piece:
        return self.column(self.pack(self.rows(seq, ()), math.inf)[0])

    def residual(self, node: Node) -> _Piece:
        body = self.chain(node.children[0])
        shortcut = self.chain(node.children[1]) if node.children[1] is not None else None
        ax, fork = body.axis, 8.0
        items = body.placed(0, FORK)
        items.append(Line(((ax, 0), (ax, FORK + body.entry_y)), body.arrow_in))
        items.append(Dot(ax, fork))
        if shortcut is not None:
            sx = body.w + HGAP
            sax = sx + shortcut.axis
            items += shortcut.placed(sx, FORK)
            items.append(Line(((ax, fork), (sax, fork), (sax, FORK + shortcut.entry_y)),
                              shortcut.arrow_in))
            bottom, w = FORK + max(body.h, shortcut.h), sx + shortcut.w
        else:
            bottom, w = FORK + body.h, body.w + HGAP
        ay = bottom + GAP + ADD_R
        items.append(Line(((ax, FORK + body.exit_y), (ax, ay - ADD_R)), True))
        if shortcut is not None:
            items.append(Line(((sax, FORK + shortcut.exit_y), (sax, ay), (ax + ADD_R, ay)),
                              True))
        else:  # the identity: around the body's right
            ix = body.w + HGAP / 2
            items.append(Line(((ax, fork), (ix, fork), (ix, ay), (ax + ADD_R, ay)), True))
        label = _last(node.name)
        items.append(Add(ax, ay, label, f"{node.name}: add -> {_shape(node.out_shape)}"))
        piece = _Piece(w, ay + ADD_R, ax, items, arrow_in=False)
        return _room_left(piece, text_width(label, NOTE_PX) + ADD_R + 6)

    def concat(self, node: Node) -> _Piece:
        branches = [self.chain(b) for b in node.children if b is not None]
        items: list = []
        axes: list[float] = []
        x = 0.0
        for b in branches:
            items += b.placed(x, FORK)
            axes.append(x + b.axis)
            x += b.w + HGAP
        fork = 10.0
        bottom = FORK + max(b.h for b in branches)
        bus = bottom + GAP / 2
        name, detail = _last(node.name), f"concat -> {_shape(node.out_shape)}"
        jw = max(self.box_w, text_width(name, NAME_PX) + 2 * BOX_PAD,
                 text_width(detail, DETAIL_PX) + 2 * BOX_PAD)
        jy = bus + GAP / 2 + 4
        ax = (axes[0] + axes[-1]) / 2
        dx = max(0.0, jw / 2 - ax)  # a join wider than the branches: room on the left
        items = [item.moved(dx, 0) for item in items]
        axes = [a + dx for a in axes]
        ax += dx
        w = max(x - HGAP + dx, ax + jw / 2)
        items.append(Line(((ax, 0), (ax, fork))))
        items.append(Line(((axes[0], fork), (axes[-1], fork))))
        for a, b in zip(axes, branches):
            items.append(Line(((a, fork), (a, FORK + b.entry_y)), b.arrow_in))
            items.append(Line(((a, FORK + b.exit_y), (a, bus))))
        items.append(Line(((axes[0], bus), (axes[-1], bus))))
        items.append(Line(((ax, bus), (ax, jy)), True))
        items.append(Box(ax - jw / 2, jy, jw, BOX_H, name, detail,
                         f"{node.name}: concat of {len(branches)} branches -> "
                         f"{_shape(node.out_shape)}", "concat", cls="concat"))
        return _Piece(w, jy + BOX_H, ax, items, arrow_in=False)

    def input(self) -> _Piece:
        text = f"input {_shape(self.net.input_shape)}"
        w = max(self.box_w, text_width(text, NAME_PX) + 2 * BOX_PAD)
        return _Piece(w, 26, w / 2, [Box(0, 0, w, 26, text, "", f"{self.net.name}: {text}",
                                         "input", cls="input")])

    # -- columns ----------------------------------------------------------------------------
    def pack(self, rows: list[_Row], limit: float) -> list[_Column]:
        """Fill columns no taller than `limit` (unless one row is), breaking between rows:
        where a row would overflow, at the break in the lower half of the column that cuts the
        fewest frames (between two stages, say, rather than inside a bottleneck)."""
        columns: list[_Column] = []
        col, start, i = _Column(), 0, 0
        filled: list[float] = []  # the column's height through row start + k
        rest = [0.0] * (len(rows) + 1)  # the height of rows i.. (about): a short tail
        for k in range(len(rows) - 1, -1, -1):  # stays in the last column, a little taller
            rest[k] = rest[k + 1] + rows[k][0].h + GAP
        while i < len(rows):
            piece, stack = rows[i]
            bottom = col.bottom_with(piece, stack)
            if col.rows and bottom > limit and rest[i] > 0.15 * limit:
                best = i
                for j in range(i - 1, start, -1):
                    if filled[j - 1 - start] < 0.5 * limit:
                        break
                    if _cut(rows, j) < _cut(rows, best):
                        best = j
                if best < i:  # rebuild the column up to the better break
                    col = _Column(carried=col.carried)
                    for row in rows[start:best]:
                        col.add(*row)
                cut = frozenset(id(g) for g, _ in col.open[:_cut(rows, best)])  # go on
                while col.open:
                    col.close()
                columns.append(col)
                col, start, i, filled = _Column(carried=cut), best, best, []
                continue
            filled.append(bottom)
            col.add(piece, stack)
            i += 1
        while col.open:
            col.close()
        columns.append(col)
        return columns

    def balanced(self, rows: list[_Row], k: int, height: float) -> list[_Column] | None:
        """The best of the packings into at most k columns over a range of limits: the
        lowest, with each frame a break cuts counting as a quarter more height (a packing
        that cuts no bottleneck in two beats a slightly lower one that does). None if none
        fits in k."""
        steps = 24 if len(rows) <= 2000 else 6
        best = None
        for i in range(steps):
            packed = self.pack(rows, height / k * 2 ** (i / (steps - 1)))
            if len(packed) > k:
                continue
            cuts = sum(len(col.carried) for col in packed)
            score = max(col.y for col in packed) * (1 + 0.25 * cuts)
            if best is None or score < best[0]:
                best = (score, packed)
        return best[1] if best else None

    def column(self, col: _Column) -> _Piece:
        """A packed column as one piece: rows on one axis, frames as wide as the column."""
        left = max(p.axis + FRAME_PAD * d for p, _, d in col.rows)
        right = max(p.w - p.axis + FRAME_PAD * d for p, _, d in col.rows)
        for group, depth, _, _, continued in col.frames:
            need = text_width(_frame_label(group, continued), LABEL_PX) + 16 + 2 * depth * FRAME_PAD
            if left + right < need:
                extra = need - left - right
                left, right = left + extra / 2, right + extra / 2
        w = left + right
        items: list = []
        for group, depth, top, bottom, continued in col.frames:
            items.append(Frame(depth * FRAME_PAD, top, w - 2 * depth * FRAME_PAD, bottom - top,
                               _frame_label(group, continued), group.title, group.style, depth))
        previous = None
        for piece, y, _ in col.rows:
            items += piece.placed(left - piece.axis, y)
            if previous is not None:
                items.append(Line(((left, previous), (left, y + piece.entry_y)), piece.arrow_in))
            previous = y + piece.exit_y
        first, first_y, _ = col.rows[0]
        return _Piece(w, col.y, left, items, entry_y=first_y + first.entry_y, exit_y=previous,
                      arrow_in=first.arrow_in)

    def drawing(self) -> Drawing:
        net = self.net
        rows = [(self.input(), ())] + self.rows(net.body, ())
        tall = self.pack(rows, math.inf)[0]
        height = tall.y
        width = self.column(tall).w
        columns = [tall]
        if height > ONE_COLUMN:  # the column count whose drawing is nearest ASPECT, full
            best = None
            guess = max(1, round(math.sqrt(height * ASPECT / (width + COL_GAP))))
            for k in range(max(1, guess - 2), guess + 3):
                packed = self.balanced(rows, k, height)
                if packed is None:
                    continue
                pieces = [self.column(c) for c in packed]
                w = sum(p.w for p in pieces) + COL_GAP * (len(pieces) - 1)
                h = max(p.h for p in pieces)
                fill = sum(p.h for p in pieces) / (h * len(pieces))  # no near-empty column
                miss = abs(math.log(w / h / ASPECT)) + (1 - fill)
                if best is None or miss < best[0] - 1e-9:
                    best = (miss, packed)
            columns = best[1]
        pieces = [self.column(c) for c in columns]

        count = len(net.leaves())
        facts = (f"input {_shape(net.input_shape)} -> {_shape(net.output_shape)}   "
                 f"{count} layer{'s' * (count != 1)}   {net.params:,} params   "
                 f"{net.macs:,} MACs")
        facts_y = MARGIN + TITLE_PX + 6 + LABEL_PX
        top = facts_y + 26  # below the name and the facts, room for the lines between columns
        items: list = [Text(MARGIN, MARGIN + TITLE_PX, net.name, TITLE_PX, bold=True),
                       Text(MARGIN, facts_y, facts, LABEL_PX, colour=NOTE)]
        x = MARGIN
        tallest = max(p.h for p in pieces)
        for i, piece in enumerate(pieces):
            items += piece.placed(x, top)
            if i + 1 < len(pieces):  # from this column's foot to the next one's head
                nxt = pieces[i + 1]
                ax, gap_x = x + piece.axis, x + piece.w + COL_GAP / 2
                nax = x + piece.w + COL_GAP + nxt.axis
                items.append(Line(((ax, top + piece.exit_y), (ax, top + piece.h + 10),
                                   (gap_x, top + piece.h + 10), (gap_x, top - 12),
                                   (nax, top - 12), (nax, top + nxt.entry_y)), nxt.arrow_in))
            x += piece.w + COL_GAP
        width = max(x - COL_GAP + MARGIN, MARGIN * 2 + text_width(net.name, TITLE_PX),
                    MARGIN * 2 + text_width(facts, LABEL_PX))
        return Drawing(math.ceil(width), math.ceil(top + tallest + 10 + MARGIN), items,
                       net.name)


def _cut(rows: list[_Row], j: int) -> int:
    """How many frames a column break before row j cuts: those rows j-1 and j share."""
    a, b = rows[j - 1][1], rows[j][1]
    k = 0
    while k < min(len(a), len(b)) and a[k] is b[k]:
        k += 1
    return k


def _room_left(piece: _Piece, need: float) -> _Piece:
    """Move a piece's items right until `need` pixels fit left of its axis."""
    if need <= piece.axis:
        return piece
    dx = need - piece.axis
    return _Piece(piece.w + dx, piece.h, piece.axis + dx, piece.placed(dx, 0), piece.entry_y,
                  piece.exit_y, piece.arrow_in)


def _frame_label(group: _Group, continued: bool) -> str:
    return group.label + (" (continued)" if continued else "")


def _last(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape)


def _detail(leaf: Node) -> str:
    """`conv 3x3/2 -> 56x56x64`: the kind, its window and stride if it has them, the shape."""
    kind = leaf.kind
    f, s = leaf.attrs.get("f"), leaf.attrs.get("s")
    if isinstance(f, tuple) and all(isinstance(v, int) for v in f):
        kind += " " + "x".join(map(str, f))
        if isinstance(s, tuple) and any(v != 1 for v in s):
            kind += "/" + (str(s[0]) if len(set(s)) == 1 else "x".join(map(str, s)))
    return f"{kind} -> {_shape(leaf.out_shape)}"


def _family(leaf: Node) -> str:
    kind = leaf.kind
    if kind in ("conv", "dwconv"):
        return "conv"
    if "pool" in kind:
        return "pool"
    if kind == "batchnorm":
        return "norm"
    if kind == "dropout":
        return "dropout"
    if kind == "flatten":
        return "reshape"
    return "dense" if leaf.params else "act"


def layout(net: Net) -> Drawing:
    """Place the checked net's layers, blocks and groups (see the module's docstring)."""
    return _Layout(net).drawing()


__all__ = ["Add", "Box", "Dot", "Drawing", "Frame", "Line", "Text", "layout", "text_width"]
