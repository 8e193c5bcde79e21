"""Where a run's arrays live: one device, or a `jax.sharding` mesh with a `data` axis over
several (data parallelism: each minibatch is split along `data`, XLA sums the gradients).

    placement = Placement.over(jax.devices()[:4], shard_params=False)
    x = placement.batch(x)            # inside a program: this minibatch split over devices
    tree = placement.put(tree)        # parameters, optimiser state: replicated (or sharded)

Parameters and optimiser state are replicated; with `shard_params` (FSDP-style) each array
is split along its first dimension that the device count divides (replicated when none
does). In one process the data of a run is replicated on every device; a program gathers
its minibatch there and splits it. Over several processes each process feeds only its rows
of every minibatch from the host (runtime/host_feed.py). A minibatch that does not split
evenly (an epoch's last, partial one) runs replicated: every device computes all of it, so
the result is a single device's.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"


@dataclass(frozen=True)
class Placement:
    mesh: Mesh
    shard_params: bool = False

    @classmethod
    def over(cls, devices, shard_params: bool = False) -> Placement:
        return cls(Mesh(np.asarray(devices), (AXIS,)), shard_params)

    @property
    def count(self) -> int:
        return self.mesh.devices.size

    def describe(self) -> dict:
        """For run.json and the start line: the mesh's shape and devices."""
        return {"axes": {AXIS: self.count}, "platform": self.mesh.devices.flat[0].platform,
                "devices": [str(d) for d in self.mesh.devices.flat],
                "shard_params": self.shard_params}

    # ---- inside programs ------------------------------------------------------------
    def batch(self, x):
        """A minibatch split along `data` (left as it is when its size does not split)."""
        if x.shape[0] % self.count:
            return x
        spec = PartitionSpec(AXIS, *([None] * (x.ndim - 1)))
        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, spec))

    # ---- placing arrays -------------------------------------------------------------
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def sharding_of(self, shape) -> NamedSharding:
        """A parameter's (or optimiser state's) sharding: replicated, or with shard_params
        split along its first dimension the device count divides."""
        if self.shard_params:
            for axis, size in enumerate(shape):
                if size % self.count == 0 and size >= self.count:
                    spec = [None] * len(shape)
                    spec[axis] = AXIS
                    return NamedSharding(self.mesh, PartitionSpec(*spec))
        return self.replicated()

    def shardings(self, tree):
        """The sharding of every leaf of a tree of arrays (or ShapeDtypeStructs)."""
        return jax.tree.map(lambda a: self.sharding_of(np.shape(a)), tree)

    def put(self, tree):
        """A tree of arrays placed on the mesh (parameters by `sharding_of`)."""
        return jax.device_put(tree, self.shardings(tree))

    def put_replicated(self, tree):
        return jax.device_put(tree, self.replicated())


def put_same_on_every_process(a: np.ndarray, sharding) -> jax.Array:
    """A host array placed by `sharding`, where every process holds the same `a` (an epoch's
    partial last minibatch, read whole by each; a checkpoint's array read by each): each
    process puts its devices' parts of it.
    jax.device_put would first check across processes that the arrays are equal, a
    collective per array that any NaN fails (NaN != NaN: a multi-task net's unknown labels);
    in one process it is jax.device_put."""
    if sharding.is_fully_addressable:
        return jax.device_put(a, sharding)
    return jax.make_array_from_callback(np.shape(a), sharding, lambda index: a[index])


def pick_devices(count: int | None, platform: str | None = None) -> list:
    """The first `count` devices of the platform (all of them for None). Raises ValueError
    naming how many there are."""
    devices = jax.devices(platform) if platform else jax.devices()
    if count is None:
        return devices
    if count > len(devices):
        kind = devices[0].platform if devices else platform
        raise ValueError(f"--devices {count}: this machine has {len(devices)} {kind} "
                         f"device{'s' * (len(devices) != 1)}")
    return devices[:count]


def check_batch(batch: int, examples: int, count: int) -> None:
    """The spec's batch is global: its full minibatches must split evenly over the devices
    (an epoch's last, partial one runs replicated). Raises ValueError with the nearest
    sizes that work."""
    if count == 1 or batch >= examples or batch % count == 0:
        return
    below = batch - batch % count
    above = below + count
    sizes = " or ".join(str(s) for s in (below, above) if s > 0)
    raise ValueError(f"batch {batch} does not split over {count} devices: use a multiple of "
                     f"{count}, such as {sizes}")
