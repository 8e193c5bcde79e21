"""Minibatches from the host: training on a split whose examples stay on disk.

A streamed split (runtime/stream.py's StreamedSplit) hands out numpy minibatches in any
order asked of it. The Trainer (runtime/train.py) then runs its step loop over them: per
epoch its own order, `split.batches(order, batch)`, and one compiled step per minibatch
taking the minibatch itself, with the (seed, epoch, step) keys, augmentation and
accumulation of the in-memory loop, so that both end with the same parameters.

    train = HostData(streamed_split)             # what to_device gives for a streamed split
    for x, y in feed(split.batches(order, 64), put, rates): ...   # x, y on the device

`feed` puts the next minibatch on the device while the previous step runs (and Grain
prefetches on the host); `FeedRates` times the loop's waits on the reader, so the progress
line can show the data rate beside the step rate. No import of runtime/train.py here.

With a mesh over several processes (runtime/distributed.py), `epoch_batches` has each
process read only its rows of every global minibatch (the rows its devices hold) and
assembles the global minibatch with `jax.make_array_from_process_local_data`; an epoch's
last, partial minibatch runs replicated (Placement.batch), so every process reads it whole.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec


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


def batch_placer(placement=None) -> Callable[[np.ndarray], jax.Array]:
    """A function putting a host minibatch on the run's devices: the default device, or
    split along a Placement's `data` axis (replicated when its size does not split, as
    Placement.batch leaves such a minibatch inside programs)."""
    if placement is None:
        return jax.device_put

    def put(a: np.ndarray) -> jax.Array:
        if a.shape[0] % placement.count:
            return jax.device_put(a, placement.replicated())
        spec = PartitionSpec(placement.mesh.axis_names[0], *([None] * (a.ndim - 1)))
        return jax.device_put(a, NamedSharding(placement.mesh, spec))
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


def epoch_batches(split, order: np.ndarray, batch: int, placement=None,
                  rates: FeedRates | None = None) -> Iterator[tuple[jax.Array, jax.Array]]:
    """An epoch's minibatches of `order` from a streamed split, on the run's devices (feed).
    Over several processes each reads its rows of the full minibatches (process_rows) and
    the global minibatch is assembled from them; the last, partial one is read whole."""
    rows = process_rows(placement, batch)
    if rows is None:
        yield from feed(ctrl_c_to_this_process_only(split.batches(order, batch)),
                        batch_placer(placement), rates)
        return
    spec = PartitionSpec(placement.mesh.axis_names[0])
    sharding = NamedSharding(placement.mesh, spec)

    def put(a: np.ndarray) -> jax.Array:
        return jax.make_array_from_process_local_data(sharding, a, (batch, *a.shape[1:]))
    share = rows.stop - rows.start
    mine = split.batches(local_order(order, batch, rows), share)
    yield from feed(ctrl_c_to_this_process_only(mine), put, rates)
    full = len(order) // batch * batch
    if full < len(order):
        last = split.batches(order[full:], len(order) - full)
        yield from feed(ctrl_c_to_this_process_only(last), batch_placer(placement), rates)


def feed(batches: Iterable[tuple[np.ndarray, np.ndarray]], put: Callable,
         rates: FeedRates | None = None) -> Iterator[tuple[jax.Array, jax.Array]]:
    """The (x, y) minibatches of `batches` on the device, in order. Each is put on the
    device one ahead: while the consumer's step on batch i runs (dispatched, not waited
    for), batch i+1 is read and copied. Empty minibatches (every example of one left out
    by skip_bad) are passed on as they are; the consumer skips them."""
    rates = rates if rates is not None else FeedRates()
    it = iter(batches)

    def read():
        t0 = time.perf_counter()
        try:
            x, y = next(it)
        except StopIteration:
            return None
        finally:
            rates.read_seconds += time.perf_counter() - t0
        rates.examples += len(x)
        return (put(x), put(y)) if len(x) else (x, y)

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


def padded_stream_batches(split, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray]]:
    """(x, y, weights) of a streamed split in its own order, in batches of exactly `batch`
    examples, the last padded with zeros and weighted 0, as runtime/train.py's
    padded_batches cuts an in-memory split: one compiled program serves the whole split.
    Examples skip_bad leaves out shorten their batch, which is padded likewise."""
    for x, y in ctrl_c_to_this_process_only(split.batches(np.arange(len(split)), batch)):
        x, y = np.asarray(x), np.asarray(y)
        weights = (np.arange(batch) < len(x)).astype(np.float32)
        if len(x) < batch:
            x, y = (np.concatenate([a, np.zeros((batch - len(a), *a.shape[1:]), a.dtype)])
                    for a in (x, y))
        yield x, y, weights


__all__ = ["FeedRates", "HostData", "batch_placer", "check_processes",
           "ctrl_c_to_this_process_only", "epoch_batches", "feed", "is_streamed", "local_order",
           "padded_stream_batches", "process_rows"]
