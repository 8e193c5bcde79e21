"""conv (with groups) and dwconv (depthwise): NHWC inputs, HWIO kernels in the layout of
`lax.conv_general_dilated` with `feature_group_count`.

    conv f s p c groups=G   kernel (f, f, c_in/G, c); output channel j sees input group
                            j // (c/G); MACs H_out*W_out*c*f*f*(c_in/G)
    dwconv f s p m          kernel (f, f, 1, c_in*m); output channel i*m + q comes from input
                            channel i (TensorFlow's depthwise conv, Flax's
                            Conv(feature_group_count=c_in)); MACs H_out*W_out*c_in*m*f*f
"""

from __future__ import annotations

import math

from ..args import Arg, boolean, choice, padding, positive_int, size2
from ..lazy_jax import jnp, lax
from .base import INITIALIZERS, WEIGHT, ZEROS, Inferred, LayerKind, ShapeError
from .spatial import args_text, need_image, window

_init = Arg("init", choice(*INITIALIZERS), None, doc="he, xavier, glorot, random or zeros")
_bias = Arg("bias", boolean, None)  # None: yes, unless the next layer is batchnorm


# ---- shape rules -------------------------------------------------------------------------


def infer_conv(attrs: dict, in_shape) -> Inferred:
    h, w, c_in = need_image("conv", in_shape)
    (fh, fw), c, groups = attrs["f"], attrs["c"], attrs["groups"]
    if c_in % groups or c % groups:
        common = [g for g in range(1, math.gcd(c_in, c) + 1) if c_in % g == 0 and c % g == 0]
        raise ShapeError(
            f"conv groups={groups} must divide the input's {c_in} channels and c={c}: "
            f"{c_in} % {groups} = {c_in % groups}, {c} % {groups} = {c % groups}",
            label=f"{groups} groups do not divide the channels",
            help="groups that divide both: " + ", ".join(map(str, common)))
    (ho, wo), pads, warnings = window(in_shape, attrs["f"], attrs["s"], attrs["p"],
                                      args_text("conv", attrs))
    params = {"kernel": (fh, fw, c_in // groups, c)}
    if attrs["bias"]:
        params["bias"] = (c,)
    return Inferred((ho, wo, c), params, macs=ho * wo * c * fh * fw * (c_in // groups),
                    attrs={"padding": pads}, warnings=warnings)


def infer_dwconv(attrs: dict, in_shape) -> Inferred:
    h, w, c_in = need_image("dwconv", in_shape)
    (fh, fw), m = attrs["f"], attrs["m"]
    c = c_in * m
    (ho, wo), pads, warnings = window(in_shape, attrs["f"], attrs["s"], attrs["p"],
                                      args_text("dwconv", attrs))
    params = {"kernel": (fh, fw, 1, c)}
    if attrs["bias"]:
        params["bias"] = (c,)
    return Inferred((ho, wo, c), params, macs=ho * wo * c * fh * fw,
                    attrs={"padding": pads, "groups": c_in}, warnings=warnings)


# ---- lowering ----------------------------------------------------------------------------

# XLA:CPU's convolutions are slow with few input channels: as one matmul over patches
# (im2col), LeNet-5 (1 and 6 channels in, 28x28 and 10x10 outputs) trains ~25% faster, while
# a ResNet with 16-32 channels trains 2x slower that way, and ResNet-50's stem (3 channels,
# 112x112 outputs) gains nothing per step but 0.5-1 s of compile (benchmarks/RESULTS.md).
IM2COL_MAX_CHANNELS = 8
IM2COL_MAX_POSITIONS = 64 * 64


def conv_as_matmul(node, platform: str) -> bool:
    """Whether this conv is lowered as im2col: ungrouped, few input channels, small output,
    on CPU."""
    return (node.kind == "conv" and node.attrs["groups"] == 1
            and node.in_shape[-1] <= IM2COL_MAX_CHANNELS
            and node.out_shape[0] * node.out_shape[1] <= IM2COL_MAX_POSITIONS
            and platform == "cpu")


def lower_conv(node, target):
    return conv_im2col(node) if conv_as_matmul(node, target.platform) else conv_direct(node)


def conv_direct(node):
    """lax.conv_general_dilated; groups (a dwconv's are its input channels) become
    feature_group_count."""
    strides, pads, groups = node.attrs["s"], node.attrs["padding"], node.attrs["groups"]

    def forward(ctx, x, params, state):
        y = lax.conv_general_dilated(x, ctx.cast(params["kernel"]), strides, pads,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     feature_group_count=groups)
        return y + ctx.cast(params["bias"]) if "bias" in params else y
    return forward


# im2col's patches with the positions last, (f_h*f_w*c_in, batch*h*w), or as rows,
# (batch*h*w, f_h*f_w*c_in): positions last is faster (0.57-0.87x the time, forward and
# backward) for short patch rows or few patch values per example (LeNet-5's 25-value rows and
# conv2's 150 x 100 positions), rows for longer rows over many positions (1.2-1.4x the time
# otherwise: benchmarks/FINDINGS.md, "im2col with the positions as the long side")
POSITIONS_LAST_MAX_ROW = 50
POSITIONS_LAST_MAX_VALUES = 16_384  # f_h*f_w*c_in * h*w, per example


def patches_positions_last(node) -> bool:
    """Whether conv_im2col lays its patches out with the positions last."""
    fh, fw = node.attrs["f"]
    row = fh * fw * node.in_shape[-1]
    return (row <= POSITIONS_LAST_MAX_ROW
            or row * node.out_shape[0] * node.out_shape[1] <= POSITIONS_LAST_MAX_VALUES)


def conv_im2col(node):
    """conv as im2col: the f_h*f_w shifted (strided) views of the padded input, in HWIO
    order, as one matrix that the kernel (reshaped to (f_h*f_w*c_in, c_out)) multiplies.
    Positions last (patches_positions_last): the input channels first (c_in, batch, h, w),
    the views stacked into (f_h*f_w*c_in, batch*h*w), times the transposed kernel, the
    (c_out, batch, h, w) result put back to NHWC; else the views concatenated on channels,
    (batch, h, w, f_h*f_w*c_in), times the kernel. Ungrouped convs only (conv_as_matmul never
    picks it for groups)."""
    (sh, sw), ((pt, pb), (pl, pr)) = node.attrs["s"], node.attrs["padding"]
    oh, ow = node.out_shape[0], node.out_shape[1]
    positions_last = patches_positions_last(node)

    def forward(ctx, x, params, state):
        kernel = ctx.cast(params["kernel"])
        fh, fw, cin, cout = kernel.shape
        x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
        if positions_last:
            x = x.transpose(3, 0, 1, 2)
            views = [x[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
                     for i in range(fh) for j in range(fw)]
            patches = jnp.stack(views).reshape(fh * fw * cin, -1)
            y = kernel.reshape(fh * fw * cin, cout).T @ patches
            y = y.reshape(cout, -1, oh, ow).transpose(1, 2, 3, 0)
        else:
            views = [x[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]
                     for i in range(fh) for j in range(fw)]
            y = jnp.concatenate(views, axis=-1) @ kernel.reshape(fh * fw * cin, cout)
        return y + ctx.cast(params["bias"]) if "bias" in params else y
    return forward


def lower_dwconv(node, target):
    return conv_direct(node)


# ---- ONNX --------------------------------------------------------------------------------


def onnx_conv(node, graph, x, params, state):
    """Conv with group= (a dwconv's groups are its input channels); the HWIO kernel becomes
    ONNX's OIHW, the padding ((top, bottom), (left, right)) its [top, left, bottom, right]."""
    kernel = params["kernel"]
    inputs = [x, graph.constant(f"{node.name}/kernel", kernel.transpose(3, 2, 0, 1))]
    if "bias" in params:
        inputs.append(graph.constant(f"{node.name}/bias", params["bias"]))
    (top, bottom), (left, right) = node.attrs["padding"]
    return graph.op("Conv", inputs, name=node.name, kernel_shape=list(kernel.shape[:2]),
                    strides=list(node.attrs["s"]), pads=[top, left, bottom, right],
                    group=node.attrs["groups"])


# ---- the kinds ---------------------------------------------------------------------------

KINDS = (
    LayerKind(
        "conv",
        (Arg("c", positive_int, doc="the number of filters, e.g. c=16"),
         Arg("f", size2, doc="the filter size, e.g. f=3"), Arg("s", size2, (1, 1)),
         Arg("p", padding, (0, 0)), Arg("groups", positive_int, 1), _bias, _init),
        infer_conv, lower_conv,
        "2-D convolution, NHWC, kernel f x f x (c_in/groups) x c", aliases=("conv2d",),
        params={"kernel": WEIGHT, "bias": ZEROS},
        scan_friendly=lambda node, platform: (platform != "cpu"
                                              or conv_as_matmul(node, platform)),
        onnx=onnx_conv),
    LayerKind(
        "dwconv",
        (Arg("f", size2, doc="the filter size, e.g. f=3"), Arg("s", size2, (1, 1)),
         Arg("p", padding, (0, 0)), Arg("m", positive_int, 1, doc="the depth multiplier"),
         _bias, _init),
        infer_dwconv, lower_dwconv,
        "depthwise convolution: each input channel has m filters of f x f x 1",
        params={"kernel": WEIGHT, "bias": ZEROS},
        scan_friendly=lambda node, platform: platform != "cpu", onnx=onnx_conv),
)
