"""Data sources whose examples stay on disk, read one example or one batch at a time (numpy
only; Pillow, h5py and array_record are imported when such a source is read).

Each source is a random-access data source as Grain reads them (``__len__``,
``__getitem__``) with ``read_rows(rows)`` for a batch: an image folder, ``x.npy``/``y.npy``
in a folder or an ``.npz`` saved uncompressed (both memory-mapped), an ``.h5`` file (read by
rows, opened in each worker process) and ArrayRecord files (records as
runtime/data_files.py's :func:`decode_record` reads them). An example comes back as the
in-memory reader (runtime/data_files.py) holds it: images float32 in [0, 1], 8-bit arrays
divided by 255, anything else as stored. Sources pickle without their open files, so Grain's
worker processes open their own.

:func:`open_streamed` is :func:`~runtime.data_files.load_file` for streaming: the same keys,
with each ``x`` a source and each ``y`` (small) read into memory up front.
"""

from __future__ import annotations

import pathlib
import zipfile

import numpy as np

from .data_base import DataError, check_options, first_line
from .data_files import (
    LIBRARY_ERRORS,
    SPLIT_KEYS,
    array_record_paths,
    check_examples,
    check_h5_numeric,
    check_pairs,
    data_kind,
    decode_record,
    h5_class_names,
    h5_layout,
    image_label,
    list_image_folder,
    names_of,
    npy_folder_files,
    parse_mode,
    parse_size,
    read_image,
    split_file_arrays,
    uint8_to_unit,
)

__all__ = ["ArrayRecordSource", "ArraySource", "H5Source", "ImageFolderSource",
           "MemorySource", "StreamSource", "npz_member_start", "open_streamed",
           "read_npy_header"]


class StreamSource:
    """The examples of one array on disk: ``len(source)``, ``source[i]`` (one example),
    ``read_rows(rows)`` (a batch, in the order asked), ``example_shape``/``dtype`` (of
    ``source[i]``) and ``name(i)`` (how messages name example i). A kind of source
    defines ``__getitem__`` or ``read_rows`` (each defaults to the other) and lists in
    ``handles`` the attributes that hold open files: they are left out when it is pickled
    for a worker process, which opens its own."""

    source: str
    example_shape: tuple[int, ...]
    dtype: np.dtype
    handles: tuple[str, ...] = ()

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, i: int) -> np.ndarray:
        return self.read_rows(np.asarray([i]))[0]

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.stack([self[int(i)] for i in rows])

    def name(self, i: int) -> str:
        return f"row {int(i)} of '{self.source}'"

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in self.handles}


class MemorySource(StreamSource):
    """Examples already in memory (a split's own file that cannot stream, such as a csv
    file, read whole), served as a source so that its split is cut and checked as the
    streamed ones are."""

    def __init__(self, x: np.ndarray, source: str):
        self.x, self.source = np.asarray(x), source
        self.example_shape, self.dtype = tuple(self.x.shape[1:]), self.x.dtype

    def __len__(self) -> int:
        return len(self.x)

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        return self.x[np.asarray(rows, dtype=np.int64)]


class ImageFolderSource(StreamSource):
    """An image folder's files, decoded as runtime/data_files.py's :func:`read_image` does
    (``mode``, ``size``); all images must have the first one's size unless ``size`` is
    given."""

    def __init__(self, files: list[pathlib.Path], source: str, mode: str,
                 size: tuple[int, int] | None):
        self.files, self.source, self.mode, self.size = [str(f) for f in files], source, mode, size
        pixels, original = read_image(files[0], self.name(0), mode, size)
        self.first = original
        self.example_shape, self.dtype = pixels.shape, pixels.dtype

    def __len__(self) -> int:
        return len(self.files)

    def name(self, i: int) -> str:
        return image_label(self.source, pathlib.Path(self.files[int(i)]))

    def __getitem__(self, i: int) -> np.ndarray:
        label = self.name(i)
        pixels, original = read_image(pathlib.Path(self.files[int(i)]), label, self.mode,
                                      self.size)
        if self.size is None and original != self.first:
            raise DataError(
                f"images differ in size: '{self.name(0)}' is {self.first[0]}x{self.first[1]} "
                f"but '{label}' is {original[0]}x{original[1]}; give size=HxW to resize them"
            )
        return pixels

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.stack([self[int(i)] for i in rows]) if len(rows) else \
            np.zeros((0, *self.example_shape), self.dtype)


class ArraySource(StreamSource):
    """An array memory-mapped from a file: a ``.npy`` file, or a member of an ``.npz``
    stored uncompressed (``offset`` is where the member's ``.npy`` data starts)."""

    handles = ("array",)

    def __init__(self, path: pathlib.Path, source: str, offset: int = 0, member: str = ""):
        self.path, self.source, self.offset, self.member = str(path), source, offset, member
        array = self.mapped()
        self.length, self.example_shape = len(array), tuple(array.shape[1:])
        self.dtype = np.dtype(np.float32) if array.dtype == np.uint8 else array.dtype

    def mapped(self) -> np.ndarray:
        """The array, mapped on first use in this process (read-only)."""
        if getattr(self, "array", None) is None:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                shape, fortran, dtype = read_npy_header(handle)
                start = handle.tell()
            check_examples(shape, self.source, self.member)
            if dtype.hasobject:
                raise DataError(f"'{self.member or 'x'}' in '{self.source}' holds Python "
                                f"objects, not numbers")
            self.array = np.memmap(self.path, dtype=dtype, mode="r", offset=start, shape=shape,
                                   order="F" if fortran else "C") if np.prod(shape) else \
                np.zeros(shape, dtype)
        return self.array

    def __len__(self) -> int:
        return self.length

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        return uint8_to_unit(np.asarray(self.mapped()[np.asarray(rows, dtype=np.int64)]))


def read_npy_header(handle) -> tuple[tuple[int, ...], bool, np.dtype]:
    """The (shape, fortran_order, dtype) of the .npy data ``handle`` is at the start of (a
    file, or a member of an .npz opened by zipfile); the handle is left where the data
    begins."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(handle)
    return np.lib.format.read_array_header_2_0(handle)


class H5Source(StreamSource):
    """A dataset of an HDF5 file, opened (read-only) in the process that first reads it; a
    batch is one h5py read of its rows in increasing order (of the slice that spans them,
    when they are dense in it, as a whole-data batch or a small file's are)."""

    handles = ("file",)

    def __init__(self, path: pathlib.Path, source: str, key: str):
        import h5py

        self.path, self.source, self.key = str(path), source, key
        with h5py.File(self.path, "r") as handle:  # closed: each process opens its own
            dataset = handle[key]
            self.length, self.example_shape = len(dataset), tuple(dataset.shape[1:])
            stored = dataset.dtype
        self.dtype = np.dtype(np.float32) if stored == np.uint8 else stored

    def dataset(self):
        """The h5py dataset, its file opened on first use in this process."""
        if getattr(self, "file", None) is None:
            import h5py

            self.file = h5py.File(self.path, "r")
        return self.file[self.key]

    def __len__(self) -> int:
        return self.length

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        unique, back = np.unique(rows, return_inverse=True)  # h5py wants increasing rows
        try:
            if not len(unique):
                data = np.zeros((0, *self.example_shape), self.dataset().dtype)
            elif unique[-1] - unique[0] < 4 * len(unique):  # dense: one slice, then pick
                data = self.dataset()[unique[0] : unique[-1] + 1][unique - unique[0]]
            else:  # h5py's point selection: slower per row, but reads only these rows
                data = self.dataset()[unique]
        except LIBRARY_ERRORS as error:
            raise DataError(f"cannot read rows of '{self.key}' in '{self.source}': "
                            f"{first_line(error)}") from None
        return uint8_to_unit(np.asarray(data)[back])


class ArrayRecordSource(StreamSource):
    """ArrayRecord files (shards read as one sequence, in sorted name order); each record is
    decoded by runtime/data_files.py's :func:`decode_record` (inputs to predict, not
    ``labelled``, need no ``y``)."""

    handles = ("reader",)

    def __init__(self, paths: list[pathlib.Path], source: str, mode: str,
                 size: tuple[int, int] | None, length: int, first: np.ndarray,
                 labelled: bool = True):
        self.paths, self.source, self.mode, self.size = [str(p) for p in paths], source, mode, size
        self.length, self.example_shape, self.dtype = length, first.shape, first.dtype
        self.labelled = labelled

    def records(self):
        """Grain's ArrayRecord reader of the shards, opened on first use in this process."""
        if getattr(self, "reader", None) is None:
            from grain.sources import ArrayRecordDataSource

            self.reader = ArrayRecordDataSource(self.paths)
        return self.reader

    def __len__(self) -> int:
        return self.length

    def name(self, i: int) -> str:
        return f"record {int(i)} of '{self.source}'"

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        rows = [int(i) for i in rows]
        try:
            data = self.records().__getitems__(rows)
        except LIBRARY_ERRORS as error:
            raise DataError(f"cannot read '{self.source}': {first_line(error)}") from None
        examples = []
        for i, record in zip(rows, data):
            x, _ = decode_record(record, self.name(i), self.mode, self.size,
                                 labelled=self.labelled)
            if x.shape != self.example_shape:
                raise DataError(f"{self.name(i)} is {x.shape} but record 0 is "
                                f"{self.example_shape}; records must share one shape")
            examples.append(x)
        return np.stack(examples) if examples else np.zeros((0, *self.example_shape),
                                                            self.dtype)


# --------------------------------------------------------------------------------------------
# Opening a data path as sources
# --------------------------------------------------------------------------------------------


def _image_folder(path: pathlib.Path, source: str, options: dict,
                  part: str | None = None) -> dict:
    check_options(f"image folder '{source}'", options, ("mode", "size"))
    mode = parse_mode(options.get("mode", "RGB"))
    size = parse_size(options["size"]) if "size" in options else None
    names, files, labels = list_image_folder(path, source)
    return {"x": ImageFolderSource(files, source, mode, size), "y": labels,
            "class_names": np.asarray(names, dtype=str)}


def _npy_folder(path: pathlib.Path, source: str, options: dict,
                part: str | None = None) -> dict:
    check_options(f"array folder '{source}'", options, ())
    files = npy_folder_files(path)
    arrays = {key: ArraySource(file, source, member=key) if key.startswith("x") else
              np.load(file, allow_pickle=False) for key, file in files.items()
              if key != "class_names"}
    if "class_names" in files:
        arrays["class_names"] = names_of(np.load(files["class_names"], allow_pickle=False),
                                         "class_names", source)
    check_pairs(arrays, source, sorted(files), part)
    return arrays


def _npz(path: pathlib.Path, source: str, options: dict,
         part: str | None = None) -> dict:
    check_options(f"data file '{source}'", options, ())
    arrays = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
        members = {info.filename[:-4]: info for info in archive.infolist()
                   if info.filename.endswith(".npy")}
        for key in ("x", "y", *SPLIT_KEYS, "class_names"):
            if key not in members:
                continue
            info = members[key]
            if not key.startswith("x"):
                with archive.open(info) as member:
                    array = np.lib.format.read_array(member, allow_pickle=False)
                arrays[key] = names_of(array, key, source) if key == "class_names" else array
                continue
            if info.compress_type != zipfile.ZIP_STORED:
                raise DataError(f"'{key}' in '{source}' is compressed, so it cannot be read "
                                f"in pieces; save the file with np.savez (not "
                                f"np.savez_compressed) to stream it, or set stream off")
            arrays[key] = ArraySource(path, source, offset=npz_member_start(raw, info),
                                      member=key)
    check_pairs(arrays, source, sorted(members), part)
    return arrays


def npz_member_start(raw, info: zipfile.ZipInfo) -> int:
    """Where an uncompressed zip member's bytes (an .npz member's .npy file) start in the
    zip file open as ``raw``: after its local file header, whose name and extra field
    lengths are at bytes 26 and 28."""
    raw.seek(info.header_offset)
    local = raw.read(30)
    return info.header_offset + 30 + int.from_bytes(local[26:28], "little") + \
        int.from_bytes(local[28:30], "little")


def _h5(path: pathlib.Path, source: str, options: dict,
        part: str | None = None) -> dict:
    import h5py

    check_options(f"data file '{source}'", options, ())
    with h5py.File(path, "r") as handle:
        found, keys, plain = h5_layout(handle)
        arrays = {}
        for name, key in keys.items():
            check_h5_numeric(handle, key, source)
            if name.startswith("x"):
                arrays[name] = None
            else:
                y = np.asarray(handle[key][()])
                arrays[name] = y if plain else y.reshape(-1)  # the course's y: (1, m) or (m,)
        names = h5_class_names(handle, source)
        if names is not None:
            arrays["class_names"] = names
    check_pairs(arrays, source, found, part)
    for name, key in keys.items():
        if name.startswith("x"):
            arrays[name] = H5Source(path, source, key)
    return arrays


def _array_record(path: pathlib.Path, source: str, options: dict,
                  part: str | None = None) -> dict:
    from grain.sources import ArrayRecordDataSource

    check_options(f"ArrayRecord data '{source}'", options, ("mode", "size"))
    mode = parse_mode(options.get("mode", "RGB"))
    size = parse_size(options["size"]) if "size" in options else None
    paths = array_record_paths(path, source)
    reader = ArrayRecordDataSource([str(p) for p in paths])
    labels, first = [], None
    for start in range(0, len(reader), 1024):  # labels up front: one pass over the records
        chunk = range(start, min(start + 1024, len(reader)))
        for i, record in zip(chunk, reader.__getitems__(list(chunk))):
            x, y = decode_record(record, f"record {i} of '{source}'", mode, size,
                                 decode_x=first is None)
            first = x if first is None else first
            labels.append(y)
    if first is None:
        raise DataError(f"ArrayRecord data '{source}' holds no records")
    y = np.stack(labels)
    return {"x": ArrayRecordSource(paths, source, mode, size, len(y), first), "y": y}


def open_streamed(path: pathlib.Path, source: str, options: dict,
                  part: str | None = None) -> dict | None:
    """The data at ``path`` as runtime/data_files.py's ``load_file`` gives it, with each
    ``x`` a :class:`StreamSource` (labels and class names in memory); None for data that
    cannot stream (a csv file). ``part`` as for ``load_file``: the file is that split's own
    file, and its pair comes back as ``x_PART``/``y_PART``."""
    openers = {"npy_folder": _npy_folder, "array_record": _array_record,
               "image_folder": _image_folder, "npz": _npz, "h5": _h5}
    opener = openers.get(data_kind(path))
    if opener is None:  # a csv file, or no supported kind
        return None
    try:
        arrays = opener(path, source, options, part)
    except DataError:
        raise
    except (*LIBRARY_ERRORS, zipfile.BadZipFile) as error:
        raise DataError(f"cannot read data file '{source}': {first_line(error)}") from None
    if part is not None:
        return split_file_arrays(arrays, source, part)
    return arrays
