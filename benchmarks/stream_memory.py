#!/usr/bin/env python
"""Peak memory and speed of one streamed epoch over a folder of PNGs (issue #15).

    python benchmarks/stream_memory.py --n 30000 [--folder /tmp/pngs] [--workers 1]
                                       [--batch 64] [--train]

Writes N random 64x64 RGB PNGs into FOLDER (10 class subfolders; kept and reused when it
already holds N), loads it with runtime/stream.py's load_streamed (`stream on`, `split 1 0
0`, `normalize none`), then reads one epoch of batches in the trainer's order for epoch 0.
With --train each batch also takes one Adam step of a small ConvNet (conv 3x3 c=16, pool,
conv 3x3 c=32, pool, softmax 10: netc.compile and optax, jit once), so the figure includes
JAX. Decoded, the N images take N * 64*64*3*4 bytes (1.47 GB at 30,000).

Prints the figures and, as its LAST line, one JSON object: n, workers, batch, seconds,
images_per_s, peak_rss_mb (this process), peak_child_rss_mb (the largest worker process,
from getrusage) and decoded_mb.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import sys
import tempfile
import time

import numpy as np

SPEC = """net stream_bench
input 64x64x3
conv f=3 s=1 p=same c=16 -> relu -> maxpool f=4
-> conv f=3 s=1 p=same c=32 -> relu -> maxpool f=4
-> flatten -> softmax 10
train {
  data "FOLDER"
  split 1 0 0
  normalize none
  batch BATCH
  seed 0
}
"""


def write_pngs(folder: pathlib.Path, n: int, size: int = 64) -> float:
    """N random SIZExSIZE RGB PNGs in 10 class folders; seconds taken (0 when already
    there)."""
    from PIL import Image

    if len(list(folder.glob("*/*.png"))) == n:
        return 0.0
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    for c in range(10):
        (folder / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        # smooth images (a noisy gradient) compress like photos, unlike pure noise
        base = np.linspace(0, 255, size, dtype=np.float32)[None, :, None] * rng.random(3)
        pixels = np.clip(base + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"class{i % 10}" / f"{i:06d}.png")
    return time.perf_counter() - start


def peak_mb(who) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: kilobytes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30000)
    parser.add_argument("--folder", type=pathlib.Path, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--train", action="store_true")
    args = parser.parse_args(argv)

    import netc
    from netc.runtime.stream import decoded_bytes, default_workers, load_streamed

    folder = args.folder or pathlib.Path(tempfile.gettempdir()) / f"netc_pngs_{args.n}"
    made = write_pngs(folder, args.n)
    print(f"{args.n} PNGs in {folder}" + (f" written in {made:.0f} s" if made else ""))
    spec = folder.parent / f"{folder.name}.net"
    spec.write_text(SPEC.replace("FOLDER", str(folder)).replace("BATCH", str(args.batch)))
    net = netc.check(str(spec))
    workers = default_workers() if args.workers is None else args.workers
    net.train.data.options["workers"] = workers
    step = None
    if args.train:
        import jax
        import optax

        model = netc.compile(str(spec))
        variables = model.init(jax.random.key(0))
        optimizer = optax.adam(1e-3)
        opt_state = optimizer.init(variables["params"])

        @jax.jit
        def step(params, state, opt_state, x, y):
            (loss, (state, _)), grads = jax.value_and_grad(
                lambda p: model.loss(p, state, x, y, train=False), has_aux=True)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), state, opt_state, loss

    start = time.perf_counter()
    splits, _ = load_streamed(net, folder.parent, "cross_entropy", stream="on")
    train = splits.train
    order = np.random.default_rng([0, 0]).permutation(len(train))
    seen = 0
    params, state = (variables["params"], variables["state"]) if args.train else (None, None)
    for x, y in train.batches(order, args.batch):
        if step is not None:
            params, state, opt_state, loss = step(params, state, opt_state, x, y)
        seen += len(x)
    if step is not None:
        float(loss)
    seconds = time.perf_counter() - start
    result = {
        "n": args.n, "workers": workers, "batch": args.batch, "train": args.train,
        "seconds": round(seconds, 2), "images_per_s": round(seen / seconds, 1),
        "peak_rss_mb": round(peak_mb(resource.RUSAGE_SELF), 1),
        "peak_child_rss_mb": round(peak_mb(resource.RUSAGE_CHILDREN), 1),
        "decoded_mb": round(decoded_bytes(args.n, (64, 64, 3)) / 2**20, 1),
    }
    print(f"{seen} images in {seconds:.1f} s ({result['images_per_s']:.0f}/s) with {workers} "
          f"worker(s); peak RSS {result['peak_rss_mb']:.0f} MB (largest worker "
          f"{result['peak_child_rss_mb']:.0f} MB); decoded they take "
          f"{result['decoded_mb']:.0f} MB")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
