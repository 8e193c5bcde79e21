"""The moons case's contenders: a 2-5-2-1 MLP trained with Adam on 300 make_moons points.

Every contender trains the identical model (He init from one seeded generator) on identical
data in identical minibatch order, so that their final losses and parameters can be compared
(``moons agree``, and run.py's maths cross-check through ``agreement``).
"""

from __future__ import annotations

import itertools
import time

import numpy as np

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
        t_process=opts.t_process,
        t_trained=t_trained,
        import_s=t_imports - opts.t_process,
        setup_s=t_setup - t_imports,
        compile_s=compile_s,
        train_s=train_s,
        step_us=1e6 * train_s / steps,
        in_process_s=t_trained - opts.t_process,
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
            results[name] = CONTENDERS[name](opts)
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


CONTENDERS = {
    "jax_loop": moons_jax_loop,
    "jax_scan": moons_jax_scan,
    "torch_eager": moons_torch_eager,
    "numpy_course": moons_numpy_course,
    "agree": moons_agree,
}
