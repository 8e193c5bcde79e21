"""Training data that stays on disk: splits read batch by batch by Grain (numpy and Grain
only; no JAX here).

:func:`load_streamed` is runtime/run.py's ``load_data`` for data too big to decode whole:
it opens the data's sources (runtime/stream_sources.py), reads the labels, cuts the very
same splits as runtime/data.py's ``make_splits`` (:func:`~runtime.data.split_indices`) and
checks the labels as ``prepare`` does; a split whose decoded ``x`` would take more than a
quarter of memory becomes a :class:`StreamedSplit`. Its :meth:`StreamedSplit.batches`
reads minibatches in the order the trainer asks for, decoding in Grain worker processes
ahead of the device.

Data options that concern streaming: ``workers=N`` (worker processes decoding batches; 0
decodes in the training process; default :func:`default_workers`) and ``skip_bad=true``
(an unreadable file is left out of its batch and counted instead of stopping the run).
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Iterator

import numpy as np

from .data import (
    Dataset,
    Splits,
    add_split_file,
    brought_parts,
    check_examples,
    check_kinds,
    resolve_path,
    shape_labels,
    split_indices,
)
from .data_base import STREAM_OPTIONS, DataError, int_option
from .stream_sources import StreamSource, open_streamed

__all__ = ["STREAM_MODES", "BatchReader", "StreamedSplit",
           "decoded_bytes", "default_workers", "load_streamed", "should_stream"]

STREAM_MODES = ("auto", "on", "off")
PREFETCH_BATCHES = 2  # batches each worker decodes ahead


def default_workers() -> int:
    """Worker processes when the data does not say ``workers=``: half the cores this
    process may use (the other half run the training step), at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(8, cores // 2))


def decoded_bytes(m: int, input_shape: tuple[int, ...]) -> int:
    """Bytes of ``m`` examples of ``input_shape`` as float32, as training holds them."""
    return int(m) * math.prod(input_shape) * 4


def should_stream(stream: str, m: int, input_shape: tuple[int, ...],
                  memory_bytes: int | None = None) -> bool:
    """Whether a split of ``m`` examples streams: ``stream on``, or ``auto`` and its decoded
    size exceeds a quarter of ``memory_bytes`` (default: the machine's memory)."""
    if stream not in STREAM_MODES:
        raise DataError(f"stream {stream!r} must be one of: {', '.join(STREAM_MODES)}")
    if stream != "auto":
        return stream == "on"
    if memory_bytes is None:
        import psutil

        memory_bytes = psutil.virtual_memory().total
    return decoded_bytes(m, input_shape) > memory_bytes / 4


class BatchReader:
    """Reads a batch of a split's positions: the examples shaped to the net's input as
    float32, checked finite, normalized with the train statistics (``mean``/``std`` or
    None). Picklable, so Grain's worker processes run it. Returns ``(x, kept, bad)``: the
    rows read, the positions they are (all of them unless ``skip_bad``) and the names of the
    examples left out."""

    def __init__(self, source: StreamSource, rows: np.ndarray, input_shape: tuple[int, ...],
                 name: str, *, mean=None, std=None, skip_bad: bool = False):
        self.source, self.rows, self.input_shape, self.name = source, rows, input_shape, name
        self.mean, self.std, self.skip_bad = mean, std, skip_bad

    def __call__(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        bad: list[str] = []
        if self.skip_bad:
            examples, kept = [], []
            for p in positions:
                try:
                    examples.append(self.source.read_rows(self.rows[[p]])[0])
                    kept.append(p)
                except DataError:
                    bad.append(self.source.name(self.rows[p]))
            positions = np.asarray(kept, dtype=np.int64)
            x = np.stack(examples) if examples else \
                np.zeros((0, *self.source.example_shape), self.source.dtype)
        else:
            x = self.source.read_rows(self.rows[positions])
        x = np.asarray(x).reshape((len(x), *self.input_shape)).astype(np.float32)
        finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if not finite.all():
            row = int(np.argmax(~finite))
            kind = "NaN" if np.isnan(x[row]).any() else "inf"
            raise DataError(f"x holds {kind} in {self.name} split (row {int(positions[row])}: "
                            f"{self.source.name(self.rows[positions[row]])})")
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return np.ascontiguousarray(x, dtype=np.float32), positions, bad


class StreamedSplit:
    """One split whose examples stay on disk: ``y`` (prepared labels, in memory),
    ``input_shape``, ``len()``, :meth:`batches` (minibatches in a given order, read by
    Grain) and :meth:`read` (the examples of some positions). ``skipped`` counts the
    examples left out so far (``skip_bad``), ``skipped_names`` names them."""

    def __init__(self, source: StreamSource, rows: np.ndarray, y: np.ndarray,
                 input_shape: tuple[int, ...], name: str, *, workers: int = 0,
                 skip_bad: bool = False, stats: dict | None = None):
        self.source, self.rows, self.y, self.input_shape = source, rows, y, input_shape
        self.name, self.workers, self.skip_bad = name, workers, skip_bad
        self.stats = stats or {"mean": None, "std": None}
        self.skipped, self.skipped_names = 0, []

    def __len__(self) -> int:
        return len(self.rows)

    def reader(self, *, normalized: bool = True, skip_bad: bool | None = None) -> BatchReader:
        stats = self.stats if normalized else {"mean": None, "std": None}
        return BatchReader(self.source, self.rows, self.input_shape, self.name,
                           mean=stats["mean"], std=stats["std"],
                           skip_bad=self.skip_bad if skip_bad is None else skip_bad)

    def batches(self, order: np.ndarray, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(x, y)`` minibatches of the positions ``order[0:batch]``, ``order[batch:2*batch]``
        ... (the last one may be partial), read ahead by Grain in this order."""
        for x, kept, bad in read_batches(self.reader(), order, batch, self.workers):
            if bad:
                self.skipped += len(bad)
                self.skipped_names += bad
            yield x, self.y[kept]

    def read(self, positions: np.ndarray) -> np.ndarray:
        """``x`` of some positions, in order (read in this process; an unreadable example is
        an error even with ``skip_bad``)."""
        x, _, _ = self.reader(skip_bad=False)(np.asarray(positions))
        return x


def read_batches(reader: BatchReader, order: np.ndarray, batch: int,
                 workers: int) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
    """``reader``'s batches of the positions in ``order``, ``batch`` at a time, decoded by
    ``workers`` Grain worker processes (0: in this process, a thread reading ahead)."""
    import grain

    order = np.asarray(order, dtype=np.int64)
    if len(order) == 0:
        return
    dataset = grain.MapDataset.source(order).batch(int(batch)).map(reader)
    read_options = grain.ReadOptions(num_threads=1, prefetch_buffer_size=PREFETCH_BATCHES)
    stream = dataset.to_iter_dataset(read_options)
    if workers > 0:
        from absl import flags

        if not flags.FLAGS.is_parsed():  # Grain's workers read its flags; netc has none
            flags.FLAGS.mark_as_parsed()
        stream = stream.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=int(workers), per_worker_buffer_size=PREFETCH_BATCHES))
    iterator = iter(stream)
    try:
        for x, kept, bad in iterator:
            # a worker's batch arrives in shared memory: copied out, it is freed at once
            yield np.array(x), np.array(kept), bad
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def streamed_stats(split: StreamedSplit, batch: int = 256) -> dict[str, np.ndarray]:
    """Per-feature mean and std of a split's examples (std 0 replaced by 1), read in one
    pass and merged batch by batch in float64 (Chan et al.'s pairwise update): prepare()'s
    ``standard_stats`` to float32 rounding."""
    count, mean, m2 = 0, None, None
    order = np.arange(len(split))
    for x, _, _ in read_batches(split.reader(normalized=False), order, batch, split.workers):
        x = x.astype(np.float64)
        n = len(x)
        if n == 0:
            continue
        batch_mean = x.mean(axis=0)
        batch_m2 = ((x - batch_mean) ** 2).sum(axis=0)
        if mean is None:
            count, mean, m2 = n, batch_mean, batch_m2
            continue
        delta = batch_mean - mean
        total = count + n
        mean = mean + delta * (n / total)
        m2 = m2 + batch_m2 + delta**2 * (count * n / total)
        count = total
    if mean is None:
        raise DataError(f"{split.name} split has no readable examples")
    std = np.sqrt(m2 / count)
    std[std == 0] = 1.0
    return {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}


def _flag(value, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise DataError(f"option {what}={value!r} must be true or false")


def _open_split_file(path, name: str, options: dict, *, part: str) -> dict:
    arrays = open_streamed(pathlib.Path(path), name, dict(options), part=part)
    if arrays is None:
        raise DataError(f"{part} file '{name}' cannot stream (a csv file); set stream off")
    return arrays


def load_streamed(net, base_dir, loss: str, *, stream: str, skip_bad: bool = False,
                  memory_bytes: int | None = None) -> tuple[Splits, dict] | None:
    """Like runtime/run.py's ``load_data``, but each split whose decoded size calls for it
    (:func:`should_stream`) is a :class:`StreamedSplit` instead of a ``Dataset``. None when
    the data cannot stream (a built-in, a csv file), ``stream off``, or no split needs to
    stream: the caller then loads it in memory. The splits are the very examples
    ``make_splits`` cuts (same seed, same permutation); the labels are checked and shaped
    by data.py's own functions; ``normalize standard`` statistics come from one streamed
    pass over train (:func:`streamed_stats`)."""
    from netc.compiler.losses import LOSSES

    cfg = net.train
    if stream == "off" or cfg.data is None or cfg.data.name != "file":
        should_stream(stream, 0, ())  # still reject a bad mode
        return None
    options = dict(cfg.data.options)
    source = str(options.pop("path"))
    workers = int_option(options, "workers", default_workers()) if "workers" in options \
        else default_workers()
    skip_bad = _flag(options["skip_bad"], "skip_bad") if "skip_bad" in options else skip_bad
    for key in STREAM_OPTIONS:
        options.pop(key, None)
    split_files = {part: str(options.pop(part)) for part in ("dev", "test") if part in options}
    path = resolve_path(source, base_dir)
    if not path.exists():
        raise DataError(f"data file '{source}' not found (looked in {path.resolve()})")
    arrays = open_streamed(path, source, options)
    if arrays is None:
        return None
    for part, name in split_files.items():
        arrays = add_split_file(arrays, source, part, name, options, base_dir=base_dir,
                                load=_open_split_file)
    input_shape = tuple(int(d) for d in net.input_shape)
    out = net.output_shape
    n_outputs = int(np.prod(out)) if len(out) != 1 else out[0]
    labels = LOSSES[loss].labels
    check_kinds(labels, cfg.normalize)
    if len(arrays["x"]) != len(arrays["y"]):
        raise DataError(f"x has {len(arrays['x'])} examples but y has {len(arrays['y'])}")
    rows = split_indices(len(arrays["x"]), split=cfg.split, seed=cfg.seed,
                         train_dev=cfg.train_dev, brought=brought_parts(arrays))
    parts: dict[str, tuple[StreamSource, np.ndarray, np.ndarray]] = {}
    for part, idx in rows.items():
        if idx is None:
            x, y = arrays[f"x_{part}"], np.asarray(arrays[f"y_{part}"])
            idx = np.arange(len(x))
            if len(x) != len(y):
                raise DataError(f"x has {len(x)} examples but y has {len(y)} in {part} split")
        else:
            x, y = arrays["x"], np.asarray(arrays["y"])[idx]
        if len(idx) == 0 and part != "train":
            continue
        if len(idx) == 0:
            raise DataError("train split is empty")
        check_examples(x.dtype, tuple(x.example_shape), input_shape, part)
        parts[part] = (x, idx, shape_labels(y, labels, n_outputs, part))
    streamed = {part: should_stream(stream, len(idx), input_shape, memory_bytes)
                for part, (_, idx, _) in parts.items()}
    if not any(streamed.values()):
        return None
    splits = {part: StreamedSplit(x, idx, y, input_shape, part, workers=workers,
                                  skip_bad=skip_bad) for part, (x, idx, y) in parts.items()}
    stats: dict = {"mean": None, "std": None}
    if cfg.normalize == "standard":
        stats = streamed_stats(splits["train"])
    for split in splits.values():
        split.stats = stats
    result = {part: split if streamed[part] else Dataset(split.read(np.arange(len(split))),
                                                         split.y)
              for part, split in splits.items()}
    names = arrays.get("class_names")
    class_names = tuple(str(n) for n in names) if names is not None else None
    return Splits(result["train"], result.get("dev"), result.get("test"), class_names,
                  train_dev=result.get("train_dev")), stats
