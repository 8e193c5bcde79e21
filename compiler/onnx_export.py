"""The checked IR and a run's variables -> an ONNX model, one layer at a time.

Each leaf is emitted by its kind's `onnx` mapping (compiler/layers/, the field `onnx` of its
`LayerKind`); blocks are emitted here: a residual is an `Add` of its body and its shortcut
(or input), a concat a `Concat` on the channels. Every node is named after its layer
(`inception3a/conv_2`), a layer's helper nodes `LAYER/what` (`softmax_1/fc`), so Netron
shows netc's names; each layer's output tensor carries the layer's name too.

Layout. netc is channels last (NHWC); ONNX's Conv and pools are NCHW. The graph takes and
returns netc's layout (`x` is (batch, *input shape), `y` (batch, *output shape)); inside it
every image (a tensor that is HxWxC per example) is NCHW: one Transpose after the input, one
before a flatten or fc (which must read the cells in netc's row-major HWC order) and one
before the output when the net ends on an image. Any other tensor keeps netc's layout.

The graph is the inference pass: BatchNorm's running statistics, no dropout, the final
softmax or sigmoid, and, when the run has it, the input normalisation (x - mean) / std.

Importing this module does not import onnx; `to_onnx` does (ExportError when it is absent).
"""

from __future__ import annotations

import math

import numpy as np

from .ir import Net, Node
from .layers import KINDS

OPSET = 17  # Softmax on one axis (13), Clip's min/max inputs (11); ORT >= 1.13, TensorRT 8.6
INPUT, OUTPUT = "x", "y"
NCHW, NHWC = (0, 3, 1, 2), (0, 2, 3, 1)


class ExportError(Exception):
    """A net, a layer or an environment that cannot be exported (one line for the user)."""


def import_onnx():
    """The onnx package, or ExportError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'netc[export]' "
                          "(or pip install onnx onnxruntime)") from None
    return onnx


def is_image(shape) -> bool:
    """Whether a per-example shape is an image, which the graph holds as NCHW."""
    return len(shape) == 3


class OnnxGraph:
    """The builder a kind's `onnx` mapping writes into: nodes, initialisers and the layout
    rule (images NCHW, everything else as in netc)."""

    def __init__(self, onnx_module):
        self._onnx = onnx_module
        self.nodes: list = []
        self.initializers: list = []
        self._names: set[str] = {INPUT, OUTPUT}
        self._node_names: set[str] = set()

    # ---- writing the graph ---------------------------------------------------------------
    def op(self, op_type: str, inputs, *, name: str, output: str | None = None,
           **attributes) -> str:
        """Add one node named `name`; its output tensor is `output` (default: `name`).
        Returns the output tensor's name. Attributes are ONNX's (kernel_shape=[3, 3])."""
        node_name = self._unique(name, self._node_names)
        out = self._unique(output or name, self._names)
        self.nodes.append(self._onnx.helper.make_node(op_type, list(inputs), [out],
                                                      name=node_name, **attributes))
        return out

    def constant(self, name: str, array, dtype=np.float32) -> str:
        """An initialiser (a weight or a fixed tensor) called `name`; returns its name."""
        name = self._unique(name, self._names)
        array = np.ascontiguousarray(np.asarray(array, dtype=dtype))
        self.initializers.append(self._onnx.numpy_helper.from_array(array, name))
        return name

    @staticmethod
    def _unique(name: str, taken: set[str]) -> str:
        out, k = name, 2
        while out in taken:
            out, k = f"{name}#{k}", k + 1
        taken.add(out)
        return out

    # ---- the layout rule -----------------------------------------------------------------
    @staticmethod
    def channel_axis(shape) -> int:
        """The graph axis of the channels of a tensor whose per-example netc shape is
        `shape`: 1 for an image (NCHW) and a vector, the last axis otherwise."""
        return 1 if len(shape) in (1, 3) else len(shape)

    def flat(self, x: str, shape, name: str) -> str:
        """`x` (per example `shape`) as (batch, prod(shape)) in netc's row-major order: an
        image goes back to NHWC first. A vector is returned as it is."""
        if len(shape) == 1:
            return x
        if is_image(shape):
            x = self.op("Transpose", [x], name=f"{name}/to_nhwc", perm=list(NHWC))
        return self.op("Flatten", [x], name=f"{name}/flatten", axis=1)

    def to_netc(self, x: str, shape, name: str) -> str:
        """`x` in netc's layout (an image back to NHWC)."""
        if is_image(shape):
            return self.op("Transpose", [x], name=name, perm=list(NHWC))
        return x

    def rename_output(self, tensor: str, new: str) -> None:
        """Make the node that writes `tensor` write `new` instead (the graph's output)."""
        for node in self.nodes:
            for i, out in enumerate(node.output):
                if out == tensor:
                    node.output[i] = new
            for i, inp in enumerate(node.input):
                if inp == tensor:
                    node.input[i] = new


def to_onnx(net: Net, variables: dict, *, batch: int | None = None,
            normalization: dict | None = None, metadata: dict | None = None,
            opset: int = OPSET):
    """An onnx.ModelProto of `net` with `variables` ({"params", "state"}, arrays) in inference
    mode. `batch`: a fixed batch size, or None for a symbolic one ("batch");
    `normalization`: {"mean", "std"} applied to the input inside the graph; `metadata`:
    strings for the model's metadata_props. Raises ExportError naming a layer whose kind has
    no ONNX mapping."""
    missing = [leaf for leaf in net.leaves() if KINDS[leaf.kind].onnx is None]
    if missing:
        leaf = missing[0]
        raise ExportError(f"layer {leaf.name} ({leaf.kind}) cannot be exported to ONNX: the "
                          f"{leaf.kind} kind has no ONNX mapping (compiler/layers/, its "
                          "LayerKind's `onnx`); --format stablehlo exports every kind")
    onnx = import_onnx()
    g = OnnxGraph(onnx)
    params = {k: _numpy_tree(v) for k, v in variables.get("params", {}).items()}
    state = {k: _numpy_tree(v) for k, v in variables.get("state", {}).items()}

    shape = tuple(net.input_shape)
    x = INPUT
    if normalization and normalization.get("mean") is not None:
        mean = np.asarray(normalization["mean"], np.float32).reshape(shape)
        std = np.asarray(normalization["std"], np.float32).reshape(shape)
        x = g.op("Sub", [x, g.constant("normalize/mean", mean)], name="normalize/sub")
        x = g.op("Div", [x, g.constant("normalize/std", std)], name="normalize")
    if is_image(shape):
        x = g.op("Transpose", [x], name="to_nchw", perm=list(NCHW))

    def emit(node: Node, x: str) -> str:
        if node.kind == "sequence":
            for child in node.children:
                x = emit(child, x)
            return x
        if node.kind == "residual":
            body, shortcut = node.children
            y = emit(body, x)
            s = emit(shortcut, x) if shortcut is not None else x
            return g.op("Add", [y, s], name=node.name or "residual")
        if node.kind == "concat":
            outs = [emit(branch, x) for branch in node.children]
            return g.op("Concat", outs, name=node.name or "concat",
                        axis=g.channel_axis(node.out_shape))
        mapping = KINDS[node.kind].onnx
        return mapping(node, g, x, params.get(node.name, {}), state.get(node.name, {}))

    y = emit(net.body, x)
    out_shape = tuple(net.output_shape)
    if is_image(out_shape):
        y = g.to_netc(y, out_shape, "to_nhwc")
    if y == INPUT:  # a net that does nothing
        y = g.op("Identity", [y], name="output")
    g.rename_output(y, OUTPUT)

    dim = batch if batch is not None else "batch"
    f32 = onnx.TensorProto.FLOAT
    graph = onnx.helper.make_graph(
        g.nodes, net.name or "net",
        [onnx.helper.make_tensor_value_info(INPUT, f32, [dim, *shape])],
        [onnx.helper.make_tensor_value_info(OUTPUT, f32, [dim, *out_shape])],
        initializer=g.initializers,
        doc_string=f"netc net {net.name}: input {'x'.join(map(str, shape))} (channels last)")
    model = onnx.helper.make_model(graph, producer_name="netc",
                                   opset_imports=[onnx.helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 8)  # readable by onnxruntime >= 1.13
    if metadata:
        onnx.helper.set_model_props(model, {k: str(v) for k, v in metadata.items()})
    return model


def _numpy_tree(d: dict) -> dict:
    return {k: np.asarray(v) for k, v in d.items()}


def parameter_bytes(net: Net) -> int:
    """float32 bytes of the net's parameters and state (what the ONNX file holds)."""
    return 4 * sum(math.prod(s) for leaf in net.leaves()
                   for s in (*leaf.params.values(), *leaf.state.values()))


__all__ = ["INPUT", "OPSET", "OUTPUT", "ExportError", "OnnxGraph", "import_onnx", "is_image",
           "parameter_bytes", "to_onnx"]
