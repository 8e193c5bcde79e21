"""Using a netc model inside your own JAX code.

`netc.compile` gives a Model whose `init` and `apply` are pure functions of a pytree of
arrays, so everything JAX offers works on them directly: jit, grad of your own loss, vmap,
an Optax loop you write yourself, Flax modules and the usual pytree utilities.

    python examples/embed_in_jax.py

Each step is a small function so that tests/test_embedding.py can run them one by one.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import netc
import numpy as np
import optax
from flax import traverse_util

STEPS = 150  # Adam steps of main()'s training loop
SPEC = """
net digits_small
input 8x8x1
conv f=3 p=same c=8 -> relu -> maxpool f=2      # 4x4x8
-> flatten -> dropout keep=0.9
-> fc 32 -> relu
-> softmax 10
"""


def load_digits(n: int | None = None):
    """scikit-learn's 8x8 digits as (m, 8, 8, 1) float32 images in [0, 1] and int labels."""
    from sklearn.datasets import load_digits as sk_digits

    data = sk_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]
    y = data.target.astype(np.int32)
    return (x[:n], y[:n]) if n else (x, y)


# 1. jit: model.apply is pure, so jax.jit compiles it like any function of yours.
def make_predict(model):
    return jax.jit(model.apply)


# 2. grad of a loss you write yourself, over variables["params"] only.
def my_loss(params, model, state, x, y, rng=None, l2=1e-4):
    """Mean cross-entropy of the probabilities apply returns, plus your own weight decay."""
    variables = {"params": params, "state": state}
    if rng is None:
        probs = model.apply(variables, x)
    else:  # training mode: dropout needs a key; apply then also returns the new state
        probs, _ = model.apply(variables, x, train=True, rng=rng)
    log_p = jnp.log(jnp.clip(probs, 1e-9, 1.0))
    nll = -jnp.mean(jnp.take_along_axis(log_p, y[:, None], axis=1))
    decay = sum(jnp.sum(w**2) for w in jax.tree.leaves(params))
    return nll + l2 * decay


def my_grads(model, variables, x, y):
    """d my_loss / d params: a pytree with exactly the structure of variables["params"]."""
    return jax.grad(my_loss)(variables["params"], model, variables["state"], x, y)


# 3. vmap over single examples: apply takes a batch, so add and drop a batch axis of 1.
def per_example_apply(model, variables, x):
    one = lambda xi: model.apply(variables, xi[None])[0]  # noqa: E731
    return jax.vmap(one)(x)


# 4. an Optax loop of your own.
def train(model, variables, x, y, *, steps=150, batch=128, lr=3e-3, seed=0):
    """Adam on minibatches with dropout on; returns (params, the loss of each step)."""
    tx = optax.adam(lr)
    params, state = variables["params"], variables["state"]
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, xb, yb, rng):
        loss, grads = jax.value_and_grad(my_loss)(params, model, state, xb, yb, rng)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    losses = []
    for t in range(steps):
        idx = rng.choice(len(x), batch, replace=False)
        params, opt_state, loss = step(params, opt_state, x[idx], y[idx],
                                       jax.random.fold_in(key, t))
        losses.append(float(loss))
    return params, losses


def accuracy(model, variables, x, y) -> float:
    return float(jnp.mean(jnp.argmax(make_predict(model)(variables, x), -1) == y))


# 5. the params pytree with Flax and the pytree utilities.
class WithNetc(nn.Module):
    """A Flax module that holds a netc net's parameters as its own and adds a Dense layer on
    its 10 probabilities (say, a calibration head). `model` is a netc Model."""

    model: object
    features: int = 3

    @nn.compact
    def __call__(self, x):
        params = self.param("netc", lambda key: self.model.init(key)["params"])
        probs = self.model.apply({"params": params, "state": {}}, x)
        return nn.Dense(self.features)(probs)


def flat_names(params) -> dict:
    """{"conv_1/kernel": shape, ...}: flax.traverse_util flattens the nested dict."""
    return {k: v.shape for k, v in traverse_util.flatten_dict(params, sep="/").items()}


def count_params(params) -> int:
    return sum(int(np.size(a)) for a in jax.tree.leaves(params))


def freeze_all_but_last(params, lr=1e-2):
    """An optax transform that trains only the softmax head: labels from the flat names."""
    flat = traverse_util.flatten_dict(params, sep="/")
    labels = traverse_util.unflatten_dict(
        {k: ("train" if k.startswith("softmax") else "frozen") for k in flat}, sep="/")
    return optax.multi_transform({"train": optax.sgd(lr), "frozen": optax.set_to_zero()},
                                 labels)


def main():
    model = netc.compile(SPEC)
    variables = model.init(jax.random.key(0))
    x, y = load_digits()
    x_train, y_train, x_test, y_test = x[:1500], y[:1500], x[1500:], y[1500:]

    probs = make_predict(model)(variables, x_test[:4])
    print("jit(apply):", probs.shape, "rows sum to", np.asarray(probs.sum(-1)).round(4))

    grads = my_grads(model, variables, x_train[:64], y_train[:64])
    print("grad structure == params structure:",
          jax.tree.structure(grads) == jax.tree.structure(variables["params"]))

    single = per_example_apply(model, variables, x_test[:8])
    print("vmap == batched:", bool(jnp.allclose(single, model.apply(variables, x_test[:8]),
                                                atol=1e-6)))

    print(f"{count_params(variables['params']):,} params:", flat_names(variables["params"]))
    params, losses = train(model, variables, x_train, y_train, steps=STEPS)
    trained = {"params": params, "state": variables["state"]}
    print(f"own Adam loop: loss {losses[0]:.3f} -> {np.mean(losses[-10:]):.3f}, "
          f"test accuracy {accuracy(model, trained, x_test, y_test):.3f}")

    module = WithNetc(model)
    flax_vars = module.init(jax.random.key(1), x_test[:2])
    print("inside Flax:", module.apply(flax_vars, x_test[:2]).shape,
          sorted(flax_vars["params"]))


if __name__ == "__main__":
    main()
