"""Loading, splitting and preparing training data (numpy only; no JAX here).

Three steps, each a plain function:

1. :func:`load_source` turns a data source (a built-in name such as ``moons`` or a file path)
   into a dict of raw numpy arrays: ``x``, ``y`` and optionally ``x_dev``/``y_dev``,
   ``x_test``/``y_test``, ``x_train_dev``/``y_train_dev`` (and ``class_names`` for image
   folders).
2. :func:`make_splits` cuts those arrays into train/dev/test :class:`Splits`, and, when
   asked, the course's train-dev split (held out of train: same distribution, not trained on).
3. :func:`prepare` checks the splits against the net (input shape, kind of labels), reshapes and
   optionally normalizes them, and returns the normalization statistics so that prediction
   can reuse them through :func:`apply_normalization`.

Every problem with the user's data is reported as a :class:`DataError` with a single-line
message; numpy/h5py/Pillow exceptions never escape. The built-in data sets are in
runtime/data_builtin.py, the file readers in runtime/data_files.py.
"""

from __future__ import annotations

import math
import pathlib
import re
from dataclasses import dataclass

import numpy as np

from .data_base import STREAM_OPTIONS, DataError
from .data_builtin import BUILTINS, load_builtin
from .data_files import is_numeric, load_file

__all__ = [
    "DataError",
    "Dataset",
    "Splits",
    "add_split_file",
    "apply_normalization",
    "brought_parts",
    "check_examples",
    "check_kinds",
    "load_source",
    "make_splits",
    "prepare",
    "resolve_path",
    "shape_labels",
    "split_indices",
    "standard_stats",
]

LABELS = ("classes", "binary", "values")  # compiler/losses.py: what each loss reads
NORMALIZATIONS = ("none", "standard")


@dataclass(frozen=True, eq=False)
class Dataset:
    """One split: inputs ``x`` (m, *input_shape) and labels ``y`` (m,) or (m, k)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True, eq=False)
class Splits:
    """Train/dev/test splits; ``dev``/``test`` are None when empty. ``train_dev`` is the
    course's train-dev split: examples like train's that are not trained on (None unless
    the spec sets ``train_dev F`` or the data brings ``x_train_dev``/``y_train_dev``).
    ``csv_layout`` is how a csv file's columns became features (runtime/data_csv.py), which
    prediction applies to new inputs."""

    train: Dataset
    dev: Dataset | None
    test: Dataset | None
    class_names: tuple[str, ...] | None = None
    train_dev: Dataset | None = None
    csv_layout: dict | None = None

    def parts(self) -> list[tuple[str, Dataset]]:
        """The non-empty splits as ``(name, dataset)`` pairs: train, train_dev, dev, test."""
        named = [("train", self.train), ("train_dev", self.train_dev), ("dev", self.dev),
                 ("test", self.test)]
        return [(name, ds) for name, ds in named if ds is not None]


def _is_bare_word(source: str) -> bool:
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", source) is not None


def resolve_path(source: str, base_dir) -> pathlib.Path:
    """A data path as given, or relative to ``base_dir`` (the spec's folder)."""
    path = pathlib.Path(source).expanduser()
    return path if path.is_absolute() else pathlib.Path(base_dir) / path


def load_source(
    source: str,
    options: dict | None = None,
    *,
    seed: int = 0,
    base_dir: str | pathlib.Path = ".",
) -> dict[str, np.ndarray]:
    """Load a data source into raw arrays ``x``, ``y`` (+ ``x_dev``/``y_dev``,
    ``x_test``/``y_test``, ``x_train_dev``/``y_train_dev``, and ``class_names`` where the
    data names its classes).

    ``source`` is a built-in name (``moons``, ``circles``, ``flower``, ``digits``) or a path
    (relative paths are resolved against ``base_dir``). A bare word that is not a built-in is
    read as a path only when such a file or folder exists; otherwise it is an unknown built-in.
    ``seed`` is the default random seed of the random built-ins (``moons``, ``circles``).
    The streaming options (``workers``, ``skip_bad``: runtime/stream.py) are ignored here.
    The options ``dev`` and ``test`` name a file (or image folder) holding that split
    (``data "train_catvnoncat.h5" test="test_catvnoncat.h5"``): see :func:`add_split_file`.
    """
    options = {k: v for k, v in (options or {}).items() if k not in STREAM_OPTIONS}
    source = str(source)
    split_files = {part: str(options.pop(part)) for part in SPLIT_FILES if part in options}
    path = resolve_path(source, base_dir)
    if source in BUILTINS or (_is_bare_word(source) and not path.exists()):
        if split_files:
            part = next(iter(split_files))
            raise DataError(f"{part}= names the {part} split's own file, for data read from "
                            f"a file; '{source}' is not one")
        return load_builtin(source, options, seed)
    if not path.exists():
        raise DataError(f"data file '{source}' not found (looked in {path.resolve()})")
    arrays = load_file(path, source, options)
    for part, name in split_files.items():
        arrays = add_split_file(arrays, source, part, name, options, base_dir=base_dir)
    return arrays


SPLIT_FILES = ("dev", "test")  # the data line's options naming a split's own file


def add_split_file(arrays: dict, source: str, part: str, name: str, options: dict, *,
                   base_dir: str | pathlib.Path = ".", load=load_file) -> dict:
    """``arrays`` (read from ``source``) with the ``part`` split ("dev" or "test") read from
    the file ``name``: its ``x_PART``/``y_PART`` (the course's ``test_set_x``/``test_set_y``)
    or else its ``x``/``y``; ``options`` (``label=``, ``onehot=``, ``size=``, ``mode=``)
    apply to it too, and a csv file's one-hot columns take the main file's categories.

    The split's fraction in ``split`` is then ignored, as for a split the data brings. Class
    names come from either file; where both name classes, a class id of the split's file is
    mapped to the id of the same name in ``source`` (image folders whose test folder lacks a
    class), and a name ``source`` does not have is an error. ``load(path, name, options,
    part=part)`` reads the file (runtime/stream.py passes its streamed opener)."""
    if f"x_{part}" in arrays:
        raise DataError(f"data file '{source}' brings its own {part} split (x_{part}, "
                        f"y_{part}) and {part}=\"{name}\" names another; keep one")
    path = resolve_path(name, base_dir)
    if not path.exists():
        raise DataError(f"{part} file '{name}' not found (looked in {path.resolve()})")
    extra = {"layout": arrays["csv_layout"]} if "csv_layout" in arrays else {}
    more = load(path, name, options, part=part, **extra)
    out = {**arrays, f"x_{part}": more[f"x_{part}"], f"y_{part}": more[f"y_{part}"]}
    mine, theirs = arrays.get("class_names"), more.get("class_names")
    if theirs is not None and mine is None:
        out["class_names"] = theirs
    elif theirs is not None and list(theirs) != list(mine):
        out[f"y_{part}"] = _renumber(more[f"y_{part}"], list(theirs), list(mine), name, source)
    return out


def _renumber(y: np.ndarray, names: list[str], target: list[str], name: str,
              source: str) -> np.ndarray:
    """Class ids numbered by ``names`` (the classes of file ``name``) renumbered by
    ``target`` (those of ``source``)."""
    y = np.asarray(y)
    ids = y.reshape(len(y), -1)
    missing = [n for n in names if n not in target]
    if missing:
        raise DataError(f"class '{missing[0]}' of '{name}' is not a class of '{source}' "
                        f"({', '.join(target)})")
    if ids.shape[1] != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"'{name}' lists its classes as {', '.join(names)} but '{source}' as "
                        f"{', '.join(target)}")
    if ids.size and (ids.min() < 0 or ids.max() >= len(names)):
        raise DataError(f"a class id of '{name}' is outside its {len(names)} class names")
    lookup = np.asarray([target.index(n) for n in names])
    return lookup[ids[:, 0]].astype(y.dtype).reshape(y.shape)


# --------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------


def _check_split(split) -> tuple[float, float, float]:
    try:
        fractions = tuple(float(f) for f in split)
    except (TypeError, ValueError):
        raise DataError(f"split {split!r} must be three fractions train, dev, test") from None
    if len(fractions) != 3 or any(not math.isfinite(f) or f < 0 for f in fractions):
        raise DataError(f"split {split!r} must be three non-negative fractions train, dev, test")
    if fractions[0] <= 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise DataError(
            f"split {split!r} must sum to 1 with a positive train fraction, e.g. 0.8, 0.1, 0.1"
        )
    return fractions


def _count(fraction: float, m: int) -> int:
    """``int(fraction * m)``, guarded against float round-off just below a whole number."""
    return int(fraction * m + 1e-9)


def _dataset(x: np.ndarray, y: np.ndarray) -> Dataset | None:
    return Dataset(x=x, y=y) if len(x) > 0 else None


def split_indices(m: int, *, split=(0.8, 0.1, 0.1), seed: int = 0,
                  train_dev: float | None = None,
                  brought: tuple[str, ...] = ()) -> dict[str, np.ndarray | None]:
    """Which of ``m`` rows go to each split: ``{"train", "train_dev", "dev", "test"}`` ->
    index arrays into the rows, None for a part in ``brought`` (the data brings its own
    ``dev``, ``test`` or ``train_dev``). The rules are :func:`make_splits`'s; the streamed
    reader (runtime/stream.py) cuts its splits with this same function."""
    train_frac, dev_frac, test_frac = _check_split(split)
    if "dev" in brought:
        dev_frac = 0.0
    if "test" in brought:
        test_frac = 0.0
    total = train_frac + dev_frac + test_frac
    n_dev = _count(dev_frac / total, m)
    n_test = _count(test_frac / total, m)
    n_train = m - n_dev - n_test
    n_train_dev = 0
    if train_dev is not None and "train_dev" not in brought:
        n_train_dev = _train_dev_count(train_dev, n_train)
    order = np.arange(m)
    if n_dev or n_test or n_train_dev:
        order = np.random.default_rng(seed).permutation(m)
    cut = {
        "train": order[: n_train - n_train_dev],
        "train_dev": order[n_train - n_train_dev : n_train],
        "dev": order[n_train : n_train + n_dev],
        "test": order[n_train + n_dev :],
    }
    return {part: None if part in brought else rows for part, rows in cut.items()}


def brought_parts(arrays: dict) -> tuple[str, ...]:
    """The splits the data brings as its own arrays (``x_dev``/``y_dev`` ...)."""
    return tuple(part for part in ("dev", "test", "train_dev")
                 if f"x_{part}" in arrays and f"y_{part}" in arrays)


def make_splits(arrays: dict, *, split=(0.8, 0.1, 0.1), seed: int = 0,
                train_dev: float | None = None) -> Splits:
    """Cut raw arrays into train/dev/test (and train-dev).

    Parts the arrays bring (``x_dev``/``y_dev``, ``x_test``/``y_test``,
    ``x_train_dev``/``y_train_dev``) are used as given and their fraction is ignored; the
    remaining ``x``/``y`` rows are shuffled with ``np.random.default_rng(seed)`` and cut in
    the ratio of the remaining fractions (dev and test counts rounded down, train gets the
    rest). ``train_dev`` (a fraction in (0, 1)) then holds out that share of the train rows,
    rounded down, as the train-dev split: the last rows of the shuffled train part, so dev
    and test are the same examples with or without it. When nothing is cut off (e.g.
    ``split=(1, 0, 0)`` or both dev and test brought, and no train-dev), train keeps the
    original row order. Empty dev/test become None. The rows come from
    :func:`split_indices`.
    """
    _check_split(split)
    x, y = np.asarray(arrays["x"]), np.asarray(arrays["y"])
    if len(x) != len(y):
        raise DataError(f"x has {len(x)} examples but y has {len(y)}")
    rows = split_indices(len(x), split=split, seed=seed, train_dev=train_dev,
                         brought=brought_parts(arrays))
    parts = {
        part: _dataset(np.asarray(arrays[f"x_{part}"]), np.asarray(arrays[f"y_{part}"]))
        if idx is None else _dataset(x[idx], y[idx])
        for part, idx in rows.items() if part != "train"
    }
    names = arrays.get("class_names")
    class_names = tuple(str(n) for n in names) if names is not None else None
    train = Dataset(x=x[rows["train"]], y=y[rows["train"]])
    return Splits(train=train, dev=parts["dev"], test=parts["test"], class_names=class_names,
                  train_dev=parts["train_dev"])


def _train_dev_count(fraction, n_train: int) -> int:
    """How many of the ``n_train`` training rows ``train_dev FRACTION`` holds out."""
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        fraction = math.nan
    if not 0 < fraction < 1:
        raise DataError(f"train_dev {fraction!r} must be a fraction between 0 and 1, e.g. 0.05")
    count = _count(fraction, n_train)
    if count == 0:
        raise DataError(f"train_dev {fraction:g} of the {n_train} training examples holds out "
                        f"none; raise it to at least {1 / n_train:.3g}")
    return count


# --------------------------------------------------------------------------------------------
# Preparing for a net
# --------------------------------------------------------------------------------------------


def _describe(shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return f"{shape[0]} features"
    return "x".join(str(d) for d in shape) if shape else "scalars"


def check_examples(dtype, example: tuple[int, ...], input_shape: tuple[int, ...],
                   name: str) -> None:
    """Examples of ``dtype`` and shape ``example`` fit a net whose input is ``input_shape``:
    numeric, and the same shape or the same size (rows are then reshaped, row-major)."""
    dtype = np.dtype(dtype)
    if not is_numeric(dtype):
        raise DataError(f"x is not numeric (dtype {dtype}) in {name} split")
    if example != input_shape and math.prod(example) != math.prod(input_shape):
        if len(example) == 1 and len(input_shape) == 1:
            raise DataError(
                f"data has {example[0]} features per example but the net's input is "
                f"{input_shape[0]} ({name} split)"
            )
        raise DataError(
            f"data examples are {_describe(example)} but the net's input is "
            f"{_describe(input_shape)} ({name} split)"
        )


def _shape_x(x: np.ndarray, input_shape: tuple[int, ...], name: str) -> np.ndarray:
    """Reshape x rows to ``input_shape`` (row-major) when the sizes agree, as float32."""
    example = tuple(x.shape[1:])
    check_examples(x.dtype, example, input_shape, name)
    if example != input_shape:
        x = x.reshape((len(x), *input_shape))
    x = x.astype(np.float32)
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        kind = "NaN" if np.isnan(x[row]).any() else "inf"
        raise DataError(f"x holds {kind} in {name} split (row {row})")
    return x


def _first_bad_row(mask: np.ndarray) -> int:
    """Index of the first row where any entry of ``mask`` is true."""
    return int(np.argmax(mask.reshape(len(mask), -1).any(axis=1)))


def _class_labels(y: np.ndarray, n_outputs: int, name: str) -> np.ndarray:
    """Class ids (m,) int32 or probability rows (m, n_outputs) float32."""
    m = len(y)
    if y.ndim == 2 and y.shape[1] == n_outputs and n_outputs > 1:
        y = y.astype(np.float32)
        if np.isnan(y).any():
            row = _first_bad_row(np.isnan(y))
            raise DataError(
                f"y holds NaN in {name} split (row {row}); NaN labels are only allowed "
                f"for sigmoid outputs"
            )
        bad = (y < 0) | ~np.isfinite(y) | (np.abs(y.sum(axis=1, keepdims=True) - 1) > 1e-3)
        if bad.any():
            row = _first_bad_row(bad)
            raise DataError(
                f"one-hot label row {row} in {name} split is not a probability row "
                f"(non-negative, summing to 1)"
            )
        return y
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(m)
    if y.ndim != 1:
        raise DataError(
            f"softmax {n_outputs} needs class ids (m,) or one-hot rows (m, {n_outputs}) "
            f"but y has shape {y.shape} in {name} split"
        )
    if np.issubdtype(y.dtype, np.floating):
        if np.isnan(y).any():
            row = int(np.argmax(np.isnan(y)))
            raise DataError(
                f"y holds NaN in {name} split (row {row}); NaN labels are only allowed "
                f"for sigmoid outputs"
            )
        fractional = ~np.isfinite(y) | (y != np.round(y))
        if fractional.any():
            row = int(np.argmax(fractional))
            raise DataError(
                f"class id {y[row]:g} is not a whole number in {name} split, row {row} "
                f"(softmax labels are class ids 0..{n_outputs - 1} or one-hot rows)"
            )
    out_of_range = (y < 0) | (y >= n_outputs)
    if out_of_range.any():
        row = int(np.argmax(out_of_range))
        raise DataError(
            f"label {y[row]:g} out of range for softmax {n_outputs} "
            f"(classes are 0..{n_outputs - 1}) in {name} split, row {row}"
        )
    return y.astype(np.int32)


def _binary_labels(y: np.ndarray, n_outputs: int, name: str) -> np.ndarray:
    """Targets (m, n_outputs) float32 of 0, 1 or NaN (unknown)."""
    y = y.astype(np.float32)
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != n_outputs:
        raise DataError(
            f"sigmoid {n_outputs} needs labels of shape (m, {n_outputs}) but y has shape "
            f"{y.shape} in {name} split"
        )
    bad = ~(np.isnan(y) | (y == 0) | (y == 1))
    if bad.any():
        row = _first_bad_row(bad)
        value = y[row][bad[row]][0]
        raise DataError(
            f"sigmoid label {value:g} in {name} split, row {row} must be 0, 1 or NaN (unknown)"
        )
    return y


def _regression_targets(y: np.ndarray, n_outputs: int, name: str) -> np.ndarray:
    """Targets (m, n_outputs) float32, finite."""
    y = y.astype(np.float32)
    if y.ndim == 1 and n_outputs == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != n_outputs:
        raise DataError(
            f"regression with {n_outputs} outputs needs targets of shape (m, {n_outputs}) "
            f"but y has shape {y.shape} in {name} split"
        )
    bad = ~np.isfinite(y)
    if bad.any():
        row = _first_bad_row(bad)
        kind = "NaN" if np.isnan(y[row]).any() else "inf"
        raise DataError(
            f"y holds {kind} in {name} split (row {row}); regression targets must be finite"
        )
    return y


def shape_labels(y: np.ndarray, labels: str, n_outputs: int, name: str) -> np.ndarray:
    """Check a split's labels ``y`` for a net (``labels``: what its loss reads) and shape
    them as :func:`prepare` does: class ids (m,) int32, or float32 (m, n_outputs)."""
    if not is_numeric(y.dtype):
        raise DataError(f"y is not numeric (dtype {y.dtype}) in {name} split")
    if labels == "classes":
        return _class_labels(y, n_outputs, name)
    if labels == "binary":
        return _binary_labels(y, n_outputs, name)
    return _regression_targets(y, n_outputs, name)


def standard_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    """Per-feature mean and std over the examples (std 0 replaced by 1)."""
    mean = x.mean(axis=0, dtype=np.float64)
    std = x.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    return {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}


def apply_normalization(x: np.ndarray, stats: dict | None) -> np.ndarray:
    """Apply saved normalization statistics ``{"mean", "std"}`` to a batch ``x``.

    With no statistics (None, or mean None) x is only converted to float32. Flat rows are
    reshaped to the statistics' per-example shape when the sizes agree.
    """
    x = np.asarray(x, dtype=np.float32)
    if not stats or stats.get("mean") is None:
        return np.ascontiguousarray(x)
    mean = np.asarray(stats["mean"], dtype=np.float32)
    std = np.asarray(stats["std"], dtype=np.float32)
    if x.shape[1:] != mean.shape:
        if math.prod(x.shape[1:]) != math.prod(mean.shape):
            raise DataError(
                f"data examples are {_describe(tuple(x.shape[1:]))} but the saved "
                f"normalization is for {_describe(tuple(mean.shape))}"
            )
        x = x.reshape((len(x), *mean.shape))
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def check_kinds(labels: str, normalize: str) -> None:
    """``labels`` and ``normalize`` are among the kinds :func:`prepare` knows."""
    if labels not in LABELS:
        raise DataError(f"unknown kind of labels '{labels}'; expected one of: "
                        f"{', '.join(LABELS)}")
    if normalize not in NORMALIZATIONS:
        raise DataError(
            f"unknown normalize '{normalize}'; expected one of: {', '.join(NORMALIZATIONS)}"
        )


def prepare(
    splits: Splits,
    *,
    input_shape: tuple[int, ...],
    labels: str,
    n_outputs: int,
    normalize: str = "none",
) -> tuple[Splits, dict]:
    """Check and shape the splits for a net; optionally standardize x with train statistics.

    Returns the new splits (x float32, y int32 class ids or float32 targets, all C-contiguous)
    and ``{"mean": ..., "std": ...}`` (both None unless ``normalize="standard"``).
    """
    input_shape = tuple(int(d) for d in input_shape)
    check_kinds(labels, normalize)
    if splits.train is None or len(splits.train.x) == 0:
        raise DataError("train split is empty")
    shaped: dict[str, Dataset | None] = {"train": None, "dev": None, "test": None,
                                         "train_dev": None}
    for name, ds in splits.parts():
        x, y = np.asarray(ds.x), np.asarray(ds.y)
        if len(x) != len(y):
            raise DataError(f"x has {len(x)} examples but y has {len(y)} in {name} split")
        shaped[name] = Dataset(
            x=_shape_x(x, input_shape, name), y=shape_labels(y, labels, n_outputs, name)
        )
    stats: dict = {"mean": None, "std": None}
    if normalize == "standard":
        stats = standard_stats(shaped["train"].x)
    result = {
        name: None if ds is None else Dataset(apply_normalization(ds.x, stats), ds.y)
        for name, ds in shaped.items()
    }
    prepared = Splits(result["train"], result["dev"], result["test"], splits.class_names,
                      train_dev=result["train_dev"])
    return prepared, stats
