"""New inputs for a trained net (``netc predict``), read by the data layer's readers as the
run read its training data (numpy only; h5py and Pillow are imported when such a file is
read).

:func:`load_inputs` takes the run's data options (``size=``, ``mode=``) and its csv layout
(runtime/data_csv.py) and returns the inputs ``x``; labels are not needed. numpy, h5py and
Pillow exceptions never escape: they become a :class:`DataError` naming the file.
"""

from __future__ import annotations

import pathlib

import numpy as np

from .data_base import DataError, first_line
from .data_csv import load_csv_inputs
from .data_files import (
    COURSE_H5_KEYS,
    IMAGE_EXTENSIONS,
    LIBRARY_ERRORS,
    load_file,
    npy_folder_files,
    parse_mode,
    parse_size,
    read_h5_dataset,
    read_image,
    uint8_to_unit,
)
from .stream_sources import ArraySource, ImageFolderSource, StreamSource, open_streamed

__all__ = ["INPUT_KINDS", "InputImagesSource", "load_inputs", "open_inputs"]

INPUT_KINDS = (".npz (array x), .npy, .csv, .h5/.hdf5, an image, or a folder of images "
               "(one subfolder per class, or the images themselves)")
INPUT_KEYS = ("x", "x_test", "x_dev", "x_train_dev")  # what a file of inputs may call them


def _pick(arrays: dict, source: str, found: list[str]) -> np.ndarray:
    """The inputs a .npz or .h5 file holds: ``x``, else its one ``x_PART``."""
    keys = [key for key in INPUT_KEYS if key in arrays]
    if not keys:
        raise DataError(f"'{source}' has no inputs 'x' (found: {', '.join(found) or 'none'})")
    if keys[0] != "x" and len(keys) > 1:
        raise DataError(f"'{source}' holds {' and '.join(keys)}: name the inputs x")
    return uint8_to_unit(np.asarray(arrays[keys[0]]))


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
        classes = any(p.is_dir() for p in path.iterdir())  # one subfolder per class
        return load_file(path, source, images if classes else {})["x"]
    if suffix in IMAGE_EXTENSIONS:
        return _images([path], source, images)
    if suffix == ".npy":
        return uint8_to_unit(np.load(path, allow_pickle=False))
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            found = list(archive.files)
            arrays = {key: archive[key] for key in INPUT_KEYS if key in found}
        return _pick(arrays, source, found)
    if suffix == ".csv":
        return load_csv_inputs(path, source, layout)
    if suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as handle:
            found = sorted(handle.keys())
            names = {key: key for key in INPUT_KEYS if key in handle}
            names.update({name: key for key, name in COURSE_H5_KEYS.items()
                          if key in handle and name.startswith("x") and name not in names})
            arrays = {name: read_h5_dataset(handle, key, source) for name, key in names.items()}
        return _pick(arrays, source, found)
    raise DataError(f"cannot read inputs from '{source}'; supported: {INPUT_KINDS}")


def load_inputs(path: pathlib.Path, source: str, options: dict | None = None,
                layout: dict | None = None) -> np.ndarray:
    """The inputs in ``path`` (``source`` names it in messages), read as training read data.

    ``options`` are the run's data options (only ``size=``/``mode=`` are used, for images;
    ``netc predict`` gives the net's input size and channels where the run had none);
    ``layout`` is the run's csv layout. A .npz or .h5 file gives its ``x`` (else its one
    ``x_test``/``x_dev``/``x_train_dev``, the course's ``test_set_x``...); a .npy file its
    array; a csv file its features (:func:`~netc.runtime.data_csv.load_csv_inputs`); an
    image one example; a folder its images (sorted by name), or those of its class
    subfolders as training reads them. uint8 data is scaled to [0, 1] as in training."""
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
    class subfolders'), a folder of ``.npy`` files (its ``x``) or one ``.npy`` file
    (memory-mapped). None for the other kinds of input, which are read whole."""
    options = dict(options or {})
    images = {key: options[key] for key in ("mode", "size") if key in options}
    if not path.exists():
        raise DataError(f"input '{source}' not found")
    try:
        if path.is_dir() and npy_folder_files(path):
            return open_streamed(path, source, {})["x"]
        if path.is_dir():
            files = _image_files(path)
            if files:
                mode = parse_mode(images.get("mode", "RGB"))
                size = parse_size(images["size"]) if "size" in images else None
                return InputImagesSource(files, source, mode, size)
            if any(p.is_dir() for p in path.iterdir()):
                return open_streamed(path, source, images)["x"]
            return None
        if path.suffix.lower() == ".npy":
            return ArraySource(path, source)
    except DataError:
        raise
    except LIBRARY_ERRORS as error:
        raise DataError(f"cannot read inputs '{source}': {first_line(error)}") from None
    return None
