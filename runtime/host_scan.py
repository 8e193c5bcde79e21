"""Host-fed scan: a streamed train split trained K minibatches per dispatch.

Where the Trainer's loop for a net is `scan` (runtime/train.py's choose_loop: tiny nets,
where Python's per-step dispatch dominates), a train split streamed from disk is not
trained one dispatch per minibatch (runtime/host_feed.py's step loop) but in groups: the
host stacks K consecutive full minibatches of the epoch read from the split, puts the
stack on the device in one transfer, and one compiled program runs `lax.scan` over them
with the very step of the other loops (the same keys from (seed, epoch, step),
augmentation, accumulation, population members), so that it ends with the parameters of
the in-memory scan loop.

    reader = scan_reader(split, batch, orders, epochs)     # host minibatches, epoch by epoch
    for group in device_groups(reader.epoch(e), batch, full, rates): ...   # Group

K is `per_group`: all of an epoch's full minibatches when they fit in GROUP_BYTES (64 MiB
of decoded examples and labels), else as many as fit, evened out over the fewest groups
that fit (157 minibatches and room for 81 make groups of 79 and 78, not 81 and 76). At
most three groups are on the device at once (the one running, the one dispatched after it,
the next one read and put on a thread meanwhile), so the data takes at most 3 x
GROUP_BYTES there; and 64 MiB is still 42 of LeNet-5's minibatches of 128 32x32 RGB images
(1.5 MiB each), so the per-dispatch overhead (tens of microseconds) is shared by tens of
steps or more. A shorter last group compiles
the program once more (one more shape); the epoch's partial last minibatch runs as one
step (the step loop's program), as does a full one skip_bad left short (a stack needs
equal minibatches). No import of runtime/train.py here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from .host_feed import EpochReader, FeedRates, ctrl_c_to_this_process_only, window_epochs

GROUP_BYTES = 64 * 2**20  # the decoded examples and labels of one group of minibatches


def per_group(full: int, batch_bytes: int, budget: int | None = None) -> int:
    """K, the minibatches of one group: all `full` minibatches of an epoch when they fit in
    `budget` bytes (GROUP_BYTES by default; one minibatch takes `batch_bytes`), else as
    many as fit (at least one), evened out over the fewest groups that fit: K =
    ceil(full / groups), so the last group is not left tiny (157 minibatches with room for
    81: groups of 79 and 78)."""
    if full <= 0:
        return 1
    budget = GROUP_BYTES if budget is None else budget
    room = max(1, min(full, budget // max(batch_bytes, 1)))
    groups = -(-full // room)
    return -(-full // groups)


@dataclass
class Group:
    """Minibatches on the device from step `step` of an epoch on: `count` full ones stacked
    (x: (count, b, ...), y: (count, b, ...)) for the scan program, or one minibatch as it
    was read (`stacked` False: the partial last one, or one skip_bad left short)."""

    step: int
    x: object
    y: object
    stacked: bool

    @property
    def count(self) -> int:
        return int(self.x.shape[0]) if self.stacked else 1


def host_groups(batches: Iterable[tuple[np.ndarray, np.ndarray]], batch: int,
                full: int, budget: int | None = None) -> Iterator[Group]:
    """One epoch's host minibatches regrouped: runs of K consecutive full minibatches (of
    exactly `batch` examples; the epoch has `full` of them) stacked with numpy, a shorter
    run at the end, every other minibatch on its own. K is per_group's, from the bytes of
    the first full minibatch (its decoded dtype and shape, whatever the files hold)."""
    pending: list[tuple[np.ndarray, np.ndarray]] = []
    first, group = 0, None

    def stack(items, first):
        return Group(first, np.stack([x for x, _ in items]), np.stack([y for _, y in items]),
                     True)
    for i, (x, y) in enumerate(batches):
        if len(x) == batch:
            if group is None:
                group = per_group(full, np.asarray(x).nbytes + np.asarray(y).nbytes, budget)
            if not pending:
                first = i
            pending.append((x, y))
            if len(pending) == group:
                yield stack(pending, first)
                pending = []
            continue
        if pending:
            yield stack(pending, first)
            pending = []
        yield Group(i, x, y, False)
    if pending:
        yield stack(pending, first)


def device_groups(batches: Iterable[tuple[np.ndarray, np.ndarray]], batch: int, full: int,
                  rates: FeedRates | None = None, placement=None) -> Iterator[Group]:
    """host_groups of one epoch on the device, read ahead on a thread: as soon as group i
    is handed over, group i+1 is read, stacked and copied in one transfer (split over a
    placement's devices: group_placer) while the consumer's program on group i runs. (A
    reader's own prefetch is a couple of minibatches: without the thread, decoding a group
    would wait for the device and the device for decoding.) `rates` counts the examples
    and the seconds the consumer waited for a group. Empty minibatches (all of one left
    out by skip_bad) stay on the host; the consumer skips them."""
    rates = rates if rates is not None else FeedRates()
    it = host_groups(batches, batch, full)
    put = group_placer(placement)

    def read() -> Group | None:
        g = next(it, None)
        if g is None:
            return None
        n = g.x.shape[0] * (g.x.shape[1] if g.stacked else 1)
        if n:
            g.x, g.y = put(g.x, g.stacked), put(g.y, g.stacked)
        return g

    with ThreadPoolExecutor(1, thread_name_prefix="netc-host-scan") as pool:
        ahead = pool.submit(read)
        while True:
            t0 = time.perf_counter()
            try:
                current = ahead.result()
            finally:
                rates.read_seconds += time.perf_counter() - t0
            if current is None:
                return
            rates.examples += current.x.shape[0] * (current.x.shape[1] if current.stacked
                                                    else 1)
            ahead = pool.submit(read)
            yield current


def group_placer(placement=None) -> Callable[[np.ndarray, bool], jax.Array]:
    """A function putting a group's array on the run's devices: the default device, or
    split along a Placement's `data` axis by its examples (axis 1 of a stack, 0 of a single
    minibatch), replicated when their count does not split (Placement.batch then leaves
    each minibatch whole inside the program)."""
    if placement is None:
        return lambda a, stacked: jax.device_put(a)

    def put(a: np.ndarray, stacked: bool) -> jax.Array:
        axis = 1 if stacked else 0
        if a.shape[axis] % placement.count:
            return jax.device_put(a, placement.replicated())
        spec = [None] * a.ndim
        spec[axis] = placement.mesh.axis_names[0]
        return jax.device_put(a, NamedSharding(placement.mesh, PartitionSpec(*spec)))
    return put


def scan_reader(split, batch: int, orders: Callable[[int, int], np.ndarray],
                epochs: int) -> EpochReader:
    """An EpochReader of the train split's host minibatches of `batch` (numpy, not yet on
    the device: device_groups stacks and puts them), epoch e's in the order
    `orders(e, 1)[0]`, one reader (one set of worker processes) per window of epochs."""
    m = len(split)
    per_epoch = -(-m // batch)

    def open_window(first: int, count: int) -> Iterator:
        return ctrl_c_to_this_process_only(split.batches(orders(first, count), batch))
    return EpochReader(open_window, per_epoch, epochs, window_epochs(m, epochs))


__all__ = ["GROUP_BYTES", "Group", "device_groups", "group_placer", "host_groups",
           "per_group", "scan_reader"]
