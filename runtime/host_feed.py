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
"""

from __future__ import annotations

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


def padded_stream_batches(split, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray]]:
    """(x, y, weights) of a streamed split in its own order, in batches of exactly `batch`
    examples, the last padded with zeros and weighted 0, as runtime/train.py's
    padded_batches cuts an in-memory split: one compiled program serves the whole split.
    Examples skip_bad leaves out shorten their batch, which is padded likewise."""
    for x, y in split.batches(np.arange(len(split)), batch):
        x, y = np.asarray(x), np.asarray(y)
        weights = (np.arange(batch) < len(x)).astype(np.float32)
        if len(x) < batch:
            x, y = (np.concatenate([a, np.zeros((batch - len(a), *a.shape[1:]), a.dtype)])
                    for a in (x, y))
        yield x, y, weights


__all__ = ["FeedRates", "HostData", "batch_placer", "feed", "is_streamed",
           "padded_stream_batches"]
