"""The ResNet-50 case's hand-written contender (Flax linen): trace, lower and XLA-compile
seconds of the train step, then timed steps; also what netc's contender (netc_bench.py) shares:
the configuration, the random batch and the timing and figures of a step.
"""

from __future__ import annotations

import time

import numpy as np
from timing import time_train_step

RESNET = dict(
    batch=8, image=224, classes=1000, stages=(3, 4, 6, 3), width=64, lr=0.1, momentum=0.9, steps=2
)
RESNET_TINY = dict(RESNET, image=32, classes=10, stages=(1, 1), width=8)


def resnet_config(tiny):
    return RESNET_TINY if tiny else RESNET


def resnet_batch(cfg, rng):
    """One random batch on the device: NHWC float32 images and int32 labels, drawn from rng."""
    import jax

    B, S = cfg["batch"], cfg["image"]
    x = jax.device_put(rng.standard_normal((B, S, S, 3), dtype=np.float32))
    y = jax.device_put(rng.integers(0, cfg["classes"], B).astype(np.int32))
    return x, y


def time_resnet_step(contender, tiny, step, carry, rest, init_s, t_imports, t_process,
                     steps=None):
    """The case's figures for a jitted train step(*carry, *rest) whose carry starts with the
    parameters: time_train_step's timings over `steps` calls (default the configuration's),
    the model's size and the process's peak memory. t_imports and t_process are time.time()
    stamps (imports done, process start)."""
    import resource

    import jax

    cfg = resnet_config(tiny)
    timings, (params, *_) = time_train_step(step, carry, rest, steps or cfg["steps"])
    return dict(
        case="resnet",
        contender=contender,
        model="tiny-resnet" if tiny else "resnet50",
        batch=cfg["batch"],
        image=cfg["image"],
        n_params=int(sum(v.size for v in jax.tree.leaves(params))),
        init_s=init_s,
        **timings,
        import_s=t_imports - t_process,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        in_process_s=time.time() - t_process,
    )


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
    """trace / lower / XLA-compile seconds of the train step, then `--steps` timed steps
    (default 2).

    step_s is the median of the steps after the first; first_step_s, the first call of the
    compiled executable, also pays one-time costs (buffer allocation, thread-pool start-up).
    A GPU runs a step in milliseconds: more steps (`--steps 20`) steady the median.
    """
    import jax
    import jax.numpy as jnp
    import optax

    cfg = resnet_config(opts.tiny)
    t_imports = time.time()
    model = _flax_resnet(cfg)
    S = cfg["image"]
    rng = np.random.default_rng(0)
    x, y = resnet_batch(cfg, rng)
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
    return time_resnet_step("flax", opts.tiny, jitted, (params, stats, opt_state), (x, y),
                            init_s, t_imports, opts.t_process, opts.steps)

CONTENDERS = {"flax": resnet_flax}
