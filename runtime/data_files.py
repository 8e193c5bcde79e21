"""Reading data files: .npz, .csv, .h5/.hdf5 and folders of images (numpy only; h5py and
Pillow are imported when such a file is read).

:func:`load_file` returns raw arrays ``x``, ``y`` and optionally ``x_dev``/``y_dev``,
``x_test``/``y_test``, ``x_train_dev``/``y_train_dev`` and ``class_names``. numpy, zipfile,
h5py and Pillow exceptions never escape: they become a :class:`DataError` naming the file.
"""

from __future__ import annotations

import pathlib
import re
from zipfile import BadZipFile

import numpy as np

from .data_base import DataError, check_options, first_line
from .data_csv import load_csv

__all__ = ["COURSE_H5_KEYS", "IMAGE_EXTENSIONS", "LIBRARY_ERRORS", "SPLIT_KEYS",
           "SUPPORTED_KINDS", "load_file", "parse_mode", "parse_size", "read_h5_dataset",
           "read_image", "uint8_to_unit"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SPLIT_KEYS = ("x_dev", "y_dev", "x_test", "y_test", "x_train_dev", "y_train_dev")
# What numpy, zipfile, h5py and Pillow raise on unreadable or malformed files.
LIBRARY_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError, BadZipFile)
PAIRS = ("", "_dev", "_test", "_train_dev")  # x, y and the x_PART, y_PART a file may bring
SUPPORTED_KINDS = ".npz, .csv, .h5/.hdf5, or a folder of images (one subfolder per class)"


def uint8_to_unit(x: np.ndarray) -> np.ndarray:
    """8-bit image data becomes float32 in [0, 1]; anything else is left as stored."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    return x


def _check_pairs(arrays: dict, source: str, found: list[str], part: str | None = None) -> None:
    """Require ``x``/``y`` (in a split's own file, ``x_PART``/``y_PART`` or ``x``/``y``) and
    complete ``x_dev``/``y_dev``, ``x_test``/``y_test``, ``x_train_dev``/``y_train_dev``
    pairs."""
    listing = ", ".join(found) if found else "none"
    if part is None and ("x" not in arrays or "y" not in arrays):
        raise DataError(f"data file '{source}' needs arrays 'x' and 'y'; found: {listing}")
    if part is not None and not any(f"x{key}" in arrays for key in PAIRS):
        raise DataError(f"{part} file '{source}' needs arrays 'x_{part}' and 'y_{part}' (or "
                        f"'x' and 'y'); found: {listing}")
    for key in PAIRS:
        if (f"x{key}" in arrays) != (f"y{key}" in arrays):
            raise DataError(
                f"data file '{source}' has only one of 'x{key}' and 'y{key}'; give both"
            )


def _names(array: np.ndarray, key: str, source: str) -> np.ndarray:
    """Class names stored as text (bytes are decoded as UTF-8), as a str array."""
    array = np.asarray(array).reshape(-1)
    if array.dtype.kind == "S" or array.dtype == object:
        try:
            return np.asarray([v.decode("utf-8") if isinstance(v, bytes) else str(v)
                               for v in array], dtype=str)
        except UnicodeDecodeError:
            raise DataError(f"'{key}' in '{source}' is not UTF-8 text") from None
    if array.dtype.kind != "U":
        raise DataError(f"'{key}' in '{source}' must hold class names as text, not "
                        f"{array.dtype} numbers")
    return array.astype(str)


def _load_npz(path: pathlib.Path, source: str, options: dict,
              part: str | None = None) -> dict[str, np.ndarray]:
    """Arrays ``x``, ``y`` (+ optional dev/test pairs, ``class_names``) from a ``.npz`` file,
    never unpickling."""
    check_options(f"data file '{source}'", options, ())
    with np.load(path, allow_pickle=False) as archive:
        found = list(archive.files)
        arrays = {key: archive[key] for key in ("x", "y", *SPLIT_KEYS) if key in archive.files}
        if "class_names" in archive.files:
            arrays["class_names"] = _names(archive["class_names"], "class_names", source)
    _check_pairs(arrays, source, found, part)
    for key in ("x", "x_dev", "x_test", "x_train_dev"):
        if key in arrays:
            arrays[key] = uint8_to_unit(arrays[key])
    return arrays


def read_h5_dataset(handle, key: str, source: str) -> np.ndarray:
    """Dataset ``key`` of an open HDF5 file, which must be numeric."""
    array = np.asarray(handle[key][()])
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DataError(f"dataset '{key}' in '{source}' is not numeric (dtype {array.dtype})")
    return array


# The course's layout (train_catvnoncat.h5, test_catvnoncat.h5): its names for x and y.
COURSE_H5_KEYS = {"train_set_x": "x", "train_set_y": "y", "dev_set_x": "x_dev",
                  "dev_set_y": "y_dev", "test_set_x": "x_test", "test_set_y": "y_test"}
H5_CLASS_NAMES = ("class_names", "list_classes")  # list_classes: the course's


def _load_h5(path: pathlib.Path, source: str, options: dict,
             part: str | None = None) -> dict[str, np.ndarray]:
    """An HDF5 file with datasets ``x``/``y`` (+ dev/test) or the course's layout:
    ``train_set_x``/``train_set_y`` and/or ``test_set_x``/``test_set_y`` (the course keeps
    them in two files, train_catvnoncat.h5 and test_catvnoncat.h5). Class names come from
    ``list_classes`` (the course's) or ``class_names``, decoded to text."""
    import h5py

    check_options(f"data file '{source}'", options, ())
    with h5py.File(path, "r") as handle:
        found = sorted(handle.keys())
        plain = {key: key for key in ("x", "y", *SPLIT_KEYS) if key in handle}
        course = {name: key for key, name in COURSE_H5_KEYS.items() if key in handle}
        keys = plain or course
        arrays = {name: read_h5_dataset(handle, key, source) for name, key in keys.items()}
        for key in H5_CLASS_NAMES:
            if key in handle:
                arrays["class_names"] = _names(handle[key][()], key, source)
                break
    _check_pairs(arrays, source, found, part)
    for key in list(arrays):
        if key.startswith("x"):
            arrays[key] = uint8_to_unit(arrays[key])
        elif key.startswith("y") and not plain:
            arrays[key] = arrays[key].reshape(-1)  # the course stores y as (1, m) or (m,)
    return arrays


def parse_size(value: object) -> tuple[int, int]:
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


def parse_mode(value: object) -> str:
    text = str(value).strip().lower()
    if text in ("rgb", "color", "colour"):
        return "RGB"
    if text in ("l", "gray", "grey"):
        return "L"
    raise DataError(f"option mode={value!r} must be RGB or L (gray)")


def read_image(path: pathlib.Path, label: str, mode: str, size: tuple[int, int] | None):
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


def _load_image_folder(path: pathlib.Path, source: str, options: dict,
                       part: str | None = None) -> dict[str, np.ndarray]:
    """A folder with one subfolder of images per class (sorted names give class ids)."""
    check_options(f"image folder '{source}'", options, ("mode", "size"))
    mode = parse_mode(options.get("mode", "RGB"))
    size = parse_size(options["size"]) if "size" in options else None
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
            pixels, original = read_image(file, label, mode, size)
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


def load_file(path: pathlib.Path, source: str, options: dict, part: str | None = None,
              layout: dict | None = None) -> dict[str, np.ndarray]:
    """The arrays of a data file (``x``, ``y``, and what else it brings; a csv file also its
    ``csv_layout``, see :func:`~netc.runtime.data_csv.load_csv`); wraps any library error in
    a DataError naming the file.

    With ``part`` (``"dev"`` or ``"test"``), the file is that split's own file (``data
    "train.h5" test="test.h5"``): its ``x_PART``/``y_PART`` (the course's
    ``test_set_x``/``test_set_y``), else its ``x``/``y``, else the one pair it holds, come
    back as ``x_PART``/``y_PART``, with its ``class_names``; the rest of it is left out.
    ``layout``, the main file's csv layout, makes a csv split file expand its one-hot
    columns to the main file's categories."""
    suffix = path.suffix.lower()
    if path.is_dir():
        loader = _load_image_folder
    elif suffix == ".npz":
        loader = _load_npz
    elif suffix == ".csv":
        loader = load_csv
    elif suffix in (".h5", ".hdf5"):
        loader = _load_h5
    else:
        raise DataError(f"unsupported data file '{source}'; supported: {SUPPORTED_KINDS}")
    try:
        if loader is load_csv:
            arrays = load_csv(path, source, options, part, layout)
        else:
            arrays = loader(path, source, options, part)
    except DataError:
        raise
    except LIBRARY_ERRORS as error:
        raise DataError(f"cannot read data file '{source}': {first_line(error)}") from None
    return arrays if part is None else _split_file(arrays, source, part)


def _split_file(arrays: dict, source: str, part: str) -> dict[str, np.ndarray]:
    """The ``part`` split from its own file's arrays: ``x_PART``/``y_PART``, else ``x``/``y``,
    else the one other pair it holds (``dev="test_catvnoncat.h5"`` reads test_set_x)."""
    pairs = [key for key in PAIRS if f"x{key}" in arrays]
    if f"_{part}" in pairs:
        key = f"_{part}"
    elif "" in pairs or len(pairs) == 1:
        key = pairs[0]
    else:
        raise DataError(f"{part} file '{source}' holds {' and '.join('x' + k for k in pairs)}: "
                        f"name the {part} split's arrays x_{part}, y_{part} (or x, y)")
    out = {f"x_{part}": arrays[f"x{key}"], f"y_{part}": arrays[f"y{key}"]}
    if "class_names" in arrays:
        out["class_names"] = arrays["class_names"]
    return out

