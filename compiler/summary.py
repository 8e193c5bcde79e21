"""What `netc check` prints: the pinned JSON object and the readable table. No JAX here."""

from __future__ import annotations

import math

from netc.dsl.diagnostics import Diagnostic

from .ir import Net


def to_json(net: Net, transfer=None) -> dict:
    """The object pinned in LANGUAGE.md section 6 (plus a few extra keys). `transfer`
    (compiler/transfer_check.Transfer, for `init from=`) fills each layer's "from": the run
    folder its variables start from, as the spec writes it, or null."""
    out = {
        "net": net.name,
        "input": list(net.input_shape),
        "output": list(net.output_shape),
        "params": net.params,
        "trainable": net.params - net.frozen_params,
        "frozen": net.frozen_params,
        "state": net.state,
        "macs": net.macs,
        "activation_bytes": net.activation_bytes,
        "layers": [
            {"name": leaf.name, "kind": leaf.kind, "line": leaf.span.line, "col": leaf.span.col,
             "output": list(leaf.out_shape),
             "params": sum(math.prod(s) for s in leaf.params.values()),
             "state": sum(math.prod(s) for s in leaf.state.values()), "macs": leaf.macs,
             "frozen": leaf.name in net.frozen,
             "from": transfer.origin(leaf.name) if transfer is not None else None}
            for leaf in net.leaves()
        ],
        "warnings": [warning_json(w) for w in net.warnings],
    }
    if transfer is not None:
        out["init_from"] = {"from": transfer.written, "file": str(transfer.file),
                            "epoch": transfer.epoch, "layers": len(transfer.layers),
                            "params": transfer.params, "state": transfer.state}
    return out


def warning_json(w: Diagnostic) -> dict:
    return {"line": w.span.line, "col": w.span.col, "message": w.message, "code": w.code}


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape)


def print_table(net: Net, console, transfer=None) -> None:
    """A rich table of the leaf layers with totals, on `console` (a rich.console.Console).
    With `transfer` (`init from=`), a column says where each layer's variables start from:
    the run folder (or `run`, where the folder's name would not fit), or `fresh`; where even
    that would squeeze the names, the line under the table says it alone."""
    for shown in _origin_columns(transfer):
        rows = _rows(net, transfer, shown)
        by_column = bool(rows) and all(_one_word(row[0].lstrip(" "))
                                       and all(map(_one_word, row[1:])) for row in rows)
        table = _table(net, rows, by_column, shown)
        if shown is None or _fits(table, console):
            break
    console.print(table)
    frozen = (f"   frozen params: {net.frozen_params:,}" if net.frozen else "")
    console.print(f"trainable params: {net.params - net.frozen_params:,}{frozen}   "
                  f"state: {net.state:,}   MACs: {net.macs:,}", highlight=False)
    if net.frozen:
        console.print(f"{FROZEN_MARK} frozen (freeze): training leaves these layers' "
                      "parameters as they are; a frozen batchnorm uses its running statistics",
                      highlight=False)
    console.print(f"activations per example: {human_bytes(net.activation_bytes)} (float32)",
                  highlight=False)
    if transfer is not None:
        console.print(transfer.describe(), highlight=False, markup=False)


INDENT = "  "  # per level of nesting in the layer column
FROZEN_MARK = "*"  # after the kind of a frozen layer


def _origin_columns(transfer):
    """What the from column may say of a taken layer, widest first; None: no column."""
    if transfer is None:
        return [None]
    return [transfer.written, "run", None] if transfer.written != "run" else ["run", None]


def _fits(table, console) -> bool:
    from rich.measure import Measurement

    wide = console.options.update_width(10_000)  # the width it takes unsqueezed
    return Measurement.get(console, wide, table).maximum <= console.width


def _rows(net: Net, transfer=None, taken: str | None = None) -> list[tuple[str, ...]]:
    """The table's rows: a leaf layer's row holds the last part of its name, indented by its
    depth, under a row for each scope it is in (a def call, a residual, a concat) that holds
    just that scope's name. Nested names are long (layer1/bottleneck_down_1/residual_1/
    downsample_bn); shown this way each line holds one part, so the names stay whole in a
    narrow terminal, and the nesting reads like the spec. With `taken`, a last cell says
    `taken` for a layer `transfer` starts from its run, `fresh` for one with variables it
    does not take."""
    rows = []
    shown: list[str] = []  # the scopes of the row above, outermost first
    for leaf in net.leaves():
        *scopes, last = leaf.name.split("/")
        same = 0
        while same < min(len(shown), len(scopes)) and shown[same] == scopes[same]:
            same += 1
        for depth in range(same, len(scopes)):
            rows.append((INDENT * depth + scopes[depth], "", "", "", "")
                        + (("",) if taken is not None else ()))
        shown = scopes
        count = sum(math.prod(s) for s in leaf.params.values())
        kind = leaf.kind + (FROZEN_MARK if leaf.name in net.frozen else "")
        row = (INDENT * len(scopes) + last, kind, _shape(leaf.out_shape),
               f"{count:,}" if count else "", f"{leaf.macs:,}" if leaf.macs else "")
        if taken is not None:
            row += (taken if transfer.origin(leaf.name) is not None else
                    "fresh" if leaf.params or leaf.state else "",)
        rows.append(row)
    return rows


def _table(net: Net, rows: list[tuple[str, ...]], by_column: bool, taken: str | None = None):
    """The rich Table. Rendering a ResNet-50's 1,100 cells one by one takes ~50 ms, so with
    `by_column` each column is one cell of lines (rich sizes, crops and aligns each line
    alike, so the output is the same as row by row, as long as no cell holds whitespace
    after a word, which could wrap one line into two; the indentation before a name is
    never a place to wrap). No left and right edges: they would take two columns from the
    names, which an 80-column terminal does not have for ResNet-50's."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{net.name}  (input {_shape(net.input_shape)})", title_justify="left",
                  show_footer=True, show_edge=False, header_style="bold", footer_style="bold")
    table.add_column("layer", footer="total")
    table.add_column("kind")
    table.add_column("output", footer=_shape(net.output_shape))
    table.add_column("params", justify="right", footer=f"{net.params:,}")
    table.add_column("MACs", justify="right", footer=f"{net.macs:,}")
    if taken is not None:
        table.add_column("from")
    if by_column:
        table.add_row(*(Text("\n".join(column)) for column in zip(*rows)))
    else:
        for row in rows:
            table.add_row(*row)
    return table


def _one_word(cell: str) -> bool:
    return not cell or cell.split() == [cell]
