"""Checkpoint save time: the safetensors checkpoints of earlier versions (whole arrays
fetched to the host, SHA-256, fsync, rename: what runtime/checkpoint.save_checkpoint did)
against Orbax's (runtime/sharded_checkpoint.CheckpointWriter): the time the training loop
waits (Orbax copies the arrays off the device, then writes on a thread) and the time until
the checkpoint is on disk.

    python benchmarks/checkpoint_save.py [--repeats 5]

Two carries, the parameters and Adam's two moments: moons' MLP (fc 8 -> fc 8 -> sigmoid,
105 parameters) and ResNet-50's shapes (examples/zoo/resnet50.net, 25.6M parameters,
about 307 MB with the moments), random float32 on the default device. Prints a JSON line
per case.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import netc
import numpy as np
from netc.runtime import checkpoint as legacy
from netc.runtime.sharded_checkpoint import CheckpointWriter
from netc.runtime.transfer import leaf_shapes

ROOT = Path(__file__).resolve().parent.parent
MOONS = """input 2
fc 8 -> relu -> fc 8 -> relu -> sigmoid 1
train {
  data moons
}
"""


def carry_of(net) -> tuple:
    """(params, state, Adam-like optimiser state, None) with the net's shapes."""
    rng = np.random.default_rng(0)
    variables: dict = {"params": {}, "state": {}}
    for key, shape in leaf_shapes(net).items():
        group, rest = key.split("/", 1)
        layer, name = rest.rsplit("/", 1)
        variables[group].setdefault(layer, {})[name] = jnp.asarray(
            rng.standard_normal(shape, np.float32))
    params = variables["params"]
    opt = (jnp.int32(0), jax.tree.map(jnp.zeros_like, params),
           jax.tree.map(jnp.ones_like, params))
    return params, variables["state"], opt, None


def safetensors_save(folder: Path, epoch: int, carry) -> float:
    """Seconds for the safetensors checkpoint earlier versions wrote (blocking)."""
    t0 = time.perf_counter()
    params, state, opt, watch = carry
    tensors = legacy.flatten_variables({"params": params, "state": state})
    for i, leaf in enumerate(jax.tree.leaves((opt, watch))):
        tensors[f"opt/{i:05d}"] = np.asarray(leaf)
    legacy.save_tensors(folder / f"ckpt-{epoch:06d}.safetensors", tensors,
                        {"epoch": epoch, "opt_leaves": len(jax.tree.leaves((opt, watch)))})
    return time.perf_counter() - t0


def orbax_save(writer: CheckpointWriter, epoch: int, carry) -> tuple[float, float]:
    """(seconds until save() returns, seconds until the checkpoint is on disk)."""
    t0 = time.perf_counter()
    writer.save(epoch, carry, {"net": "bench", "seed": 0})
    blocking = time.perf_counter() - t0
    writer.wait()
    return blocking, time.perf_counter() - t0


def measure(name: str, net, repeats: int) -> dict:
    carry = carry_of(net)
    jax.block_until_ready(carry)
    size = sum(np.asarray(a).nbytes for a in jax.tree.leaves(carry))
    with tempfile.TemporaryDirectory() as tmp:
        old_dir, new_dir = Path(tmp) / "old", Path(tmp) / "new"
        old_dir.mkdir()
        old = [safetensors_save(old_dir, e, carry) for e in range(1, repeats + 2)][1:]
        with CheckpointWriter(new_dir) as writer:
            new = [orbax_save(writer, e, carry) for e in range(1, repeats + 2)][1:]
    return {"case": name, "bytes": size,
            "safetensors_s": round(statistics.median(old), 4),
            "orbax_blocking_s": round(statistics.median(b for b, _ in new), 4),
            "orbax_on_disk_s": round(statistics.median(t for _, t in new), 4),
            "repeats": repeats, "platform": jax.default_backend()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cases = [("moons mlp", netc.check(MOONS)),
             ("resnet-50", netc.check(ROOT / "examples" / "zoo" / "resnet50.net"))]
    for name, net in cases:  # the first save of each kind is a warm-up, not counted
        print(json.dumps(measure(name, net, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
