"""Training on splits streamed from disk (`stream auto|on|off`, runtime/host_feed.py and
runtime/host_scan.py): the host-fed step and scan loops must end with exactly the parameters
of the in-memory step and scan loops (the same orders, keys, augmentation and accumulation),
and everything around them (dev checks, early
stopping, final figures, resume, a population, the progress line, run.json) must work over
streamed splits.

`ArraySplit` is a test double of runtime/stream.py's StreamedSplit: the same `batches()`
contract over arrays in memory, so any difference from the in-memory run is the training
side's. The tests at the end read real files through runtime/stream.py."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import (
    TWO_CPUS,
    Crash,
    CrashAfter,
    assert_trees_close,
    free_port,
    moons_mlp,
    params_of,
    run_cli,
    start_process,
    write_spec,
)
from netc.compiler.check import check_source
from netc.dsl.diagnostics import SpecError
from netc.runtime.data import DataError, Splits
from netc.runtime.host_feed import ArrayBatches, HostData, is_streamed, local_order
from netc.runtime.host_scan import device_groups, host_groups, per_group
from netc.runtime.population import train_population
from netc.runtime.progress import Reporter
from netc.runtime.run import RunFailed, load_data, to_device, train_run
from netc.runtime.sharded_checkpoint import list_checkpoints
from netc.runtime.train import Trainer


class ArraySplit:
    """StreamedSplit's interface over arrays in memory; `bad` positions are left out of
    their batches and counted in `skipped`, as skip_bad does with unreadable files."""

    def __init__(self, x: np.ndarray, y: np.ndarray, bad=()):
        self._x, self.y = x, y
        self.input_shape = x.shape[1:]
        self.bad = set(bad)
        self.skipped, self.skipped_names = 0, []
        self.requests: list[np.ndarray] = []  # the orders asked for, to check them

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, order, batch):
        """One epoch's order, or several epochs' (epochs, m), cut into minibatches of
        `batch` (or of the sizes `batch` lists, in turn, in every epoch)."""
        self.requests.append(np.array(order))
        orders = np.asarray(order).reshape(-1, np.shape(order)[-1])
        m = orders.shape[1]
        cuts = [(a, a + batch) for a in range(0, m, batch)] if np.ndim(batch) == 0 else \
            list(zip(np.cumsum([0, *batch[:-1]]), np.cumsum(batch)))
        for epoch_order in orders:
            for a, b in cuts:
                part = epoch_order[a:b]
                rows = np.asarray([r for r in part if r not in self.bad], np.int64)
                left_out = [f"row {r}" for r in part if r in self.bad]
                self.skipped += len(left_out)
                self.skipped_names += left_out
                yield self._x[rows], self.y[rows]

    def read(self, positions):
        return self._x[positions]


def streamed(splits: Splits, bad=None) -> Splits:
    """The same splits, each as an ArraySplit (`bad`: {split: positions left out})."""
    bad = bad or {}

    def wrap(name, part):
        return None if part is None else ArraySplit(part.x, part.y, bad.get(name, ()))
    return replace(splits, train=wrap("train", splits.train), dev=wrap("dev", splits.dev),
                   test=wrap("test", splits.test),
                   train_dev=wrap("train_dev", splits.train_dev))


@pytest.fixture
def stream_double(monkeypatch):
    """load_streamed gives every split as an ArraySplit of the in-memory one; the dict
    collects the Splits it returned (and `bad` sets which positions fail to read)."""
    seen = {"bad": None}

    def load_streamed(net, base_dir, loss, *, stream, skip_bad, memory_bytes=None):
        splits, stats = load_data(net, base_dir, loss)
        seen["splits"] = streamed(splits, seen["bad"])
        return seen["splits"], stats
    monkeypatch.setattr("netc.runtime.stream.load_streamed", load_streamed)
    return seen


DENSE = moons_mlp("fc 16 -> relu -> dropout keep=0.7 -> fc 8 -> relu -> sigmoid 1",
                  name="dense", n=150, optimizer="adam lr=0.01", batch=16, epochs=4, seed=5,
                  split="0.6 0.2 0.2")

CONV = """net conv
input 8x8x1
conv f=3 s=1 p=same c=8 -> bn -> relu -> maxpool f=2 -> dropout keep=0.8
-> flatten -> fc 16 -> relu -> softmax 10
train {
  data digits
  split 0.2 0.1 0.7
  optimizer adam lr=0.003
  batch 32
  epochs 3
  seed 3
  augment flip crop=1 color=0.1
  accumulate 2
}
"""


def net_of(text: str, folder: Path, extra: str = ""):
    spec = write_spec(folder, text.replace("train {", "train {\n" + extra) if extra else text)
    return check_source(spec.read_text(), str(spec))


@pytest.mark.parametrize("text", [DENSE, CONV], ids=["dense_dropout", "bn_conv_augment"])
def test_host_fed_loop_ends_with_the_parameters_of_the_in_memory_step_loop(text, tmp_path):
    net = net_of(text, tmp_path)
    splits, _ = load_data(net, tmp_path, "cross_entropy" if "softmax" in text else
                          "binary_cross_entropy")
    memory = Trainer(net, to_device(splits.train), to_device(splits.dev), loop="step")
    carry_a, sums_a = memory.run_epochs(memory.init_state(), 0, net.train.epochs)
    disk = streamed(splits)
    host = Trainer(net, HostData(disk.train), HostData(disk.dev), loop="step")
    assert host.streamed and host.loop == "step"
    carry_b, sums_b = host.run_epochs(host.init_state(), 0, net.train.epochs)
    assert_trees_close(jax.device_get(carry_a[:3]), jax.device_get(carry_b[:3]))  # bitwise
    np.testing.assert_array_equal(sums_a, sums_b)  # train and dev figures of every epoch
    # the Trainer's own orders, one per epoch: numpy's permutation of (seed, epoch)
    m = len(splits.train)
    expected = [np.random.default_rng([net.train.seed, e]).permutation(m)
                for e in range(net.train.epochs)]
    # one reader for all the epochs (one set of worker processes): their orders at once
    assert len(disk.train.requests) == 1
    np.testing.assert_array_equal(disk.train.requests[0], np.stack(expected))
    # dev read in order, whole, at each epoch's check, by one reader too
    assert len(disk.dev.requests) == 1
    np.testing.assert_array_equal(disk.dev.requests[0],
                                  np.tile(np.arange(len(splits.dev)), (net.train.epochs, 1)))
    assert host.feed_rates.examples == m * net.train.epochs


def minibatch_bytes(splits, batch: int) -> int:
    return batch * (splits.train.x[0].nbytes + splits.train.y[0].nbytes)


@pytest.mark.parametrize("groups", ["one", "several"])
@pytest.mark.parametrize("text", [DENSE, CONV], ids=["dense_dropout", "bn_conv_augment"])
def test_host_fed_scan_ends_with_the_parameters_of_the_in_memory_scan_loop(text, groups,
                                                                           tmp_path,
                                                                           monkeypatch):
    net = net_of(text, tmp_path)
    splits, _ = load_data(net, tmp_path, "cross_entropy" if "softmax" in text else
                          "binary_cross_entropy")
    batch = net.train.batch
    if groups == "several":  # room for 2 minibatches: groups of 2 and a shorter last one
        monkeypatch.setattr("netc.runtime.host_scan.GROUP_BYTES",
                            2 * minibatch_bytes(splits, batch))
    memory = Trainer(net, to_device(splits.train), to_device(splits.dev), loop="scan")
    carry_a, sums_a = memory.run_epochs(memory.init_state(), 0, net.train.epochs)
    disk = streamed(splits)
    host = Trainer(net, HostData(disk.train), HostData(disk.dev))  # auto: scan for these
    assert host.streamed and host.loop == "scan" and host.chunk == 1
    seen = []

    def recorded(*args, **kwargs):  # the groups the loop dispatches, as it gets them
        for group in device_groups(*args, **kwargs):
            seen.append((group.step, group.stacked, tuple(group.x.shape)))
            yield group
    monkeypatch.setattr("netc.runtime.train.device_groups", recorded)
    carry_b, sums_b = host.run_epochs(host.init_state(), 0, net.train.epochs)
    assert_trees_close(jax.device_get(carry_a[:3]), jax.device_get(carry_b[:3]))  # bitwise
    m, shape = len(splits.train), splits.train.x.shape[1:]
    full, rest = divmod(m, batch)
    k = full if groups == "one" else 2
    epoch = [(s, True, (min(k, full - s), batch, *shape)) for s in range(0, full, k)]
    epoch += [(full, False, (rest, *shape))] if rest else []
    assert seen == epoch * net.train.epochs
    # the train figures: the same sums, added up group by group (float32 reassociation)
    np.testing.assert_allclose(sums_a[:, :4], sums_b[:, :4], rtol=1e-6)
    if groups == "one":  # one group per epoch: added up in the in-memory loop's order
        np.testing.assert_array_equal(sums_a[:, :4], sums_b[:, :4])
    # dev figures: the whole split at once in the in-memory scan, batch by batch here
    np.testing.assert_allclose(sums_a[:, 4:], sums_b[:, 4:], rtol=1e-5)
    assert len(disk.train.requests) == 1  # one reader for all the epochs
    assert host.feed_rates.examples == len(splits.train) * net.train.epochs


def test_host_fed_scan_steps_a_minibatch_skip_bad_left_short_on_its_own(tmp_path):
    net = net_of(DENSE, tmp_path)
    splits, _ = load_data(net, tmp_path, "binary_cross_entropy")
    bad = {0, 7, 40}
    step_disk, scan_disk = streamed(splits, {"train": bad}), streamed(splits, {"train": bad})
    by_step = Trainer(net, HostData(step_disk.train), None, loop="step")
    carry_a, sums_a = by_step.run_epochs(by_step.init_state(), 0, net.train.epochs)
    by_scan = Trainer(net, HostData(scan_disk.train), None, loop="scan")
    carry_b, sums_b = by_scan.run_epochs(by_scan.init_state(), 0, net.train.epochs)
    assert_trees_close(jax.device_get(carry_a[:3]), jax.device_get(carry_b[:3]))
    np.testing.assert_allclose(sums_a, sums_b, rtol=1e-6)
    assert sums_b[0, 1] == len(splits.train) - 3  # the examples trained on in an epoch


def test_host_groups_stack_runs_of_full_minibatches_and_pass_the_others_alone():
    b = 4
    sizes = [4, 4, 4, 3, 4, 4, 4, 4, 4, 2]  # a short one (skip_bad) and the partial last
    batches, start = [], 0
    for n in sizes:
        x = np.arange(start, start + n, dtype=np.float32)[:, None]
        batches.append((x, x[:, 0].astype(np.int32)))
        start += n
    nbytes = batches[0][0].nbytes + batches[0][1].nbytes
    got = list(host_groups(batches, b, full=9, budget=3 * nbytes))
    assert [(g.step, g.count, g.stacked) for g in got] == [
        (0, 3, True), (3, 1, False), (4, 3, True), (7, 2, True), (9, 1, False)]
    np.testing.assert_array_equal(np.concatenate([np.asarray(g.x).reshape(-1) for g in got]),
                                  np.concatenate([x[:, 0] for x, _ in batches]))
    assert got[0].x.shape == (3, 4, 1) and got[0].y.shape == (3, 4)
    one = list(host_groups(batches[:3], b, full=3))  # room for all: one group
    assert [(g.step, g.count) for g in one] == [(0, 3)]


def test_per_group_fills_the_budget_evenly():
    assert per_group(156, 1, budget=81) == 78  # two groups of 78
    assert per_group(157, 1, budget=81) == 79  # 79 and 78
    assert per_group(10, 1, budget=100) == 10  # all fit: one group per epoch
    assert per_group(10, 1000, budget=10) == 1  # none fits: one minibatch at a time
    assert per_group(78, 1_573_888) == 39  # LeNet-5's 128 32x32x3 float32 in 64 MiB


@pytest.mark.parametrize("loop", ["step", "scan"])
def test_streamed_run_matches_the_in_memory_run(stream_double, tmp_path, loop):
    net = net_of(CONV, tmp_path, "  stream off\n")
    memory = train_run(net, tmp_path / "memory", base_dir=tmp_path, loop=loop)
    disk = train_run(replace(net, train=replace(net.train, stream="on")), tmp_path / "disk",
                     base_dir=tmp_path, loop=loop)
    assert_trees_close(params_of(tmp_path / "memory"), params_of(tmp_path / "disk"))
    assert disk.final == memory.final  # every split's figures, read batch by batch
    assert [r["loss"] for r in disk.history] == [r["loss"] for r in memory.history]
    info = json.loads((tmp_path / "disk" / "run.json").read_text())
    assert info["streamed"] == {"train": True, "dev": True, "test": True}
    assert info["timing"]["loop"] == loop
    feed = info["timing"]["feed"]
    assert feed["examples"] == 3 * info["examples"]["train"]  # 3 epochs read
    assert feed["data_rate"] > 0 and feed["step_rate"] > 0
    assert "skipped" not in info
    plain = json.loads((tmp_path / "memory" / "run.json").read_text())
    assert plain["streamed"] == {"train": False, "dev": False, "test": False}


@pytest.mark.parametrize("loop", ["step", "scan"])
def test_resuming_a_streamed_run_is_bit_exact(stream_double, tmp_path, loop, monkeypatch):
    net = net_of(DENSE, tmp_path, "  stream on\n")
    if loop == "scan":  # several groups an epoch (5 full minibatches of 192 bytes: 2, 2, 1)
        monkeypatch.setattr("netc.runtime.host_scan.GROUP_BYTES", 400)
    train_run(net, tmp_path / "whole", base_dir=tmp_path, loop=loop)
    with pytest.raises(Crash):
        train_run(net, tmp_path / "cut", base_dir=tmp_path, checkpoint_every=1,
                  reporter=CrashAfter(2), loop=loop)
    resumed = train_run(net, tmp_path / "cut", base_dir=tmp_path, resume=True,
                        checkpoint_every=1, loop=loop)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    assert_trees_close(params_of(tmp_path / "whole"), params_of(tmp_path / "cut"))
    info = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert info["timing"]["loop"] == loop


@pytest.mark.parametrize("loop", ["step", "scan"])
def test_early_stopping_over_a_streamed_dev_split(stream_double, tmp_path, loop):
    stop = "  early_stop patience=2 on=dev_loss\n"
    text = DENSE.replace("epochs 4", "epochs 40").replace("adam lr=0.01", "adam lr=0.05")
    net = net_of(text, tmp_path, stop + "  stream off\n")
    memory = train_run(net, tmp_path / "memory", base_dir=tmp_path, loop=loop)
    disk = train_run(replace(net, train=replace(net.train, stream="on")), tmp_path / "disk",
                     base_dir=tmp_path, loop=loop)
    a, b = (json.loads((tmp_path / d / "run.json").read_text()) for d in ("memory", "disk"))
    assert a["stopped_epoch"] is not None and a["stopped_epoch"] < 40  # it did stop early
    assert (b["best_epoch"], b["stopped_epoch"]) == (a["best_epoch"], a["stopped_epoch"])
    assert disk.epochs_done == memory.epochs_done
    assert_trees_close(params_of(tmp_path / "memory"), params_of(tmp_path / "disk"))


def test_skip_bad_counts_are_in_run_json_and_a_warning(stream_double, tmp_path):
    stream_double["bad"] = {"train": {0, 5}, "dev": {1}}
    net = net_of(DENSE, tmp_path, "  stream on\n  skip_bad true\n")
    lines = []

    class Listen(CrashAfter):
        def warn(self, message):
            lines.append(message)

        def epochs(self, records):
            pass
    result = train_run(net, tmp_path / "run", base_dir=tmp_path, reporter=Listen(0))
    splits = stream_double["splits"]
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    # each bad example once, though every epoch (and the final figures) met it again
    assert info["skipped"] == {"train": 2, "dev": 1, "test": 0}
    assert splits.train.skipped == 2 * (4 + 1) and splits.dev.skipped == 4 + 1
    said = "\n".join(lines)
    assert "warning: skip_bad left out 3 unreadable examples (train 2, dev 1): row " in said
    assert " and 0 more" not in said
    # the final train figures count the examples that were read, not the bad ones
    assert np.isfinite(result.final["train"]["loss"])


@pytest.mark.parametrize("loop", ["step", "scan"])
def test_a_population_trains_over_streamed_splits(stream_double, tmp_path, loop):
    nets = []
    for k, lr in enumerate((0.01, 0.003)):
        (tmp_path / f"m{k}").mkdir()
        nets.append(net_of(DENSE.replace("adam lr=0.01", f"adam lr={lr}"), tmp_path / f"m{k}",
                           "  stream off\n"))
    memory = train_population(nets, [tmp_path / "a0", tmp_path / "a1"], base_dir=tmp_path,
                              loop=loop)
    on = [replace(n, train=replace(n.train, stream="on")) for n in nets]
    disk = train_population(on, [tmp_path / "b0", tmp_path / "b1"], base_dir=tmp_path,
                            loop=loop)
    # the scan loop's members run one after another (lax.map) around a chunk of epochs in
    # memory, around a group of minibatches streamed: XLA:CPU may round differently there
    # (1 float32 ulp seen), where the step loop's programs are the same
    atol = 0.0 if loop == "step" else 1e-6
    for a, b in zip(memory, disk):
        for split, figures in a.final.items():
            for name, value in figures.items():
                assert b.final[split][name] == pytest.approx(value, rel=1e-5, abs=atol)
        assert_trees_close(params_of(a.out_dir), params_of(b.out_dir), atol=atol)
    assert is_streamed(stream_double["splits"].train)


class OpenCount(ArraySplit):
    """An ArraySplit that counts its batches() streams still open (a reader's worker
    processes), and from `fail_at` minibatches on has its train split raise DataError
    (an unreadable file) or, with `poison`, give a NaN input (a loss that becomes NaN)."""

    open = 0

    def __init__(self, x, y, name, fail_at=None, poison=False):
        super().__init__(x, y)
        self.name, self.fail_at, self.poison, self.served = name, fail_at, poison, 0

    def batches(self, order, batch):
        OpenCount.open += 1
        try:
            for x, y in super().batches(order, batch):
                self.served += 1
                if self.name == "train" and self.fail_at is not None and \
                        self.served > self.fail_at:
                    if not self.poison:
                        raise DataError("pets/dog/03.png: not an image")
                    x = np.full_like(x, np.nan)
                yield x, y
        finally:
            OpenCount.open -= 1


@pytest.mark.parametrize("how", ["nan", "data_error", "population"])
def test_a_failed_run_closes_its_readers(how, monkeypatch, tmp_path):
    """A run that fails in its second epoch (a NaN loss: RunFailed; the reader's
    DataError; a population's DataError) leaves none of its splits' readers open (their
    worker processes would outlive it)."""
    steps = 6  # 90 train examples in minibatches of 16

    def load_streamed(net, base_dir, loss, *, stream, skip_bad, memory_bytes=None):
        splits, stats = load_data(net, base_dir, loss)

        def wrap(name, part):
            return None if part is None else OpenCount(
                part.x, part.y, name, fail_at=steps, poison=how == "nan")
        return replace(splits, train=wrap("train", splits.train),
                       dev=wrap("dev", splits.dev), test=wrap("test", splits.test)), stats
    monkeypatch.setattr("netc.runtime.stream.load_streamed", load_streamed)
    monkeypatch.setattr(OpenCount, "open", 0)
    net = net_of(DENSE, tmp_path, "  stream on\n")
    if how == "population":
        with pytest.raises(DataError, match="not an image"):
            train_population([net], [tmp_path / "run"], base_dir=tmp_path)
    else:
        failure = RunFailed if how == "nan" else DataError
        with pytest.raises(failure, match="the loss became nan at epoch 2" if how == "nan"
                           else "not an image"):
            train_run(net, tmp_path / "run", base_dir=tmp_path, checkpoint_every=1)
    assert OpenCount.open == 0


def test_scan_loop_fed_by_several_processes_is_a_clear_error(tmp_path):
    """Over several processes each feeds its rows of every minibatch (ArrayBatches, or a
    streamed split read a share per process): the step loop, and --loop scan says why."""
    net = net_of(DENSE, tmp_path)
    splits, _ = load_data(net, tmp_path, "binary_cross_entropy")
    shared = HostData(ArrayBatches(splits.train.x, splits.train.y))
    with pytest.raises(ValueError, match="--loop scan runs in one process"):
        Trainer(net, shared, None, loop="scan")
    assert Trainer(net, shared, None).loop == "step"
    assert Trainer(net, to_device(splits.train), None).loop == "scan"  # one process


def test_progress_line_shows_the_data_rate_beside_the_step_rate(stream_double, tmp_path):
    net = net_of(DENSE, tmp_path, "  stream on\n")
    out = io.StringIO()
    train_run(net, tmp_path / "run", base_dir=tmp_path, reporter=Reporter("plain", out))
    text = out.getvalue()
    assert "examples streamed from disk" in text
    last = [line for line in text.splitlines() if line.startswith("epoch 4/4")]
    assert last and "ex/s (data " in last[0] and " ex/s, steps " in last[0], text
    # the three rates cover the same epochs: the epochs' training time holds the waits for
    # the reader and the steps, so their rate is below both (over the whole run, the data
    # rate took the first epoch's slow reads and could fall below the last epoch's rate)
    overall, data, steps = (float(x.replace(",", ""))
                            for x in re.findall(r"([\d,]+) ex/s", last[0]))
    assert overall <= min(data, steps) * (1 + 1e-6), last[0]
    quiet = io.StringIO()
    train_run(net, tmp_path / "quiet", base_dir=tmp_path, reporter=Reporter("quiet", quiet))
    assert quiet.getvalue() == ""


# ---- the settings ----------------------------------------------------------------------


def test_stream_and_skip_bad_settings_and_their_errors(tmp_path):
    net = net_of(DENSE, tmp_path)
    assert (net.train.stream, net.train.skip_bad) == ("auto", False)
    net = net_of(DENSE, tmp_path, "  stream off\n  skip_bad true\n")
    assert (net.train.stream, net.train.skip_bad) == ("off", True)
    for line, message in (("stream yes", "stream yes: expects one of: auto, on, off"),
                          ("skip_bad 1", "expects true or false"),
                          ("streem on", "unknown train setting 'streem'")):
        with pytest.raises(SpecError, match=message):
            net_of(DENSE, tmp_path, f"  {line}\n")


def test_set_stream_on_the_command_line(tmp_path):
    spec = write_spec(tmp_path, DENSE)
    code, out, err = run_cli("train", spec, "--out", tmp_path / "run", "--set", "stream=on")
    assert code == 0, err
    assert "stream on" in (tmp_path / "run" / "spec.net").read_text()
    # moons is built in: it cannot stream, so it is read in memory with a note
    assert "note: stream on: this data source cannot be streamed" in err
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["streamed"] == {"train": False, "dev": False, "test": False}
    code, out, err = run_cli("train", spec, "--out", tmp_path / "bad", "--set", "stream=maybe")
    assert code != 0 and "stream maybe: expects one of: auto, on, off" in err
    assert "Traceback" not in err


# ---- real files, read by runtime/stream.py ---------------------------------------------

IMAGES = """net pets
input 6x5x3
conv f=3 s=1 p=same c=4 -> bn -> relu -> maxpool f=2 -> flatten -> dropout keep=0.8
-> softmax 3
train {
  data "DATA"
  split 0.6 0.2 0.2
  optimizer adam lr=0.01
  batch 8
  epochs 3
  seed 1
  augment flip crop=1
}
"""


def pets_npz(folder: Path, m: int = 60) -> Path:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (m, 6, 5, 3)).astype(np.uint8)
    y = (np.arange(m) % 3).astype(np.int64)
    np.savez(folder / "pets.npz", x=x, y=y)  # uncompressed: streamable
    return folder / "pets.npz"


def image_folder(root: Path, per_class: int = 8) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("cat", "dog", "eel"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(
                root / name / f"{i:02d}.png")
    return root


@pytest.mark.parametrize("workers", [0, 1])
def test_npz_streamed_through_grain_trains_like_in_memory(tmp_path, workers):
    pets_npz(tmp_path)
    spec = write_spec(tmp_path, IMAGES.replace('"DATA"', f'"pets.npz" workers={workers}'))
    for name, mode in (("memory", "off"), ("disk", "on")):
        code, _, err = run_cli("train", spec, "--out", tmp_path / name, "--set",
                               f"stream={mode}", "--quiet")
        assert code == 0, err
    assert_trees_close(params_of(tmp_path / "memory"), params_of(tmp_path / "disk"))
    a, b = (json.loads((tmp_path / d / "run.json").read_text()) for d in ("memory", "disk"))
    assert b["streamed"] == {"train": True, "dev": True, "test": True}
    assert a["final"] == b["final"]


def test_a_run_starts_one_reader_per_split_not_one_per_epoch(tmp_path, monkeypatch):
    """Starting a reader (Grain's worker processes) takes seconds: the train split's epochs
    and the dev split's per-epoch checks are each read by one reader for the whole run, a
    resumed run starts them again at its first epoch, and the batches stay the same."""
    import netc.runtime.stream as stream

    started = []
    read_batches = stream.read_batches

    def counted(reader, order, batch, workers, **kw):
        started.append((reader.name, np.shape(order)))
        return read_batches(reader, order, batch, workers, **kw)
    monkeypatch.setattr(stream, "read_batches", counted)
    pets_npz(tmp_path, m=70)  # 42 train, 14 dev, 14 test
    text = IMAGES.replace('"DATA"', '"pets.npz" workers=0').replace("epochs 3", "epochs 4")
    net = net_of(text, tmp_path, "  stream on\n")
    train_run(net, tmp_path / "whole", base_dir=tmp_path, checkpoint_every=1)
    # while training: one reader per split; then the final figures read each split once
    assert started == [("train", (4, 42)), ("dev", (4, 14)),
                       ("train", (42,)), ("dev", (14,)), ("test", (14,))]
    started.clear()
    with pytest.raises(Crash):
        train_run(net, tmp_path / "cut", base_dir=tmp_path, checkpoint_every=1,
                  reporter=CrashAfter(2))  # stops before saving epoch 2: 1 is kept
    started.clear()
    train_run(net, tmp_path / "cut", base_dir=tmp_path, resume=True, checkpoint_every=1)
    assert started[:2] == [("train", (3, 42)), ("dev", (3, 14))]  # from epoch 2 on
    off = replace(net, train=replace(net.train, stream="off"))
    train_run(off, tmp_path / "memory", base_dir=tmp_path, loop="step")
    assert_trees_close(params_of(tmp_path / "whole"), params_of(tmp_path / "memory"))
    assert_trees_close(params_of(tmp_path / "cut"), params_of(tmp_path / "memory"))


def test_a_reader_window_holds_a_bounded_number_of_epochs(monkeypatch):
    """Epoch orders take m int32 each: a reader takes at most WINDOW_BYTES of them, then
    the next window's reader starts; asking for an epoch out of turn starts one there."""
    import netc.runtime.host_feed as host_feed

    monkeypatch.setattr(host_feed, "WINDOW_BYTES", 4 * 10 * 3)  # 3 epochs of 10 examples
    x = np.arange(10, dtype=np.float32)[:, None]
    split = ArraySplit(x, np.arange(10))

    def orders(first, count):
        return np.stack([np.roll(np.arange(10), e) for e in range(first, first + count)])
    reader = host_feed.train_reader(split, 4, orders, epochs=7)
    for e in (0, 1, 2, 3, 4, 5, 6):
        got = [np.asarray(bx)[:, 0] for bx, _ in reader.epoch(e)]
        assert [len(g) for g in got] == [4, 4, 2]
        np.testing.assert_array_equal(np.concatenate(got), orders(e, 1)[0])
    assert [np.shape(r) for r in split.requests] == [(3, 10), (3, 10), (1, 10)]
    assert reader.starts == 3
    list(reader.epoch(2))  # out of turn: a reader from epoch 3 on (a window of 3)
    list(reader.epoch(3))
    assert [np.shape(r) for r in split.requests[3:]] == [(3, 10)] and reader.starts == 4


def test_standard_normalization_streamed_is_within_float32_rounding(tmp_path):
    pets_npz(tmp_path)
    text = IMAGES.replace('"DATA"', '"pets.npz" workers=0').replace(
        "  seed 1", "  seed 1\n  normalize standard")
    spec = write_spec(tmp_path, text)
    for name, mode in (("memory", "off"), ("disk", "on")):
        assert run_cli("train", spec, "--out", tmp_path / name, "--set", f"stream={mode}",
                       "--quiet")[0] == 0
    # the statistics are merged batch by batch in float64: equal to float32 rounding
    assert_trees_close(params_of(tmp_path / "memory"), params_of(tmp_path / "disk"),
                       atol=1e-4)


def test_an_unreadable_image_stops_the_run_naming_it(tmp_path):
    root = image_folder(tmp_path / "pets")
    (root / "dog" / "03.png").write_bytes(b"not a png")
    spec = write_spec(tmp_path, IMAGES.replace('"DATA"', '"pets" workers=0'))
    code, _, err = run_cli("train", spec, "--out", tmp_path / "run", "--set", "stream=on")
    assert code != 0
    line = [x for x in err.strip().splitlines() if x.startswith("netc: error")]
    assert line and "pets/dog/03.png" in line[0], err
    assert "Traceback" not in err


def test_skip_bad_trains_without_the_unreadable_image(tmp_path):
    root = image_folder(tmp_path / "pets")
    (root / "dog" / "03.png").write_bytes(b"not a png")
    spec = write_spec(tmp_path, IMAGES.replace('"DATA"', '"pets" workers=0'))
    code, _, err = run_cli("train", spec, "--out", tmp_path / "run", "--set", "stream=on",
                           "--set", "skip_bad=true", "--quiet")
    assert code == 0, err
    assert "warning: skip_bad left out 1 unreadable example (train 1): pets/dog/03.png\n" in err
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert sum(info["skipped"].values()) == 1
    assert set(info["final"]) == {"train", "dev", "test"}


# ---- many processes (runtime/distributed.py) --------------------------------------------


def test_each_process_reads_its_rows_of_every_full_minibatch():
    order = np.random.default_rng(0).permutation(11)
    mine = local_order(order, 4, slice(2, 4))  # the second of two processes, batch 4
    np.testing.assert_array_equal(mine, [order[2], order[3], order[6], order[7]])
    shares = [local_order(order, 4, slice(0, 2)), mine]
    whole = np.stack([s.reshape(-1, 2) for s in shares], axis=1).reshape(-1)
    np.testing.assert_array_equal(whole, order[:8])  # together: the full minibatches


@pytest.mark.slow
def test_two_processes_stream_their_shares_and_train_as_one_process(tmp_path):
    pets_npz(tmp_path, m=70)  # 42 train examples: 5 minibatches of 8 and one of 2
    spec = write_spec(tmp_path, IMAGES.replace('"DATA"', '"pets.npz" workers=0'))
    port = free_port()
    procs = [start_process(spec, tmp_path / "run", port, i, tmp_path / f"p{i}.log",
                           extra=("--set", "stream=on")) for i in (1, 0)]
    for p in procs:
        p.communicate(timeout=300)
    logs = [(tmp_path / f"p{i}.log").read_text() for i in (1, 0)]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert "mesh data=4 over 4 cpu devices" in logs[1], logs
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["streamed"]["train"] is True
    single = subprocess.run([sys.executable, "-m", "netc", "train", str(spec), "--out",
                             str(tmp_path / "single"), "--set", "stream=off", "--quiet"],
                            env={**TWO_CPUS, "XLA_FLAGS": ""}, capture_output=True, text=True,
                            timeout=300, check=False)
    assert single.returncode == 0, single.stderr
    # gradients summed over 4 devices by collectives: equal to float32 reassociation
    assert_trees_close(params_of(tmp_path / "run"), params_of(tmp_path / "single"), atol=1e-5)


def test_multi_task_figures_over_streamed_splits(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 5)).astype(np.float32)
    y = (rng.uniform(size=(80, 3)) < 0.5).astype(np.float32)
    y[rng.uniform(size=y.shape) < 0.3] = np.nan  # unknown labels
    np.savez(tmp_path / "tasks.npz", x=x, y=y)
    spec = write_spec(tmp_path, """net tasks
input 5
fc 8 -> tanh -> sigmoid 3
train {
  data "tasks.npz" workers=0
  split 0.6 0.2 0.2
  optimizer adam lr=0.01
  batch 16
  epochs 3
}
""")
    for name, mode in (("memory", "off"), ("disk", "on")):
        assert run_cli("train", spec, "--out", tmp_path / name, "--set", f"stream={mode}",
                       "--quiet")[0] == 0
    a, b = (json.loads((tmp_path / d / "run.json").read_text())["final"]
            for d in ("memory", "disk"))
    assert "task_accuracy" in b["dev"] and b["dev"]["task_known"] == a["dev"]["task_known"]
    assert a == b


@pytest.mark.slow
def test_ctrl_c_with_grain_workers_stops_after_the_epoch_then_resumes_exactly(tmp_path):
    """A terminal's Ctrl-C reaches every process of the group: the reader's worker
    processes must not die of it (nor print a traceback); training stops at the epoch's
    end, saves, and --resume ends with the parameters of an uninterrupted run."""
    epochs = 20
    pets_npz(tmp_path, m=600)
    text = IMAGES.replace('"DATA"', '"pets.npz" workers=1').replace("epochs 3",
                                                                    f"epochs {epochs}")
    spec = write_spec(tmp_path, text)
    out, log = tmp_path / "run", tmp_path / "train.log"
    argv = [sys.executable, "-m", "netc", "train", str(spec), "--out", str(out),
            "--set", "stream=on", "--checkpoint-every", "1"]
    with open(log, "w") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not list_checkpoints(out / "checkpoints") and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        time.sleep(0.2)  # into epoch 2: the worker reading (started once, in epoch 1)
        os.killpg(proc.pid, signal.SIGINT)  # the whole group, as a terminal does
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    said = log.read_text()
    assert code == 130, said
    assert "Traceback" not in said and "KeyboardInterrupt" not in said
    done = json.loads((out / "run.json").read_text())["epochs_done"]
    assert 1 <= done < epochs and f"interrupted after epoch {done}" in said
    resumed = subprocess.run(argv + ["--resume", "--quiet"], capture_output=True, text=True,
                             timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr
    code, _, err = run_cli("train", spec, "--out", tmp_path / "whole", "--set", "stream=off",
                           "--quiet")
    assert code == 0, err
    assert_trees_close(params_of(out), params_of(tmp_path / "whole"))


@pytest.mark.parametrize("m", [70, 75])  # 42 train examples (5 x 8 + 2), 45 (5 x 8 + 5)
def test_two_devices_of_one_process_stream_like_they_train_in_memory(tmp_path, m):
    """One process, 2 CPU devices (`--devices 2`), the scan loop: a streamed train split's
    stacked groups are split over the devices by their examples (host_scan.group_placer;
    a last minibatch of 5 does not split, so it is replicated), and the run ends with the
    in-memory run's parameters over the same mesh."""
    pets_npz(tmp_path, m=m)
    spec = write_spec(tmp_path, IMAGES.replace('"DATA"', '"pets.npz" workers=0'))
    runs = {}
    for stream in ("on", "off"):
        out = tmp_path / stream
        done = subprocess.run([sys.executable, "-m", "netc", "train", str(spec), "--out",
                               str(out), "--devices", "2", "--loop", "scan", "--set",
                               f"stream={stream}", "--quiet"], env=TWO_CPUS,
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        runs[stream] = json.loads((out / "run.json").read_text())
    assert runs["on"]["streamed"]["train"] is True
    assert runs["off"]["streamed"]["train"] is False
    assert runs["on"]["mesh"] == runs["off"]["mesh"]
    assert runs["on"]["timing"]["loop"] == runs["off"]["timing"]["loop"] == "scan"
    assert_trees_close(params_of(tmp_path / "on"), params_of(tmp_path / "off"), atol=1e-6)
    assert runs["on"]["final"].keys() == runs["off"]["final"].keys()
    for split, figures in runs["off"]["final"].items():
        assert runs["on"]["final"][split] == pytest.approx(figures, rel=1e-6)
