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

import contextlib
import math
import os
import pathlib
import signal
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
from .data_base import STREAM_OPTIONS, DataError, first_line, int_option
from .data_files import LIBRARY_ERRORS, load_file
from .stream_sources import MemorySource, StreamSource, open_streamed

__all__ = ["STREAM_MODES", "BatchPositions", "BatchReader", "ShardSlice", "StreamedSplit",
           "check_stream_mode", "checked_parts", "decoded_bytes", "default_workers",
           "ignore_interrupts", "load_streamed", "machine_memory", "process_shard",
           "read_batches", "read_whole", "should_stream", "split_file_opener",
           "stream_options", "streamed_stats"]

STREAM_MODES = ("auto", "on", "off")
PREFETCH_BATCHES = 2  # batches each worker decodes ahead
PIPE_BELOW = 2**62  # Grain's min_shm_size: every batch is sent through a pipe


def default_workers() -> int:
    """Worker processes when the data does not say ``workers=``: half the cores this
    process may use (the other half run the training step), at most 8; none below 4 cores,
    where a worker only competes with training (benchmarks/stream_memory.py: on 2 cores,
    one worker trained a ConvNet at 252 images/s, reading in process at 327)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return min(8, cores // 2) if cores >= 4 else 0


def decoded_bytes(m: int, input_shape: tuple[int, ...]) -> int:
    """Bytes of ``m`` examples of ``input_shape`` as float32, as training holds them."""
    return int(m) * math.prod(input_shape) * 4


def check_stream_mode(stream: str) -> None:
    """A DataError unless ``stream`` is one of :data:`STREAM_MODES`."""
    if stream not in STREAM_MODES:
        raise DataError(f"stream {stream!r} must be one of: {', '.join(STREAM_MODES)}")


def should_stream(stream: str, m: int, input_shape: tuple[int, ...],
                  memory_bytes: int | None = None) -> bool:
    """Whether a split of ``m`` examples streams: ``stream on``, or ``auto`` and its decoded
    size exceeds a quarter of ``memory_bytes`` (default: :func:`machine_memory`)."""
    check_stream_mode(stream)
    if stream != "auto":
        return stream == "on"
    if memory_bytes is None:
        memory_bytes = machine_memory()
    return decoded_bytes(m, input_shape) > memory_bytes / 4


CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max",  # cgroup v2, then v1
                 "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's (psutil), or its container's
    limit (cgroup) where that is smaller."""
    import psutil

    total = psutil.virtual_memory().total
    for path in CGROUP_LIMITS:
        try:
            limit = int(pathlib.Path(path).read_text().strip())
        except (OSError, ValueError):  # no such file, or "max" (no limit)
            continue
        return min(total, limit)
    return total


class BatchReader:
    """Reads a batch of a split's positions: the examples shaped to the net's input as
    float32, checked finite (unless not ``finite``: new inputs to predict, where a NaN
    predicts NaN as it does read whole), normalized with the train statistics
    (``mean``/``std`` or None). Picklable, so Grain's worker processes run it. Returns
    ``(x, kept, bad)``: the rows read, the positions they are (all of them unless
    ``skip_bad``) and the names of the examples left out."""

    def __init__(self, source: StreamSource, rows: np.ndarray, input_shape: tuple[int, ...],
                 name: str, *, mean=None, std=None, skip_bad: bool = False,
                 finite: bool = True):
        self.source, self.rows, self.input_shape, self.name = source, rows, input_shape, name
        self.mean, self.std, self.skip_bad, self.finite = mean, std, skip_bad, finite

    def __call__(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        bad: list[str] = []
        try:
            x = self.read(positions)
        except DataError:
            if not self.skip_bad:
                raise
            examples, kept = [], []
            for p in positions:  # the batch again, one example at a time, leaving out the bad
                try:
                    examples.append(self.read(np.asarray([p]))[0])
                    kept.append(p)
                except DataError:
                    bad.append(self.source.name(self.rows[p]))
            positions = np.asarray(kept, dtype=np.int64)
            x = np.stack(examples) if examples else \
                np.zeros((0, *self.source.example_shape), self.source.dtype)
        x = np.asarray(x).reshape((len(x), *self.input_shape)).astype(np.float32)
        finite = np.isfinite(x.reshape(len(x), math.prod(self.input_shape))).all(axis=1)
        if self.finite and not finite.all():
            row = int(np.argmax(~finite))
            kind = "NaN" if np.isnan(x[row]).any() else "inf"
            raise DataError(f"x holds {kind} in {self.name} split (row {int(positions[row])}: "
                            f"{self.source.name(self.rows[positions[row]])})")
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return np.ascontiguousarray(x, dtype=np.float32), positions, bad

    def read(self, positions: np.ndarray) -> np.ndarray:
        """The examples at ``positions`` as the source holds them; a library's error reading
        them becomes a DataError naming the first."""
        try:
            return self.source.read_rows(self.rows[positions])
        except DataError:
            raise
        except (*LIBRARY_ERRORS, IndexError) as error:  # IndexError: a file that shrank
            first = self.source.name(self.rows[positions[0]]) if len(positions) else \
                self.source.source
            raise DataError(f"cannot read {first}: {first_line(error)}") from None


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

    def reader(self, *, normalized: bool = True, skip_bad: bool | None = None,
               stats: dict | None = None) -> BatchReader:
        """The split's :class:`BatchReader`: normalized with ``stats`` (``{"mean", "std"}``)
        or else the split's own statistics (not ``normalized``: raw examples)."""
        if not normalized:
            stats = {"mean": None, "std": None}
        elif stats is None:
            stats = self.stats
        return BatchReader(self.source, self.rows, self.input_shape, self.name,
                           mean=stats["mean"], std=stats["std"],
                           skip_bad=self.skip_bad if skip_bad is None else skip_bad)

    def batches(self, order: np.ndarray, batch, *,
                shard: tuple[int, int] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(x, y)`` minibatches of the positions ``order[0:batch]``, ``order[batch:2*batch]``
        ... (the last one may be partial; with ``skip_bad`` one may lack its unreadable
        examples, or be empty), read ahead by Grain in this order. ``order`` may
        be several epochs' orders, ``(epochs, m)`` (the trainer's ``orders()``): their
        minibatches come epoch after epoch from one set of worker processes (starting them
        takes a second or two). ``batch`` may also be the sizes of each epoch's minibatches
        in turn (:class:`BatchPositions`). With ``shard``
        ``(index, count)`` (:func:`process_shard`: this JAX process of all of them) each
        minibatch is only this process's part of it, ``np.array_split(positions,
        count)[index]``: every host reads only its rows."""
        with contextlib.closing(self.positioned_batches(order, batch, shard=shard)) as batches:
            for x, y, _ in batches:  # closed with this one: its reader's workers stop at once
                yield x, y

    def positioned_batches(self, order: np.ndarray, batch, *,
                           shard: tuple[int, int] | None = None, stats: dict | None = None,
                           ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """:meth:`batches` as ``(x, y, positions)``: each minibatch with the positions in
        the split of the examples it holds (``skip_bad`` may leave some out), normalized with
        ``stats`` where given instead of the split's own statistics."""
        for x, kept, bad in read_batches(self.reader(stats=stats), order, batch, self.workers,
                                         shard=shard):
            if bad:
                self.skipped += len(bad)
                self.skipped_names += bad
            yield x, self.y[kept], kept

    def read(self, positions: np.ndarray) -> np.ndarray:
        """``x`` of some positions, in order (read in this process; an unreadable example is
        an error even with ``skip_bad``)."""
        x, _, _ = self.reader(skip_bad=False)(np.asarray(positions))
        return x


def process_shard() -> tuple[int, int]:
    """``(index, count)`` of this JAX process among all of them, as Grain's
    ``ShardByJaxProcess`` gives it: the ``shard`` of :meth:`StreamedSplit.batches`."""
    import grain

    options = grain.sharding.ShardByJaxProcess()
    return options.shard_index, options.shard_count


class ShardSlice:
    """A batch of positions cut to one shard's part (picklable, for Grain's workers)."""

    def __init__(self, index: int, count: int):
        self.index, self.count = index, count

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        return np.array_split(positions, self.count)[self.index]


class BatchPositions:
    """The minibatches of one or more epochs' orders as a random-access source for Grain:
    item ``k`` is the positions of epoch ``k // per_epoch``'s minibatch ``k % per_epoch``.
    ``batch`` cuts each epoch's order: an int (``batch`` positions each, the epoch's last one
    partial), or the sizes of its minibatches in turn (they add up to an epoch's length);
    minibatches never span epochs."""

    def __init__(self, orders: np.ndarray, batch):
        self.orders = orders
        m = orders.shape[1]
        if np.ndim(batch) == 0:
            full, rest = divmod(m, int(batch))
            sizes = [int(batch)] * full + ([rest] if rest else [])
        else:
            sizes = [int(s) for s in batch]
        if sum(sizes) != m or any(s <= 0 for s in sizes):
            raise ValueError(f"minibatch sizes {sizes} do not cut an order of {m}")
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.per_epoch = len(sizes)

    def __len__(self) -> int:
        return len(self.orders) * self.per_epoch

    def __getitem__(self, k: int) -> np.ndarray:
        epoch, i = divmod(int(k), self.per_epoch)
        return np.asarray(self.orders[epoch, self.starts[i] : self.starts[i + 1]])


def ignore_interrupts(index: int, count: int) -> None:
    """Worker processes ignore Ctrl-C (SIGINT reaches the whole process group): the
    training process stops them, so an interrupted run prints no worker's traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def read_batches(reader: BatchReader, order: np.ndarray, batch, workers: int, *,
                 shard: tuple[int, int] | None = None,
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
    """``reader``'s minibatches of the positions in ``order`` (one epoch's, or a 2-D array of
    several epochs' orders, cut by ``batch``: :class:`BatchPositions`), each cut to
    ``shard``'s part (see
    :meth:`StreamedSplit.batches`), decoded by ``workers`` Grain worker processes (0: in
    this process, a thread reading ahead)."""
    import grain

    order = np.asarray(order)
    orders = order.reshape(1, -1) if order.ndim == 1 else order
    if orders.size == 0:
        return
    dataset = grain.MapDataset.source(BatchPositions(orders, batch))
    if shard is not None and shard[1] > 1:
        dataset = dataset.map(ShardSlice(*shard))
    dataset = dataset.map(reader)
    # in this process: one thread reads ahead; in workers: each reads in its own process
    # and keeps PREFETCH_BATCHES ready, so about 2 * workers + 2 batches are in memory
    threads, ahead = (0, 0) if workers > 0 else (1, PREFETCH_BATCHES)
    stream = dataset.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                                       prefetch_buffer_size=ahead))
    if workers > 0:
        from absl import flags

        if not flags.FLAGS.is_parsed():  # Grain's workers read its flags; netc has none
            flags.FLAGS.mark_as_parsed()
        # batches come back through a pipe, not shared memory: /dev/shm is small in
        # containers (64 MB by default in Docker), and nothing is left to unlink at exit
        stream = grain.experimental.WithOptionsIterDataset(
            stream, grain.experimental.DatasetOptions(min_shm_size=PIPE_BELOW))
        stream = stream.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=int(workers), per_worker_buffer_size=PREFETCH_BATCHES),
            worker_init_fn=ignore_interrupts)
    iterator = iter(stream)
    try:
        while True:
            try:
                element = next(iterator)
            except StopIteration:
                break
            except RuntimeError as error:  # Grain's words for a worker that died (killed)
                if "terminated unexpectedly" not in str(error):
                    raise
                raise DataError(f"a process reading the data stopped unexpectedly (out of "
                                f"memory?); try fewer workers= ({workers} now)") from None
            yield element
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def streamed_stats(split: StreamedSplit, batch: int = 256) -> dict[str, np.ndarray]:
    """Per-feature mean and std of a split's examples (std 0 replaced by 1), read in one
    pass and merged batch by batch in float64 (Chan et al.'s pairwise update): prepare()'s
    statistics to float32 rounding."""
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


def read_whole(split: StreamedSplit) -> Dataset:
    """A split read whole into memory (through its workers; ``skip_bad`` leaves out what
    cannot be read)."""
    xs, ys = [], []
    for x, y in split.batches(np.arange(len(split)), 256):
        xs.append(x)
        ys.append(y)
    x = np.concatenate(xs) if xs else np.zeros((0, *split.input_shape), np.float32)
    return Dataset(x, np.concatenate(ys) if ys else split.y[:0])


def split_file_opener(stream: str):
    """``add_split_file``'s ``load`` for streamed data: a split's own file opened as a
    source; one that cannot stream (a csv file) is read whole into memory (a
    :class:`~runtime.stream_sources.MemorySource`), or with ``stream on`` is an error."""
    def load(path, name: str, options: dict, *, part: str, **extra) -> dict:
        arrays = open_streamed(pathlib.Path(path), name, dict(options), part=part)
        if arrays is not None:
            return arrays
        if stream == "on":
            raise DataError(f"{part} file '{name}' cannot stream (a csv file); set stream "
                            f"auto or off")
        arrays = load_file(pathlib.Path(path), name, dict(options), part=part, **extra)
        return {**arrays, f"x_{part}": MemorySource(arrays[f"x_{part}"], name)}
    return load


def stream_options(options: dict, skip_bad: bool) -> tuple[int, bool, dict]:
    """``(workers, skip_bad, the other options)`` of a data line's options: ``workers=``
    (default :func:`default_workers`) and ``skip_bad=`` (default the train setting's)."""
    workers = int_option(options, "workers", default_workers())
    skip_bad = _flag(options["skip_bad"], "skip_bad") if "skip_bad" in options else skip_bad
    return workers, skip_bad, {k: v for k, v in options.items() if k not in STREAM_OPTIONS}


def checked_parts(arrays: dict, net, loss: str) -> dict[str, tuple[StreamSource, np.ndarray,
                                                                     np.ndarray]]:
    """The non-empty splits of streamed ``arrays`` as ``{name: (source, rows of it, prepared
    labels)}``, cut as ``make_splits`` cuts them and checked as ``prepare`` checks them."""
    from netc.compiler.losses import LOSSES

    cfg = net.train
    input_shape = tuple(int(d) for d in net.input_shape)
    out = net.output_shape
    n_outputs = int(np.prod(out)) if len(out) != 1 else out[0]
    labels = LOSSES[loss].labels
    check_kinds(labels, cfg.normalize)
    if len(arrays["x"]) != len(arrays["y"]):
        raise DataError(f"x has {len(arrays['x'])} examples but y has {len(arrays['y'])}")
    rows = split_indices(len(arrays["x"]), split=cfg.split, seed=cfg.seed,
                         train_dev=cfg.train_dev, brought=brought_parts(arrays))
    parts = {}
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
    return parts


def load_streamed(net, base_dir, loss: str, *, stream: str, skip_bad: bool = False,
                  memory_bytes: int | None = None) -> tuple[Splits, dict] | None:
    """Like runtime/run.py's ``load_data``, but each split whose decoded size calls for it
    (:func:`should_stream`) is a :class:`StreamedSplit` instead of a ``Dataset``. None when
    the data cannot stream (a built-in, a csv file), ``stream off``, or no split needs to
    stream: the caller then loads it in memory. A split's own file that cannot stream
    (``test="t.csv"``) is read in memory (an error with ``stream on``). The splits are the
    very examples ``make_splits`` cuts (same seed, same permutation); the labels are checked
    and shaped by data.py's own functions; ``normalize standard`` statistics come from one
    streamed pass over train (:func:`streamed_stats`). ``skip_bad`` is the train setting;
    the data line's ``skip_bad=`` overrides it."""
    cfg = net.train
    if stream == "off" or cfg.data is None or cfg.data.name != "file":
        check_stream_mode(stream)
        return None
    workers, skip_bad, options = stream_options(dict(cfg.data.options), skip_bad)
    source = str(options.pop("path"))
    split_files = {part: str(options.pop(part)) for part in ("dev", "test") if part in options}
    path = resolve_path(source, base_dir)
    if not path.exists():
        raise DataError(f"data file '{source}' not found (looked in {path.resolve()})")
    arrays = open_streamed(path, source, options)
    if arrays is None:
        return None
    for part, name in split_files.items():
        arrays = add_split_file(arrays, source, part, name, options, base_dir=base_dir,
                                load=split_file_opener(stream))
    parts = checked_parts(arrays, net, loss)
    input_shape = tuple(int(d) for d in net.input_shape)
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
    result = {part: split if streamed[part] else read_whole(split)
              for part, split in splits.items()}
    names = arrays.get("class_names")
    class_names = tuple(str(n) for n in names) if names is not None else None
    return Splits(result["train"], result.get("dev"), result.get("test"), class_names,
                  train_dev=result.get("train_dev")), stats
