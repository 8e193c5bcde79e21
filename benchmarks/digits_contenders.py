"""The digits case's hand-written contender: examples/digits_resnet.net in Flax linen +
optax, timed from process start to the first epoch whose dev accuracy reaches a target.
"""

from __future__ import annotations

import time

import numpy as np

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
            hit = (epoch + 1, time.time() - opts.t_process)
    t_trained = time.time()
    return dict(
        case="digits",
        contender="flax_optax",
        target=opts.target,
        time_to_target_s=hit[1] if hit else None,
        epochs_to_target=hit[0] if hit else None,
        e2e_s=t_trained - opts.t_process,
        epoch_s=(t_trained - t_loop) / E,
        final_dev_acc=accs[-1],
    )


CONTENDERS = {"flax_optax": digits_flax_optax}
