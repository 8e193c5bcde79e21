"""`netc export RUN_DIR --format onnx|stablehlo`: a trained run as one file another program
runs, checked against the run before it is written.

Both formats hold the inference pass: BatchNorm's running statistics, no dropout, the final
softmax or sigmoid, and the run's input normalisation (x - mean) / std when it has one, so
they take raw inputs of the run's input shape (channels last) with a batch axis first.

    onnx        the checked IR, layer by layer, as ONNX operators (compiler/onnx_export.py,
                each kind's `onnx` mapping); metadata_props: input shape, class count and
                names, the spec
    stablehlo   jax.export of netc's own lowering, for every platform JAX serves
                (cpu, cuda, tpu); the file is

                    netc-stablehlo 1\\n
                    {header: JAX version, shapes, classes, ... "module_bytes": N}\\n
                    N bytes: jax.export's serialisation of f(weights, x) -> y
                    the weights: safetensors, named params/LAYER/NAME, state/...,
                    normalization/mean|std

                The weights are an argument, not constants folded into the module: XLA
                compiles VGG-16 in 0.7 s that way against 11 s with 550 MB of constants.

`--batch N` fixes the batch size, `--batch dynamic` (the default) leaves it symbolic.

Before the file appears it is loaded back (ONNX Runtime, or jax.export's deserialisation)
and run on a sample batch (from the run's data when it can be read, else random inputs of
the input shape), and compared with `netc.load(RUN_DIR)`'s apply; a difference beyond
TOLERANCE fails the export and nothing is written. `load_exported(path)` reads either
format back as a callable x -> y.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import RunError

FORMATS = ("onnx", "stablehlo")
SUFFIX = {"onnx": ".onnx", "stablehlo": ".stablehlo"}
MAGIC = b"netc-stablehlo 1\n"
PLATFORMS = ("cpu", "cuda", "tpu")
# |exported - netc| <= ATOL + RTOL * max|netc| over the sample: float32 arithmetic done in
# another order (another convolution algorithm, fused BatchNorm) stays some 100x below it
RTOL = ATOL = 1e-4
SAMPLE = 4  # examples in the check's batch (a fixed --batch uses its own size)
ONNX_MAX_BYTES = 2**31 - 2**26  # protobuf's 2 GB limit, with room for the graph


@dataclass
class Check:
    """How an export compared with the run on the sample batch."""

    examples: int
    source: str          # "the run's data" or "random inputs"
    largest: float       # max |exported - netc|
    scale: float         # max |netc|
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(self.largest <= self.tolerance)

    def describe(self) -> str:
        return (f"largest difference {self.largest:.3g} on {self.examples} "
                f"example{'' if self.examples == 1 else 's'} of "
                f"{self.source} (outputs up to {self.scale:.3g}; tolerance {self.tolerance:.3g})")


@dataclass(eq=False)  # hashable by identity: jax.jit(exported) works
class Exported:
    """A file `netc export` wrote, read back: call it on a batch of raw inputs."""

    path: Path
    format: str
    info: dict           # input_shape, output_shape, class_names, batch, versions...
    _call: object

    def __call__(self, x):
        return self._call(x)

    def __repr__(self) -> str:
        return (f"<netc export {self.path.name}: {self.format}, input "
                f"{self.info.get('input_shape')}, batch {self.info.get('batch')}>")


# ---- what the run is ------------------------------------------------------------------


def run_info(run_dir: Path, model) -> dict:
    """What both formats record: shapes, the loss, the classes, the spec and versions."""
    from netc.compiler.losses import LOSSES

    try:
        saved = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        saved = {}
    names = saved.get("class_names") if isinstance(saved, dict) else None
    width = int(np.prod(model.output_shape))
    info = {"net": model.name, "input_shape": list(model.input_shape), "input_layout": "NHWC"
            if len(model.input_shape) == 3 else "as in the spec",
            "output_shape": list(model.output_shape), "loss": model.loss_name}
    loss = LOSSES[model.loss_name]
    if loss.task_hits is not None and width > 1:  # a multi-task sigmoid N
        info["task_count"] = width
    elif model.loss_name == "cross_entropy":
        info["class_count"] = width
    elif loss.hits is not None:  # a single sigmoid: classes 0 and 1
        info["class_count"] = 2
    if names:
        info["class_names"] = [str(n) for n in names]
    info["netc_version"] = _netc_version()
    return info


def _netc_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("netc")
    except PackageNotFoundError:
        return "unknown"


def normalization_of(variables: dict) -> dict | None:
    norm = variables.get("normalization") or {}
    if norm.get("mean") is None:
        return None
    return {k: np.asarray(norm[k], np.float32) for k in ("mean", "std")}


def sample_batch(run_dir: Path, model, n: int, norm: dict | None) -> tuple[np.ndarray, str]:
    """n raw inputs: the first examples of the run's train split as the data holds them
    (only those are read when it streams: runtime/split_pass.py) when it can be read, else
    random normal inputs (mean + std * z when the run normalises)."""
    try:
        from .split_pass import raw_examples, run_splits

        if not (run_dir / "run.json").exists():
            raise FileNotFoundError(run_dir / "run.json")
        splits, _ = run_splits(model, None, run_dir, normalized=False)
        if len(splits.train) >= n:
            x = raw_examples(splits.train, np.arange(n))
            return np.ascontiguousarray(x, np.float32), "the run's data"
    except Exception:  # no data line, a file that moved, a source that needs a download...
        pass
    z = np.random.default_rng(0).normal(size=(n, *model.input_shape)).astype(np.float32)
    if norm is not None:
        z = z * norm["std"].reshape(model.input_shape) + norm["mean"].reshape(model.input_shape)
    return z.astype(np.float32), "random inputs"


def reference(model, variables: dict, x: np.ndarray, norm: dict | None) -> np.ndarray:
    """netc's own inference: normalise as `netc predict` does, then apply."""
    if norm is not None:
        x = (x - norm["mean"].reshape(model.input_shape)) / norm["std"].reshape(
            model.input_shape)
    plain = {"params": variables["params"], "state": variables.get("state", {})}
    return np.asarray(model.predict(plain, x.astype(np.float32)))


def compare(got, want: np.ndarray, examples: int, source: str) -> Check:
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    if got.shape != want.shape:
        return Check(examples, source, float("inf"), 0.0, 0.0)
    same = (got == want) | (np.isnan(got) & np.isnan(want))  # inf == inf, nan "==" nan
    diff = np.where(same, 0.0, np.abs(got - want))
    largest = float(np.max(diff)) if diff.size else 0.0
    finite = want[np.isfinite(want)]
    scale = float(np.max(np.abs(finite))) if finite.size else 0.0
    if np.isnan(largest):
        largest = float("inf")
    return Check(examples, source, largest, scale, ATOL + RTOL * scale)


# ---- the two formats --------------------------------------------------------------------


def onnx_bytes(model, variables: dict, info: dict, batch: int | None,
               norm: dict | None) -> bytes:
    from netc.compiler.onnx_export import ExportError, parameter_bytes, to_onnx

    if parameter_bytes(model.net) > ONNX_MAX_BYTES:
        raise ExportError(f"{model.name} holds {parameter_bytes(model.net) / 2**30:.1f} GB of "
                          "parameters; ONNX files over 2 GB need external data, which netc "
                          "does not write yet (--format stablehlo has no limit)")
    metadata = {k: json.dumps(v) if isinstance(v, list) else v for k, v in info.items()}
    metadata["batch"] = "dynamic" if batch is None else str(batch)
    metadata["normalization"] = ("(x - mean) / std inside the graph" if norm is not None
                                 else "none")
    metadata["spec"] = model.net.source
    proto = to_onnx(model.net, variables, batch=batch, normalization=norm, metadata=metadata)
    proto.producer_version = info["netc_version"]
    return proto.SerializeToString()


def stablehlo_bytes(model, variables: dict, info: dict, batch: int | None,
                    norm: dict | None) -> bytes:
    import jax
    import jax.numpy as jnp
    import jaxlib
    from jax import export

    weights = {"params": variables["params"], "state": variables.get("state", {})}
    if norm is not None:
        weights["normalization"] = {k: v.reshape(model.input_shape) for k, v in norm.items()}

    def infer(weights, x):
        if "normalization" in weights:
            x = (x - weights["normalization"]["mean"]) / weights["normalization"]["std"]
        return model.apply({"params": weights["params"], "state": weights["state"]}, x)

    dim = export.symbolic_shape("batch")[0] if batch is None else batch
    specs = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.float32), weights)
    exported = export.export(jax.jit(infer), platforms=PLATFORMS)(
        specs, jax.ShapeDtypeStruct((dim, *model.input_shape), jnp.float32))
    module = exported.serialize()
    flat = {name: np.ascontiguousarray(np.asarray(a, np.float32))
            for name, a in _named_leaves(weights)}
    from safetensors.numpy import save

    header = {**info, "format": "jax.export", "jax": jax.__version__,
              "jaxlib": jaxlib.__version__, "batch": "dynamic" if batch is None else batch,
              "platforms": list(PLATFORMS), "normalization": norm is not None,
              "calling_convention": exported.calling_convention_version,
              "module_bytes": len(module), "weights": "safetensors", "spec": model.net.source}
    return MAGIC + json.dumps(header).encode() + b"\n" + bytes(module) + save(flat)


def _named_leaves(tree: dict, prefix: str = ""):
    for key in sorted(tree):
        value = tree[key]
        if isinstance(value, dict):
            yield from _named_leaves(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value


# ---- reading an export back -----------------------------------------------------------


def load_exported(path) -> Exported:
    """A file written by `netc export` as a callable x -> y (x: a batch of raw inputs,
    float32, the run's input shape; normalisation and the final activation happen inside).
    StableHLO runs through jax.export (the result is a jax.Array; it can be called inside
    jit); ONNX through ONNX Runtime (a numpy array)."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(len(MAGIC))
    if head == MAGIC:
        return _load_stablehlo(path)
    return _load_onnx(path)


def _load_stablehlo(path: Path) -> Exported:
    import jax
    from jax import export
    from netc.compiler.onnx_export import ExportError
    from safetensors.numpy import load

    data = path.read_bytes()
    line_end = data.index(b"\n", len(MAGIC))
    header = json.loads(data[len(MAGIC):line_end])
    start = line_end + 1
    module = data[start:start + header["module_bytes"]]
    try:
        exported = export.deserialize(bytearray(module))
    except Exception as exc:
        raise ExportError(f"{path}: JAX {jax.__version__} cannot read this export, written "
                          f"with JAX {header.get('jax')} ({type(exc).__name__}: {exc})") from None
    flat = load(data[start + header["module_bytes"]:])
    tree = exported.in_tree  # ((weights, x), {}): put each weight at its leaf's position
    (positions, _), _ = tree.unflatten(list(range(tree.num_leaves)))
    leaves: list = [None] * tree.num_leaves
    for name, index in _named_leaves(positions):
        leaves[index] = flat[name]
    (weights, _), _ = tree.unflatten(leaves)
    return Exported(path, "stablehlo", header, lambda x: exported.call(weights, x))


def _load_onnx(path: Path) -> Exported:
    from netc.compiler.onnx_export import ExportError

    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("running an ONNX export needs onnxruntime: pip install "
                          "'netc[export]'") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ExportError(f"{path} is neither a netc StableHLO export nor an ONNX model that "
                          f"ONNX Runtime can load ({type(exc).__name__}: {first})") from None
    info = dict(session.get_modelmeta().custom_metadata_map)
    name = session.get_inputs()[0].name

    def call(x):
        return session.run(None, {name: np.ascontiguousarray(x, np.float32)})[0]
    return Exported(path, "onnx", info, call)


# ---- the command --------------------------------------------------------------------------


def export_run(run_dir, fmt: str, out=None, batch: int | None = None, say=None) -> tuple:
    """Export a run (batch None: dynamic), check it, write it: (path, Check). Raises
    RunError for a mismatch (nothing written) and ExportError for what cannot be exported."""
    from netc.compiler.onnx_export import ExportError

    from .checkpoint import atomic_write
    from .run import load_run

    say = say or (lambda text: print(text, file=sys.stderr))
    run_dir = Path(run_dir)
    started = time.perf_counter()
    model, variables = load_run(run_dir)
    norm = normalization_of(variables)
    info = run_info(run_dir, model)
    out = Path(out) if out else run_dir / f"model{SUFFIX[fmt]}"
    if out.is_dir():
        raise ExportError(f"--out {out} is a folder; give a file name such as "
                          f"{out / ('model' + SUFFIX[fmt])}")
    if fmt == "onnx":
        payload = onnx_bytes(model, variables, info, batch, norm)
    else:
        payload = stablehlo_bytes(model, variables, info, batch, norm)

    n = batch or SAMPLE
    x, source = sample_batch(run_dir, model, n, norm)
    want = reference(model, variables, x, norm)
    checked: list[Check] = []

    def write(tmp):
        Path(tmp).write_bytes(payload)
        exported = load_exported(tmp)  # read back from the file itself, as a user would
        try:
            got = exported(x)
        except Exception as exc:
            runner = "ONNX Runtime" if fmt == "onnx" else "JAX"
            raise RunError(f"{runner} cannot run the {fmt} export ({type(exc).__name__}: "
                           f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})"
                           f"; {out} was not written") from None
        check = compare(got, want, n, source)
        checked.append(check)
        if not check.ok:
            raise RunError(f"the {fmt} export differs from the run: {check.describe()}; "
                           f"{out} was not written")

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, write)
    check = checked[0]
    size = out.stat().st_size
    say(f"exported {run_dir} to {out} ({fmt}, batch "
        f"{'dynamic' if batch is None else batch}, {_size(size)}) in "
        f"{time.perf_counter() - started:.1f} s")
    runner = "ONNX Runtime" if fmt == "onnx" else "jax.export"
    say(f"checked with {runner} against netc: {check.describe()}")
    return out, check


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def parse_batch(text: str) -> int | None:
    """--batch: a positive integer or `dynamic` (None)."""
    if text == "dynamic":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        import argparse

        raise argparse.ArgumentTypeError(f"expected a positive integer or 'dynamic', got "
                                         f"{text!r}")
    return value


def cmd_export(args) -> int:
    from netc.compiler.onnx_export import ExportError

    from .checkpoint import CheckpointError
    from .errors import EXIT_OK

    try:
        export_run(args.dir, args.format, args.out, args.batch)
    except (ExportError, FileNotFoundError, CheckpointError) as exc:
        raise RunError(str(exc)) from None
    return EXIT_OK
