"""`netc eval` and `netc predict`: metrics of a trained run, and predictions for new inputs."""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from .data import DataError, apply_normalization, load_source
from .run import load_data, to_device
from .train import evaluate


def _classes(model, out: np.ndarray) -> np.ndarray:
    if model.loss_name == "cross_entropy":
        return out.argmax(axis=-1)
    return (out > 0.5).astype(np.int64).reshape(len(out), -1)[:, 0]


def _labels(model, y: np.ndarray) -> np.ndarray:
    if model.loss_name == "cross_entropy":
        return y if y.ndim == 1 else y.argmax(axis=-1)
    return np.nan_to_num(y).reshape(len(y), -1)[:, 0].astype(np.int64)


def class_report(truth: np.ndarray, pred: np.ndarray, k: int) -> dict:
    """Confusion matrix (rows: truth, columns: prediction) and per-class precision/recall/F1."""
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (truth, pred), 1)
    per_class = []
    for c in range(k):
        tp = confusion[c, c]
        predicted, actual = confusion[:, c].sum(), confusion[c, :].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append({"class": c, "precision": float(precision), "recall": float(recall),
                          "f1": float(f1), "support": int(actual)})
    return {"confusion": confusion.tolist(), "per_class": per_class}


def evaluate_run(run_dir: Path, model, variables, which: str | None) -> dict:
    net = model.net
    base = Path(run_dir)
    info_path = base / "run.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    data_dir = Path(info.get("data_dir") or base)  # relative data paths: the spec's folder
    splits, _ = load_data(net, base_dir=data_dir, loss=model.loss_name)
    parts = dict(splits.parts())
    if which is None:
        which = "test" if "test" in parts else "dev" if "dev" in parts else "train"
    names = list(parts) if which == "all" else [which]
    m = len(splits.train.x)
    batch = min(net.train.batch or m, m)  # the run's evaluation shape (Trainer.batch)
    report = {"run": str(run_dir), "net": net.name, "splits": {}}
    for name in names:
        if name not in parts:
            raise DataError(f"the run has no {name} split (it has: {', '.join(parts)})")
        data = to_device(parts[name])
        metrics = evaluate(model, variables, data.x, data.y, batch)
        if model.loss_name != "mse":
            out = np.asarray(model.predict(variables, data.x))
            k = model.output_shape[-1] if model.loss_name == "cross_entropy" else 2
            metrics.update(class_report(_labels(model, np.asarray(parts[name].y)),
                                        _classes(model, out), k))
        metrics["examples"] = data.m
        report["splits"][name] = metrics
        x = np.asarray(parts[name].x)
        if x.ndim == 2 and x.shape[1] == 2 and model.loss_name != "mse":
            from .plots import decision_boundary

            path = base / ("decision_boundary.png" if name == names[0]
                           else f"decision_boundary_{name}.png")
            decision_boundary(lambda g: _classes(model, np.asarray(model.predict(variables, g))),
                              x, np.asarray(parts[name].y), path,
                              title=f"{net.name}: decision boundary ({name})")
            metrics["plot"] = str(path)
    return report


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    for name, m in report["splits"].items():
        acc = f"  accuracy {m['accuracy']:.4f}" if "accuracy" in m else ""
        console.print(f"[bold]{report['net']}[/bold] {name} ({m['examples']} examples): "
                      f"loss {m['loss']:.4f}{acc}")
        if "per_class" in m:
            table = Table("class", "precision", "recall", "F1", "support")
            for row in m["per_class"]:
                table.add_row(str(row["class"]), f"{row['precision']:.3f}",
                              f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
            console.print(table)
            confusion = Table("truth \\ predicted", *[str(i) for i in range(len(m["confusion"]))],
                              title="confusion matrix")
            for i, row in enumerate(m["confusion"]):
                confusion.add_row(str(i), *[str(v) for v in row])
            console.print(confusion)
        if "plot" in m:
            console.print(f"decision boundary: {m['plot']}")


def _read_inputs(path: Path) -> np.ndarray:
    if not path.exists():
        raise DataError(f"input '{path}' not found")
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".gif"):
        from PIL import Image

        with Image.open(path) as img:
            return (np.asarray(img.convert("RGB"), np.float32) / 255.0)[None]
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                if "x" not in data:
                    raise DataError(f"{path} has no array 'x' (found: {', '.join(data.files)})")
                return np.asarray(data["x"])
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".csv":
            rows = np.genfromtxt(path, delimiter=",", dtype=np.float64)
            rows = rows[~np.isnan(rows).all(axis=1)] if rows.ndim == 2 else rows[None]
            return rows
        if suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as fh:
                for key in ("x", "x_test", "test_set_x", "train_set_x"):
                    if key in fh:
                        x = np.asarray(fh[key])
                        return x / 255.0 if x.dtype == np.uint8 else x
                raise DataError(f"{path} has no dataset 'x'")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if path.is_dir():
        return load_source(str(path), {}, base_dir=".")["x"]
    raise DataError(f"cannot predict from '{path.name}': use .npz (array x), .npy, .csv, .h5, "
                    "an image or an image folder")


def predict_file(model, variables, path: Path, out: Path) -> int:
    """Predict for the inputs in `path`; write probabilities (and classes) to `out`."""
    x = _read_inputs(path).astype(np.float32)
    shape = model.input_shape
    if x.shape[1:] != shape:
        if int(np.prod(x.shape[1:])) != int(np.prod(shape)):
            raise DataError(f"inputs are {'x'.join(map(str, x.shape[1:]))} per example but the "
                            f"net expects {'x'.join(map(str, shape))}")
        x = x.reshape((len(x), *shape))
    norm = variables.get("normalization")
    if norm:
        x = apply_normalization(x, {k: None if v is None else np.asarray(v)
                                    for k, v in norm.items()})
    outputs = np.concatenate([np.asarray(model.predict(variables, jnp.asarray(x[i:i + 1024])))
                              for i in range(0, len(x), 1024)]) if len(x) else np.zeros((0,))
    result = {"outputs": outputs}
    if model.loss_name != "mse" and len(x):
        result["classes"] = _classes(model, outputs)
    if out.suffix == ".csv":
        np.savetxt(out, outputs.reshape(len(outputs), -1), delimiter=",")
    else:
        from .checkpoint import atomic_write

        def write(tmp):
            with open(tmp, "wb") as fh:
                np.savez(fh, **result)
        atomic_write(out, write)
    return len(x)
