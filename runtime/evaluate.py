"""`netc eval` and `netc predict`: metrics of a trained run, and predictions for new inputs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from .data import DataError, apply_normalization
from .data_inputs import load_inputs, open_inputs
from .host_feed import ctrl_c_to_this_process_only
from .split_pass import run_info, run_splits, split_pass
from .stream import should_stream
from .task_metrics import is_multitask, output_task_figures


def _classes(model, out: np.ndarray) -> np.ndarray:
    """Predicted classes: softmax's arg-max (m,); a sigmoid's outputs above 0.5, (m,) for one
    output, (m, N) 0/1 for a multi-task sigmoid N."""
    if model.loss_name == "cross_entropy":
        return out.argmax(axis=-1)
    flat = (out > 0.5).astype(np.int64).reshape(len(out), -1)
    return flat if is_multitask(model) else flat[:, 0]


def _labels(model, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class of each example, whether its label is known): a sigmoid label may be NaN."""
    if model.loss_name == "cross_entropy":
        return (y if y.ndim == 1 else y.argmax(axis=-1)), np.ones(len(y), bool)
    label = y.reshape(len(y), -1)[:, 0]
    return (np.nan_to_num(label) > 0.5).astype(np.int64), ~np.isnan(label)


def class_names_of(run_dir: Path, fallback=None) -> list[str] | None:
    """The class names a run recorded in run.json (else `fallback`); None without any."""
    info_path = Path(run_dir) / "run.json"
    try:
        names = json.loads(info_path.read_text()).get("class_names")
    except (OSError, ValueError, AttributeError):
        names = None
    names = names or (list(fallback) if fallback else None)
    return [str(n) for n in names] if names else None


def task_names(model, names) -> list[str] | None:
    """A multi-task sigmoid N's task names: the class names when there is one per output."""
    width = int(np.prod(model.output_shape))
    return list(names) if names and len(names) == width else None


def class_report(truth: np.ndarray, pred: np.ndarray, k: int, names=None) -> dict:
    """Confusion matrix (rows: truth, columns: prediction) and per-class precision/recall/F1
    (each row named when `names` gives one per class)."""
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (truth, pred), 1)
    named = names is not None and len(names) == k
    per_class = []
    for c in range(k):
        tp = confusion[c, c]
        predicted, actual = confusion[:, c].sum(), confusion[c, :].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append({"class": c, **({"name": str(names[c])} if named else {}),
                          "precision": float(precision), "recall": float(recall),
                          "f1": float(f1), "support": int(actual)})
    return {"confusion": confusion.tolist(), "per_class": per_class}


def evaluate_run(run_dir: Path, model, variables, which: str | None) -> dict:
    """`netc eval`'s report: each split's loss, accuracy, per-class figures and confusion
    matrix (or per-task accuracy), from one pass of the net over the split, in memory or
    streamed from disk as the spec's `stream` setting says (runtime/split_pass.py)."""
    net = model.net
    base = Path(run_dir)
    info = run_info(base)
    splits, stats = run_splits(model, variables, base, info)
    parts = dict(splits.parts())
    if which is None:
        which = "test" if "test" in parts else "dev" if "dev" in parts else "train"
    names = list(parts) if which == "all" else [which]
    m = len(splits.train)
    batch = net.train.batch_of(m)  # the run's evaluation shape (Trainer.batch)
    classes = class_names_of(base, splits.class_names)
    multitask = is_multitask(model)
    report = {"run": str(run_dir), "net": net.name, "class_names": classes, "splits": {}}
    if multitask:
        report["task_names"] = task_names(model, classes)
    plotted = tuple(model.input_shape) == (2,) and model.loss_name != "mse" and not multitask
    for name in names:
        if name not in parts:
            raise DataError(f"the run has no {name} split (it has: {', '.join(parts)})")
        seen = split_pass(model, variables, parts[name], batch, stats, keep_x=plotted)
        metrics = dict(seen.figures)
        if multitask:  # each output a task of its own: no single class to confuse
            metrics.update(output_task_figures(model, seen.outputs, seen.y))
        elif model.loss_name != "mse":
            k = model.output_shape[-1] if model.loss_name == "cross_entropy" else 2
            truth, known = _labels(model, seen.y)
            metrics.update(class_report(truth[known], _classes(model, seen.outputs)[known], k,
                                        classes))
        metrics["examples"] = len(seen.y)
        if seen.skipped:
            metrics["skipped"] = len(seen.skipped)
        report["splits"][name] = metrics
        if plotted:
            from .plots import decision_boundary

            path = base / ("decision_boundary.png" if name == names[0]
                           else f"decision_boundary_{name}.png")
            decision_boundary(lambda g: _classes(model, np.asarray(model.predict(variables, g))),
                              seen.x, seen.y, path,
                              title=f"{net.name}: decision boundary ({name})")
            metrics["plot"] = str(path)
    return report


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    for name, m in report["splits"].items():
        acc = f"  accuracy {m['accuracy']:.4f}" if "accuracy" in m else ""
        skipped = f", {m['skipped']} unreadable left out" if m.get("skipped") else ""
        console.print(f"[bold]{report['net']}[/bold] {name} ({m['examples']} examples"
                      f"{skipped}): loss {m['loss']:.4f}{acc}")
        if "per_class" in m:
            label = [_class_label(row) for row in m["per_class"]]
            table = Table("class", "precision", "recall", "F1", "support")
            for row, text in zip(m["per_class"], label):
                table.add_row(text, f"{row['precision']:.3f}",
                              f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
            console.print(table)
            confusion = Table("truth \\ predicted", *label, title="confusion matrix")
            for text, row in zip(label, m["confusion"]):
                confusion.add_row(text, *[str(v) for v in row])
            console.print(confusion)
        if "task_accuracy" in m:
            names = report.get("task_names")
            table = Table("task", "known labels", "accuracy", title="per task")
            for j, (acc, known) in enumerate(zip(m["task_accuracy"], m["task_known"])):
                table.add_row(f"{j} {names[j]}" if names else str(j), str(known),
                              "-" if acc is None else f"{acc:.4f}")
            console.print(table)
        if "plot" in m:
            console.print(f"decision boundary: {m['plot']}")


def _class_label(row: dict) -> str:
    return f"{row['class']} {row['name']}" if "name" in row else str(row["class"])


IMAGE_OPTIONS = {1: "L", 3: "RGB"}  # an image input's channels -> the mode to read images in


def input_options(model, run_dir: Path | None = None) -> tuple[dict, dict | None]:
    """How to read new inputs as the run read its training data: the spec's file options
    (``size=``, ``mode=``; for images, else the net's input height, width and channels)
    and the csv layout recorded in run.json (None without one)."""
    data = model.net.train.data
    options = {}
    if data is not None and data.name == "file":
        options = {k: v for k, v in data.options.items() if k in ("size", "mode")}
    shape = tuple(model.input_shape)
    if len(shape) == 3 and shape[2] in IMAGE_OPTIONS:
        options.setdefault("size", f"{shape[0]}x{shape[1]}")
        options.setdefault("mode", IMAGE_OPTIONS[shape[2]])
    layout = None
    if run_dir is not None:
        try:
            layout = json.loads((Path(run_dir) / "run.json").read_text()).get("csv_layout")
        except (OSError, ValueError, AttributeError):
            layout = None
    return options, layout if isinstance(layout, dict) else None


def predict_file(model, variables, path: Path, out: Path, class_names=None,
                 run_dir: Path | None = None, stream: str | None = None) -> int:
    """Predict for the inputs in `path` (read by the data layer as the run in `run_dir` read
    its data: :func:`input_options`); write probabilities (and classes) to `out`. Inputs
    that can be read in pieces (runtime/data_inputs.py's open_inputs: folders, .npy, an
    uncompressed .npz, .h5, ArrayRecord) stream (read batch by batch, never whole) as
    `stream` (default: the spec's `stream` setting, auto|on|off) decides for a split of
    their size; other inputs are read whole. Either way an input holding NaN predicts NaN.

    .npz: `outputs`, `classes` for a classifier ((m, N) 0/1 for a multi-task sigmoid N), and
    where the run has class names, `names` (each prediction's class name) or, for a
    multi-task net with one name per output, `task_names`. .csv: a header row, then one row
    per input: the outputs (`output`, or `output_0`...; a softmax's named by its classes
    where the run names them), then for a classifier its `class` (a multi-task net's
    `class_0`...) and, with class names, its `name`."""
    options, layout = input_options(model, run_dir)
    shape = tuple(model.input_shape)
    norm = variables.get("normalization")
    stats = {k: None if v is None else np.asarray(v, np.float32) for k, v in norm.items()} \
        if norm else None
    source = open_inputs(path, str(path), options)
    streaming = source is not None and should_stream(
        model.net.train.stream if stream is None else stream, len(source), shape)
    if streaming:
        batches = streamed_inputs(source, shape, stats)
    else:
        x = load_inputs(path, str(path), options, layout).astype(np.float32)
        x = apply_normalization(as_input(x, shape), stats)
        batches = (x[i:i + PREDICT_BATCH] for i in range(0, len(x), PREDICT_BATCH))
    parts = [np.asarray(model.predict(variables, jnp.asarray(xb))) for xb in batches]
    outputs = np.concatenate(parts) if parts else np.zeros((0, *model.output_shape),
                                                           np.float32)
    result = {"outputs": outputs}
    names = _prediction_names(model, class_names)
    if model.loss_name != "mse" and len(outputs):
        result["classes"] = _classes(model, outputs)
        if names is not None and is_multitask(model):
            result["task_names"] = np.asarray(names, dtype=str)
        elif names is not None:
            result["names"] = np.asarray([names[c] for c in result["classes"]], dtype=str)
    from .checkpoint import atomic_write, atomic_write_text

    if out.suffix == ".csv":
        atomic_write_text(out, _csv_text(model, outputs, result, names))
    else:
        def write(tmp):
            with open(tmp, "wb") as fh:
                np.savez(fh, **result)
        atomic_write(out, write)
    return len(outputs)


PREDICT_BATCH = 1024  # inputs predicted at once


def check_input_size(array_shape: tuple[int, ...], shape: tuple[int, ...]) -> None:
    """A DataError unless an array of inputs of ``array_shape`` (examples first) holds as
    many values per example as the net's input ``shape``."""
    per_example, size = tuple(array_shape[1:]), int(np.prod(shape))
    if int(np.prod(per_example)) == size:
        return
    expects = "x".join(map(str, shape))
    if not per_example:  # a 1-D array: one value per example
        one = f" (one example of them is shape (1, {size}))" if array_shape[0] == size else ""
        raise DataError(f"inputs are an array of shape {tuple(array_shape)}, one value per "
                        f"example, but the net expects {expects} per example{one}")
    raise DataError(f"inputs are {'x'.join(map(str, per_example))} per example but the net "
                    f"expects {expects}")


def as_input(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inputs shaped as the net's input, or a DataError when their size differs."""
    check_input_size(x.shape, shape)
    if x.shape[1:] != shape:
        x = x.reshape((len(x), *shape))
    return x


def streamed_inputs(source, shape: tuple[int, ...], stats: dict | None):
    """The inputs of a streamed source (runtime/data_inputs.py's open_inputs) in batches of
    PREDICT_BATCH, in order, shaped and normalized as :func:`predict_file` treats inputs
    read whole: only a few batches are in memory at once."""
    from .stream import BatchReader, default_workers, read_batches

    check_input_size((len(source), *source.example_shape), shape)
    mean = std = None
    if stats is not None and stats.get("mean") is not None:
        mean, std = (np.asarray(stats[k], np.float32).reshape(shape) for k in ("mean", "std"))
    reader = BatchReader(source, np.arange(len(source)), shape, "input", mean=mean, std=std,
                         finite=False)  # a NaN input predicts NaN, as read whole
    for x, _, _ in ctrl_c_to_this_process_only(
            read_batches(reader, np.arange(len(source)), PREDICT_BATCH, default_workers())):
        yield x


def _prediction_names(model, class_names) -> list[str] | None:
    """The names predictions get: one per class (softmax N: N; a single sigmoid: 2, for 0
    and 1) or, for a multi-task sigmoid N, one per task; None when they do not fit."""
    if not class_names or model.loss_name == "mse":
        return None
    if is_multitask(model):
        return task_names(model, class_names)
    k = int(np.prod(model.output_shape)) if model.loss_name == "cross_entropy" else 2
    return [str(n) for n in class_names] if len(class_names) == k else None


def _csv_text(model, outputs: np.ndarray, result: dict, names: list[str] | None) -> str:
    """predict's csv: a header row (see :func:`predict_file`), then one row per input."""
    flat = outputs.reshape(len(outputs), -1)
    width = flat.shape[1]
    heads = ["output"] if width == 1 else [f"output_{k}" for k in range(width)]
    if names is not None and "names" in result and model.loss_name == "cross_entropy":
        heads = list(names)  # a softmax's outputs are its classes' probabilities
    classes = result.get("classes")
    if classes is not None and classes.ndim == 2:
        heads += [f"class_{k}" for k in range(classes.shape[1])]
    elif classes is not None:
        heads.append("class")
    if "names" in result:
        heads.append("name")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(heads)
    for i, row in enumerate(flat):
        cells = [f"{v:.8g}" for v in row]
        if classes is not None:
            cells += [int(c) for c in np.atleast_1d(classes[i])]
        if "names" in result:
            cells.append(result["names"][i])
        writer.writerow(cells)
    return buffer.getvalue()
