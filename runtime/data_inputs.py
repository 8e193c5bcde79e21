"""New inputs for a trained net (``netc predict``), read by the data layer's readers as the
run read its training data (numpy only; h5py, Pillow and the ArrayRecord reader are
imported when such a file is read).

:func:`load_inputs` takes the run's data options (``size=``, ``mode=``) and its csv layout
(runtime/data_csv.py) and returns the inputs ``x``; labels are not needed.
:func:`open_inputs` gives the same examples as a source read batch by batch, for the kinds
that can be read in pieces. numpy, h5py and Pillow exceptions never escape: they become a
:class:`DataError` naming the file.
"""

from __future__ import annotations

import pathlib
import zipfile

import numpy as np

from .data_base import DataError, check_options, first_line
from .data_csv import load_csv_inputs
from .data_files import (
    COURSE_H5_KEYS,
    IMAGE_EXTENSIONS,
    LIBRARY_ERRORS,
    array_record_paths,
    check_examples,
    check_h5_numeric,
    data_kind,
    decode_record,
    is_numeric,
    load_file,
    parse_mode,
    parse_size,
    read_image,
    uint8_to_unit,
)
from .stream_sources import (
    ArrayRecordSource,
    ArraySource,
    H5Source,
    ImageFolderSource,
    StreamSource,
    npz_member_start,
    open_streamed,
    read_npy_header,
)

__all__ = ["INPUT_KINDS", "InputImagesSource", "load_inputs", "open_inputs"]

INPUT_KINDS = (".npz (array x), .npy, .csv, .h5/.hdf5, .array_record, an image, or a folder "
               "of images (one subfolder per class, or the images themselves), of x.npy, or "
               "of .array_record shards")
INPUT_KEYS = ("x", "x_test", "x_dev", "x_train_dev")  # what a file of inputs may call them


def _input_key(keys, source: str, found: list[str]) -> str:
    """Which of a .npz's or .h5's arrays (named ``keys``) holds the inputs: ``x``, else its
    one ``x_PART``."""
    keys = [key for key in INPUT_KEYS if key in keys]
    if not keys:
        raise DataError(f"'{source}' has no inputs 'x' (found: {', '.join(found) or 'none'})")
    if keys[0] != "x" and len(keys) > 1:
        raise DataError(f"'{source}' holds {' and '.join(keys)}: name the inputs x")
    return keys[0]


def _npz_member(archive: zipfile.ZipFile, source: str) -> tuple[str, zipfile.ZipInfo]:
    """The inputs' name in a .npz (open as a zip file) and its member, checked (numbers, a
    first axis) from the member's header without reading its data."""
    members = {info.filename[:-4]: info for info in archive.infolist()
               if info.filename.endswith(".npy")}
    found = [name[:-4] if name.endswith(".npy") else name for name in archive.namelist()]
    key = _input_key(members, source, found)  # found: as np.load lists them
    with archive.open(members[key]) as member:
        shape, _, dtype = read_npy_header(member)
    check_examples(shape, source, key)
    if not is_numeric(dtype):
        raise DataError(f"array '{key}' in '{source}' is not numeric (dtype {dtype})")
    return key, members[key]


def _h5_inputs(handle, source: str) -> str:
    """The dataset of an open .h5 file that holds the inputs (``x``, else its one
    ``x_PART``, the course's ``test_set_x``...), checked (numbers, a first axis) without
    reading it."""
    names = {key: key for key in INPUT_KEYS if key in handle}
    names.update({name: key for key, name in COURSE_H5_KEYS.items()
                  if key in handle and name.startswith("x") and name not in names})
    key = names[_input_key(names, source, sorted(handle.keys()))]
    check_h5_numeric(handle, key, source)
    return key


def _images(files: list[pathlib.Path], source: str, options: dict) -> np.ndarray:
    """Image files as one batch (N, H, W, C), read with ``size=`` and ``mode=``."""
    mode = parse_mode(options.get("mode", "RGB"))
    size = parse_size(options["size"]) if "size" in options else None
    batch = [read_image(file, f"{source}/{file.name}" if len(files) > 1 else source, mode,
                        size)[0] for file in files]
    shapes = {pixels.shape for pixels in batch}
    if len(shapes) > 1:
        raise DataError(f"images in '{source}' differ in size; give size=HxW to resize them")
    return np.stack(batch)


def _image_files(path: pathlib.Path) -> list[pathlib.Path]:
    """The images a folder holds itself (not in subfolders), sorted by name."""
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_EXTENSIONS)


def _read(path: pathlib.Path, source: str, options: dict, layout: dict | None) -> np.ndarray:
    suffix = path.suffix.lower()
    images = {key: options[key] for key in ("mode", "size") if key in options}
    if path.is_dir():
        files = _image_files(path)
        if files:  # the images themselves
            return _images(files, source, images)
        if data_kind(path) == "array_record":  # .array_record shards
            return _all_records(path, source, images)
        classes = any(p.is_dir() for p in path.iterdir())  # one subfolder per class
        return load_file(path, source, images if classes else {})["x"]
    if suffix == ".array_record":
        return _all_records(path, source, images)
    if suffix in IMAGE_EXTENSIONS:
        return _images([path], source, images)
    if suffix == ".npy":
        x = np.load(path, allow_pickle=False)
        check_examples(x.shape, source)
        return uint8_to_unit(x)
    if suffix == ".npz":  # as np.load reads a member, never unpickling
        with zipfile.ZipFile(path) as archive:
            _, member = _npz_member(archive, source)
            with archive.open(member) as data:
                return uint8_to_unit(np.lib.format.read_array(data, allow_pickle=False))
    if suffix == ".csv":
        return load_csv_inputs(path, source, layout)
    if suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as handle:
            return uint8_to_unit(np.asarray(handle[_h5_inputs(handle, source)][()]))
    raise DataError(f"cannot read inputs from '{source}'; supported: {INPUT_KINDS}")


def _all_records(path: pathlib.Path, source: str, images: dict) -> np.ndarray:
    """ArrayRecord inputs read whole: every record of :func:`_records`' source."""
    records = _records(path, source, images)
    return records.read_rows(np.arange(len(records)))


def load_inputs(path: pathlib.Path, source: str, options: dict | None = None,
                layout: dict | None = None) -> np.ndarray:
    """The inputs in ``path`` (``source`` names it in messages), read as training read data.

    ``options`` are the run's data options (only ``size=``/``mode=`` are used, for images;
    ``netc predict`` gives the net's input size and channels where the run had none);
    ``layout`` is the run's csv layout. A .npz or .h5 file gives its ``x`` (else its one
    ``x_test``/``x_dev``/``x_train_dev``, the course's ``test_set_x``...); a .npy file its
    array; a csv file its features (:func:`~netc.runtime.data_csv.load_csv_inputs`); an
    image one example; a folder its images (sorted by name), or those of its class
    subfolders as training reads them; ArrayRecord records (a file, or a folder of shards)
    their ``x`` or ``image`` (runtime/data_files.py's ``decode_record``). uint8 data is
    scaled to [0, 1] as in training."""
    if not path.exists():
        raise DataError(f"input '{source}' not found")
    try:
        return _read(path, source, dict(options or {}), layout)
    except DataError:
        raise
    except LIBRARY_ERRORS as error:
        raise DataError(f"cannot read inputs '{source}': {first_line(error)}") from None


class InputImagesSource(ImageFolderSource):
    """A folder's own images (no class subfolders) as a streamed source: ``SOURCE/FILE``
    in messages, as :func:`load_inputs` names them."""

    def name(self, i: int) -> str:
        return f"{self.source}/{pathlib.Path(self.files[int(i)]).name}"


def open_inputs(path: pathlib.Path, source: str, options: dict | None = None
                ) -> StreamSource | None:
    """The inputs in ``path`` as a source read batch by batch (runtime/stream_sources.py),
    giving the examples :func:`load_inputs` would: a folder of images (its own, or its
    class subfolders'), a folder of ``.npy`` files (its ``x``), one ``.npy`` file or the
    inputs of an ``.npz`` saved uncompressed (memory-mapped), an ``.h5`` file's inputs (a
    read of its rows per batch) or ArrayRecord records (a file, or a folder of shards). None
    for the other kinds of input, read whole: a csv file, an image, an ``.npz`` whose inputs
    are compressed (they cannot be read in pieces). An unusable file is the DataError
    :func:`load_inputs` gives."""
    options = dict(options or {})
    images = {key: options[key] for key in ("mode", "size") if key in options}
    if not path.exists():
        raise DataError(f"input '{source}' not found")
    try:
        return _open(path, source, images)
    except DataError:
        raise
    except LIBRARY_ERRORS as error:
        raise DataError(f"cannot read inputs '{source}': {first_line(error)}") from None


def _open(path: pathlib.Path, source: str, images: dict) -> StreamSource | None:
    kind = data_kind(path)
    if path.is_dir() and kind == "npy_folder":
        return open_streamed(path, source, {})["x"]
    if path.is_dir():
        files = _image_files(path)
        if files:
            mode = parse_mode(images.get("mode", "RGB"))
            size = parse_size(images["size"]) if "size" in images else None
            return InputImagesSource(files, source, mode, size)
        if kind == "array_record":
            return _records(path, source, images)
        if any(p.is_dir() for p in path.iterdir()):
            return open_streamed(path, source, images)["x"]
        return None
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return ArraySource(path, source)
    if suffix == ".npz":
        with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
            key, member = _npz_member(archive, source)
            if member.compress_type != zipfile.ZIP_STORED:
                return None  # np.savez_compressed: read whole
            return ArraySource(path, source, offset=npz_member_start(raw, member), member=key)
    if suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as handle:
            key = _h5_inputs(handle, source)
        return H5Source(path, source, key)
    if suffix == ".array_record":
        return _records(path, source, images)
    return None


def _records(path: pathlib.Path, source: str, images: dict) -> ArrayRecordSource:
    """ArrayRecord inputs as a source: its length and first record read up front (not the
    labels: predictions need none), each record decoded when its batch is read."""
    from grain.sources import ArrayRecordDataSource

    check_options(f"ArrayRecord data '{source}'", images, ("mode", "size"))
    mode = parse_mode(images.get("mode", "RGB"))
    size = parse_size(images["size"]) if "size" in images else None
    paths = array_record_paths(path, source)
    records = ArrayRecordDataSource([str(p) for p in paths])
    if not len(records):
        raise DataError(f"ArrayRecord data '{source}' holds no records")
    first, _ = decode_record(records[0], f"record 0 of '{source}'", mode, size,
                             labelled=False)
    return ArrayRecordSource(paths, source, mode, size, len(records), first, labelled=False)
