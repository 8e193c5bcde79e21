"""The training loop: data -> device, one compiled step, epochs, metrics, checkpoints.

Randomness is a pure function of (seed, epoch, step): the shuffle of epoch e is numpy's
default_rng([seed, e]).permutation(m), dropout's key folds in the epoch and the step. So a run
resumed from the checkpoint of epoch k ends with exactly the parameters of an uninterrupted run.

Two ways to loop over minibatches, picked per model and backend (see benchmarks/RESULTS.md):
  step  a jitted step per minibatch called from Python (XLA:CPU's fast convolution path);
  scan  `lax.scan` over the minibatches of a chunk of epochs in one dispatch (tiny nets,
        where Python's per-step overhead dominates).
A train split that stays on disk (runtime/host_feed.py's HostData) runs the same loops
with its minibatches from the host: step, one dispatch per minibatch read; scan, one
dispatch per group of minibatches stacked on the host (runtime/host_scan.py). The same
steps, the same parameters.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from netc.compiler.ir import Net
from netc.compiler.layers import KINDS
from netc.compiler.losses import LOSSES
from netc.compiler.lower import drawn_count, normal_bits
from netc.compiler.model import Model, compile_net

from .clock import compile_seconds
from .devices import Placement, check_batch
from .host_feed import (
    ArrayBatches,
    FeedRates,
    HostData,
    check_processes,
    dev_reader,
    train_reader,
)
from .host_scan import device_groups, scan_reader
from .optim import build_optimizer, epoch_rate, hyperparameters
from .split_figures import as_sums, members_sums, split_batches, sums_width, task_accuracy


@dataclass
class Data:
    """Arrays on the device for one split."""

    x: jax.Array
    y: jax.Array

    @property
    def m(self) -> int:
        return int(self.x.shape[0])


def choose_loop(net: Net, requested: str = "auto", platform: str | None = None) -> str:
    """step or scan: scan unless a layer's kind says fusing it would leave XLA's fast path
    on this platform (on CPU, direct convolutions inside lax.scan ran LeNet-5 5x slower;
    convs lowered as matmuls (im2col) and dense nets gain from fusing: benchmarks/RESULTS.md)."""
    if requested != "auto":
        return requested
    platform = platform or jax.default_backend()
    fusible = all(KINDS[leaf.kind].scan_friendly(leaf, platform) for leaf in net.leaves())
    return "scan" if fusible else "step"


class Trainer:
    """Runs epochs of a compiled model over device data; no Python work per step in the
    scan loop, one dispatch per step in the step loop.

    The hyperparameters (runtime/optim.py) are inputs of the compiled programs, not
    constants in them. Given `population`, a list of hyperparameter dicts, the Trainer runs
    one member per dict, all in the same programs vmapped over the members (the same data,
    minibatch orders and random keys: the same runs as separate trainings with the same
    seed); its carry and figures then have a leading member axis."""

    def __init__(self, net: Net, train: Data | HostData, dev: Data | HostData | None, *,
                 loop: str = "auto", chunk_epochs: int | None = None,
                 population: list[dict] | None = None, placement: Placement | None = None,
                 compute_dtype: str | None = None):
        cfg = net.train
        self.net, self.cfg = net, cfg
        self.model: Model = compile_net(net, compute_dtype=compute_dtype)
        classes = LOSSES[self.model.loss_name].labels == "classes"
        if classes and len(self.model.output_shape) > 1:
            raise ValueError(
                f"cross-entropy takes a vector of class scores, but this net's output is "
                f"{'x'.join(map(str, self.model.output_shape))}: flatten it before the head "
                "(-> flatten -> softmax N), or end in sigmoid for one yes/no per value")
        # an epoch's figures of a split: [loss_sum, n, hits, counted] and a multi-task net's
        # per-task hits and known labels (split_figures.as_sums); a chunk's row holds the
        # train split's, the dev split's and 1 if the epoch ran
        self.width = sums_width(self.model)
        self.train_data, self.dev_data = train, dev
        self.batch = cfg.batch_of(train.m)
        self.full_batches, self.remainder = divmod(train.m, self.batch)
        self.steps_per_epoch = self.full_batches + (1 if self.remainder else 0)
        self.members = None if population is None else len(population)
        self.hyper = population if population is not None else [hyperparameters(cfg)]
        self.placement = placement  # several devices: runtime/devices.py
        if placement is not None:
            if population is not None:
                raise ValueError("a population trains on one device")
            check_batch(self.batch, train.m, placement.count)
            if isinstance(train, HostData):
                check_processes(train.split, placement)
        hp = {k: np.asarray([h[k] for h in self.hyper], np.float32) if population is not None
              else np.float32(v) for k, v in self.hyper[0].items()}
        self._hp = placement.put_replicated(hp) if placement else jax.device_put(hp)
        self.streamed = isinstance(train, HostData)
        # over several processes each feeds its rows of every minibatch: the step loop
        several = self.streamed and (isinstance(train.split, ArrayBatches) or (
            placement is not None and jax.process_count() > 1))
        if several and loop == "scan":
            raise ValueError("--loop scan runs in one process; over several, each "
                             "feeds its rows of every minibatch (--loop step)")
        self.loop = "step" if several else choose_loop(net, loop, self.model.platform)
        self.feed_rates = FeedRates()  # the host-fed loop's reading and stepping
        self.shuffle = self.batch < train.m
        self.chunk = chunk_epochs or self._default_chunk()
        self._compiled = {}
        self._prefetched = {}  # the next chunk's orders, drawn while the device runs
        self._dev_host = None
        self.readers = {}  # host-fed splits' EpochReaders, read epoch after epoch

    def optimizer(self, hp: dict):
        """The optax transformation for hyperparameters `hp` (traced inside the programs)."""
        return build_optimizer(self.cfg, hp, epochs=self.cfg.epochs,
                               steps_per_epoch=self.steps_per_epoch)

    def rate_of_epoch(self, epochs, member: int = 0) -> np.ndarray:
        """The learning rate of each epoch in `epochs` (numpy, on the host) for a member."""
        with np.errstate(over="ignore"):  # a growing schedule may pass float32's range
            return epoch_rate(self.cfg, self.hyper[member], self.cfg.epochs, xp=np)(epochs)

    def _per_member(self, fn, own: int):
        """fn itself, or fn over the members in its first `own` arguments (the others are
        shared: data, orders, epochs). On CPU the members run one after another inside the
        program (lax.map): each member's arithmetic is then exactly a single run's, and 16
        moons members took the same time as vmapped (benchmarks/FINDINGS.md), where vmap's
        batched arithmetic drifted from single runs by up to 2e-3 at lr=0.01. Accelerators
        vmap: batched members fill the device."""
        if self.members is None:
            return fn
        if self.model.platform == "cpu":
            def one_after_another(*args):
                mine, shared = args[:own], args[own:]
                return jax.lax.map(lambda xs: fn(*xs, *shared), mine)
            return one_after_another
        return jax.vmap(fn, in_axes=(0,) * own + (None,) * (fn.__code__.co_argcount - own))

    def _default_chunk(self) -> int:
        if self.loop == "step" or self.streamed:  # the host-fed loops go epoch by epoch
            return 1
        # about 2000 minibatch steps per dispatch: metrics reach the host a few times a second
        return max(1, min(self.cfg.epochs, 2000 // self.steps_per_epoch))

    # ---- state ---------------------------------------------------------------------
    def _keys(self):
        """(init key, augmentation key, dropout key), derived from the seed inside a trace:
        creating keys eagerly compiles a handful of tiny XLA programs (~0.2 s at start-up)."""
        return tuple(jax.random.split(jax.random.key(self.cfg.seed), 3))

    def init_state(self, start: dict | None = None):
        """The carry (params, state, optimiser state, watch) from the seed, in one compiled
        call; `watch` is early stopping's record (None without early_stop). `start`,
        {"params": {layer: {...}}, "state": {layer: {...}}} for some layers (transfer
        learning: `init from=`), replaces those layers' fresh values."""
        start = start or {"params": {}, "state": {}}
        if "init" not in self._compiled:
            # the weights' random bits drawn on the host (the same bits: threefry, exact
            # integer arithmetic): threefry compiled was most of a small net's init
            self._init_bits = normal_bits(self.cfg.seed, drawn_count(self.net),
                                          self.model.dtype)

            def fresh(hp, start, bits):
                key = self._keys()[0] if bits is None else None
                variables = self.model.init(key, random_scale=hp.get("init.scale"),
                                            normal_bits=bits)
                params = {**variables["params"], **start["params"]}
                state = {**variables["state"], **start["state"]}
                opt = self.optimizer(hp).init(self.model.trainable(params))
                return params, state, opt, self._fresh_watch(params, state)
            shardings = None
            if self.placement is not None:
                shardings = self.placement.shardings(
                    jax.eval_shape(fresh, self._hp, start, self._init_bits))
            self._compiled["init"] = self.model.jit(self._per_member(fresh, 1),
                                                    out_shardings=shardings)
        return self._compiled["init"](self._hp, start, self._init_bits)

    # ---- one epoch, traced ---------------------------------------------------------
    def orders(self, first: int, count: int, rows: int | None = None) -> np.ndarray:
        """Example orders of epochs first .. first+count-1 as a (rows, m) int32 array (rows
        beyond count are zeros: they belong to skipped epochs; m is 0 without shuffling).
        Epoch e's order is a permutation drawn on the host from numpy's generator seeded
        with (seed, e): a pure function of the epoch, and cheap where XLA:CPU's sort is not
        (jax.random.permutation inside the scan took 12 of moons' 21 µs per step)."""
        m = self.train_data.m if self.shuffle else 0  # unshuffled: arange in the trace
        out = np.zeros((rows or count, m), np.int32)
        for k in range(count if self.shuffle else 0):
            out[k] = np.random.default_rng([self.cfg.seed, first + k]).permutation(m)
        return out

    def _order(self, order):
        """An epoch's order as the traced loop uses it (orders() leaves it empty when the
        data is not shuffled)."""
        return order if self.shuffle else jnp.arange(self.train_data.m)

    def batch_at(self, x_all, y_all, idx, epoch, i):
        """The training minibatch `idx` of step i of an epoch: the examples, augmented
        (`augment`, keyed from (seed, epoch, step)), and their labels as they are."""
        return self.augmented(x_all[idx], y_all[idx], epoch, i)

    def augmented(self, x, y, epoch, i):
        """A training minibatch (x, y) of step i of an epoch as the step takes it: the examples
        augmented (`augment`, keyed from (seed, epoch, step)), the labels as they are, split
        over the devices of a placement."""
        augment = self.cfg.augment
        if augment is not None:
            from .augment import augment_batch

            key = jax.random.fold_in(jax.random.fold_in(self._keys()[1], epoch), i)
            x = augment_batch(augment, key, x)
        if self.placement is not None:  # split over the devices (a partial one runs whole)
            x, y = self.placement.batch(x), self.placement.batch(y)
        return x, y

    def _step_on(self, hp, carry, x_all, y_all, idx, epoch, i):
        return self._step_with(hp, carry, *self.batch_at(x_all, y_all, idx, epoch, i), epoch, i)

    def _step_with(self, hp, carry, x, y, epoch, i):
        """One training step on minibatch (x, y), augmented and placed (`augmented`)."""
        params, state, opt, watch = carry
        rng = jax.random.fold_in(jax.random.fold_in(self._keys()[2], epoch), i)
        k = self.cfg.accumulate
        step = self.model.step_fn(self.optimizer(hp), l2=hp.get("l2"),
                                  accumulate=k if x.shape[0] % k == 0 else 1)
        params, state, opt, cost, metrics = step(params, state, opt, x, y, rng)
        n = x.shape[0]
        sums = as_sums({"loss_sum": cost * n, "n": jnp.asarray(n, jnp.float32), **metrics})
        return (params, state, opt, watch), sums

    def _epoch(self, hp, carry, epoch, order, x_all, y_all):
        """All minibatches of one epoch inside one trace (the scan loop)."""
        b, full = self.batch, self.full_batches
        order = self._order(order)
        sums = jnp.zeros(self.width, jnp.float32)
        if full:
            batches = order[: full * b].reshape(full, b)

            def body(c, xs):
                i, idx = xs
                return self._step_on(hp, c, x_all, y_all, idx, epoch, i)
            carry, per = jax.lax.scan(body, carry, (jnp.arange(full), batches))
            sums = sums + per.sum(axis=0)
        if self.remainder:
            carry, last = self._step_on(hp, carry, x_all, y_all, order[full * b:], epoch,
                                        full)
            sums = sums + last
        return carry, sums

    # ---- compiled entry points ------------------------------------------------------
    def _scan_chunk(self):
        """jit: run a chunk of epochs; epochs < 0 (a short last chunk) and the epochs after
        early stopping ran out of patience are skipped. Per epoch: [train sums, dev sums,
        1 if it ran] (2 * width + 1)."""
        if "scan" not in self._compiled:
            def chunk(hp, carry, epochs, orders, x_all, y_all, dev_x, dev_y):
                def one(c, xs):
                    epoch, order = xs

                    def run(c):
                        c, sums = self._epoch(hp, c, epoch, order, x_all, y_all)
                        dev = self._dev_sums(c, dev_x, dev_y)
                        c = self._watched(c, epoch, dev)
                        return c, jnp.concatenate([sums, dev, jnp.ones(1, jnp.float32)])
                    live = (epoch >= 0) & ~self._stopped(c)
                    skipped = jnp.zeros(2 * self.width + 1, jnp.float32)
                    return jax.lax.cond(live, run, lambda c: (c, skipped), c)
                return jax.lax.scan(one, carry, (epochs, orders))
            self._compiled["scan"] = self.model.jit(self._per_member(chunk, 2),
                                                    donate_argnums=(1,))
        return self._compiled["scan"]

    def _dev_sums(self, carry, dev_x, dev_y):
        """The dev split's figures (as_sums; an argument, never a constant baked into the
        program), zeros without one."""
        if dev_x is None:
            return jnp.zeros(self.width, jnp.float32)
        params, state = carry[0], carry[1]
        r = self.model.evaluate_batch({"params": params, "state": state}, dev_x, dev_y,
                                      jnp.ones(dev_x.shape[0], jnp.float32))
        return as_sums(r)

    def _step_fn(self):
        if "step" not in self._compiled:
            def step(hp, carry, total, x_all, y_all, idx, epoch, i):
                def run(c):
                    c, sums = self._step_on(hp, c, x_all, y_all, idx, epoch, i)
                    return c, total + sums  # the epoch's sums stay on the device
                return self._unless_stopped(carry, total, run)
            self._compiled["step"] = self.model.jit(self._per_member(step, 3),
                                                    donate_argnums=(1, 2))
        return self._compiled["step"]

    def _batch_step_fn(self):
        """jit: the step of the host-fed loop, on a minibatch from the host."""
        if "batch_step" not in self._compiled:
            def step(hp, carry, total, x, y, epoch, i):
                def run(c):
                    c, sums = self._step_with(hp, c, *self.augmented(x, y, epoch, i), epoch, i)
                    return c, total + sums
                return self._unless_stopped(carry, total, run)
            # `total` is not donated: the loop waits on the step before last through it
            self._compiled["batch_step"] = self.model.jit(self._per_member(step, 3),
                                                          donate_argnums=(1,))
        return self._compiled["batch_step"]

    def _group_scan_fn(self):
        """jit: the host-fed scan's program, `lax.scan` of the step over a group of
        minibatches stacked on the host (x: (K, b, ...)), the first being step `first` of
        the epoch; returns the carry and `total` plus the group's summed figures."""
        if "group_scan" not in self._compiled:
            def steps(hp, carry, total, xs, ys, epoch, first):
                def body(c, inputs):
                    i, x, y = inputs
                    x, y = self.augmented(x, y, epoch, i)
                    return self._step_with(hp, c, x, y, epoch, i)

                def run(c):
                    index = first + jnp.arange(xs.shape[0], dtype=jnp.int32)
                    c, per = jax.lax.scan(body, c, (index, xs, ys))
                    return c, total + per.sum(axis=0)
                return self._unless_stopped(carry, total, run)
            # `total` is not donated: the loop waits on the dispatch before last through it
            self._compiled["group_scan"] = self.model.jit(self._per_member(steps, 3),
                                                          donate_argnums=(1,))
        return self._compiled["group_scan"]

    def _dev_check(self, carry, epoch: int) -> np.ndarray:
        """The step loop's dev figures after an epoch (the evaluation program of the run):
        (width,), or (members, width). A host-fed dev split is read once per check, by one
        reader for the run (host_feed.dev_reader), and every member evaluated on each
        batch."""
        shape = (self.width,) if self.members is None else (self.members, self.width)
        if self.dev_data is None:
            return np.zeros(shape)
        if isinstance(self.dev_data, HostData):  # read from the host at every check
            if "dev" not in self.readers:
                self.readers["dev"] = dev_reader(self.dev_data.split, self.batch,
                                                 self.cfg.epochs)
            batches = self.readers["dev"].epoch(epoch)
        else:
            if self._dev_host is None:
                self._dev_host = (np.asarray(self.dev_data.x), np.asarray(self.dev_data.y))
            batches = split_batches(Data(*self._dev_host), self.batch)
        return members_sums(self.model, self.variables(carry), batches).reshape(shape)

    def close_readers(self) -> None:
        """Stops the readers of host-fed splits (their worker processes) before the run's
        last epoch ends them: after an interrupted or stopped run."""
        for reader in self.readers.values():
            reader.close()

    def variables(self, carry, *, best: bool = False) -> list[dict]:
        """{"params", "state"} of each member (one for a single run): the current ones, or
        with `best` the run's result: early stopping's best epoch's (the current ones
        without early_stop)."""
        params, state, _, watch = carry
        if best and watch is not None:
            params, state = watch["params"], watch["state"]
        if self.members is None:
            return [{"params": params, "state": state}]
        return [jax.tree.map(lambda a, k=k: a[k], {"params": params, "state": state})
                for k in range(self.members)]

    # ---- early stopping (early_stop patience=N min_delta=D on=...) -----------------------
    def _fresh_watch(self, params, state):
        """Early stopping's record: the best dev figure so far, its epoch (from 1), the
        epochs since, whether patience ran out, and the best epoch's variables."""
        stop = self.cfg.early_stop
        if stop is None:
            return None
        worst = -jnp.inf if stop.higher_is_better else jnp.inf
        return {"best": jnp.float32(worst), "best_epoch": jnp.int32(0), "wait": jnp.int32(0),
                "stopped": jnp.bool_(False), "params": jax.tree.map(jnp.copy, params),
                "state": jax.tree.map(jnp.copy, state)}

    def _stopped(self, carry):
        watch = carry[3]
        return jnp.bool_(False) if watch is None else watch["stopped"]

    def _unless_stopped(self, carry, total, run):
        """run(carry) -> (carry, total) of the step loops, or both as they are for a member
        whose patience ran out: a population's members stop one by one, and a stopped
        member's parameters and figures stay where its own run ended. A single run's loop
        stops itself (and its program stays without the branch, which XLA would compile, and
        round, otherwise)."""
        if carry[3] is None or self.members is None:
            return run(carry)
        return jax.lax.cond(self._stopped(carry), lambda c: (c, total), run, carry)

    def _watched(self, carry, epoch, dev):
        """The carry after epoch `epoch` (from 0) with dev sums [loss_sum, n, hits, counted]:
        an improvement by more than min_delta keeps this epoch's variables as the best."""
        params, state, opt, watch = carry
        stop = self.cfg.early_stop
        if watch is None:
            return carry
        if stop.higher_is_better:
            value = dev[2] / jnp.maximum(dev[3], 1.0)
            improved = value > watch["best"] + stop.min_delta
        else:
            value = dev[0] / jnp.maximum(dev[1], 1.0)
            improved = value < watch["best"] - stop.min_delta
        improved = improved & ~watch["stopped"]  # a stopped member stays as it stopped
        wait = jnp.where(improved, 0, watch["wait"] + 1)

        def keep(new, old):
            return jax.tree.map(lambda a, b: jnp.where(improved, a, b), new, old)
        watch = {"best": jnp.where(improved, value, watch["best"]),
                 "best_epoch": jnp.where(improved, epoch + 1, watch["best_epoch"]),
                 "wait": wait, "stopped": watch["stopped"] | (wait >= stop.patience),
                 "params": keep(params, watch["params"]), "state": keep(state, watch["state"])}
        return params, state, opt, watch

    def _watch_fn(self):
        """jit: the step loop's early-stopping update after an epoch."""
        if "watch" not in self._compiled:
            def watch(carry, dev, epoch):  # each member's own dev figures
                return self._watched(carry, epoch, dev)
            self._compiled["watch"] = self.model.jit(self._per_member(watch, 2),
                                                     donate_argnums=(0,))
        return self._compiled["watch"]

    def watch_report(self, carry) -> list[dict]:
        """Per member: {"best_epoch", "stopped"} of early stopping ({} without it)."""
        watch = carry[3]
        if watch is None:
            return [{} for _ in range(self.members or 1)]
        best = np.atleast_1d(np.asarray(watch["best_epoch"])).tolist()
        stopped = np.atleast_1d(np.asarray(watch["stopped"])).tolist()
        return [{"best_epoch": b or None, "stopped": bool(s)} for b, s in zip(best, stopped)]

    def _dev_arrays(self):
        return (None, None) if self.dev_data is None else (self.dev_data.x, self.dev_data.y)

    # ---- running ---------------------------------------------------------------------
    def run_epochs(self, carry, first: int, count: int):
        """Run epochs first .. first+count-1 -> (carry, per-epoch sums as numpy
        (count, 2 * width + 1): the train split's figures (as_sums), the dev split's, 1 if
        the epoch ran (0 after early stopping); a population's have a leading member axis)."""
        if self.loop == "scan" and not self.streamed:
            x, y = self.train_data.x, self.train_data.y
            epochs = np.full(self.chunk, -1, np.int32)
            epochs[:count] = np.arange(first, first + count)
            orders = self._prefetched.pop((first, count), None)
            if orders is None:
                orders = self.orders(first, count, self.chunk)
            carry, sums = self._scan_chunk()(self._hp, carry, epochs, orders, x, y,
                                             *self._dev_arrays())
            # while the device runs this chunk, draw the next one's orders
            following = (first + count, min(self.chunk, self.cfg.epochs - first - count))
            if following[1] > 0:
                self._prefetched = {following: self.orders(*following, self.chunk)}
            return carry, np.asarray(sums)[..., :count, :]
        step = None if self.streamed else self._step_fn()
        x, y = (None, None) if self.streamed else (self.train_data.x, self.train_data.y)
        rows = []
        b = self.batch
        members = () if self.members is None else (self.members,)
        for epoch in range(first, first + count):
            ran = np.ones((*members, 1), np.float32)
            if carry[3] is not None:  # members that ran out of patience before this epoch
                ran = ~np.asarray(carry[3]["stopped"]).reshape(*members, 1) * ran
                if not ran.any():
                    rows.append(np.zeros((*members, 2 * self.width + 1), np.float32))
                    continue
            total = np.zeros((*members, self.width), np.float32)
            if self.streamed and self.loop == "scan":
                carry, total = self._host_fed_scan_epoch(carry, total, epoch)
            elif self.streamed:
                carry, total = self._host_fed_epoch(carry, total, epoch)
            else:
                order = self.orders(epoch, 1)[0] if self.shuffle else \
                    np.arange(self.train_data.m)
                for i in range(self.steps_per_epoch):
                    carry, total = step(self._hp, carry, total, x, y,
                                        order[i * b:(i + 1) * b], epoch, i)
            dev = self._dev_check(carry, epoch).astype(np.float32)
            if carry[3] is not None:
                carry = self._watch_fn()(carry, dev, np.int32(epoch))
            rows.append(np.concatenate([np.asarray(total), dev, ran], axis=-1) * ran)
        return carry, np.stack(rows, axis=-2)

    def _host_fed_epoch(self, carry, total, epoch: int):
        """One epoch of the host-fed loop: the minibatches of the epoch's order read from
        the host-fed train split (one reader for a window of epochs: host_feed.train_reader),
        each put on the device while the step before runs; at most two steps are in flight
        (the loop waits on the one before last), so a reader faster than the device does
        not pile minibatches up in memory."""
        step, rates = self._batch_step_fn(), self.feed_rates
        started, compiled, before = time.perf_counter(), compile_seconds(), None
        if "train" not in self.readers:
            self.readers["train"] = train_reader(self.train_data.split, self.batch,
                                                 self._host_orders, self.cfg.epochs,
                                                 self.placement, rates)
        for i, (x, y) in enumerate(self.readers["train"].epoch(epoch)):
            if len(x) == 0:  # skip_bad left out every example of this minibatch
                continue
            carry, after = step(self._hp, carry, total, x, y, epoch, i)
            if before is not None:
                before.block_until_ready()
            total = before = after
        # compiling is neither reading nor stepping
        rates.seconds += time.perf_counter() - started - (compile_seconds() - compiled)
        return carry, total

    def _host_fed_scan_epoch(self, carry, total, epoch: int):
        """One epoch of the host-fed scan: the epoch's full minibatches read from the train
        split in groups, each group stacked and put on the device while the program on the
        group before runs (host_scan.device_groups), one `lax.scan` dispatch per group; the
        partial last minibatch (and any skip_bad left short) runs as one step. As in
        _host_fed_epoch, at most two dispatches are in flight."""
        scan, step, rates = self._group_scan_fn(), self._batch_step_fn(), self.feed_rates
        started, compiled, before = time.perf_counter(), compile_seconds(), None
        if "train" not in self.readers:
            self.readers["train"] = scan_reader(self.train_data.split, self.batch,
                                                self._host_orders, self.cfg.epochs)
        for group in device_groups(self.readers["train"].epoch(epoch), self.batch,
                                   self.full_batches, rates, self.placement):
            if group.stacked:
                carry, after = scan(self._hp, carry, total, group.x, group.y, epoch,
                                    group.step)
            elif len(group.x):  # not a minibatch skip_bad left empty
                carry, after = step(self._hp, carry, total, group.x, group.y, epoch,
                                    group.step)
            else:
                continue
            if before is not None:
                before.block_until_ready()
            total = before = after
        rates.seconds += time.perf_counter() - started - (compile_seconds() - compiled)
        return carry, total

    def _host_orders(self, first: int, count: int) -> np.ndarray:
        """The orders of epochs first .. first+count-1 as the host-fed loop reads them:
        (count, m), each a row (orders(); the examples in turn when not shuffled)."""
        if self.shuffle:
            return self.orders(first, count)
        m = self.train_data.m
        return np.broadcast_to(np.arange(m, dtype=np.int32), (count, m))

    def records(self, sums: np.ndarray, first: int, seconds: float,
                ended: float | None = None, member: int = 0) -> list[dict]:
        """Per-epoch metric records of the epochs that ran, from the summed figures of a
        chunk that took `seconds` of training and ended `ended` seconds into the run
        (`time`, spread evenly); for a population, `sums` is one member's and `member` its
        index."""
        out, w = [], self.width
        ran_epochs = int(sums[:, 2 * w].sum())
        per_epoch = seconds / max(ran_epochs, 1)
        rates = np.asarray(self.rate_of_epoch(np.arange(first, first + len(sums)), member),
                           np.float64).tolist()  # one call for the chunk, not one per epoch
        for k, row in enumerate(sums.tolist()):
            train, dev, ran = row[:w], row[w:2 * w], row[2 * w]
            if not ran:  # after early stopping: no further epoch ran
                break
            loss_sum, n, hits, counted = train[:4]
            rec = {"epoch": first + k + 1, "lr": rates[k], "loss": loss_sum / n}
            if counted:
                rec["accuracy"] = hits / counted
            if self.model.tasks:
                rec["task_accuracy"] = task_accuracy(train[4:])
            dl, dn, dh, dc = dev[:4]
            if self.dev_data is not None and dn:
                rec["dev_loss"] = dl / dn
                if dc:
                    rec["dev_accuracy"] = dh / dc
                if self.model.tasks:
                    rec["dev_task_accuracy"] = task_accuracy(dev[4:])
            rec["seconds"] = per_epoch
            if ended is not None:
                rec["time"] = round(ended - (ran_epochs - k - 1) * per_epoch, 4)
            out.append(rec)
        return out


class StopRequested:
    """Ctrl-C handling: the first SIGINT asks the loop to stop at the next epoch boundary
    (it then saves a checkpoint); a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def first_bad_epoch(records: list[dict]) -> int | None:
    for rec in records:
        if not math.isfinite(rec["loss"]):
            return rec["epoch"]
    return None
