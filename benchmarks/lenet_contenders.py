"""The LeNet-5 case's contenders: steady-state training throughput at batch 128 (Adam) on
random images, in Flax (a step per batch, or lax.scan over an epoch), PyTorch eager and Keras.
"""

from __future__ import annotations

import os
import time

import numpy as np
from timing import cost_flops

LENET = dict(n=1024, batch=128, lr=1e-3, eps=1e-8, epochs=5, warmup_epochs=1, seed=0)


def lenet_data(n):
    """Random NHWC images (n, 32, 32, 1) float32 and int32 labels in [0, 10), fixed seed."""
    rng = np.random.default_rng(LENET["seed"])
    X = rng.standard_normal((n, 32, 32, 1), dtype=np.float32)
    y = rng.integers(0, 10, size=n).astype(np.int32)
    return X, y


def _lenet_result(name, opts, steps, train_s, compile_s, **extra):
    return dict(
        case="lenet",
        contender=name,
        n=opts.n,
        batch=LENET["batch"],
        timed_steps=steps,
        train_s=train_s,
        img_per_s=steps * LENET["batch"] / train_s,
        step_ms=1e3 * train_s / steps,
        compile_s=compile_s,
        in_process_s=time.time() - opts.t_process,
        **extra,
    )


def _flax_lenet():
    """The Flax (linen) LeNet-5 and its jit-able train step (shared by flax_optax/flax_scan)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    class LeNet5(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.avg_pool(nn.relu(nn.Conv(6, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
            x = nn.avg_pool(nn.relu(nn.Conv(16, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
            x = x.reshape(x.shape[0], -1)
            x = nn.relu(nn.Dense(120)(x))
            x = nn.relu(nn.Dense(84)(x))
            return nn.Dense(10)(x)

    model = LeNet5()
    # jit the init: eager init compiles every primitive separately (seconds of start-up).
    params = jax.jit(model.init)(jax.random.key(LENET["seed"]), jnp.zeros((1, 32, 32, 1)))["params"]
    opt = optax.adam(LENET["lr"], eps=LENET["eps"])

    def train_step(p, s, xb, yb):
        def loss_fn(p):
            logits = model.apply({"params": p}, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        loss, g = jax.value_and_grad(loss_fn)(p)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    return params, opt.init(params), train_step


def lenet_flax_optax(opts):
    """Flax linen + optax.adam, one jitted donated step per batch from a Python loop."""
    import jax

    X, y = lenet_data(opts.n)
    B = LENET["batch"]
    params, opt_state, train_step = _flax_lenet()
    batches = [
        (jax.device_put(X[i : i + B]), jax.device_put(y[i : i + B])) for i in range(0, opts.n, B)
    ]
    step = jax.jit(train_step, donate_argnums=(0, 1))
    t0 = time.perf_counter()
    compiled = step.lower(params, opt_state, *batches[0]).compile()  # step() reuses it
    compile_s = time.perf_counter() - t0
    flops = cost_flops(compiled)

    for _ in range(LENET["warmup_epochs"]):
        for xb, yb in batches:
            params, opt_state, loss = step(params, opt_state, xb, yb)
    jax.block_until_ready(params)

    t0 = time.perf_counter()
    for _ in range(opts.epochs):
        for xb, yb in batches:
            params, opt_state, loss = step(params, opt_state, xb, yb)
    jax.block_until_ready(params)
    train_s = time.perf_counter() - t0
    return _lenet_result(
        "flax_optax",
        opts,
        opts.epochs * len(batches),
        train_s,
        compile_s,
        flops_per_step=flops,
        final_loss=float(loss),
    )


def lenet_flax_scan(opts):
    """The same Flax step inside lax.scan over the batches of an epoch (one call per epoch).

    ``--unroll 8`` (a fully unrolled scan for 1024 examples) runs at flax_optax's speed:
    the rolled loop's slowness is XLA:CPU's code for the while-loop body, not the maths.
    """
    import jax
    from jax import lax

    X, y = lenet_data(opts.n)
    B = LENET["batch"]
    params, opt_state, train_step = _flax_lenet()
    nb = opts.n // B
    Xb = jax.device_put(X[: nb * B].reshape(nb, B, 32, 32, 1))
    yb = jax.device_put(y[: nb * B].reshape(nb, B))

    def epoch(p, s, Xb, yb):
        def body(carry, batch):
            p, s, loss = train_step(*carry, *batch)
            return (p, s), loss

        (p, s), losses = lax.scan(body, (p, s), (Xb, yb), unroll=opts.unroll)
        return p, s, losses[-1]

    fn = jax.jit(epoch, donate_argnums=(0, 1))
    t0 = time.perf_counter()
    fn.lower(params, opt_state, Xb, yb).compile()  # fn() reuses it
    compile_s = time.perf_counter() - t0
    for _ in range(LENET["warmup_epochs"]):
        params, opt_state, loss = fn(params, opt_state, Xb, yb)
    jax.block_until_ready(params)

    t0 = time.perf_counter()
    for _ in range(opts.epochs):
        params, opt_state, loss = fn(params, opt_state, Xb, yb)
    jax.block_until_ready(params)
    train_s = time.perf_counter() - t0
    return _lenet_result(
        "flax_scan", opts, opts.epochs * nb, train_s, compile_s, final_loss=float(loss)
    )


def lenet_torch_eager(opts):
    """PyTorch eager LeNet-5 (NCHW), torch.optim.Adam(eps=1e-8), 2 threads."""
    import torch
    from torch import nn

    torch.set_num_threads(2)
    torch.manual_seed(LENET["seed"])
    X, y = lenet_data(opts.n)
    B = LENET["batch"]
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=LENET["lr"], eps=LENET["eps"])
    loss_fn = nn.CrossEntropyLoss()
    Xt = torch.from_numpy(X).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    yt = torch.from_numpy(y).long()
    batches = [(Xt[i : i + B], yt[i : i + B]) for i in range(0, opts.n, B)]

    def epoch():
        for xb, yb in batches:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
        return loss

    t0 = time.perf_counter()
    for _ in range(LENET["warmup_epochs"]):
        epoch()
    compile_s = time.perf_counter() - t0  # eager: first epoch (allocator, oneDNN primitives)
    t0 = time.perf_counter()
    for _ in range(opts.epochs):
        loss = epoch()
    train_s = time.perf_counter() - t0
    return _lenet_result(
        "torch_eager",
        opts,
        opts.epochs * len(batches),
        train_s,
        compile_s,
        final_loss=float(loss),
        torch_threads=torch.get_num_threads(),
    )


def lenet_keras_jax(opts):
    """Keras 3 on the JAX backend, jit_compile=True.

    ``--keras-mode fit`` (default): model.fit on the in-memory arrays (warm-up epoch
    compiles); ``tob``: model.train_on_batch from a Python loop.  fit was the faster here.
    """
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"keras backend is {keras.backend.backend()}, not jax")
    keras.utils.set_random_seed(LENET["seed"])
    X, y = lenet_data(opts.n)
    B = LENET["batch"]
    L = keras.layers
    model = keras.Sequential(
        [
            keras.Input((32, 32, 1)),
            L.Conv2D(6, 5, activation="relu"),
            L.AveragePooling2D(2),
            L.Conv2D(16, 5, activation="relu"),
            L.AveragePooling2D(2),
            L.Flatten(),
            L.Dense(120, activation="relu"),
            L.Dense(84, activation="relu"),
            L.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(LENET["lr"], epsilon=LENET["eps"]),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    nb = opts.n // B

    if opts.keras_mode == "fit":

        def run(epochs):
            h = model.fit(X, y, batch_size=B, epochs=epochs, shuffle=False, verbose=0)
            return h.history["loss"][-1]
    else:

        def run(epochs):
            for _ in range(epochs):
                for i in range(0, opts.n, B):
                    loss = model.train_on_batch(X[i : i + B], y[i : i + B])
            return loss

    t0 = time.perf_counter()
    run(LENET["warmup_epochs"])  # traces + compiles the train function
    compile_s = time.perf_counter() - t0  # (compile + one epoch: keras has no AOT handle)
    t0 = time.perf_counter()
    loss = run(opts.epochs)
    train_s = time.perf_counter() - t0
    return _lenet_result(
        "keras_jax",
        opts,
        opts.epochs * nb,
        train_s,
        compile_s,
        final_loss=float(np.asarray(loss).ravel()[0]),
        mode=opts.keras_mode,
    )


CONTENDERS = {
    "flax_optax": lenet_flax_optax,
    "torch_eager": lenet_torch_eager,
    "keras_jax": lenet_keras_jax,
    "flax_scan": lenet_flax_scan,
}
