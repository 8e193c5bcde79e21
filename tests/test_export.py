"""`netc export`: ONNX (from the checked IR, each kind's `onnx` mapping) and StableHLO
(jax.export of netc's lowering), checked against `netc.load`'s apply.

- one net holds every layer kind (a new kind without an ONNX mapping fails here), exported
  to both formats with a dynamic batch and run at two batch sizes;
- each kind alone, at its awkward corners (asymmetric SAME padding, groups, rank-2 inputs),
  through ONNX Runtime;
- every example and every zoo model, with random weights in a run folder, at batch 1; for
  ONNX also the logits before the final softmax (a saturated softmax hides differences);
- metadata, normalisation inside the graph, the mismatch path, a kind without a mapping,
  onnx missing, and `netc check` never importing onnx.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import jax
import netc
import numpy as np
import pytest
from conftest import EXAMPLE_SPECS, EXAMPLES, ROOT, one_error_line, run_cli, run_python
from netc.compiler.check import check_source
from netc.compiler.layers import KINDS, ONES, WEIGHT, init_scale
from netc.compiler.onnx_export import OPSET, to_onnx
from netc.runtime.export import load_exported
from netc.runtime.run import save_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# Every kind, each of its layouts: convs with groups and a depthwise multiplier, pools with
# asymmetric SAME padding (8 -> 4 pads 0 before and 1 after), concat and residual blocks,
# flatten and fc from an image, BatchNorm on images and on vectors, both heads.
ALL_KINDS = """net all_kinds
input 8x8x4
conv f=3 c=8 p=same -> bn -> relu
-> conv f=3 c=8 groups=2 p=1 -> relu6
-> dwconv f=3 s=2 p=same m=2 -> batchnorm -> leaky_relu a=0.1
-> concat {
     conv f=1 c=6 s=2 p=same -> elu a=0.7
   | maxpool f=3 s=2 p=same -> conv f=1 c=16 -> gelu
   | avgpool f=3 s=2 p=same -> conv f=1 c=4 -> silu
   | maxpool f=2 s=1 -> tanh -> avgpool f=2 s=1 p=1 -> conv f=3 c=5 s=2 p=same
  }
-> residual { conv f=3 c=31 p=same -> bn -> relu -> dropout keep=0.5 }
-> residual { conv f=3 c=12 p=same -> bn } shortcut { conv f=1 c=12 }
-> concat { globalavgpool | globalmaxpool | flatten -> fc 7 -> sigmoid }
-> fc 20 -> batchnorm -> dropout rate=0.3 -> softmax 10
"""

# each kind alone, where ONNX and netc could part: (spec, what it pins down)
ALONE = {
    "avgpool_same_asymmetric": "input 8x8x3\navgpool f=3 s=2 p=same",
    "avgpool_same_f2": "input 7x6x3\navgpool f=2 s=1 p=same",
    "avgpool_same_f4_s3": "input 10x9x2\navgpool f=4 s=3 p=same",
    "avgpool_padded": "input 7x7x3\navgpool f=3 s=2 p=1",
    "maxpool_same_asymmetric": "input 8x8x3\nmaxpool f=3 s=2 p=same",
    "maxpool_skipping": "input 8x8x3\nmaxpool f=2 s=3",
    "conv_same_asymmetric": "input 8x8x3\nconv f=3 s=2 p=same c=5",
    "conv_rectangular": "input 9x7x3\nconv f=3 s=2 p=2 c=5",
    "conv_groups_no_bias": "input 6x6x6\nconv f=3 c=9 groups=3 p=1 bias=false",
    "dwconv_multiplier": "input 6x6x2\ndwconv f=3 m=3 s=2 p=same",
    "gelu": "input 6x5x3\ngelu",
    "elu": "input 13\nelu a=0.5",
    "leaky_relu": "input 4x4x2\nleaky_relu a=0.2",
    "silu": "input 4x4x2\nsilu",
    "relu6": "input 4x4x2\nconv f=1 c=2 -> relu6",
    "tanh_rank2": "input 4x3\ntanh",
    "softmax_image": "input 4x4x3\nsoftmax",
    "softmax_rank2": "input 4x5\nsoftmax",
    "sigmoid_rank2": "input 4x5\nsigmoid",
    "batchnorm_rank2": "input 4x5\nbatchnorm -> flatten",
    "batchnorm_vector": "input 6\nbn",
    "flatten_image": "input 3x4x5\nflatten",
    "fc_image": "input 3x4x5\nfc 7",
    "fc_rank2_no_bias": "input 3x4\nfc 7 bias=false",
    "globalavgpool": "input 3x4x5\ngap",
    "globalmaxpool": "input 3x4x5\nglobalmaxpool",
    "dropout": "input 3\ndropout keep=0.5",
    "sigmoid_head": "input 3x3x2\nsigmoid 4",
    "ends_on_an_image": "input 5x5x2\nconv f=3 c=3 p=same -> relu",
}

# the largest zoo models (62-138M parameters: 250-550 MB of float32 each way)
SLOW = {"vgg16", "alexnet", "alexnet_caffe"}
# the zoo's 1000-way heads sum 4096-9216 products in another order in ONNX Runtime: up to
# 1.2e-5 of the outputs' size seen (alexnet); the small nets stay below 1e-6
ZOO_TOL, TOL = 3e-5, 1e-5


# ---- run folders with random weights ---------------------------------------------------------


def random_variables(net, seed: int = 0) -> dict:
    """Variables for every layer, drawn with numpy (much faster than init's jit for VGG-16):
    he-scaled weights, and biases, BatchNorm scales and running statistics away from their
    initial 0 and 1, so that every parameter shows in the outputs."""
    rng = np.random.default_rng(seed)
    params, state = {}, {}
    for leaf in net.leaves():
        kind = KINDS[leaf.kind]
        p = {}
        for name, shape in leaf.params.items():
            z = rng.standard_normal(shape, dtype=np.float32)
            role = kind.params[name]
            p[name] = (z * np.float32(init_scale("he", {}, shape)) if role == WEIGHT
                       else 1 + 0.1 * z if role == ONES else 0.1 * z)
        if p:
            params[leaf.name] = p
        if leaf.state:
            state[leaf.name] = {
                name: (0.5 + np.abs(rng.standard_normal(shape, dtype=np.float32))
                       if kind.state[name] == ONES
                       else 0.1 * rng.standard_normal(shape, dtype=np.float32))
                for name, shape in leaf.state.items()}
    return {"params": params, "state": state}


def random_run(folder: Path, source: str, *, stats: dict | None = None,
               class_names=None, data_dir: Path | None = None, seed: int = 0) -> Path:
    """A run folder as `netc train` leaves it (spec.net, model.safetensors, run.json), with
    random weights; `stats` the normalisation {"mean", "std"}."""
    net = check_source(source)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.net").write_text(net.source)
    save_model(folder / "model.safetensors", random_variables(net, seed), stats or {}, 0)
    info = {"net": net.name, "input": list(net.input_shape), "class_names": class_names}
    if data_dir is not None:
        info["data_dir"] = str(data_dir)
    (folder / "run.json").write_text(json.dumps(info))
    return folder


_FORWARD: dict = {}


def reference(run, x: np.ndarray, *, logits: bool = False) -> np.ndarray:
    """netc.load's apply (or the logits before the final activation) on raw inputs; `run` a
    run folder or what netc.load returned for it. Jitted: model.predict is the function
    `netc export` checks with (the same Model object, so one compile serves both)."""
    model, variables = netc.load(run) if isinstance(run, Path) else run
    norm = variables.get("normalization")
    if norm:
        x = (x - np.asarray(norm["mean"])) / np.asarray(norm["std"])
    plain = {"params": variables["params"], "state": variables["state"]}
    if not logits:
        return np.asarray(model.predict(plain, x))
    if model not in _FORWARD:
        _FORWARD[model] = jax.jit(lambda v, x: model.forward(v, x)[0])
    return np.asarray(_FORWARD[model](plain, x))


def assert_close(got, want, tol: float) -> float:
    """|got - want| <= tol * (1 + max|want|) everywhere; returns the largest difference."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    largest = float(np.max(np.abs(got - want)))
    assert largest <= tol * (1 + np.max(np.abs(want))), (largest, np.max(np.abs(want)))
    return largest


def onnx_with_logits(path: Path, net, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y, logits) from the ONNX file, the logits being the tensor that the final
    softmax/sigmoid node (named after the head layer) reads, made a second graph output."""
    model = onnx.load(str(path))
    head = next(n for n in model.graph.node if n.name == net.head.name)
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(head.input[0]))
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    y, logits = session.run(["y", head.input[0]], {"x": x})
    return y, logits


def export(run_dir: Path, *argv) -> tuple[int, str]:
    code, out, err = run_cli("export", run_dir, *argv)
    return code, err


# ---- every kind -------------------------------------------------------------------------------


def test_the_all_kinds_net_holds_every_kind():
    kinds = {leaf.kind for leaf in check_source(ALL_KINDS).leaves()}
    missing = set(KINDS) - kinds
    assert not missing, f"add {sorted(missing)} to ALL_KINDS (and give the kind an ONNX mapping)"


def test_every_kind_has_an_onnx_mapping():
    assert [name for name, kind in KINDS.items() if kind.onnx is None] == []


@pytest.mark.parametrize("fmt", ["onnx", "stablehlo"])
def test_all_kinds_export_with_a_dynamic_batch_and_agree_at_two_sizes(tmp_path, fmt):
    run = random_run(tmp_path / "run", ALL_KINDS)
    out = tmp_path / f"all.{fmt}"
    code, err = export(run, "--format", fmt, "--out", out)
    assert code == 0, err
    assert "largest difference" in err
    exported = load_exported(out)
    assert exported.format == fmt
    rng = np.random.default_rng(1)
    for m in (1, 5):
        x = rng.standard_normal((m, 8, 8, 4), dtype=np.float32)
        y = np.asarray(exported(x))
        assert y.shape == (m, 10)
        assert_close(y, reference(run, x), TOL)
    if fmt == "onnx":  # the logits too, not only the softmax of them
        x = rng.standard_normal((3, 8, 8, 4), dtype=np.float32)
        _, logits = onnx_with_logits(out, check_source(ALL_KINDS), x)
        assert_close(logits, reference(run, x, logits=True), TOL)


def test_the_onnx_graph_names_nodes_after_layers(tmp_path):
    run = random_run(tmp_path / "run", ALL_KINDS)
    code, err = export(run, "--format", "onnx")
    assert code == 0, err
    model = onnx.load(str(run / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    names = {n.name for n in model.graph.node}
    leaves = [leaf.name for leaf in check_source(ALL_KINDS).leaves()]
    assert set(leaves) <= names
    assert {"concat_1", "residual_1", "residual_2", "concat_2"} <= names  # the blocks
    ops = {n.name: n.op_type for n in model.graph.node}
    assert ops["concat_1/avgpool_1"] == "AveragePool" and ops["dwconv_1"] == "Conv"
    assert ops["residual_2"] == "Add" and ops["softmax_1"] == "Softmax"
    # one transpose in (NHWC -> NCHW), one back before the flatten; no other layout changes
    assert [n.name for n in model.graph.node if n.op_type == "Transpose"] == [
        "to_nchw", "concat_2/flatten_1/to_nhwc"]
    assert model.opset_import[0].version == OPSET
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim[:1]] == [
        "batch"]


@pytest.mark.parametrize("name", list(ALONE))
def test_each_kind_alone_agrees_in_onnx_runtime(name):
    net = check_source(ALONE[name])
    variables = random_variables(net, seed=3)
    model = netc.compile(ALONE[name])
    proto = to_onnx(net, variables)
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    x = 3 * np.random.default_rng(2).standard_normal((4, *net.input_shape), dtype=np.float32)
    assert_close(session.run(None, {"x": x})[0], model.apply(variables, x), TOL)


# ---- the examples and the zoo -----------------------------------------------------------------


def _id(path: Path) -> str:
    return path.relative_to(EXAMPLES).as_posix()


def _example(path: Path):
    return pytest.param(path, id=_id(path),
                        marks=[pytest.mark.slow] if path.stem in SLOW else [])


@pytest.mark.parametrize("path", [_example(p) for p in EXAMPLE_SPECS])
def test_every_example_exports_and_agrees(tmp_path, path):
    """Random weights in a run folder; the sample comes from the example's data when it is
    built in (the run's data_dir is examples/), else from random inputs."""
    net = netc.check(path)
    run = random_run(tmp_path / "run", path.read_text(), data_dir=path.parent)
    loaded = netc.load(run)
    x = np.random.default_rng(0).standard_normal((1, *net.input_shape), dtype=np.float32)
    want = reference(loaded, x)
    tol = ZOO_TOL if path.parent.name == "zoo" else TOL
    for fmt in ("onnx", "stablehlo"):
        out = tmp_path / f"model.{fmt}"
        code, err = export(run, "--format", fmt, "--batch", "1", "--out", out)
        assert code == 0, err
        if fmt == "stablehlo":
            assert_close(load_exported(out)(x), want, tol)
        else:  # the outputs and, under a final softmax/sigmoid, its logits
            last = net.body.children[-1]
            if last.is_block or KINDS[last.kind].head is None:  # no final softmax/sigmoid
                assert_close(load_exported(out)(x), want, tol)
                continue
            y, logits = onnx_with_logits(out, net, x)
            assert_close(y, want, tol)
            assert_close(logits, reference(loaded, x, logits=True), tol)


def test_a_fixed_batch_is_fixed(tmp_path):
    run = random_run(tmp_path / "run", "input 3\nfc 2 -> softmax")
    for fmt in ("onnx", "stablehlo"):
        assert export(run, "--format", fmt, "--batch", "3")[0] == 0
        exported = load_exported(run / f"model.{fmt}")
        assert str(exported.info["batch"]) == "3"
        assert np.asarray(exported(np.ones((3, 3), np.float32))).shape == (3, 2)
        with pytest.raises(Exception):  # noqa: B017 - ORT and JAX raise their own
            exported(np.ones((2, 3), np.float32))


# ---- what the files carry ---------------------------------------------------------------------


def test_metadata_input_shape_classes_and_spec(tmp_path):
    source = "net tiny\ninput 4x4x1\nconv f=3 c=2 -> relu -> softmax 3\n"
    run = random_run(tmp_path / "run", source, class_names=["cat", "dog", "emu"])
    assert export(run, "--format", "onnx")[0] == 0
    assert export(run, "--format", "stablehlo")[0] == 0
    model = onnx.load(str(run / "model.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["input_shape"]) == [4, 4, 1]
    assert meta["input_layout"] == "NHWC"
    assert meta["class_count"] == "3"
    assert json.loads(meta["class_names"]) == ["cat", "dog", "emu"]
    assert meta["spec"] == source and meta["net"] == "tiny"
    assert meta["normalization"] == "none" and meta["batch"] == "dynamic"
    assert model.producer_name == "netc"
    assert load_exported(run / "model.onnx").info == meta  # read back through ORT
    header = load_exported(run / "model.stablehlo").info
    assert header["input_shape"] == [4, 4, 1] and header["class_count"] == 3
    assert header["class_names"] == ["cat", "dog", "emu"] and header["spec"] == source
    assert header["jax"] == jax.__version__ and header["platforms"] == ["cpu", "cuda", "tpu"]
    first_line = (run / "model.stablehlo").read_bytes().split(b"\n", 1)[0]
    assert first_line == b"netc-stablehlo 1"


def test_the_stablehlo_export_is_jittable(tmp_path):
    run = random_run(tmp_path / "run", "input 5\nfc 3 -> tanh -> sigmoid 2")
    assert export(run, "--format", "stablehlo")[0] == 0
    exported = netc.load_exported(run / "model.stablehlo")
    x = np.random.default_rng(0).standard_normal((6, 5), dtype=np.float32)
    assert_close(jax.jit(exported)(x), reference(run, x), 1e-6)


# ---- normalisation inside the graph ------------------------------------------------------------

NORMALIZED = """net moons_standard
input 2
fc 8 -> relu -> sigmoid 1
train {
  data moons n=60
  normalize standard
  epochs 1
  batch 30
  seed 0
}
"""


@pytest.mark.parametrize("fmt", ["onnx", "stablehlo"])
def test_a_normalized_run_takes_raw_inputs(tmp_path, fmt):
    spec = tmp_path / "moons.net"
    spec.write_text(NORMALIZED)
    run = tmp_path / "run"
    code, _, err = run_cli("train", spec, "--out", run, "--quiet")
    assert code == 0, err
    _, variables = netc.load(run)
    mean = np.asarray(variables["normalization"]["mean"])
    assert np.abs(mean).max() > 0.1  # moons is not centred: normalisation matters
    code, err = export(run, "--format", fmt)
    assert code == 0, err
    assert "the run's data" in err  # the sample came from the run's own data
    x = np.array([[0.0, 0.0], [1.5, -0.4], [-1.0, 0.8]], np.float32)
    y = np.asarray(load_exported(run / f"model.{fmt}")(x))
    assert_close(y, reference(run, x), 1e-6)
    raw = np.asarray(netc.load(run)[0].apply(variables, x))  # what skipping it would give
    assert np.abs(y - raw).max() > 1e-3
    if fmt == "onnx":
        model = onnx.load(str(run / "model.onnx"))
        assert [n.name for n in model.graph.node][:2] == ["normalize/sub", "normalize"]
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["normalization"].startswith("(x - mean) / std")
        assert meta["class_count"] == "2"


def test_random_samples_follow_the_normalisation(tmp_path):
    stats = {"mean": np.full((3,), 100.0, np.float32), "std": np.full((3,), 20.0, np.float32)}
    run = random_run(tmp_path / "run", "input 3\nfc 4 -> relu -> fc 1", stats=stats)
    code, err = export(run, "--format", "onnx")
    assert code == 0, err
    assert "random inputs" in err
    x = np.array([[90.0, 100.0, 130.0]], np.float32)
    assert_close(load_exported(run / "model.onnx")(x), reference(run, x), 1e-6)


# ---- failures ---------------------------------------------------------------------------------


def test_an_export_that_differs_fails_and_writes_nothing(tmp_path, monkeypatch):
    run = random_run(tmp_path / "run", "input 6\nfc 5 -> tanh -> fc 3 -> softmax")
    # ONNX: tanh written as the identity
    wrong = replace(KINDS["tanh"], onnx=lambda node, graph, x, params, state: graph.op(
        "Identity", [x], name=node.name))
    monkeypatch.setitem(KINDS, "tanh", wrong)
    code, err = export(run, "--format", "onnx")
    assert code == 1
    line = one_error_line(err)
    assert "the onnx export differs from the run: largest difference " in line
    assert "model.onnx was not written" in line
    figure = float(line.split("largest difference ")[1].split()[0])
    assert figure > 1e-3
    assert not (run / "model.onnx").exists()
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []  # no temp file

    # StableHLO: the exported weights differ from the run's
    from netc.runtime import export as export_module

    original = export_module.stablehlo_bytes

    def perturbed(model, variables, *args):
        params = jax.tree.map(lambda a: np.asarray(a) * 1.01, variables["params"])
        return original(model, {**variables, "params": params}, *args)
    monkeypatch.setattr(export_module, "stablehlo_bytes", perturbed)
    code, err = export(run, "--format", "stablehlo")
    assert code == 1
    assert "the stablehlo export differs from the run: largest difference" in one_error_line(err)
    assert not (run / "model.stablehlo").exists()


def test_a_mismatch_leaves_an_earlier_good_file_alone(tmp_path, monkeypatch):
    run = random_run(tmp_path / "run", "input 6\nfc 5 -> tanh -> fc 3")
    assert export(run, "--format", "onnx")[0] == 0
    good = (run / "model.onnx").read_bytes()
    wrong = replace(KINDS["tanh"], onnx=lambda node, graph, x, params, state: graph.op(
        "Relu", [x], name=node.name))
    monkeypatch.setitem(KINDS, "tanh", wrong)
    assert export(run, "--format", "onnx")[0] == 1
    assert (run / "model.onnx").read_bytes() == good


def test_a_kind_without_an_onnx_mapping_is_an_error_naming_the_layer(tmp_path, monkeypatch):
    run = random_run(tmp_path / "run", "input 4\nfc 3 -> elu -> fc 2 -> softmax")
    monkeypatch.setitem(KINDS, "elu", replace(KINDS["elu"], onnx=None))
    code, err = export(run, "--format", "onnx")
    assert code == 1
    assert one_error_line(err) == (
        "netc: error: layer elu_1 (elu) cannot be exported to ONNX: the elu kind has no ONNX "
        "mapping (compiler/layers/, its LayerKind's `onnx`); --format stablehlo exports "
        "every kind")
    assert not (run / "model.onnx").exists()
    assert export(run, "--format", "stablehlo")[0] == 0  # through the lowering, as ever


def test_onnx_missing_is_one_line(tmp_path, monkeypatch):
    run = random_run(tmp_path / "run", "input 4\nfc 2")
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    code, err = export(run, "--format", "onnx")
    assert code == 1
    assert "ONNX export needs the onnx package: pip install 'netc[export]'" in one_error_line(
        err)


def test_misuse(tmp_path):
    run = random_run(tmp_path / "run", "input 4\nfc 2")
    assert run_cli("export", run, "--format", "onnx", "--batch", "0")[0] == 2
    assert run_cli("export", run, "--format", "onnx", "--batch", "some")[0] == 2
    assert run_cli("export", run, "--format", "tflite")[0] == 2
    assert run_cli("export", run)[0] == 2  # --format is required
    code, _, err = run_cli("export", tmp_path / "nowhere", "--format", "onnx")
    assert code == 1 and "not a netc run directory" in one_error_line(err)
    code, _, err = run_cli("export", run, "--format", "onnx", "--out", tmp_path)
    assert code == 1 and "is a folder" in one_error_line(err)


def test_load_exported_refuses_other_files(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    from netc.compiler.onnx_export import ExportError

    with pytest.raises(ExportError, match="neither a netc StableHLO export nor an ONNX"):
        load_exported(path)


def test_netc_check_never_imports_onnx():
    code = ("import sys, io, contextlib; from netc.runtime.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['check', {str(EXAMPLES / 'lenet5.net')!r}]) == 0\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('onnx', 'onnxruntime', 'jax')))")
    result = run_python("-c", code, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
