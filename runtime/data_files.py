"""Reading data files: .npz, .csv, .h5/.hdf5 and folders of images (numpy only; h5py and
Pillow are imported when such a file is read).

:func:`load_file` returns raw arrays ``x``, ``y`` and optionally ``x_dev``/``y_dev``,
``x_test``/``y_test``, ``x_train_dev``/``y_train_dev`` and ``class_names``. numpy, zipfile,
h5py and Pillow exceptions never escape: they become a :class:`DataError` naming the file.
"""

from __future__ import annotations

import csv
import pathlib
import re
from zipfile import BadZipFile

import numpy as np

from .data_base import DataError, check_options, first_line

__all__ = ["IMAGE_EXTENSIONS", "SPLIT_KEYS", "SUPPORTED_KINDS", "load_file"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SPLIT_KEYS = ("x_dev", "y_dev", "x_test", "y_test", "x_train_dev", "y_train_dev")
# What numpy, zipfile, h5py and Pillow raise on unreadable or malformed files.
LIBRARY_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError, BadZipFile)
SUPPORTED_KINDS = ".npz, .csv, .h5/.hdf5, or a folder of images (one subfolder per class)"


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
    check_options(f"data file '{source}'", options, ())
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
    check_options(f"csv file '{source}'", options, ("label",))
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

    check_options(f"data file '{source}'", options, ())
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
        raise DataError(f"cannot read image '{label}': {first_line(error)}") from None
    if pixels.ndim == 2:
        pixels = pixels[..., np.newaxis]
    return pixels, original


def _load_image_folder(path: pathlib.Path, source: str, options: dict) -> dict[str, np.ndarray]:
    """A folder with one subfolder of images per class (sorted names give class ids)."""
    check_options(f"image folder '{source}'", options, ("mode", "size"))
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


def load_file(path: pathlib.Path, source: str, options: dict) -> dict[str, np.ndarray]:
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
        raise DataError(f"cannot read data file '{source}': {first_line(error)}") from None

