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
message; numpy/h5py/Pillow exceptions never escape.
"""

from __future__ import annotations

import csv
import difflib
import math
import pathlib
import re
from dataclasses import dataclass
from zipfile import BadZipFile

import numpy as np

__all__ = [
    "DataError",
    "Dataset",
    "Splits",
    "apply_normalization",
    "load_source",
    "make_splits",
    "prepare",
]

BUILTINS = ("moons", "circles", "flower", "digits")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SPLIT_KEYS = ("x_dev", "y_dev", "x_test", "y_test", "x_train_dev", "y_train_dev")
LABELS = ("classes", "binary", "values")  # compiler/losses.py: what each loss reads
NORMALIZATIONS = ("none", "standard")
# What numpy, zipfile, h5py and Pillow raise on unreadable or malformed files.
LIBRARY_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError, BadZipFile)
SUPPORTED_KINDS = ".npz, .csv, .h5/.hdf5, or a folder of images (one subfolder per class)"


class DataError(Exception):
    """A problem with the user's data, described in one line (the CLI prints it and exits 1)."""


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
    the spec sets ``train_dev F`` or the data brings ``x_train_dev``/``y_train_dev``)."""

    train: Dataset
    dev: Dataset | None
    test: Dataset | None
    class_names: tuple[str, ...] | None = None
    train_dev: Dataset | None = None

    def parts(self) -> list[tuple[str, Dataset]]:
        """The non-empty splits as ``(name, dataset)`` pairs: train, train_dev, dev, test."""
        named = [("train", self.train), ("train_dev", self.train_dev), ("dev", self.dev),
                 ("test", self.test)]
        return [(name, ds) for name, ds in named if ds is not None]


# --------------------------------------------------------------------------------------------
# Option helpers
# --------------------------------------------------------------------------------------------


def _check_options(what: str, options: dict, allowed: tuple[str, ...]) -> None:
    """Reject options that ``what`` does not understand, naming the allowed ones."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        allowed_text = ", ".join(allowed) if allowed else "none"
        raise DataError(
            f"unknown option '{unknown[0]}' for {what}; allowed options: {allowed_text}"
        )


def _int_option(options: dict, name: str, default: int, *, minimum: int = 0) -> int:
    """Read an integer option (given as int, integral float or numeric string)."""
    value = options.get(name, default)
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
        if not number.is_integer():
            raise ValueError
        result = int(number)
    except (TypeError, ValueError):
        raise DataError(f"option {name}={value!r} must be a whole number") from None
    if result < minimum:
        raise DataError(f"option {name}={result} must be at least {minimum}")
    return result


def _float_option(options: dict, name: str, default: float, *, minimum: float = 0.0) -> float:
    """Read a non-negative float option (given as number or numeric string)."""
    value = options.get(name, default)
    try:
        if isinstance(value, bool):
            raise TypeError
        result = float(value)
    except (TypeError, ValueError):
        raise DataError(f"option {name}={value!r} must be a number") from None
    if not math.isfinite(result) or result < minimum:
        raise DataError(f"option {name}={value!r} must be a number >= {minimum:g}")
    return result


# --------------------------------------------------------------------------------------------
# Built-in data sets
# --------------------------------------------------------------------------------------------


def _two_curves(outer: tuple[np.ndarray, np.ndarray], inner: tuple[np.ndarray, np.ndarray],
                noise: float, gen: np.random.RandomState):
    """The tail shared by sklearn's make_moons and make_circles (shuffle=True), step for step
    so that the numbers are bit-identical: stack the two curves, shuffle, add noise."""
    x = np.vstack([np.append(outer[0], inner[0]), np.append(outer[1], inner[1])]).T
    y = np.hstack([np.zeros(len(outer[0]), dtype=np.intp), np.ones(len(inner[0]), dtype=np.intp)])
    order = np.arange(len(y))
    gen.shuffle(order)
    x, y = x[order], y[order]
    x += gen.normal(scale=noise, size=x.shape)
    return {"x": x.astype(np.float32), "y": y.astype(np.float32).reshape(-1, 1)}


# moons and circles are sklearn's make_moons / make_circles, re-stated in numpy: importing
# sklearn (and scipy under it) costs ~1-2 s, more than training the course's moons model.
# tests/test_data.py asserts bit-identity with sklearn.


def _moons(options: dict, seed: int) -> dict[str, np.ndarray]:
    """sklearn's two interleaving half circles; y is (m, 1) float32 for a sigmoid output."""
    _check_options("built-in data set 'moons'", options, ("n", "noise", "seed"))
    n = _int_option(options, "n", 300, minimum=2)
    noise = _float_option(options, "noise", 0.2)
    gen = np.random.RandomState(_int_option(options, "seed", seed))
    n_out = n // 2
    n_in = n - n_out
    outer = (np.cos(np.linspace(0, np.pi, n_out)), np.sin(np.linspace(0, np.pi, n_out)))
    inner = (1 - np.cos(np.linspace(0, np.pi, n_in)),
             1 - np.sin(np.linspace(0, np.pi, n_in)) - 0.5)
    return _two_curves(outer, inner, noise, gen)


def _circles(options: dict, seed: int) -> dict[str, np.ndarray]:
    """sklearn's two concentric circles; y is (m, 1) float32 for a sigmoid output."""
    _check_options("built-in data set 'circles'", options, ("n", "noise", "factor", "seed"))
    n = _int_option(options, "n", 300, minimum=2)
    noise = _float_option(options, "noise", 0.05)
    factor = _float_option(options, "factor", 0.5)
    if factor >= 1:
        raise DataError(f"option factor={factor:g} must be below 1 (inner/outer circle ratio)")
    gen = np.random.RandomState(_int_option(options, "seed", seed))
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
    outer = (np.cos(t_out), np.sin(t_out))
    inner = (np.cos(t_in) * factor, np.sin(t_in) * factor)
    return _two_curves(outer, inner, noise, gen)


def _flower(options: dict) -> dict[str, np.ndarray]:
    """The "planar" flower data set of Andrew Ng's deep learning course.

    Same numbers as the course's ``load_planar_dataset()`` (which seeds the global numpy
    generator with 1), but drawn from a local ``RandomState`` and with rows as examples.
    An odd ``n`` is rounded down to an even count (half the points per class).
    """
    _check_options("built-in data set 'flower'", options, ("n", "petals", "seed"))
    m = _int_option(options, "n", 400, minimum=2)
    petals = _float_option(options, "petals", 4.0)
    rng = np.random.RandomState(_int_option(options, "seed", 1))
    half = m // 2
    x = np.zeros((2 * half, 2))
    y = np.zeros((2 * half, 1), dtype=np.uint8)
    for j in range(2):
        ix = range(half * j, half * (j + 1))
        t = np.linspace(j * 3.12, (j + 1) * 3.12, half) + rng.randn(half) * 0.2
        r = petals * np.sin(4 * t) + rng.randn(half) * 0.2
        x[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[ix] = j
    return {"x": x.astype(np.float32), "y": y.astype(np.float32)}


def _digits(options: dict) -> dict[str, np.ndarray]:
    """sklearn's bundled 8x8 handwritten digits as (1797, 8, 8, 1) images in [0, 1]."""
    _check_options("built-in data set 'digits'", options, ())
    table = _sklearn_data_file("digits.csv.gz")
    if table is not None:  # what load_digits reads, without importing sklearn (~1 s)
        data = np.loadtxt(table, delimiter=",")
        images, target = data[:, :-1].reshape(-1, 8, 8), data[:, -1]
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, target = digits.images, digits.target
    x = (images / 16.0).astype(np.float32)[..., np.newaxis]
    return {"x": x, "y": target.astype(np.int32)}


def _sklearn_data_file(name: str) -> pathlib.Path | None:
    """A data file bundled with scikit-learn (sklearn/datasets/data/NAME), found without
    importing the package; None when it is not there."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = pathlib.Path(folder) / "datasets" / "data" / name
        if path.is_file():
            return path
    return None


def _load_builtin(name: str, options: dict, seed: int) -> dict[str, np.ndarray]:
    if name == "moons":
        return _moons(options, seed)
    if name == "circles":
        return _circles(options, seed)
    if name == "flower":
        return _flower(options)
    if name == "digits":
        return _digits(options)
    hint = difflib.get_close_matches(name, BUILTINS, n=1)
    suffix = f" (did you mean {hint[0]}?)" if hint else ""
    raise DataError(f"unknown data set '{name}'; built-in: {', '.join(BUILTINS)}{suffix}")


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _first_line(error: Exception) -> str:
    """A single-line description of a library exception."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _uint8_to_unit(x: np.ndarray) -> np.ndarray:
    """8-bit image data becomes float32 in [0, 1]; anything else is left as stored."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    return x


def _check_pairs(arrays: dict, source: str, found: list[str]) -> None:
    """Require ``x``/``y`` and complete ``x_dev``/``y_dev``, ``x_test``/``y_test``,
    ``x_train_dev``/``y_train_dev`` pairs."""
    if "x" not in arrays or "y" not in arrays:
        listing = ", ".join(found) if found else "none"
        raise DataError(f"data file '{source}' needs arrays 'x' and 'y'; found: {listing}")
    for part in ("dev", "test", "train_dev"):
        if (f"x_{part}" in arrays) != (f"y_{part}" in arrays):
            raise DataError(
                f"data file '{source}' has only one of 'x_{part}' and 'y_{part}'; give both"
            )


def _load_npz(path: pathlib.Path, source: str, options: dict) -> dict[str, np.ndarray]:
    """Arrays ``x``, ``y`` (+ optional dev/test pairs) from a ``.npz`` file, never unpickling."""
    _check_options(f"data file '{source}'", options, ())
    with np.load(path, allow_pickle=False) as archive:
        found = list(archive.files)
        arrays = {key: archive[key] for key in ("x", "y", *SPLIT_KEYS) if key in archive.files}
    _check_pairs(arrays, source, found)
    for key in ("x", "x_dev", "x_test", "x_train_dev"):
        if key in arrays:
            arrays[key] = _uint8_to_unit(arrays[key])
    return arrays


def _parse_number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _label_index(label: object, header: list[str] | None, n_columns: int, source: str) -> int:
    """Resolve the ``label=`` option (column name or 0-based index) to a column index."""
    if header is not None and isinstance(label, str) and label in header:
        return header.index(label)
    try:
        if isinstance(label, bool):
            raise TypeError
        index = int(label)
    except (TypeError, ValueError):
        if header is None:
            raise DataError(
                f"csv file '{source}' has no header row, so label={label!r} must be a "
                f"column index (0..{n_columns - 1})"
            ) from None
        raise DataError(
            f"label column {label!r} not found in csv file '{source}'; columns: {', '.join(header)}"
        ) from None
    if not -n_columns <= index < n_columns:
        raise DataError(
            f"label column {index} out of range for csv file '{source}' "
            f"with {n_columns} columns (0..{n_columns - 1})"
        )
    return index % n_columns


def _load_csv(path: pathlib.Path, source: str, options: dict) -> dict[str, np.ndarray]:
    """A numeric csv file: features in all columns but the label column (default: the last).

    The first row is a header when it is not all numeric. ``y`` is (m, 1) float32.
    """
    _check_options(f"csv file '{source}'", options, ("label",))
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = [
            (line_no, [cell.strip() for cell in row])
            for line_no, row in enumerate(csv.reader(handle), start=1)
            if any(cell.strip() for cell in row)
        ]
    if not rows:
        raise DataError(f"csv file '{source}' is empty")
    header = None
    if any(_parse_number(cell) is None for cell in rows[0][1]):
        header = rows[0][1]
        rows = rows[1:]
    if not rows:
        raise DataError(f"csv file '{source}' has a header but no data rows")
    n_columns = len(header) if header is not None else len(rows[0][1])
    if n_columns < 2:
        raise DataError(f"csv file '{source}' needs at least 2 columns (features and a label)")
    values = np.empty((len(rows), n_columns), dtype=np.float64)
    for i, (line_no, row) in enumerate(rows):
        if len(row) != n_columns:
            raise DataError(
                f"csv file '{source}' row {line_no} has {len(row)} columns, expected {n_columns}"
            )
        for j, cell in enumerate(row):
            number = _parse_number(cell)
            if number is None:
                column = f"'{header[j]}'" if header is not None else str(j)
                raise DataError(
                    f"csv file '{source}' row {line_no}, column {column}: {cell!r} is not a number"
                )
            values[i, j] = number
    label = _label_index(options.get("label", n_columns - 1), header, n_columns, source)
    x = np.delete(values, label, axis=1).astype(np.float32)
    y = values[:, label : label + 1].astype(np.float32)
    return {"x": x, "y": y}


def _read_h5_dataset(handle, key: str, source: str) -> np.ndarray:
    array = np.asarray(handle[key][()])
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DataError(f"dataset '{key}' in '{source}' is not numeric (dtype {array.dtype})")
    return array


def _load_h5(path: pathlib.Path, source: str, options: dict) -> dict[str, np.ndarray]:
    """An HDF5 file with datasets ``x``/``y`` (+ dev/test) or the course's
    ``train_set_x``/``train_set_y`` (+ ``test_set_x``/``test_set_y``) layout."""
    import h5py

    _check_options(f"data file '{source}'", options, ())
    with h5py.File(path, "r") as handle:
        found = sorted(handle.keys())
        if "x" in handle or "y" in handle:
            keys = {key: key for key in ("x", "y", *SPLIT_KEYS) if key in handle}
            course = False
        elif "train_set_x" in handle and "train_set_y" in handle:
            keys = {"x": "train_set_x", "y": "train_set_y"}
            if "test_set_x" in handle and "test_set_y" in handle:
                keys.update(x_test="test_set_x", y_test="test_set_y")
            course = True
        else:
            keys, course = {}, False
        arrays = {name: _read_h5_dataset(handle, key, source) for name, key in keys.items()}
    _check_pairs(arrays, source, found)
    for key in list(arrays):
        if key.startswith("x"):
            arrays[key] = _uint8_to_unit(arrays[key])
        elif course:
            arrays[key] = arrays[key].reshape(-1)
    return arrays


def _parse_size(value: object) -> tuple[int, int]:
    """``size=HxW`` (or a single number for a square, or a pair) as ``(height, width)``."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        parts = [str(v) for v in value]
    else:
        parts = re.split(r"\s*[xX,]\s*", str(value).strip())
        if len(parts) == 1:
            parts = parts * 2
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise DataError(f"option size={value!r} must look like HxW, e.g. size=64x64")
    return int(parts[0]), int(parts[1])


def _parse_mode(value: object) -> str:
    text = str(value).strip().lower()
    if text in ("rgb", "color", "colour"):
        return "RGB"
    if text in ("l", "gray", "grey"):
        return "L"
    raise DataError(f"option mode={value!r} must be RGB or L (gray)")


def _read_image(path: pathlib.Path, label: str, mode: str, size: tuple[int, int] | None):
    """One image as a float32 (H, W, C) array in [0, 1], and its size before resizing."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            original = (image.height, image.width)
            image = image.convert(mode)
            if size is not None and original != size:
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32) / 255.0
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise DataError(f"cannot read image '{label}': {_first_line(error)}") from None
    if pixels.ndim == 2:
        pixels = pixels[..., np.newaxis]
    return pixels, original


def _load_image_folder(path: pathlib.Path, source: str, options: dict) -> dict[str, np.ndarray]:
    """A folder with one subfolder of images per class (sorted names give class ids)."""
    _check_options(f"image folder '{source}'", options, ("mode", "size"))
    mode = _parse_mode(options.get("mode", "RGB"))
    size = _parse_size(options["size"]) if "size" in options else None
    class_dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"image folder '{source}' has no class subfolders (one per class)")
    images, labels = [], []
    first: tuple[str, tuple[int, int]] | None = None
    for class_id, class_dir in enumerate(class_dirs):
        files = sorted(
            p
            for p in class_dir.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )
        if not files:
            raise DataError(
                f"class folder '{source}/{class_dir.name}' has no images "
                f"({', '.join(IMAGE_EXTENSIONS)})"
            )
        for file in files:
            label = f"{source}/{class_dir.name}/{file.name}"
            pixels, original = _read_image(file, label, mode, size)
            if first is None:
                first = (label, original)
            elif size is None and original != first[1]:
                raise DataError(
                    f"images differ in size: '{first[0]}' is {first[1][0]}x{first[1][1]} but "
                    f"'{label}' is {original[0]}x{original[1]}; give size=HxW to resize them"
                )
            images.append(pixels)
            labels.append(class_id)
    return {
        "x": np.stack(images).astype(np.float32),
        "y": np.asarray(labels, dtype=np.int32),
        "class_names": np.asarray([d.name for d in class_dirs], dtype=str),
    }


def _load_file(path: pathlib.Path, source: str, options: dict) -> dict[str, np.ndarray]:
    """Dispatch on the kind of file; wrap any library error in a DataError naming the file."""
    suffix = path.suffix.lower()
    if path.is_dir():
        loader = _load_image_folder
    elif suffix == ".npz":
        loader = _load_npz
    elif suffix == ".csv":
        loader = _load_csv
    elif suffix in (".h5", ".hdf5"):
        loader = _load_h5
    else:
        raise DataError(f"unsupported data file '{source}'; supported: {SUPPORTED_KINDS}")
    try:
        return loader(path, source, options)
    except DataError:
        raise
    except LIBRARY_ERRORS as error:
        raise DataError(f"cannot read data file '{source}': {_first_line(error)}") from None


def _is_bare_word(source: str) -> bool:
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", source) is not None


def load_source(
    source: str,
    options: dict | None = None,
    *,
    seed: int = 0,
    base_dir: str | pathlib.Path = ".",
) -> dict[str, np.ndarray]:
    """Load a data source into raw arrays ``x``, ``y`` (+ ``x_dev``/``y_dev``,
    ``x_test``/``y_test``, and ``class_names`` for image folders).

    ``source`` is a built-in name (``moons``, ``circles``, ``flower``, ``digits``) or a path
    (relative paths are resolved against ``base_dir``). A bare word that is not a built-in is
    read as a path only when such a file or folder exists; otherwise it is an unknown built-in.
    ``seed`` is the default random seed of the random built-ins (``moons``, ``circles``).
    """
    options = dict(options or {})
    source = str(source)
    if source in BUILTINS:
        return _load_builtin(source, options, seed)
    path = pathlib.Path(source).expanduser()
    if not path.is_absolute():
        path = pathlib.Path(base_dir) / path
    if _is_bare_word(source) and not path.exists():
        return _load_builtin(source, options, seed)
    if not path.exists():
        raise DataError(f"data file '{source}' not found (looked in {path.resolve()})")
    return _load_file(path, source, options)


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
    original row order. Empty dev/test become None.
    """
    train_frac, dev_frac, test_frac = _check_split(split)
    x, y = np.asarray(arrays["x"]), np.asarray(arrays["y"])
    if len(x) != len(y):
        raise DataError(f"x has {len(x)} examples but y has {len(y)}")
    has_dev = "x_dev" in arrays and "y_dev" in arrays
    has_test = "x_test" in arrays and "y_test" in arrays
    has_train_dev = "x_train_dev" in arrays and "y_train_dev" in arrays
    m = len(x)
    if has_dev:
        dev_frac = 0.0
    if has_test:
        test_frac = 0.0
    total = train_frac + dev_frac + test_frac
    n_dev = _count(dev_frac / total, m)
    n_test = _count(test_frac / total, m)
    n_train = m - n_dev - n_test
    n_train_dev = 0
    if train_dev is not None and not has_train_dev:
        n_train_dev = _train_dev_count(train_dev, n_train)
    order = np.arange(m)
    if n_dev or n_test or n_train_dev:
        order = np.random.default_rng(seed).permutation(m)
    train_idx = order[: n_train - n_train_dev]
    train_dev_idx = order[n_train - n_train_dev : n_train]
    dev_idx = order[n_train : n_train + n_dev]
    test_idx = order[n_train + n_dev :]
    dev = (
        _dataset(np.asarray(arrays["x_dev"]), np.asarray(arrays["y_dev"]))
        if has_dev
        else _dataset(x[dev_idx], y[dev_idx])
    )
    test = (
        _dataset(np.asarray(arrays["x_test"]), np.asarray(arrays["y_test"]))
        if has_test
        else _dataset(x[test_idx], y[test_idx])
    )
    held_out = (
        _dataset(np.asarray(arrays["x_train_dev"]), np.asarray(arrays["y_train_dev"]))
        if has_train_dev
        else _dataset(x[train_dev_idx], y[train_dev_idx])
    )
    names = arrays.get("class_names")
    class_names = tuple(str(n) for n in names) if names is not None else None
    train = Dataset(x=x[train_idx], y=y[train_idx])
    return Splits(train=train, dev=dev, test=test, class_names=class_names,
                  train_dev=held_out)


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


def _shape_x(x: np.ndarray, input_shape: tuple[int, ...], name: str) -> np.ndarray:
    """Reshape x rows to ``input_shape`` (row-major) when the sizes agree, as float32."""
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"x is not numeric (dtype {x.dtype}) in {name} split")
    example = tuple(x.shape[1:])
    if example != input_shape:
        if math.prod(example) != math.prod(input_shape):
            if len(example) == 1 and len(input_shape) == 1:
                raise DataError(
                    f"data has {example[0]} features per example but the net's input is "
                    f"{input_shape[0]} ({name} split)"
                )
            raise DataError(
                f"data examples are {_describe(example)} but the net's input is "
                f"{_describe(input_shape)} ({name} split)"
            )
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


def _shape_y(y: np.ndarray, labels: str, n_outputs: int, name: str) -> np.ndarray:
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise DataError(f"y is not numeric (dtype {y.dtype}) in {name} split")
    if labels == "classes":
        return _class_labels(y, n_outputs, name)
    if labels == "binary":
        return _binary_labels(y, n_outputs, name)
    return _regression_targets(y, n_outputs, name)


def _standard_stats(x: np.ndarray) -> dict[str, np.ndarray]:
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
    if labels not in LABELS:
        raise DataError(f"unknown kind of labels '{labels}'; expected one of: "
                        f"{', '.join(LABELS)}")
    if normalize not in NORMALIZATIONS:
        raise DataError(
            f"unknown normalize '{normalize}'; expected one of: {', '.join(NORMALIZATIONS)}"
        )
    if splits.train is None or len(splits.train.x) == 0:
        raise DataError("train split is empty")
    shaped: dict[str, Dataset | None] = {"train": None, "dev": None, "test": None,
                                         "train_dev": None}
    for name, ds in splits.parts():
        x, y = np.asarray(ds.x), np.asarray(ds.y)
        if len(x) != len(y):
            raise DataError(f"x has {len(x)} examples but y has {len(y)} in {name} split")
        shaped[name] = Dataset(
            x=_shape_x(x, input_shape, name), y=_shape_y(y, labels, n_outputs, name)
        )
    stats: dict = {"mean": None, "std": None}
    if normalize == "standard":
        stats = _standard_stats(shaped["train"].x)
    result = {
        name: None if ds is None else Dataset(apply_normalization(ds.x, stats), ds.y)
        for name, ds in shaped.items()
    }
    prepared = Splits(result["train"], result["dev"], result["test"], splits.class_names,
                      train_dev=result["train_dev"])
    return prepared, stats
