"""Hand-written contenders for the netc benchmark suite.

Every contender is one function ``<case>_<name>(opts) -> dict`` that builds, compiles
and trains/measures its model and returns its figures as a flat dict.  The figures are
printed as ONE JSON line when the module is run as a script:

    python benchmarks/contenders.py moons jax_scan --epochs 200
    python benchmarks/contenders.py lenet flax_optax --n 256 --epochs 2
    python benchmarks/contenders.py ceilings jax
    python benchmarks/contenders.py resnet flax --tiny
    python benchmarks/contenders.py moons agree --epochs 200   # maths cross-check

Heavy libraries (jax, torch, keras, sklearn) are imported *inside* the contender that
needs them, so that a subprocess running one contender pays only for its own imports
(end-to-end timings) and so that a missing torch/keras only skips that contender
(it prints {"skipped": "not installed"}).

Shared definitions (data, init, shuffling, metrics) live at the top, so every
contender of a case trains the identical model on identical data in identical order.
"""

from __future__ import annotations

import time

T_PROCESS = time.time()  # as early as we can get it: just after interpreter start-up

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

# ---------------------------------------------------------------------------------------
# Case 1: moons
# ---------------------------------------------------------------------------------------
MOONS = dict(
    n_samples=300,
    noise=0.2,
    data_seed=3,
    layers=(2, 5, 2, 1),  # fc 5 relu -> fc 2 relu -> fc 1 sigmoid
    lr=0.0007,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    batch=64,
    epochs=10_000,
    seed=3,  # init + shuffle seed
)


def make_moons(n_samples=300, noise=0.2, random_state=3):
    """Bit-for-bit copy of ``sklearn.datasets.make_moons`` (shuffle=True).

    sklearn's import alone costs ~0.8 s here, which would swamp the end-to-end moons
    timings of every contender equally; ``moons_data(use_sklearn=True)`` (or
    ``--sklearn``) uses the real one, and ``moons agree`` checks they are identical.
    """
    gen = np.random.RandomState(random_state)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    outer_x = np.cos(np.linspace(0, np.pi, n_out))
    outer_y = np.sin(np.linspace(0, np.pi, n_out))
    inner_x = 1 - np.cos(np.linspace(0, np.pi, n_in))
    inner_y = 1 - np.sin(np.linspace(0, np.pi, n_in)) - 0.5
    X = np.vstack([np.append(outer_x, inner_x), np.append(outer_y, inner_y)]).T
    y = np.hstack([np.zeros(n_out, dtype=np.intp), np.ones(n_in, dtype=np.intp)])
    idx = np.arange(n_samples)
    gen.shuffle(idx)
    X, y = X[idx], y[idx]
    X += gen.normal(scale=noise, size=X.shape)
    return X, y


def moons_data(use_sklearn=False):
    """(X, y): X float64 (300, 2), y float64 (300,)."""
    if use_sklearn:
        from sklearn.datasets import make_moons as sk_make_moons

        X, y = sk_make_moons(
            n_samples=MOONS["n_samples"], noise=MOONS["noise"], random_state=MOONS["data_seed"]
        )
    else:
        X, y = make_moons(MOONS["n_samples"], MOONS["noise"], MOONS["data_seed"])
    return X.astype(np.float64), y.astype(np.float64)


def he_init(layers=MOONS["layers"], seed=MOONS["seed"]):
    """He init, course layout: list of (W (n_l, n_{l-1}), b (n_l,)) in float64."""
    rng = np.random.default_rng([seed, 0])
    return [
        (rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in), np.zeros(n_out))
        for n_in, n_out in itertools.pairwise(layers)
    ]


def epoch_perms(n, epochs, seed=MOONS["seed"]):
    """Per-epoch reshuffle: one seeded generator, a fresh permutation every epoch.

    Every contender iterates exactly this sequence, so all see the same minibatches.
    """
    rng = np.random.default_rng([seed, 1])
    for _ in range(epochs):
        yield rng.permutation(n).astype(np.int32)


def minibatch_slices(n, batch):
    """[(start, stop)] covering 0..n, keeping the last partial batch (300/64: 4x64 + 44)."""
    return [(s, min(s + batch, n)) for s in range(0, n, batch)]


def moons_metrics(params, X, y):
    """Full-train-set BCE loss and accuracy, float64, from course-layout params."""
    A = X.T
    for i, (W, b) in enumerate(params):
        Z = W @ A + b[:, None]
        A = np.maximum(Z, 0) if i < len(params) - 1 else Z
    z = A[0]
    loss = np.mean(np.logaddexp(0.0, z) - y * z)  # == BCE(sigmoid(z), y), stable
    acc = np.mean((z > 0) == (y > 0.5))
    return float(loss), float(acc)


def _moons_result(name, opts, params, X, y, t_imports, t_setup, compile_s, train_s, steps, **extra):
    """Common figures of a moons contender (times are time.time() stamps or seconds)."""
    t_trained = time.time()
    loss, acc = moons_metrics(params, X, y)
    return dict(
        case="moons",
        contender=name,
        epochs=opts.epochs,
        steps=steps,
        t_process=T_PROCESS,
        t_trained=t_trained,
        import_s=t_imports - T_PROCESS,
        setup_s=t_setup - t_imports,
        compile_s=compile_s,
        train_s=train_s,
        step_us=1e6 * train_s / steps,
        in_process_s=t_trained - T_PROCESS,
        final_loss=loss,
        train_acc=acc,
        params=[float(v) for W, b in params for v in np.concatenate([W.ravel(), b])],
        **extra,
    )


def _moons_jax_common(opts):
    """Data on device, params in (in, out) layout, optax Adam, the loss and one step."""
    import jax
    import jax.numpy as jnp
    import optax

    X, y = moons_data(opts.sklearn)
    params = [(jnp.asarray(W.T, jnp.float32), jnp.asarray(b, jnp.float32)) for W, b in he_init()]
    Xd = jax.device_put(X.astype(np.float32))
    yd = jax.device_put(y.astype(np.float32))
    opt = optax.adam(MOONS["lr"], b1=MOONS["b1"], b2=MOONS["b2"], eps=MOONS["eps"])
    opt_state = opt.init(params)

    def forward(p, x):
        for i, (W, b) in enumerate(p):
            x = x @ W + b
            if i < len(p) - 1:
                x = jax.nn.relu(x)
        return x[:, 0]  # logits; sigmoid is folded into the loss

    def loss_fn(p, xb, yb):
        return optax.sigmoid_binary_cross_entropy(forward(p, xb), yb).mean()

    def train_step(p, s, X, y, idx):
        """One Adam step on the minibatch X[idx] (gathered on device)."""
        loss, g = jax.value_and_grad(loss_fn)(p, X[idx], y[idx])
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    return X, y, Xd, yd, params, opt_state, train_step


def _to_course_layout(params):
    return [(np.asarray(W, np.float64).T, np.asarray(b, np.float64)) for W, b in params]


def moons_jax_loop(opts):
    """(a) The typical JAX loop: a jitted step (value_and_grad + optax.adam) per minibatch,
    called from a Python loop; data on device, params/opt state donated."""
    import jax
    import jax.numpy as jnp

    t_imports = time.time()
    X, y, Xd, yd, params, opt_state, train_step = _moons_jax_common(opts)
    step = jax.jit(train_step, donate_argnums=(0, 1))
    n, B = len(X), MOONS["batch"]
    slices = minibatch_slices(n, B)
    t_setup = time.time()

    # Warm-up = compile both batch shapes (64 and the last 44) on throw-away copies.
    t0 = time.perf_counter()
    for s, e in {(e - s): (s, e) for s, e in slices}.values():
        copies = jax.tree.map(jnp.copy, (params, opt_state))
        jax.block_until_ready(step(*copies, Xd, yd, np.arange(s, e, dtype=np.int32)))
    compile_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    steps = 0
    for perm in epoch_perms(n, opts.epochs):
        for s, e in slices:
            params, opt_state, loss = step(params, opt_state, Xd, yd, perm[s:e])
            steps += 1
    jax.block_until_ready(params)
    train_s = time.perf_counter() - t0
    return _moons_result(
        "jax_loop",
        opts,
        _to_course_layout(params),
        X,
        y,
        t_imports,
        t_setup,
        compile_s,
        train_s,
        steps,
    )


def moons_jax_scan(opts):
    """(b) Hand-fused JAX: one jitted function runs an epoch as lax.scan over the full
    minibatches, followed by ONE extra step on the last partial batch (44 examples) in
    the same function -- no padding, so the maths is exactly that of jax_loop (the mean
    is over the real 44 examples).

    Epochs: ``--outer scan`` (default) puts the epochs in an outer lax.scan too, so the
    whole training is a single XLA call fed with all epoch permutations (E x 300 int32,
    generated by the same numpy generator as every other contender); ``--outer python``
    calls the jitted epoch from a Python loop.  The outer scan was the faster of the two
    on the 2-core test machine (see benchmarks/README.md).
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    t_imports = time.time()
    X, y, Xd, yd, params, opt_state, train_step = _moons_jax_common(opts)
    n, B = len(X), MOONS["batch"]
    n_full = n // B

    def epoch(p, s, perm):
        def body(carry, idx):
            p, s, loss = train_step(*carry, Xd, yd, idx)
            return (p, s), loss

        (p, s), losses = lax.scan(
            body, (p, s), perm[: n_full * B].reshape(n_full, B), unroll=opts.unroll
        )
        if n % B:
            p, s, _ = train_step(p, s, Xd, yd, perm[n_full * B :])
        return p, s

    def run(p, s, perms):
        (p, s), _ = lax.scan(lambda c, perm: (epoch(*c, perm), None), (p, s), perms)
        return p, s

    steps = opts.epochs * len(minibatch_slices(n, B))
    t_setup = time.time()
    t0 = time.perf_counter()
    if opts.outer == "scan":
        perms_spec = jax.ShapeDtypeStruct((opts.epochs, n), jnp.int32)
        fn = jax.jit(run, donate_argnums=(0, 1)).lower(params, opt_state, perms_spec).compile()
    else:
        fn = jax.jit(epoch, donate_argnums=(0, 1))
        copies = jax.tree.map(jnp.copy, (params, opt_state))
        jax.block_until_ready(fn(*copies, np.arange(n, dtype=np.int32)))
    compile_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    if opts.outer == "scan":
        perms = np.stack(list(epoch_perms(n, opts.epochs)))
        params, opt_state = fn(params, opt_state, perms)
    else:
        for perm in epoch_perms(n, opts.epochs):
            params, opt_state = fn(params, opt_state, perm)
    jax.block_until_ready(params)
    train_s = time.perf_counter() - t0
    return _moons_result(
        "jax_scan",
        opts,
        _to_course_layout(params),
        X,
        y,
        t_imports,
        t_setup,
        compile_s,
        train_s,
        steps,
        outer=opts.outer,
        unroll=opts.unroll,
    )


def moons_torch_eager(opts):
    """(c) PyTorch eager: nn.Sequential, BCEWithLogitsLoss, torch.optim.Adam(eps=1e-8)."""
    import torch
    from torch import nn

    torch.set_num_threads(2)
    t_imports = time.time()
    X, y = moons_data(opts.sklearn)
    init = he_init()
    model = nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        for lin, (W, b) in zip(model[::2], init):  # torch Linear is (out, in): course layout
            lin.weight.copy_(torch.from_numpy(W))
            lin.bias.copy_(torch.from_numpy(b))
    opt = torch.optim.Adam(
        model.parameters(), lr=MOONS["lr"], betas=(MOONS["b1"], MOONS["b2"]), eps=MOONS["eps"]
    )
    loss_fn = nn.BCEWithLogitsLoss()
    Xt = torch.from_numpy(X.astype(np.float32))
    yt = torch.from_numpy(y.astype(np.float32))
    n, B = len(X), MOONS["batch"]
    slices = minibatch_slices(n, B)
    t_setup = time.time()

    t0 = time.perf_counter()
    steps = 0
    for perm in epoch_perms(n, opts.epochs):
        perm = torch.from_numpy(perm)
        for s, e in slices:
            idx = perm[s:e]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(Xt[idx])[:, 0], yt[idx])
            loss.backward()
            opt.step()
            steps += 1
    train_s = time.perf_counter() - t0
    params = [
        (lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy())
        for lin in model[::2]
    ]
    return _moons_result(
        "torch_eager",
        opts,
        params,
        X,
        y,
        t_imports,
        t_setup,
        0.0,
        train_s,
        steps,
        torch_threads=torch.get_num_threads(),
    )


def moons_numpy_course(opts):
    """(d) The course's numpy style: X is (n_x, m), W is (n_l, n_{l-1}), float64,
    forward/backward by hand, Adam by hand with bias correction (t counts minibatches)."""
    t_imports = time.time()
    X, y = moons_data(opts.sklearn)
    params = {}
    for i, (W, b) in enumerate(he_init(), start=1):
        params[f"W{i}"], params[f"b{i}"] = W.copy(), b[:, None].copy()
    L = len(MOONS["layers"]) - 1
    v = {k: np.zeros_like(p) for k, p in params.items()}
    s_ = {k: np.zeros_like(p) for k, p in params.items()}
    lr, b1, b2, eps = MOONS["lr"], MOONS["b1"], MOONS["b2"], MOONS["eps"]
    XT, Y = X.T, y[None, :]
    n, B = len(X), MOONS["batch"]
    slices = minibatch_slices(n, B)
    t_setup = time.time()

    def forward(Xb):
        caches, A = [], Xb
        for i in range(1, L + 1):
            Z = params[f"W{i}"] @ A + params[f"b{i}"]
            caches.append((A, Z))
            A = np.maximum(Z, 0) if i < L else 1 / (1 + np.exp(-Z))
        return A, caches

    def backward(AL, Yb, caches):
        m = Yb.shape[1]
        grads, dZ = {}, AL - Yb  # d(BCE)/dZ_L for a sigmoid output
        for i in range(L, 0, -1):
            A_prev, Z = caches[i - 1]
            grads[f"W{i}"] = dZ @ A_prev.T / m
            grads[f"b{i}"] = dZ.sum(axis=1, keepdims=True) / m
            if i > 1:
                dZ = (params[f"W{i}"].T @ dZ) * (caches[i - 2][1] > 0)  # relu'(Z_{i-1})
        return grads

    def adam_update(grads, t):
        for k in params:
            v[k] = b1 * v[k] + (1 - b1) * grads[k]
            s_[k] = b2 * s_[k] + (1 - b2) * grads[k] ** 2
            v_hat = v[k] / (1 - b1**t)
            s_hat = s_[k] / (1 - b2**t)
            params[k] -= lr * v_hat / (np.sqrt(s_hat) + eps)

    t0 = time.perf_counter()
    t = 0
    for perm in epoch_perms(n, opts.epochs):
        for s, e in slices:
            idx = perm[s:e]
            Xb, Yb = XT[:, idx], Y[:, idx]
            AL, caches = forward(Xb)
            t += 1
            adam_update(backward(AL, Yb, caches), t)
    train_s = time.perf_counter() - t0
    out = [(params[f"W{i}"], params[f"b{i}"][:, 0]) for i in range(1, L + 1)]
    return _moons_result(
        "numpy_course", opts, out, X, y, t_imports, t_setup, 0.0, train_s, t, dtype="float64"
    )


def moons_agree(opts):
    """Run all moons contenders in this process and compare their final maths."""
    Xs, ys = moons_data(use_sklearn=True)
    Xo, yo = moons_data(use_sklearn=False)
    out = dict(
        case="moons",
        contender="agree",
        epochs=opts.epochs,
        make_moons_identical_to_sklearn=bool(np.array_equal(Xs, Xo) and np.array_equal(ys, yo)),
    )
    results = {}
    for name in ("jax_loop", "jax_scan", "torch_eager", "numpy_course"):
        try:
            results[name] = CONTENDERS["moons"][name](opts)
        except ImportError:
            out[name] = "skipped: not installed"
    out.update(agreement(results, ref="jax_loop"))
    return out


def agreement(results, ref="jax_loop"):
    """|final loss - ref| and max |param - ref| for each moons result dict."""
    if ref not in results:
        return {}
    r = results[ref]
    out = {f"final_loss[{ref}]": r["final_loss"]}
    for name, res in results.items():
        if name == ref or "params" not in res:
            continue
        out[f"|loss-ref|[{name}]"] = abs(res["final_loss"] - r["final_loss"])
        out[f"max|param-ref|[{name}]"] = float(
            np.max(np.abs(np.subtract(res["params"], r["params"])))
        )
    return out


# ---------------------------------------------------------------------------------------
# Case 2: LeNet-5
# ---------------------------------------------------------------------------------------
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
        in_process_s=time.time() - T_PROCESS,
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


def _cost_flops(compiled):
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):  # older jax returned one dict per device
        ca = ca[0]
    return float(ca.get("flops", float("nan"))) if ca else float("nan")


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
    flops = _cost_flops(compiled)

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


# ---------------------------------------------------------------------------------------
# Case 3: machine ceilings
# ---------------------------------------------------------------------------------------
def _median_time(fn, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), float(min(ts))


def ceilings_jax(opts):
    """float32 matmul N^3 and 3x3 NHWC conv GFLOP/s with jax.jit (median of opts.reps)."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    N = opts.matmul_n
    key = jax.random.key(0)
    a = jax.random.normal(key, (N, N), jnp.float32)
    b = jax.random.normal(jax.random.fold_in(key, 1), (N, N), jnp.float32)
    mm = jax.jit(lambda a, b: a @ b)
    jax.block_until_ready(mm(a, b))
    mm_med, mm_min = _median_time(lambda: jax.block_until_ready(mm(a, b)), opts.reps)
    mm_flops = 2.0 * N**3

    Bc, H, C = opts.conv_batch, 56, 64
    x = jax.random.normal(key, (Bc, H, H, C), jnp.float32)
    w = jax.random.normal(key, (3, 3, C, C), jnp.float32)
    conv = jax.jit(
        lambda x, w: lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    )
    jax.block_until_ready(conv(x, w))
    cv_med, cv_min = _median_time(lambda: jax.block_until_ready(conv(x, w)), opts.reps)
    cv_flops = 2.0 * Bc * H * H * C * C * 9
    return dict(
        case="ceilings",
        contender="jax",
        matmul_n=N,
        matmul_s=mm_med,
        matmul_gflops=mm_flops / mm_med / 1e9,
        matmul_gflops_best=mm_flops / mm_min / 1e9,
        conv_shape=f"{Bc}x{H}x{H}x{C}->{C} 3x3",
        conv_s=cv_med,
        conv_gflops=cv_flops / cv_med / 1e9,
        conv_gflops_best=cv_flops / cv_min / 1e9,
        reps=opts.reps,
    )


def ceilings_torch(opts):
    """The same two kernels in PyTorch (2 threads), to explain torch-vs-XLA differences."""
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    N = opts.matmul_n
    a, b = torch.randn(N, N), torch.randn(N, N)
    a @ b
    mm_med, mm_min = _median_time(lambda: a @ b, opts.reps)
    Bc, H, C = opts.conv_batch, 56, 64
    x = torch.randn(Bc, C, H, H).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(C, C, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    with torch.no_grad():
        conv(x)
        cv_med, cv_min = _median_time(lambda: conv(x), opts.reps)
    mm_flops, cv_flops = 2.0 * N**3, 2.0 * Bc * H * H * C * C * 9
    return dict(
        case="ceilings",
        contender="torch",
        matmul_n=N,
        matmul_s=mm_med,
        matmul_gflops=mm_flops / mm_med / 1e9,
        matmul_gflops_best=mm_flops / mm_min / 1e9,
        conv_shape=f"{Bc}x{H}x{H}x{C}->{C} 3x3",
        conv_s=cv_med,
        conv_gflops=cv_flops / cv_med / 1e9,
        conv_gflops_best=cv_flops / cv_min / 1e9,
        reps=opts.reps,
    )


# ---------------------------------------------------------------------------------------
# Case 4: ResNet-50 train step (hand-written Flax linen)
# ---------------------------------------------------------------------------------------
RESNET = dict(
    batch=8, image=224, classes=1000, stages=(3, 4, 6, 3), width=64, lr=0.1, momentum=0.9, steps=2
)
RESNET_TINY = dict(RESNET, image=32, classes=10, stages=(1, 1), width=8)


def _flax_resnet(cfg):
    from functools import partial

    import flax.linen as nn
    import jax.numpy as jnp

    class Bottleneck(nn.Module):
        filters: int
        strides: int = 1

        @nn.compact
        def __call__(self, x, train):
            norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5)
            conv = partial(nn.Conv, use_bias=False)
            r = x
            y = nn.relu(norm()(conv(self.filters, (1, 1))(x)))
            y = conv(self.filters, (3, 3), self.strides, padding=((1, 1), (1, 1)))(y)
            y = nn.relu(norm()(y))
            y = norm(scale_init=nn.initializers.zeros)(conv(self.filters * 4, (1, 1))(y))
            if r.shape != y.shape:
                r = norm()(conv(self.filters * 4, (1, 1), self.strides)(r))
            return nn.relu(r + y)

    class ResNet(nn.Module):
        stages: tuple
        width: int
        classes: int

        @nn.compact
        def __call__(self, x, train=True):
            x = nn.Conv(self.width, (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=False)(x)
            x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x))
            x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
            for i, n_blocks in enumerate(self.stages):
                for j in range(n_blocks):
                    x = Bottleneck(self.width * 2**i, 2 if (i > 0 and j == 0) else 1)(x, train)
            x = jnp.mean(x, axis=(1, 2))
            return nn.Dense(self.classes)(x)

    return ResNet(tuple(cfg["stages"]), cfg["width"], cfg["classes"])


def _numpy_fill(shapes, rng):
    """Concrete float32 arrays for a pytree of ShapeDtypeStructs (flax variable names)."""
    import jax

    def fill(path, leaf):
        name = getattr(path[-1], "key", "")
        if name == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            return rng.standard_normal(leaf.shape, np.float32) * np.float32(np.sqrt(2 / fan_in))
        value = 1.0 if name in ("scale", "var") else 0.0
        return np.full(leaf.shape, value, np.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def resnet_flax(opts):
    """trace / lower / XLA-compile seconds of the train step, then 2 timed steps.

    step_s is the last (steady) step; first_step_s, the first call of the compiled
    executable, also pays one-time costs (buffer allocation, thread-pool start-up).
    """
    import resource

    import jax
    import jax.numpy as jnp
    import optax

    cfg = RESNET_TINY if opts.tiny else RESNET
    t_imports = time.time()
    model = _flax_resnet(cfg)
    B, S = cfg["batch"], cfg["image"]
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.standard_normal((B, S, S, 3), dtype=np.float32))
    y = jax.device_put(rng.integers(0, cfg["classes"], B).astype(np.int32))
    t0 = time.perf_counter()
    # Flax's own init (jitted or not) costs more to compile here than the train step does,
    # and init is not what this case measures: take the variable shapes from eval_shape and
    # fill them from numpy (He-normal kernels, BN scale/var 1, biases/means 0).
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, S, S, 3)), train=False)
    )
    variables = jax.device_put(_numpy_fill(shapes, rng))
    params, stats = variables["params"], variables["batch_stats"]
    init_s = time.perf_counter() - t0
    opt = optax.sgd(cfg["lr"], momentum=cfg["momentum"])
    opt_state = opt.init(params)

    def train_step(p, stats, s, x, y):
        def loss_fn(p):
            logits, upd = model.apply(
                {"params": p, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, upd["batch_stats"]

        (loss, stats), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), stats, s, loss

    jitted = jax.jit(train_step, donate_argnums=(0, 1, 2))
    timings, (params, _, _) = time_train_step(jitted, (params, stats, opt_state), (x, y),
                                              cfg["steps"])
    n_params = sum(v.size for v in jax.tree.leaves(params))
    return dict(
        case="resnet",
        contender="flax",
        model="tiny-resnet" if opts.tiny else "resnet50",
        batch=B,
        image=S,
        n_params=int(n_params),
        init_s=init_s,
        **timings,
        import_s=t_imports - T_PROCESS,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        in_process_s=time.time() - T_PROCESS,
    )


def time_train_step(jitted, carry, rest, steps):
    """Seconds to trace, lower and XLA-compile jitted(*carry, *rest), then `steps` timed
    calls of the compiled step, whose outputs start with the new carry and then the loss.
    -> (figures of the resnet case, the final carry)."""
    import jax

    t0 = time.perf_counter()
    traced = jitted.trace(*carry, *rest)
    t1 = time.perf_counter()
    lowered = traced.lower()
    t2 = time.perf_counter()
    compiled = lowered.compile()
    t3 = time.perf_counter()
    flops = _cost_flops(compiled)
    step_s, losses = [], []
    for _ in range(steps):
        t0s = time.perf_counter()
        out = compiled(*carry, *rest)
        carry, loss = out[: len(carry)], out[len(carry)]
        jax.block_until_ready(loss)
        step_s.append(time.perf_counter() - t0s)
        losses.append(float(loss))
    figures = dict(
        trace_s=t1 - t0,
        lower_s=t2 - t1,
        trace_lower_s=t2 - t0,
        compile_s=t3 - t2,
        first_step_s=step_s[0],
        step_s=step_s[-1],
        step_s_all=step_s,
        flops_per_step=flops,
        gflops=flops / step_s[-1] / 1e9,
        losses=losses,
    )
    return figures, carry


# ---------------------------------------------------------------------------------------
# Case 3: a small ResNet on sklearn's digits, time to a dev accuracy
# ---------------------------------------------------------------------------------------
DIGITS = dict(batch=64, lr=3e-3, epochs=30, split=(0.8, 0.1, 0.1), seed=0, target=0.97)


def digits_data(seed=DIGITS["seed"]):
    """sklearn's 8x8 digits / 16 as NHWC float32, int32 labels; a seeded 80/10/10 split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(y))
    n_train = int(DIGITS["split"][0] * len(y))
    n_dev = int(DIGITS["split"][1] * len(y))
    tr, dev = order[:n_train], order[n_train : n_train + n_dev]
    return (X[tr], y[tr]), (X[dev], y[dev])


def digits_flax_optax(opts):
    """examples/digits_resnet.net written by hand in Flax linen + optax (Adam, per-epoch
    cosine decay), a jitted donated step per minibatch and a jitted dev evaluation per epoch;
    time from process start to the first epoch whose dev accuracy reaches the target."""
    from functools import partial

    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    (Xtr, ytr), (Xdev, ydev) = digits_data()
    B, E = DIGITS["batch"], opts.epochs

    class Block(nn.Module):
        c: int
        s: int = 1

        @nn.compact
        def __call__(self, x, train):
            norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                           epsilon=1e-5)
            conv = partial(nn.Conv, use_bias=False, padding="SAME")
            y = nn.relu(norm()(conv(self.c, (3, 3), self.s)(x)))
            y = norm()(conv(self.c, (3, 3))(y))
            if x.shape != y.shape:
                x = conv(self.c, (1, 1), self.s)(x)
            return nn.relu(x + y)

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train=True):
            x = nn.Conv(16, (3, 3), padding="SAME", use_bias=False)(x)
            x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                     epsilon=1e-5)(x))
            for c, s in ((16, 1), (16, 1), (32, 2), (32, 1)):
                x = Block(c, s)(x, train)
            return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))

    model = Net()
    variables = jax.jit(partial(model.init, train=False))(jax.random.key(0), Xtr[:1])
    params, stats = variables["params"], variables["batch_stats"]
    steps_per_epoch = -(-len(ytr) // B)
    epoch_lr = optax.cosine_decay_schedule(DIGITS["lr"], E)
    opt = optax.adam(lambda t: epoch_lr(t // steps_per_epoch))
    opt_state = opt.init(params)

    def train_step(p, st, s, xb, yb):
        def loss_fn(p):
            logits, upd = model.apply({"params": p, "batch_stats": st}, xb, train=True,
                                      mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), upd

        (loss, upd), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), upd["batch_stats"], s, loss

    @jax.jit
    def dev_accuracy(p, st):
        logits = model.apply({"params": p, "batch_stats": st}, Xdev, train=False)
        return jnp.mean(jnp.argmax(logits, -1) == ydev)

    step = jax.jit(train_step, donate_argnums=(0, 1, 2))
    Xd, yd = jax.device_put(Xtr), jax.device_put(ytr)
    rng = np.random.default_rng(DIGITS["seed"])
    hit, accs, t_loop = None, [], time.time()
    for epoch in range(E):
        order = rng.permutation(len(ytr))
        for i in range(steps_per_epoch):
            idx = order[i * B : (i + 1) * B]
            params, stats, opt_state, loss = step(params, stats, opt_state, Xd[idx], yd[idx])
        accs.append(float(dev_accuracy(params, stats)))
        if hit is None and accs[-1] >= opts.target:
            hit = (epoch + 1, time.time() - T_PROCESS)
    t_trained = time.time()
    return dict(
        case="digits",
        contender="flax_optax",
        target=opts.target,
        time_to_target_s=hit[1] if hit else None,
        epochs_to_target=hit[0] if hit else None,
        e2e_s=t_trained - T_PROCESS,
        epoch_s=(t_trained - t_loop) / E,
        final_dev_acc=accs[-1],
    )


# ---------------------------------------------------------------------------------------
# Registry + CLI
# ---------------------------------------------------------------------------------------
CONTENDERS = {
    "moons": {
        "jax_loop": moons_jax_loop,
        "jax_scan": moons_jax_scan,
        "torch_eager": moons_torch_eager,
        "numpy_course": moons_numpy_course,
        "agree": moons_agree,
    },
    "lenet": {
        "flax_optax": lenet_flax_optax,
        "torch_eager": lenet_torch_eager,
        "keras_jax": lenet_keras_jax,
        "flax_scan": lenet_flax_scan,
    },
    "ceilings": {"jax": ceilings_jax, "torch": ceilings_torch},
    "resnet": {"flax": resnet_flax},
    "digits": {"flax_optax": digits_flax_optax},
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("case", choices=CONTENDERS)
    p.add_argument("contender")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"moons: training epochs (default {MOONS['epochs']}); "
        f"lenet: timed epochs (default {LENET['epochs']})",
    )
    p.add_argument(
        "--sklearn",
        action="store_true",
        help="moons: generate the data with sklearn itself (adds its import)",
    )
    p.add_argument(
        "--outer",
        choices=["scan", "python"],
        default="scan",
        help="moons jax_scan: epochs in an outer lax.scan or a Python loop",
    )
    p.add_argument("--unroll", type=int, default=1, help="jax_scan/flax_scan: scan unroll")
    p.add_argument("--n", type=int, default=LENET["n"], help="lenet: number of examples")
    p.add_argument("--keras-mode", choices=["fit", "tob"], default="fit")
    p.add_argument("--matmul-n", type=int, default=2048)
    p.add_argument("--conv-batch", type=int, default=32)
    p.add_argument("--reps", type=int, default=10, help="ceilings: timed repetitions")
    p.add_argument("--tiny", action="store_true", help="resnet: tiny ResNet instead of -50")
    p.add_argument("--target", type=float, default=DIGITS["target"], help="digits: dev accuracy")
    opts = p.parse_args(argv)
    if opts.epochs is None:
        opts.epochs = {"moons": MOONS["epochs"], "digits": DIGITS["epochs"]}.get(
            opts.case, LENET["epochs"])
    if opts.contender not in CONTENDERS[opts.case]:
        p.error(
            f"unknown contender {opts.contender!r} for {opts.case}: {sorted(CONTENDERS[opts.case])}"
        )
    return opts


def main(argv=None):
    opts = parse_args(argv)
    fn = CONTENDERS[opts.case][opts.contender]
    try:
        result = fn(opts)
    except ImportError as e:  # torch / keras (or anything else) absent
        result = dict(
            case=opts.case, contender=opts.contender, skipped=f"not installed ({e.name or e})"
        )
        print(f"skipped: not installed ({e.name or e})", file=sys.stderr)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
