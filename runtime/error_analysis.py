"""The course's error analysis: `netc eval RUN --errors K` and `--errors-summary CSV`.

--errors K looks at one split (dev, else test, else train; or --split) and takes the K
examples the net gets wrong with the most confidence (the probability it gives its wrong
prediction, highest first). It writes `errors.csv` (split, index, true, predicted,
probability, and an empty category column for the user to tag, as the course's
spreadsheet), and for image inputs `errors.png`, a grid of those examples; for vector inputs
it prints them as a table.

--errors-summary CSV counts the tagged categories: the share of errors in each is the
ceiling on what fixing them all could gain ("fixing them all would cut dev error from 10.0%
to 7.0%"), the course's way to choose what to work on.

A binary (sigmoid) net predicts class 1 when its output is above 0.5, as its accuracy
counts; the probability is that of the predicted class. Examples with an unknown (NaN)
label are never errors.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import atomic_write, atomic_write_text
from .data import DataError, apply_normalization
from .diagnose import read_final
from .errors import EXIT_OK, RunError, UsageError

COLUMNS = ("split", "index", "true", "predicted", "probability", "category")
MAX_SHOWN = 100          # images in errors.png (errors.csv holds all K)
TAG_SEPARATORS = (";", "|", ",")


@dataclass
class Analysis:
    """What --errors found: the report (as --json prints it) and what the table needs: `x`
    holds the examples of `rows` only, in their order (the rest were never read back)."""

    report: dict
    x: np.ndarray
    pred: Predictions
    rows: np.ndarray
    title: str
    names: list | None


@dataclass
class Predictions:
    """One split's predictions: the true and predicted class and the probability of the
    predicted class per example; `known` is False where the label is unknown (NaN);
    `index` is each example's position in the split (all of them in order, unless
    `skip_bad` left some out)."""

    split: str
    truth: np.ndarray
    predicted: np.ndarray
    probability: np.ndarray
    known: np.ndarray
    index: np.ndarray

    @property
    def wrong(self) -> np.ndarray:
        """Indices of the wrong predictions, the most confident first (ties: lower index)."""
        idx = np.flatnonzero(self.known & (self.truth != self.predicted))
        return idx[np.lexsort((idx, -self.probability[idx]))]


def require_classifier(model) -> None:
    """--errors needs class predictions: softmax, or a single sigmoid output."""
    if model.loss_name == "mse":
        raise RunError("--errors needs a classifier (a softmax or sigmoid output); this net "
                       "is a regression (loss mse), so no prediction is right or wrong")
    width = int(np.prod(model.output_shape))
    if model.loss_name == "binary_cross_entropy" and width != 1:
        raise RunError(f"--errors needs a softmax or a single sigmoid output; this net has "
                       f"{width} sigmoid outputs (multi-label)")


def predictions(model, out: np.ndarray, y: np.ndarray, split: str,
                index: np.ndarray | None = None) -> Predictions:
    """True and predicted classes and the probability of the prediction, from outputs
    (of the split's examples at `index`; default: all of them, in order)."""
    out = np.asarray(out, np.float64)
    y = np.asarray(y)
    if model.loss_name == "cross_entropy":
        predicted = out.argmax(axis=-1)
        probability = np.take_along_axis(out, predicted[:, None], axis=-1)[:, 0]
        truth = y.astype(np.int64) if y.ndim == 1 else y.argmax(axis=-1)
        known = np.ones(len(y), bool)
    else:
        p = out.reshape(len(out), -1)[:, 0]
        predicted = (p > 0.5).astype(np.int64)
        probability = np.where(predicted == 1, p, 1 - p)
        label = y.reshape(len(y), -1)[:, 0].astype(np.float64)
        known = ~np.isnan(label)
        truth = (np.nan_to_num(label) > 0.5).astype(np.int64)
    index = np.arange(len(y)) if index is None else np.asarray(index, np.int64)
    return Predictions(split, truth, predicted, probability, known, index)


def choose_split(parts: dict, asked: str | None) -> tuple[str, str]:
    """(split, a note on why): --split when given, else dev, else test, else train."""
    if asked == "all":
        raise UsageError("--errors looks at one split: give --split train, train_dev, dev or "
                       "test (or leave it out for dev)")
    if asked is not None:
        if asked not in parts:
            raise RunError(f"the run has no {asked} split (it has: {', '.join(parts)})")
        return asked, ""
    for name in ("dev", "test", "train"):
        if name in parts:
            note = "" if name == "dev" else f" (the run has no dev split, so the {name} split)"
            return name, note
    raise RunError("the run has no split to analyse")  # pragma: no cover - train always exists


def class_name(names, c: int) -> str:
    return str(names[c]) if names and 0 <= c < len(names) else str(c)


def csv_text(pred: Predictions, rows: np.ndarray, names=None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for i in rows:
        writer.writerow([pred.split, int(pred.index[i]), class_name(names, int(pred.truth[i])),
                         class_name(names, int(pred.predicted[i])),
                         f"{pred.probability[i]:.6f}", ""])
    return buffer.getvalue()


# ---- the picture and the table ---------------------------------------------------------


def _pixels(image: np.ndarray) -> tuple[np.ndarray, dict]:
    """An HxWxC example as imshow wants it, with its keyword arguments."""
    image = np.asarray(image, np.float64)
    if image.shape[-1] == 3:
        lo, hi = image.min(), image.max()
        if lo < 0 or hi > 1:  # not [0, 1] pixels: stretch this image to show it
            image = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
        return image, {}
    channel = image[..., 0]
    inside = channel.min() >= 0 and channel.max() <= 1
    return channel, {"cmap": "gray_r" if inside else "gray",
                     **({"vmin": 0, "vmax": 1} if inside else {})}


def error_grid(images: np.ndarray, pred: Predictions, rows: np.ndarray, path: Path,
               title: str, names=None) -> None:
    """errors.png: each wrong example with its true class, the prediction and its
    probability, the most confident first (row by row); `images[j]` is the example of
    `rows[j]` (the first MAX_SHOWN are drawn)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = rows[:MAX_SHOWN]
    cols = min(len(shown), 8) or 1
    lines = max(1, math.ceil(len(shown) / cols))
    fig = Figure(figsize=(1.55 * cols + 0.3, 1.85 * lines + 0.7), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(lines, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= len(shown):
            continue
        i = int(shown[k])
        pixels, style = _pixels(images[k])
        ax.imshow(pixels, interpolation="nearest", **style)
        true = class_name(names, int(pred.truth[i]))[:12]
        guess = class_name(names, int(pred.predicted[i]))[:12]
        ax.set_title(f"#{int(pred.index[i])} true {true}\npred {guess} ({pred.probability[i]:.2f})",
                     fontsize=8, color="#b00020", pad=3)
    more = f" (the first {len(shown)} shown)" if len(rows) > len(shown) else ""
    fig.suptitle(title + more, fontsize=10)
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png"))


def print_table(features: np.ndarray, pred: Predictions, rows: np.ndarray, title: str,
                names=None, shown_features: int = 6) -> None:
    """The wrong examples as a table; `features[j]` is the example of `rows[j]`."""
    from rich.console import Console
    from rich.table import Table

    flat = features.reshape(len(features), -1)
    width = flat.shape[1]
    cols = [f"x{j + 1}" for j in range(min(width, shown_features))]
    table = Table("rank", "index", "true", "predicted", "probability", *cols,
                  *(["..."] if width > shown_features else []), title=title)
    for rank, i in enumerate(rows, 1):
        values = [f"{v:.4g}" for v in flat[rank - 1, :shown_features]]
        table.add_row(str(rank), str(int(pred.index[i])), class_name(names, int(pred.truth[i])),
                      class_name(names, int(pred.predicted[i])),
                      f"{pred.probability[i]:.4f}", *values,
                      *(["..."] if width > shown_features else []))
    Console(highlight=False).print(table)


# ---- netc eval RUN --errors K -----------------------------------------------------------


def analyse(run_dir: Path, model, variables, k: int, split: str | None = None,
            out_dir: Path | None = None) -> Analysis:
    """Find the K most confidently wrong examples of a split; write errors.csv (and
    errors.png for images) into out_dir (default: the run folder). Returns a report. The
    split is predicted in one pass, batch by batch, in memory or streamed from disk as the
    spec's `stream` setting says (runtime/split_pass.py); only the K examples are read
    back, for the picture or the table."""
    from .split_pass import raw_examples, run_info, run_splits, split_pass

    require_classifier(model)
    run_dir = Path(run_dir)
    info = run_info(run_dir)
    splits, stats = run_splits(model, variables, run_dir, info)
    parts = dict(splits.parts())
    name, note = choose_split(parts, split)
    data = parts[name]
    m = len(splits.train)
    seen = split_pass(model, variables, data, model.net.train.batch_of(m), stats)
    pred = predictions(model, seen.outputs, seen.y, name, seen.positions)
    wrong = pred.wrong
    rows = wrong[:k]
    names = info.get("class_names") or (list(splits.class_names) if splits.class_names
                                        else None)
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"run": str(run_dir), "net": model.net.name, "split": name,
              "examples": len(data), "errors": len(wrong), "shown": len(rows),
              "csv": str(out_dir / "errors.csv"), "image": None, "note": note.strip(" ()"),
              "rows": [{"split": name, "index": int(pred.index[i]), "true": int(pred.truth[i]),
                        "predicted": int(pred.predicted[i]),
                        "probability": float(pred.probability[i])} for i in rows]}
    atomic_write_text(out_dir / "errors.csv", csv_text(pred, rows, names))
    which = (f"all {len(rows)}" if len(rows) == len(wrong)
             else f"the {len(rows)} most confident of {len(wrong)}")
    title = f"{model.net.name}: {which} wrong {name} examples (of {len(data)})"
    shown = rows[:MAX_SHOWN] if len(model.input_shape) == 3 else rows
    examples = raw_examples(data, pred.index[shown])  # only these are read back
    if len(model.input_shape) == 3 and len(rows):
        error_grid(examples.astype(np.float64), pred, rows, out_dir / "errors.png", title,
                   names)
        report["image"] = str(out_dir / "errors.png")
    elif stats is not None and len(rows):  # the table shows the features the net sees
        examples = apply_normalization(examples, stats)
    return Analysis(report, examples, pred, rows, title, names)


def cmd_errors(args, model, variables) -> int:
    try:
        found = analyse(Path(args.dir), model, variables, args.errors, args.split, args.out)
    except DataError as exc:
        raise RunError(f"data: {exc}") from None
    report, rows = found.report, found.rows
    if args.json:
        print(json.dumps(report))
        return EXIT_OK
    split, total = report["split"], report["examples"]
    print(f"{report['net']}: {report['errors']} of {total} {split} examples are wrong"
          f"{' (' + report['note'] + ')' if report['note'] else ''}")
    if report["image"] is None and len(rows):
        print_table(found.x, found.pred, rows, found.title, found.names)
    written = [report["csv"]] + ([report["image"]] if report["image"] else [])
    print(f"the {len(rows)} most confidently wrong written to {' and '.join(written)}")
    if len(rows):
        print("tag each row's category (e.g. blurry; mislabeled), then: netc eval "
              f"{args.dir} --errors-summary {report['csv']}")
    return EXIT_OK


# ---- netc eval RUN --errors-summary CSV ---------------------------------------------------


def read_tags(path: Path) -> dict[str, list[list[str]]]:
    """{split: [the categories of each row]} from a tagged errors.csv. Raises RunError."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RunError(f"'{path}' not found (write it with netc eval RUN --errors K)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"cannot read '{path}': {exc}") from None
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        missing = [c for c in ("split", "category") if c not in header]
        if missing:
            raise RunError(f"'{path}' is not an errors.csv: it has no {' or '.join(missing)} "
                           f"column (columns: {', '.join(COLUMNS)})")
        by_split: dict[str, list[list[str]]] = {}
        for row in reader:
            line = reader.line_num
            if None in row:
                raise RunError(f"'{path}' line {line} has more cells than its header")
            if any(v is None for v in row.values()):
                raise RunError(f"'{path}' line {line} has fewer cells than its header")
            split = row["split"].strip()
            if not split:
                raise RunError(f"'{path}' line {line} has no split")
            by_split.setdefault(split, []).append(split_tags(row["category"]))
    except csv.Error as exc:
        raise RunError(f"'{path}' is not valid CSV: {exc}") from None
    if not by_split:
        raise RunError(f"'{path}' has no rows: no errors to summarise")
    return by_split


def split_tags(cell: str) -> list[str]:
    """A category cell as its tags: 'blurry; Dog' -> ['blurry', 'dog'] (one error may have
    several, as in the course's spreadsheet)."""
    for sep in TAG_SEPARATORS[1:]:
        cell = cell.replace(sep, TAG_SEPARATORS[0])
    tags = [t.strip().lower() for t in cell.split(TAG_SEPARATORS[0])]
    return list(dict.fromkeys(t for t in tags if t))


def summarise(by_split: dict[str, list[list[str]]], final: dict) -> dict:
    """Per split: each category's count, share of the errors examined and the error the
    split would have with all of them fixed (the ceiling of the course's error analysis)."""
    summary = {}
    for split, rows in by_split.items():
        figures = final.get(split)
        if not isinstance(figures, dict):
            have = ", ".join(s for s, f in final.items() if isinstance(f, dict))
            raise RunError(f"errors.csv holds {split} rows but the run has no {split} split "
                           f"(it has: {have})")
        if "accuracy" not in figures:
            raise RunError(f"the run has no {split} accuracy: error analysis needs a classifier")
        error = 1.0 - float(figures["accuracy"])
        n = len(rows)
        counts: dict[str, int] = {}
        for tags in rows:
            for tag in tags:
                counts[tag] = counts.get(tag, 0) + 1
        categories = [{"category": tag, "count": c, "share": c / n,
                       "error_if_fixed": error * (1 - c / n)}
                      for tag, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        summary[split] = {"errors": n, "error": error, "categories": categories,
                          "untagged": sum(1 for tags in rows if not tags)}
    return summary


def render_summary(summary: dict, source: str) -> str:
    lines = []
    for split, s in summary.items():
        n, error = s["errors"], s["error"]
        lines.append(f"{source}: {n} {split} errors examined; {split} error "
                     f"{100 * error:.1f}% (run.json). What fixing each category could gain "
                     "at most:")
        width = max([len(c["category"]) for c in s["categories"]] + [8])
        for c in s["categories"]:
            lines.append(f"  {c['category'] + ':':<{width + 1}} {c['count']} of {n} errors "
                         f"({100 * c['share']:.0f}%): fixing them all would cut {split} "
                         f"error from {100 * error:.1f}% to {100 * c['error_if_fixed']:.1f}%")
        if s["untagged"]:
            lines.append(f"  {'untagged:':<{width + 1}} {s['untagged']} of {n} errors "
                         f"({100 * s['untagged'] / n:.0f}%): no category yet")
        if not s["categories"]:
            lines.append("  (no row is tagged yet: fill in the category column)")
        if sum(c["count"] for c in s["categories"]) > n - s["untagged"]:
            lines.append("  (some errors have several categories: the shares add up to more)")
    return "\n".join(lines)


def cmd_errors_summary(args) -> int:
    info = read_final(args.dir)
    path = Path(args.errors_summary)
    if not path.exists() and (Path(args.dir) / path).exists():
        path = Path(args.dir) / path  # errors.csv in the run folder
    summary = summarise(read_tags(path), info["final"])
    if args.json:
        print(json.dumps({"run": str(args.dir), "csv": str(path), "splits": summary}))
    else:
        print(render_summary(summary, str(path)))
    return EXIT_OK
