"""Window arithmetic shared by convolutions and pools (no JAX).

Output size per spatial axis: floor((n + p_lo + p_hi - f) / s) + 1, with p=same giving
ceil(n / s) (XLA/TF SAME: the total padding split low = total // 2).
"""

from __future__ import annotations

from .base import Shape, ShapeError, show_shape


def need_image(kind: str, in_shape: Shape) -> tuple[int, int, int]:
    if len(in_shape) != 3:
        raise ShapeError(f"{kind} needs an HxWxC image, but its input is {show_shape(in_shape)}",
                         help="conv and pooling layers must come before fc/flatten")
    return in_shape  # type: ignore[return-value]


def args_text(kind: str, attrs: dict) -> str:
    """How the layer was written, for messages: `conv f=3 s=2`."""
    f = attrs["f"]
    return f"{kind} f={f[0] if f[0] == f[1] else 'x'.join(map(str, f))}" + (
        f" s={attrs['s'][0]}" if attrs["s"] != (1, 1) and attrs["s"] != f else "")


def window(in_shape: Shape, f_hw, s_hw, pad, what: str):
    """(output size per axis, (low, high) padding per axis, warnings). Raises ShapeError with
    the arithmetic when a window does not fit; `what` is how the layer was written."""
    out, pads, skips = [], [], []
    for n, f, s, axis in zip(in_shape[:2], f_hw, s_hw, ("rows", "columns")):
        if pad == "same":
            o = -(-n // s)
            total = max((o - 1) * s + f - n, 0)
            lo, hi = total // 2, total - total // 2
        else:
            p = pad[0] if axis == "rows" else pad[1]
            lo = hi = p
            o = (n + 2 * p - f) // s + 1
            if o < 1:
                shown = "x".join(str(x) for x in in_shape)
                raise ShapeError(
                    f"{what} does not fit a {shown} input: ({n} + 2*{p} - {f})/{s} + 1 = {o}",
                    label=f"output would be {o} {axis}",
                    help=f"pad with p={(f - 1) // 2 or 1} or p=same, or use a smaller f")
            skipped = (n + 2 * p - f) % s - p  # left-over cells beyond the padding
            if skipped > 0:
                skips.append((axis, n, p, f, s, skipped))
        out.append(o)
        pads.append((lo, hi))
    return tuple(out), tuple(pads), _skip_warnings(what, skips)


def _skip_warnings(what: str, skips: list) -> tuple[str, ...]:
    """One warning per layer: rows and columns that skip the same way share one sentence."""
    if not skips:
        return ()
    if len(skips) == 2 and skips[0][1:] == skips[1][1:]:
        _, n, p, f, s, skipped = skips[0]
        cells = "row and column" if skipped == 1 else f"{skipped} rows and columns"
        return (f"{what} on {n}x{n}: ({n} + 2*{p} - {f}) = {n + 2 * p - f} is not divisible "
                f"by s={s}, so the last {cells} are never visited",)
    parts = [f"on {n} {axis}: ({n} + 2*{p} - {f}) = {n + 2 * p - f} is not divisible by "
             f"s={s}, so the last {_cells(skipped, axis)} never visited"
             for axis, n, p, f, s, skipped in skips]
    return (f"{what} " + "; ".join(parts),)


def _cells(count: int, axis: str) -> str:
    return f"{axis[:-1]} is" if count == 1 else f"{count} {axis} are"
