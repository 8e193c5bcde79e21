"""Pooling: maxpool, avgpool (windows, stride s=f unless given) and the global pools."""

from __future__ import annotations

from ..args import Arg, padding, size2
from ..lazy_jax import jnp, lax
from .base import Inferred, LayerKind, ShapeError
from .spatial import args_text, need_image, window


def pool_rule(kind: str):
    def infer(attrs: dict, in_shape) -> Inferred:
        h, w, c = need_image(kind, in_shape)
        if attrs["s"] is None:
            attrs = {**attrs, "s": attrs["f"]}
        p = attrs["p"]
        if p != "same" and any(2 * pi > fi for pi, fi in zip(p, attrs["f"])):
            raise ShapeError(f"{kind} padding p={p[0]} is more than half the window "
                             f"f={attrs['f'][0]}",
                             help="padding of at most f/2 keeps every window over real cells")
        (ho, wo), pads, warnings = window(in_shape, attrs["f"], attrs["s"], p,
                                          args_text(kind, attrs))
        return Inferred((ho, wo, c), attrs={"padding": pads, "s": attrs["s"]},
                        warnings=warnings)
    return infer


def global_pool_rule(kind: str):
    def infer(attrs: dict, in_shape) -> Inferred:
        _, _, c = need_image(kind, in_shape)
        return Inferred((c,))
    return infer


def pool_window(node):
    (fh, fw), (sh, sw) = node.attrs["f"], node.attrs["s"]
    pads = ((0, 0), *node.attrs["padding"], (0, 0))
    return (1, fh, fw, 1), (1, sh, sw, 1), pads


def lower_maxpool(node, target):
    """Padded cells hold -inf, so padding never wins."""
    dims, strides, pads = pool_window(node)
    return lambda ctx, x, params, state: lax.reduce_window(x, -jnp.inf, lax.max, dims,
                                                           strides, pads)


def real_cells(n: int, f: int, s: int, low: int, out: int):
    """Along one axis of n cells padded by `low` in front: how many real cells each of the
    `out` windows (size f, stride s) covers (a numpy array: numpy is imported when a net is
    lowered, not by `netc check`)."""
    import numpy as np

    start = np.arange(out) * s - low
    return np.minimum(start + f, n) - np.maximum(start, 0)


def lower_avgpool(node, target):
    """Average over the real cells of each window: padded cells are not counted."""
    import numpy as np

    dims, strides, pads = pool_window(node)
    counts = np.outer(*(real_cells(n, f, s, lo, out) for n, f, s, (lo, _), out in zip(
        node.in_shape[:2], node.attrs["f"], node.attrs["s"], node.attrs["padding"],
        node.out_shape[:2])))[None, :, :, None].astype(np.float32)

    def forward(ctx, x, params, state):
        total = lax.reduce_window(x, 0.0, lax.add, dims, strides, pads)
        return total / counts.astype(x.dtype)
    return forward


def onnx_pool(op_type: str, **attributes):
    """MaxPool / AveragePool over the NCHW image. ONNX's MaxPool never picks a padded cell,
    and AveragePool with count_include_pad=0 averages the real cells only, as netc does."""
    def mapping(node, graph, x, params, state):
        (top, bottom), (left, right) = node.attrs["padding"]
        return graph.op(op_type, [x], name=node.name, kernel_shape=list(node.attrs["f"]),
                        strides=list(node.attrs["s"]), pads=[top, left, bottom, right],
                        **attributes)
    return mapping


def onnx_global_pool(op_type: str):
    """GlobalAveragePool / GlobalMaxPool, (N, C, 1, 1), flattened to netc's (N, C)."""
    def mapping(node, graph, x, params, state):
        pooled = graph.op(op_type, [x], name=node.name, output=f"{node.name}/nc11")
        return graph.op("Flatten", [pooled], name=f"{node.name}/flatten", output=node.name,
                        axis=1)
    return mapping


_window_args = (Arg("f", size2, doc="the window, e.g. f=2"), Arg("s", size2, None),
                Arg("p", padding, (0, 0)))

KINDS = (
    LayerKind("maxpool", _window_args, pool_rule("maxpool"), lower_maxpool,
              "max pooling; padding never wins", onnx=onnx_pool("MaxPool")),
    LayerKind("avgpool", _window_args, pool_rule("avgpool"), lower_avgpool,
              "average pooling over the real cells",
              onnx=onnx_pool("AveragePool", count_include_pad=0)),
    LayerKind("globalavgpool", (), global_pool_rule("globalavgpool"),
              lambda node, target: lambda ctx, x, params, state: jnp.mean(x, axis=(1, 2)),
              "mean over H and W", aliases=("gap",),
              onnx=onnx_global_pool("GlobalAveragePool")),
    LayerKind("globalmaxpool", (), global_pool_rule("globalmaxpool"),
              lambda node, target: lambda ctx, x, params, state: jnp.max(x, axis=(1, 2)),
              "max over H and W", onnx=onnx_global_pool("GlobalMaxPool")),
)
