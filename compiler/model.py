"""`Model`: a checked net lowered to pure JAX functions, plus the jitted pieces training uses.

    model = netc.compile("lenet5.net")
    variables = model.init(jax.random.key(0))
    probs = model.apply(variables, x)                                    # inference
    probs, state = model.apply(variables, x, train=True, rng=key)        # training mode
    (cost, aux), grads = model.loss_and_grad(variables["params"], variables["state"], x, y, key)
"""

from __future__ import annotations

import functools
import math
from functools import cached_property

import jax
import jax.numpy as jnp
import optax

from .ir import Net
from .layers import KINDS, Context, Target
from .losses import LOSSES, default_loss
from .lower import (
    assemble_variables,
    draw_normals,
    drawn_count,
    init_variables,
    lower_leaf,
    lower_sequence,
    weight_names,
)
from .xla_options import compiler_options


class Model:
    """Pure functions of a net. Everything that takes `variables` is jit/grad/vmap-able."""

    def __init__(self, net: Net, *, dtype=jnp.float32, compute_dtype=None,
                 platform: str | None = None):
        self.net = net
        self.name = net.name
        self.input_shape = tuple(net.input_shape)
        self.output_shape = tuple(net.output_shape)
        self.dtype = jnp.dtype(dtype)
        self.compute_dtype = jnp.dtype(compute_dtype or dtype)
        self.platform = platform or jax.default_backend()  # lowerings are chosen for it
        self.traces = 0  # how many times the forward pass was traced (tests use it)

        self.frozen = net.frozen  # layer names whose parameters training leaves alone
        target = Target(self.platform, self.frozen)
        children = net.body.children
        last = children[-1]
        head = None if last.is_block else KINDS[last.kind].head
        if head is not None:  # ends in softmax/sigmoid: its logits, then the activation
            self.output_activation = last.kind
            self._activation = head.activation
            self._trunk = lower_sequence(children[:-1], target)
            self._logits = lower_leaf(last, target, head.lower_logits)
        else:
            self.output_activation = None
            self._activation = None
            self._trunk = lower_sequence(children, target)
            self._logits = None
        self.loss_name = net.train.loss or default_loss(net.head.kind)
        self._loss = LOSSES[self.loss_name]
        # a multi-task net (`sigmoid N`, N > 1, binary cross-entropy): each output a yes/no
        # task with its own accuracy; 0 for any other
        width = math.prod(self.output_shape)
        self.tasks = width if self._loss.task_hits is not None and width > 1 else 0
        self._weights = [(layer, p) for layer, p in weight_names(net)
                         if layer not in self.frozen]  # frozen weights get no L2
        # XLA's options for this net's programs on this platform (compiler/xla_options.py)
        self.compiler_options = compiler_options(self.platform, net.macs)
        self._init = jax.jit(functools.partial(init_variables, net, dtype=self.dtype))

    def __repr__(self) -> str:
        return (f"<netc.Model {self.name}: {self.input_shape} -> {self.output_shape}, "
                f"{self.net.params:,} params>")

    # ---- the pure functions --------------------------------------------------------
    def init(self, key, *, random_scale=None, normal_bits=None) -> dict:
        """Fresh variables {"params": {...}, "state": {...}} (a pytree of arrays);
        `random_scale` replaces the spec's `init random scale=` (it may be traced);
        `normal_bits` (compiler/lower.py's normal_bits) the key's draw, made on the host."""
        if (random_scale is None and normal_bits is None and not isinstance(key, jax.core.Tracer)
                and self.dtype in (jnp.float32, jnp.float64)):
            # a call outside a trace: only the draw in XLA, the variables assembled in numpy
            total = drawn_count(self.net)
            normal = draw_normals(key, total, self.dtype) if total else None
            return jax.device_put(assemble_variables(self.net, normal, self.dtype))
        return self._init(key, random_scale=random_scale, normal_bits=normal_bits)

    def forward(self, variables, x, *, train: bool = False, rng=None):
        """(pre-activation output, updated state). The last softmax/sigmoid is not applied."""
        self.traces += 1
        ctx = Context(train, rng, self.compute_dtype)
        params, state = variables["params"], variables.get("state", {})
        x = jnp.asarray(x).astype(self.compute_dtype)
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"{self.name} expects inputs of shape (m, "
                             f"{', '.join(map(str, self.input_shape))}), got {x.shape}")
        out, updates = self._trunk(ctx, x, params, state)
        if self._logits is not None:
            out, more = self._logits(ctx, out, params, state)
            updates = {**updates, **more}
        out = out.astype(jnp.promote_types(out.dtype, jnp.float32))  # bf16 -> f32, f64 stays
        return out, {**state, **updates}

    def activate(self, out):
        """Apply the final softmax/sigmoid to what `forward` returned."""
        return self._activation(out) if self._activation is not None else out

    def apply(self, variables, x, *, train: bool = False, rng=None):
        """Inference on a batch: y. With train=True: (y, new_state) (dropout needs rng)."""
        out, state = self.forward(variables, x, train=train, rng=rng)
        y = self.activate(out)
        return (y, state) if train else y

    def loss(self, params, state, x, y, rng=None, *, train: bool = True, weights=None,
             l2: float | None = None):
        """The cost J (mean over the minibatch, plus (lambda/2m) sum ||W||^2) and
        (new_state, outputs). `weights` (m,) of 0/1 leaves padded examples out."""
        out, new_state = self.forward({"params": params, "state": state}, x, train=train,
                                      rng=rng)
        per_example = self.per_example_loss(out, y)
        if weights is None:
            m = per_example.shape[0]
            cost = jnp.mean(per_example)
        else:
            m = jnp.maximum(jnp.sum(weights), 1.0)
            cost = jnp.sum(per_example * weights) / m
        lam = self.net.train.l2 if l2 is None else l2  # may be traced (a hyperparameter)
        if not (isinstance(lam, int | float) and lam == 0):
            squares = sum(jnp.sum(jnp.square(_at_least_f32(params[layer][p])))
                          for layer, p in self._weights)
            cost = cost + lam / (2 * m) * squares
        return cost, (new_state, out)

    def per_example_loss(self, out, y):
        """The loss of each example, from logits when the net ends in the matching
        softmax/sigmoid (numerically stable), else from the activated outputs. An output
        that is not a vector (a conv's HxWxC) is one column per value, as its labels are."""
        from_logits = self._loss.head is not None and self._loss.head == self.output_activation
        out, y = self._as_columns(out, y)
        return self._loss.per_example(out if from_logits else self.activate(out), y,
                                      from_logits)

    def _as_columns(self, out, y):
        """(out, y) as (m, values) for a binary or squared-error loss of an output that is
        not a vector; as they are otherwise (cross-entropy's classes are its last axis)."""
        if len(self.output_shape) == 1 or self._loss.labels == "classes":
            return out, y
        m = out.shape[0]
        return out.reshape(m, -1), y.reshape(m, -1)

    def metrics(self, out, y, weights=None) -> dict:
        """Sums for accuracy over a batch: {'hits', 'counted'} (empty for regression); a
        multi-task net's also 'task_hits' and 'task_known', each (tasks,): every task's
        right answers and known labels."""
        if self._loss.hits is None:
            return {}
        probabilities, y = self._as_columns(self.activate(out), y)
        hits, counted = self._loss.hits(probabilities, y)
        if weights is not None:
            hits, counted = hits * weights, counted * weights
        figures = {"hits": jnp.sum(hits), "counted": jnp.sum(counted)}
        if self.tasks:
            m = probabilities.shape[0]
            task_hits, known = self._loss.task_hits(probabilities.reshape(m, -1),
                                                    y.reshape(m, -1))
            if weights is not None:
                task_hits, known = task_hits * weights[:, None], known * weights[:, None]
            figures["task_hits"], figures["task_known"] = task_hits.sum(0), known.sum(0)
        return figures

    # ---- jitted pieces ---------------------------------------------------------------
    def jit(self, fn, **options):
        """jax.jit(fn, **options) with this net's XLA compiler options, for the programs
        netc's runtime calls at the top level (training and evaluation). The jitted pieces
        below stay plain jax.jit: they may run inside another trace (the training loop's,
        or a user's), where JAX takes no compiler options."""
        return jax.jit(fn, compiler_options=self.compiler_options, **options)

    @cached_property
    def predict(self):
        """jit(apply) for inference."""
        return jax.jit(lambda variables, x: self.apply(variables, x))

    @cached_property
    def loss_and_grad(self):
        """jit(value_and_grad(loss)): ((J, (new_state, out)), grads)."""
        return jax.jit(jax.value_and_grad(self.loss, has_aux=True),
                       static_argnames=("train", "l2"))

    def trainable(self, params: dict) -> dict:
        """The parameters training changes: all but the frozen layers'. The optimiser's
        state is built over these alone."""
        return {k: v for k, v in params.items() if k not in self.frozen}

    def step_fn(self, tx: optax.GradientTransformation, *, l2=None, accumulate: int = 1):
        """The (unjitted) train step: step(params, state, opt_state, x, y, rng, weights=None)
        -> (params, state, opt_state, cost, metrics). `l2` (a float or a traced scalar)
        replaces the spec's lambda. Only the trainable parameters are differentiated (and
        `opt_state` is theirs): frozen ones pass through untouched. With `accumulate` K the
        minibatch is computed as K equal micro-batches, one after another, whose gradients
        (and costs) are averaged: the whole batch's update, with 1/K of its activations in
        memory (BatchNorm's statistics are each micro-batch's)."""
        def gradient(params, state, x, y, rng, weights):
            fixed = {k: v for k, v in params.items() if k in self.frozen}

            def cost_of(trainable):
                return self.loss({**trainable, **fixed}, state, x, y, rng, weights=weights,
                                 l2=l2)
            (cost, (new_state, out)), grads = jax.value_and_grad(cost_of, has_aux=True)(
                self.trainable(params))
            return cost, new_state, grads, self.metrics(out, y, weights)

        def accumulated(params, state, x, y, rng, weights):
            k = accumulate

            def split(a):
                return None if a is None else a.reshape(k, a.shape[0] // k, *a.shape[1:])

            def micro(carry, xs):
                state, totals = carry
                i, xk, yk, wk = xs
                cost, state, grads, metrics = gradient(params, state, xk, yk,
                                                       jax.random.fold_in(rng, i), wk)
                added = (cost, grads, metrics)
                totals = added if totals is None else jax.tree.map(jnp.add, totals, added)
                return (state, totals), None
            m = x.shape[0] // k
            shapes = jax.eval_shape(gradient, params, state, x[:m], y[:m], rng,
                                    None if weights is None else weights[:m])
            zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype),
                                 (shapes[0], shapes[2], shapes[3]))
            (state, (cost, grads, metrics)), _ = jax.lax.scan(
                micro, (state, zeros), (jnp.arange(k), split(x), split(y), split(weights)))
            return cost / k, state, jax.tree.map(lambda g: g / k, grads), metrics

        def step(params, state, opt_state, x, y, rng, weights=None):
            compute = accumulated if accumulate > 1 else gradient
            cost, new_state, grads, metrics = compute(params, state, x, y, rng, weights)
            trainable = self.trainable(params)
            updates, opt_state = tx.update(grads, opt_state, trainable)
            trainable = optax.apply_updates(trainable, updates)
            fixed = {k: v for k, v in params.items() if k in self.frozen}
            return {**trainable, **fixed}, new_state, opt_state, cost, metrics
        return step

    def train_step(self, tx: optax.GradientTransformation, *, donate: bool = True):
        """jit(step_fn(tx)); params, state and optimiser state are donated."""
        return jax.jit(self.step_fn(tx), donate_argnums=(0, 1, 2) if donate else ())

    def batch_figures(self, out, y, weights) -> dict:
        """{'loss_sum', 'n', 'hits', 'counted'} (no L2) of a batch from what `forward`
        returned for it; `weights` (m,) of 0/1 leaves padded examples out."""
        per = self.per_example_loss(out, y)
        return {"loss_sum": jnp.sum(per * weights), "n": jnp.sum(weights),
                **self.metrics(out, y, weights)}

    @cached_property
    def evaluate_batch(self):
        """jit: (variables, x, y, weights) -> {'loss_sum', 'hits', 'counted', 'n'} (no L2)."""
        def run(variables, x, y, weights):
            out, _ = self.forward(variables, x)
            return self.batch_figures(out, y, weights)
        return jax.jit(run)

    @cached_property
    def outputs_and_sums(self):
        """jit: (variables, x, y, weights) -> (the outputs `apply` gives, [loss_sum, n, hits,
        counted] as float32): a batch's predictions and its figures from one forward pass
        (`netc eval`, `--errors`). Hits and counted are 0 for regression."""
        def predict_and_sum(variables, x, y, weights):
            out, _ = self.forward(variables, x)
            r = self.batch_figures(out, y, weights)
            zero = jnp.float32(0)
            sums = jnp.stack([r["loss_sum"], r["n"], r.get("hits", zero),
                              r.get("counted", zero)]).astype(jnp.float32)
            return self.activate(out), sums
        return jax.jit(predict_and_sum)


def _at_least_f32(a):
    return a.astype(jnp.promote_types(a.dtype, jnp.float32))


_CACHE: dict = {}


def compile_net(net: Net, *, dtype=jnp.float32, compute_dtype=None) -> Model:
    """A Model for a checked net; the same spec text and options give the same Model object,
    so its jitted functions are compiled once per input shape and dtype. The platform is
    part of the key: lowerings are chosen per platform."""
    platform = jax.default_backend()
    key = (net.source, net.filename, jnp.dtype(dtype).name,
           jnp.dtype(compute_dtype or dtype).name, platform)
    model = _CACHE.get(key)
    if model is None:
        model = _CACHE[key] = Model(net, dtype=dtype, compute_dtype=compute_dtype,
                                    platform=platform)
    return model
