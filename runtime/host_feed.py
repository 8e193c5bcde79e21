"""Minibatches from the host: training on a split whose examples stay on disk.

A streamed split (runtime/stream.py's StreamedSplit) hands out numpy minibatches in any
order asked of it. The Trainer (runtime/train.py) then runs its step loop over them: per
epoch its own order, `split.batches(order, batch)`, and one compiled step per minibatch
taking the minibatch itself, with the (seed, epoch, step) keys, augmentation and
accumulation of the in-memory loop, so that both end with the same parameters. (Where the
net's loop is `scan`, runtime/host_scan.py stacks the minibatches in groups instead, one
dispatch per group, through its own reader of host minibatches.)

    train = HostData(streamed_split)             # what to_device gives for a streamed split
    for x, y in feed(split.batches(order, 64), put, rates): ...   # x, y on the device

`feed` puts the next minibatch on the device while the previous step runs (and Grain
prefetches on the host); `FeedRates` times the loop's waits on the reader, so the progress
line can show the data rate beside the step rate. No import of runtime/train.py here.

Starting a reader's worker processes takes a second or two, so a run does not start one per
epoch: an `EpochReader` reads a window of consecutive epochs through one `batches()` call
(the epochs' orders as one (epochs, m) array, at most WINDOW_BYTES of them) and hands them
out epoch by epoch (`train_reader` for the train split, `dev_reader` for the per-epoch dev
check).

With a mesh over several processes (runtime/distributed.py), `train_reader` has each
process read only its rows of every global minibatch (the rows its devices hold) and
assembles the global minibatch with `jax.make_array_from_process_local_data`; an epoch's
last, partial minibatch runs replicated (Placement.batch), so every process reads it whole.
Data held in memory is fed the same way over several processes (`ArrayBatches`: the
`batches()` contract over arrays, rows gathered with numpy), so that each process puts only
its rows on its devices.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from .devices import put_same_on_every_process


def is_streamed(split) -> bool:
    """Whether a split's examples stay on disk (a StreamedSplit, or HostData holding one)
    rather than sitting in memory as arrays."""
    return isinstance(split, HostData) or (hasattr(split, "batches") and not hasattr(split, "x"))


@dataclass(eq=False)
class HostData:
    """A streamed split as the Trainer holds it: `m` examples read from `split` batch by
    batch (the in-memory counterpart is runtime/train.py's Data, arrays on the device)."""

    split: object  # runtime/stream.py's StreamedSplit

    @property
    def m(self) -> int:
        return len(self.split)


class ArrayBatches:
    """A split held in memory (``x``, ``y`` arrays) with the ``batches()`` contract of a
    streamed split (runtime/stream.py's StreamedSplit): minibatches gathered with numpy in
    the order asked for. Over several processes the Trainer feeds in-memory data through it,
    each process gathering only its rows of every minibatch."""

    skip_bad = False

    def __init__(self, x, y):
        self.x, self.y = np.asarray(x), np.asarray(y)
        self.skipped, self.skipped_names = 0, []

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, order: np.ndarray, batch, *, shard: tuple[int, int] | None = None
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(x, y)`` minibatches of ``order`` (one epoch's, or ``(epochs, m)``), cut by
        ``batch`` (a size, or each epoch's minibatch sizes in turn), each cut to ``shard``'s
        part ``np.array_split(positions, count)[index]``: as StreamedSplit.batches."""
        orders = np.asarray(order).reshape(-1, np.shape(order)[-1])
        if orders.size == 0:
            return
        m = orders.shape[1]
        if np.ndim(batch) == 0:
            starts = list(range(0, m, int(batch))) + [m]
        else:
            starts = [0, *np.cumsum(batch).tolist()]
        for row in orders:
            for a, b in itertools.pairwise(starts):
                positions = row[a:b]
                if shard is not None and shard[1] > 1:
                    positions = np.array_split(positions, shard[1])[shard[0]]
                yield self.x[positions], self.y[positions]

    def read(self, positions: np.ndarray) -> np.ndarray:
        return self.x[np.asarray(positions)]


@dataclass
class FeedRates:
    """What the host-fed loop did: examples read, seconds it waited on the reader, seconds
    it ran in all. The data rate is examples over the waits (how fast the reader hands
    over batches), the step rate examples over the rest; the lower one limits the run."""

    examples: int = 0
    read_seconds: float = 0.0
    seconds: float = 0.0

    def data_rate(self) -> float:
        return self.examples / max(self.read_seconds, 1e-9)

    def step_rate(self) -> float:
        return self.examples / max(self.seconds - self.read_seconds, 1e-9)

    def since(self, earlier: FeedRates) -> FeedRates:
        """What the loop did after `earlier` (a copy of these rates taken then)."""
        return FeedRates(self.examples - earlier.examples,
                         self.read_seconds - earlier.read_seconds,
                         self.seconds - earlier.seconds)


def batch_placer(placement=None) -> Callable[[np.ndarray], jax.Array]:
    """A function putting a host minibatch on the run's devices: the default device, or
    split along a Placement's `data` axis (replicated when its size does not split, as
    Placement.batch leaves such a minibatch inside programs). Over several processes each
    holds the whole minibatch and puts its devices' parts (put_same_on_every_process)."""
    if placement is None:
        def put_here(a: np.ndarray, k: int | None = None) -> jax.Array:
            return jax.device_put(a)
        return put_here

    def put(a: np.ndarray, k: int | None = None) -> jax.Array:
        if a.shape[0] % placement.count:
            return put_same_on_every_process(a, placement.replicated())
        spec = PartitionSpec(placement.mesh.axis_names[0], *([None] * (a.ndim - 1)))
        return put_same_on_every_process(a, NamedSharding(placement.mesh, spec))
    return put


def process_rows(placement, batch: int) -> slice | None:
    """The rows of a global minibatch of `batch` examples that this process's devices
    hold, split along the mesh's `data` axis; None when this process holds every row (one
    process, no mesh, or a size that does not split: it runs replicated)."""
    if placement is None or jax.process_count() == 1 or batch % placement.count:
        return None
    sharding = NamedSharding(placement.mesh, PartitionSpec(placement.mesh.axis_names[0]))
    held = sorted((index[0].start or 0, index[0].stop or batch)
                  for index in sharding.addressable_devices_indices_map((batch,)).values())
    starts, stops = zip(*held)
    if any(a != b for a, b in zip(stops[:-1], starts[1:])):  # not one block: read it all
        return None
    return slice(starts[0], stops[-1])


def check_processes(split, placement) -> None:
    """Raises ValueError when a streamed train split cannot be read a share per process:
    skip_bad would leave one process's share short of the global minibatch's."""
    if placement is not None and jax.process_count() > 1 and getattr(split, "skip_bad", False):
        raise ValueError("skip_bad cannot leave examples out of minibatches split over "
                         "several processes (each reads its whole share); remove the "
                         "unreadable files, or train in one process")


def local_order(order: np.ndarray, batch: int, rows: slice) -> np.ndarray:
    """The positions of `order`'s full minibatches of `batch` that fall in `rows` of each,
    in order: what one process reads of them (process_rows)."""
    full = len(order) // batch * batch
    return np.asarray(order[:full]).reshape(-1, batch)[:, rows].reshape(-1)


WINDOW_BYTES = 16 * 2**20  # the epoch orders one reader holds (m int32 per epoch)


class EpochReader:
    """The minibatches of a split epoch after epoch, from one reader per window of epochs:
    `open_window(first, count)` starts a reader of epochs first .. first+count-1 (one
    `batches()` call, so one set of worker processes), and `epoch(e)` hands out epoch e's
    `per_epoch` minibatches from it. Asking for any epoch but the next one (a resumed run,
    an epoch early stopping skipped), or past the window, starts a new reader there; the
    reader of a window is closed after its last epoch, or by `close`."""

    def __init__(self, open_window: Callable[[int, int], Iterator], per_epoch: int,
                 epochs: int, window: int):
        self.open_window, self.per_epoch = open_window, per_epoch
        self.epochs, self.window = epochs, max(1, window)
        self.starts = 0  # readers started so far
        self._stream, self._next, self._end = None, None, None

    def epoch(self, epoch: int) -> Iterator:
        if self._stream is None or epoch != self._next or epoch >= self._end:
            self.close()
            count = max(1, min(self.window, self.epochs - epoch))
            self._stream, self._end = self.open_window(epoch, count), epoch + count
            self.starts += 1
        self._next = None  # until this epoch has been read whole
        got = 0
        for item in itertools.islice(self._stream, self.per_epoch):
            got += 1
            yield item
        if got < self.per_epoch:
            raise RuntimeError(f"the reader ended {self.per_epoch - got} minibatches "
                               f"short of epoch {epoch + 1}")
        self._next = epoch + 1
        if self._next >= self._end:  # the window's last epoch: stop its workers now
            self.close()

    def close(self) -> None:
        if self._stream is not None:
            close = getattr(self._stream, "close", None)
            if close is not None:
                close()
        self._stream, self._next, self._end = None, None, None


def window_epochs(m: int, epochs: int) -> int:
    """How many epochs' orders of `m` examples one reader takes (WINDOW_BYTES of them)."""
    return max(1, min(epochs, WINDOW_BYTES // max(4 * m, 1)))


def train_reader(split, batch: int, orders: Callable[[int, int], np.ndarray], epochs: int,
                 placement=None, rates: FeedRates | None = None) -> EpochReader:
    """An EpochReader of the train split's minibatches of `batch`, on the run's devices
    (feed), epoch e's in the order `orders(e, 1)[0]` (`orders(first, count)`: the Trainer's
    (count, m) orders). Over several processes each reads its rows of the full minibatches
    (process_rows) and the global minibatch is assembled from them; the last, partial one
    is read whole."""
    m = len(split)
    full, rest = divmod(m, batch)
    per_epoch = full + (1 if rest else 0)
    rows = process_rows(placement, batch)
    if rows is None:
        def open_window(first: int, count: int) -> Iterator:
            host = split.batches(orders(first, count), batch)
            return feed(ctrl_c_to_this_process_only(host), batch_placer(placement), rates)
        return EpochReader(open_window, per_epoch, epochs, window_epochs(m, epochs))
    sharding = NamedSharding(placement.mesh, PartitionSpec(placement.mesh.axis_names[0]))
    whole = batch_placer(placement)

    def put(a: np.ndarray, k: int) -> jax.Array:
        if k % per_epoch < full:  # this process's rows of a full global minibatch
            return jax.make_array_from_process_local_data(sharding, a, (batch, *a.shape[1:]))
        return whole(a)  # the epoch's partial last one, read whole
    share = rows.stop - rows.start
    sizes = [share] * full + ([rest] if rest else [])

    def open_window(first: int, count: int) -> Iterator:
        mine = np.stack([np.concatenate([local_order(order, batch, rows), order[full * batch:]])
                         for order in orders(first, count)])
        host = split.batches(mine, sizes)
        return feed(ctrl_c_to_this_process_only(host), put, rates)
    return EpochReader(open_window, per_epoch, epochs, window_epochs(m, epochs))


def dev_reader(split, batch: int, epochs: int) -> EpochReader:
    """An EpochReader of a split read whole in its own order at every epoch (the step loop's
    dev check), as (x, y, weights) host batches of exactly `batch` (padded_batch)."""
    m = len(split)

    def open_window(first: int, count: int) -> Iterator:
        orders = np.broadcast_to(np.arange(m, dtype=np.int32), (count, m))
        host = ctrl_c_to_this_process_only(split.batches(orders, batch))
        return (padded_batch(x, y, batch) for x, y in host)
    return EpochReader(open_window, -(-m // batch), epochs, window_epochs(m, epochs))


def feed(batches: Iterable[tuple[np.ndarray, np.ndarray]], put: Callable,
         rates: FeedRates | None = None) -> Iterator[tuple[jax.Array, jax.Array]]:
    """The (x, y) minibatches of `batches` on the device, in order: `put(a, k)` places
    minibatch k's arrays (batch_placer's ignores k). Each is put on the
    device one ahead: while the consumer's step on batch i runs (dispatched, not waited
    for), batch i+1 is read and copied. Empty minibatches (every example of one left out
    by skip_bad) are passed on as they are; the consumer skips them."""
    rates = rates if rates is not None else FeedRates()
    it = iter(batches)
    counter = itertools.count()

    def read():
        t0 = time.perf_counter()
        try:
            x, y = next(it)
        except StopIteration:
            return None
        finally:
            rates.read_seconds += time.perf_counter() - t0
        rates.examples += len(x)
        k = next(counter)
        return (put(x, k), put(y, k)) if len(x) else (x, y)

    ahead = read()
    while ahead is not None:
        current = ahead
        yield current
        ahead = read()


def ctrl_c_to_this_process_only(batches: Iterable) -> Iterator:
    """`batches` with its first item drawn while SIGINT is blocked in this thread: worker
    processes the reader starts then (Grain's, on the first read) inherit the blocked
    signal, so a Ctrl-C at the terminal, sent to every process of the group, reaches the
    training process alone (StopRequested: stop after the epoch) and no worker dies with
    a traceback. A Ctrl-C meanwhile is delivered when the first item is in."""
    it = iter(batches)
    mask = getattr(signal, "pthread_sigmask", None)  # not on Windows
    blocked = False
    if mask is not None:
        mask(signal.SIG_BLOCK, {signal.SIGINT})
        blocked = True
    try:
        first = next(it)
    except StopIteration:
        return
    finally:
        if blocked:
            mask(signal.SIG_UNBLOCK, {signal.SIGINT})
    yield first
    yield from it


def padded_batch(x, y, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, weights) of a minibatch padded with zeros to exactly `batch` examples, the
    padding weighted 0 (runtime/split_figures.py's padded_batches cuts in-memory splits so)."""
    x, y = np.asarray(x), np.asarray(y)
    weights = (np.arange(batch) < len(x)).astype(np.float32)
    if len(x) < batch:
        x, y = (np.concatenate([a, np.zeros((batch - len(a), *a.shape[1:]), a.dtype)])
                for a in (x, y))
    return x, y, weights


def padded_stream_batches(split, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray]]:
    """(x, y, weights) of a streamed split in its own order, in batches of exactly `batch`
    examples, the last padded with zeros and weighted 0, as runtime/split_figures.py's
    padded_batches cuts an in-memory split: one compiled program serves the whole split.
    Examples skip_bad leaves out shorten their batch, which is padded likewise."""
    for x, y in ctrl_c_to_this_process_only(split.batches(np.arange(len(split)), batch)):
        yield padded_batch(x, y, batch)


__all__ = ["WINDOW_BYTES", "ArrayBatches", "EpochReader", "FeedRates", "HostData",
           "batch_placer", "check_processes", "ctrl_c_to_this_process_only", "dev_reader",
           "feed", "is_streamed", "local_order", "padded_batch", "padded_stream_batches",
           "process_rows", "train_reader", "window_epochs"]
