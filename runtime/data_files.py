"""Reading data files: .npz, .csv, .h5/.hdf5 and folders of images (numpy only; h5py and
Pillow are imported when such a file is read).

:func:`load_file` returns raw arrays ``x``, ``y`` and optionally ``x_dev``/``y_dev``,
``x_test``/``y_test``, ``x_train_dev``/``y_train_dev`` and ``class_names``. numpy, zipfile,
h5py and Pillow exceptions never escape: they become a :class:`DataError` naming the file.
"""

from __future__ import annotations

import io
import pathlib
import re
from zipfile import BadZipFile

import numpy as np

from .data_base import DataError, check_options, first_line
from .data_csv import load_csv

__all__ = [
    "COURSE_H5_KEYS",
    "H5_CLASS_NAMES",
    "IMAGE_EXTENSIONS",
    "LIBRARY_ERRORS",
    "PAIRS",
    "SPLIT_KEYS",
    "SUPPORTED_KINDS",
    "array_record_paths",
    "check_examples",
    "check_h5_numeric",
    "check_pairs",
    "data_kind",
    "decode_record",
    "h5_class_names",
    "h5_dataset",
    "h5_layout",
    "image_label",
    "is_numeric",
    "list_image_folder",
    "load_file",
    "names_of",
    "npy_folder_files",
    "parse_mode",
    "parse_size",
    "read_h5_dataset",
    "read_image",
    "split_file_arrays",
    "uint8_to_unit",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SPLIT_KEYS = ("x_dev", "y_dev", "x_test", "y_test", "x_train_dev", "y_train_dev")
# What numpy, zipfile, h5py and Pillow raise on unreadable or malformed files.
LIBRARY_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError, BadZipFile)
PAIRS = ("", "_dev", "_test", "_train_dev")  # x, y and the x_PART, y_PART a file may bring
SUPPORTED_KINDS = (".npz, .csv, .h5/.hdf5, .array_record, or a folder of images (one "
                   "subfolder per class), of x.npy and y.npy, or of .array_record shards")


def uint8_to_unit(x: np.ndarray) -> np.ndarray:
    """8-bit image data becomes float32 in [0, 1]; anything else is left as stored."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    return x


def is_numeric(dtype) -> bool:
    """Whether arrays of ``dtype`` can be examples or labels: numbers or booleans."""
    dtype = np.dtype(dtype)
    return bool(np.issubdtype(dtype, np.number) or dtype == np.bool_)


def check_examples(shape: tuple[int, ...], source: str, key: str = "") -> None:
    """An array of examples (``key`` in ``source``, or the file ``source`` itself) has a
    first axis: a 0-d array, one value, is a DataError."""
    if not len(shape):
        name = f"'{key}' in '{source}'" if key else f"'{source}'"
        raise DataError(f"{name} holds one value, not a batch of examples")


def check_pairs(arrays: dict, source: str, found: list[str], part: str | None = None) -> None:
    """Require ``x``/``y`` (in a split's own file, ``x_PART``/``y_PART`` or ``x``/``y``) and
    complete ``x_dev``/``y_dev``, ``x_test``/``y_test``, ``x_train_dev``/``y_train_dev``
    pairs, each array of them (those read already) with a first axis."""
    for key in ("x", "y", *SPLIT_KEYS):
        if isinstance(arrays.get(key), np.ndarray):
            check_examples(arrays[key].shape, source, key)
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


def names_of(array: np.ndarray, key: str, source: str) -> np.ndarray:
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
            arrays["class_names"] = names_of(archive["class_names"], "class_names", source)
    check_pairs(arrays, source, found, part)
    for key in ("x", "x_dev", "x_test", "x_train_dev"):
        if key in arrays:
            arrays[key] = uint8_to_unit(arrays[key])
    return arrays


def h5_dataset(handle, key: str, source: str):
    """Dataset ``key`` of an open HDF5 file, or a DataError when ``key`` is a group (or
    another object that holds no array)."""
    import h5py

    item = handle[key]
    if not isinstance(item, h5py.Dataset):
        what = "is a group, not" if isinstance(item, h5py.Group) else "is not"
        raise DataError(f"'{key}' in '{source}' {what} a dataset")
    return item


def check_h5_numeric(handle, key: str, source: str) -> None:
    """``key`` of an open HDF5 file must be a dataset of numbers with a first axis (checked
    without reading it)."""
    dataset = h5_dataset(handle, key, source)
    check_examples(dataset.shape, source, key)
    if not is_numeric(dataset.dtype):
        raise DataError(f"dataset '{key}' in '{source}' is not numeric (dtype {dataset.dtype})")


def read_h5_dataset(handle, key: str, source: str) -> np.ndarray:
    """Dataset ``key`` of an open HDF5 file, which must be numeric."""
    check_h5_numeric(handle, key, source)
    return np.asarray(handle[key][()])


# The course's layout (train_catvnoncat.h5, test_catvnoncat.h5): its names for x and y.
COURSE_H5_KEYS = {"train_set_x": "x", "train_set_y": "y", "dev_set_x": "x_dev",
                  "dev_set_y": "y_dev", "test_set_x": "x_test", "test_set_y": "y_test"}
H5_CLASS_NAMES = ("class_names", "list_classes")  # list_classes: the course's


def h5_layout(handle) -> tuple[list[str], dict[str, str], bool]:
    """An open HDF5 file's dataset names (sorted), which of them hold which array ({"x":
    "x", ...} or the course's {"x": "train_set_x", ...}), and whether the names are netc's
    own (True) rather than the course's."""
    plain = {key: key for key in ("x", "y", *SPLIT_KEYS) if key in handle}
    course = {name: key for key, name in COURSE_H5_KEYS.items() if key in handle}
    return sorted(handle.keys()), plain or course, bool(plain)


def h5_class_names(handle, source: str) -> np.ndarray | None:
    """The class names an open HDF5 file holds (``list_classes``, the course's, or
    ``class_names``) as text, or None."""
    for key in H5_CLASS_NAMES:
        if key in handle:
            return names_of(h5_dataset(handle, key, source)[()], key, source)
    return None


def _load_h5(path: pathlib.Path, source: str, options: dict,
             part: str | None = None) -> dict[str, np.ndarray]:
    """An HDF5 file with datasets ``x``/``y`` (+ dev/test) or the course's layout:
    ``train_set_x``/``train_set_y`` and/or ``test_set_x``/``test_set_y`` (the course keeps
    them in two files, train_catvnoncat.h5 and test_catvnoncat.h5). Class names come from
    ``list_classes`` (the course's) or ``class_names``, decoded to text."""
    import h5py

    check_options(f"data file '{source}'", options, ())
    with h5py.File(path, "r") as handle:
        found, keys, plain = h5_layout(handle)
        arrays = {name: read_h5_dataset(handle, key, source) for name, key in keys.items()}
        names = h5_class_names(handle, source)
        if names is not None:
            arrays["class_names"] = names
    check_pairs(arrays, source, found, part)
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


def read_image(path: pathlib.Path | io.BytesIO, label: str, mode: str,
               size: tuple[int, int] | None):
    """One image (a file, or an encoded image's bytes) as a float32 (H, W, C) array in
    [0, 1], and its size before resizing; ``label`` names it in errors."""
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


def list_image_folder(path: pathlib.Path, source: str) -> tuple[list[str], list[pathlib.Path],
                                                                   np.ndarray]:
    """An image folder's class names (its sorted subfolders), its image files (class by
    class, sorted by name) and their class ids (int32)."""
    class_dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"image folder '{source}' has no class subfolders (one per class)")
    files, labels = [], []
    for class_id, class_dir in enumerate(class_dirs):
        found = sorted(
            p
            for p in class_dir.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )
        if not found:
            raise DataError(
                f"class folder '{source}/{class_dir.name}' has no images "
                f"({', '.join(IMAGE_EXTENSIONS)})"
            )
        files += found
        labels += [class_id] * len(found)
    return [d.name for d in class_dirs], files, np.asarray(labels, dtype=np.int32)


def image_label(source: str, file: pathlib.Path) -> str:
    """How messages name an image of the folder ``source``: ``SOURCE/CLASS/FILE``."""
    return f"{source}/{file.parent.name}/{file.name}"


def _load_image_folder(path: pathlib.Path, source: str, options: dict,
                       part: str | None = None) -> dict[str, np.ndarray]:
    """A folder with one subfolder of images per class (sorted names give class ids)."""
    check_options(f"image folder '{source}'", options, ("mode", "size"))
    mode = parse_mode(options.get("mode", "RGB"))
    size = parse_size(options["size"]) if "size" in options else None
    names, files, labels = list_image_folder(path, source)
    images = []
    first: tuple[str, tuple[int, int]] | None = None
    for file in files:
        label = image_label(source, file)
        pixels, original = read_image(file, label, mode, size)
        if first is None:
            first = (label, original)
        elif size is None and original != first[1]:
            raise DataError(
                f"images differ in size: '{first[0]}' is {first[1][0]}x{first[1][1]} but "
                f"'{label}' is {original[0]}x{original[1]}; give size=HxW to resize them"
            )
        images.append(pixels)
    return {
        "x": np.stack(images).astype(np.float32),
        "y": labels,
        "class_names": np.asarray(names, dtype=str),
    }


def data_kind(path: pathlib.Path) -> str | None:
    """What kind of data ``path`` holds, by its suffix or, for a folder, its contents:
    "npy_folder" (an x.npy), "array_record" (.array_record shards), "image_folder", "npz",
    "csv", "h5"; None for a file of no supported kind. The in-memory readers and the
    streamed sources (runtime/stream_sources.py) dispatch on it alike."""
    if path.is_dir():
        if npy_folder_files(path):
            return "npy_folder"
        return "array_record" if any(path.glob("*.array_record")) else "image_folder"
    suffix = path.suffix.lower()
    kinds = {".array_record": "array_record", ".npz": "npz", ".csv": "csv", ".h5": "h5",
             ".hdf5": "h5"}
    return kinds.get(suffix)


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
    loaders = {"npy_folder": _load_npy_folder, "array_record": _load_array_record,
               "image_folder": _load_image_folder, "npz": _load_npz, "csv": load_csv,
               "h5": _load_h5}
    kind = data_kind(path)
    if kind is None:
        raise DataError(f"unsupported data file '{source}'; supported: {SUPPORTED_KINDS}")
    loader = loaders[kind]
    try:
        if loader is load_csv:
            arrays = load_csv(path, source, options, part, layout)
        else:
            arrays = loader(path, source, options, part)
    except DataError:
        raise
    except LIBRARY_ERRORS as error:
        raise DataError(f"cannot read data file '{source}': {first_line(error)}") from None
    return arrays if part is None else split_file_arrays(arrays, source, part)


def split_file_arrays(arrays: dict, source: str, part: str) -> dict[str, np.ndarray]:
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


# --------------------------------------------------------------------------------------------
# Array folders (x.npy, y.npy) and ArrayRecord files
# --------------------------------------------------------------------------------------------


def npy_folder_files(path: pathlib.Path) -> dict[str, pathlib.Path]:
    """The ``.npy`` files of an array folder (``x.npy``, ``y.npy``, optional ``x_dev.npy``
    ... and ``class_names.npy``) by name; empty when the folder holds no ``x.npy``."""
    if not (path / "x.npy").is_file():
        return {}
    return {key: path / f"{key}.npy" for key in ("x", "y", *SPLIT_KEYS, "class_names")
            if (path / f"{key}.npy").is_file()}


def _load_npy_folder(path: pathlib.Path, source: str, options: dict,
                     part: str | None = None) -> dict[str, np.ndarray]:
    """A folder of ``.npy`` files named like an ``.npz``'s arrays (:func:`npy_folder_files`)."""
    check_options(f"array folder '{source}'", options, ())
    files = npy_folder_files(path)
    arrays = {key: np.load(file, allow_pickle=False) for key, file in files.items()}
    if "class_names" in arrays:
        arrays["class_names"] = names_of(arrays["class_names"], "class_names", source)
    check_pairs(arrays, source, sorted(files), part)
    return {key: uint8_to_unit(a) if key.startswith("x") else a for key, a in arrays.items()}


def array_record_paths(path: pathlib.Path, source: str) -> list[pathlib.Path]:
    """An ArrayRecord file, or a folder's ``*.array_record`` shards in name order."""
    paths = sorted(path.glob("*.array_record")) if path.is_dir() else [path]
    if not paths:
        raise DataError(f"folder '{source}' holds no .array_record files")
    return paths


def decode_record(record: bytes, label: str, mode: str = "RGB",
                  size: tuple[int, int] | None = None, *, decode_x: bool = True,
                  labelled: bool = True):
    """One ArrayRecord record as ``(x, y)``. A record is the bytes of an ``.npz`` (what
    ``np.savez`` writes into a ``BytesIO``) holding ``y`` (the label: a class id, a row of
    targets) and either ``x`` (the example; 8-bit values are divided by 255) or ``image``
    (the bytes of a PNG/JPEG file as a uint8 array, decoded as an image folder's files are,
    with the data's ``mode=``/``size=``). ``x`` is None unless ``decode_x``. Inputs to
    predict (``labelled`` False) need no ``y``, and one there is not read: y is None."""
    try:
        with np.load(io.BytesIO(record), allow_pickle=False) as archive:
            files = set(archive.files)
            if not {"x", "image"} & files or (labelled and "y" not in files):
                need = "arrays 'y' and 'x' (or 'image')" if labelled else \
                    "an array 'x' (or 'image')"
                raise DataError(f"{label} needs {need}; found: "
                                f"{', '.join(archive.files) or 'none'}")
            y = np.asarray(archive["y"]) if labelled else None  # predict reads no label
            if not decode_x:
                return None, y
            if "x" in archive.files:
                return uint8_to_unit(np.asarray(archive["x"])), y
            encoded = np.asarray(archive["image"], dtype=np.uint8).tobytes()
    except DataError:
        raise
    except LIBRARY_ERRORS as error:
        raise DataError(f"cannot read {label}: {first_line(error)}") from None
    pixels, _ = read_image(io.BytesIO(encoded), label, mode, size)
    return pixels, y


def _load_array_record(path: pathlib.Path, source: str, options: dict,
                       part: str | None = None) -> dict[str, np.ndarray]:
    """ArrayRecord files (:func:`array_record_paths`) read whole; records as
    :func:`decode_record` reads them."""
    from array_record.python.array_record_module import ArrayRecordReader

    check_options(f"ArrayRecord data '{source}'", options, ("mode", "size"))
    mode = parse_mode(options.get("mode", "RGB"))
    size = parse_size(options["size"]) if "size" in options else None
    xs, ys = [], []
    for shard in array_record_paths(path, source):
        reader = ArrayRecordReader(str(shard))
        try:
            for record in reader.read_all():
                x, y = decode_record(record, f"record {len(xs)} of '{source}'", mode, size)
                if xs and x.shape != xs[0].shape:
                    raise DataError(f"record {len(xs)} of '{source}' is {x.shape} but record 0 "
                                    f"is {xs[0].shape}; records must share one shape")
                xs.append(x)
                ys.append(y)
        finally:
            reader.close()
    if not xs:
        raise DataError(f"ArrayRecord data '{source}' holds no records")
    return {"x": np.stack(xs), "y": np.stack(ys)}
