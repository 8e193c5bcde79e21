"""Many processes (runtime/distributed.py): two processes on this machine, each with 2 CPU
devices, train one model together through a localhost coordinator and gloo collectives, and
end with the 1-process result; both write their shards of a checkpoint, which one process
resumes from; a process that is killed, or never joins, is named."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TWO_CPUS, free_port, metrics_of, run_python, start_process, write_spec

MLP = """input 2
fc 8 -> bn -> relu -> residual {{ fc 8 -> relu }} -> sigmoid 1
train {{
  data moons n=203 noise=0.2
  split 0.8 0.2 0
  batch 32
  epochs {epochs}
  seed 0
}}
"""

def max_gap(a: Path, b: Path) -> float:
    import jax
    import netc
    import numpy as np

    _, x = netc.load(a)
    _, y = netc.load(b)
    return max(float(np.abs(np.asarray(p) - np.asarray(q)).max())
               for p, q in zip(jax.tree.leaves(x), jax.tree.leaves(y)))


@pytest.mark.slow
def test_two_processes_train_one_model_as_one_process_does(tmp_path):
    spec = write_spec(tmp_path, MLP.format(epochs=5))
    port = free_port()
    procs = [start_process(spec, tmp_path / "run", port, i, tmp_path / f"p{i}.log") for i in (1, 0)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    logs = [(tmp_path / f"p{i}.log").read_text() for i in (1, 0)]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert "Traceback" not in "".join(logs)
    assert outs[0].strip() == "" and logs[0].strip() == ""  # process 1 prints nothing
    assert "mesh data=4 over 4 cpu devices" in logs[1]
    assert "streamed from disk" not in logs[1]
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["mesh"]["devices"] == ["cpu:0", "cpu:1", "cpu:2048", "cpu:2049"]
    # the data is in memory, yet each process fed only its rows of the full minibatches:
    # 163 train examples, 5 minibatches of 32 (16 rows each) and one of 3 (read whole)
    assert info["streamed"]["train"] is False
    assert info["timing"]["feed"]["examples"] == 5 * (5 * 16 + 3)
    single = run_python("-m", "netc", "train", spec, "--out", tmp_path / "single", "--quiet",
                        env={**TWO_CPUS, "XLA_FLAGS": ""})
    assert single.returncode == 0, single.stderr
    assert max_gap(tmp_path / "run", tmp_path / "single") < 1e-5


MULTITASK = """input 4
fc 8 -> relu -> sigmoid 3
train {{
  data "{data}"
  optimizer adam lr=0.05
  batch 32
  epochs 3
}}
"""


@pytest.mark.slow
@pytest.mark.parametrize("examples", [120, 122])
def test_unknown_labels_in_a_partial_last_minibatch_train_as_in_one_process(tmp_path,
                                                                            examples):
    """A multi-task net whose labels are NaN where unknown, its epochs ending in a partial
    minibatch that every process reads whole (24 examples: split over the 4 devices; 26:
    replicated): both processes place it (NaN != NaN, so no check that their copies are
    equal) and end with the 1-process run's parameters and per-epoch figures."""
    rng = np.random.default_rng(0)

    def part(m):
        x = rng.normal(size=(m, 4)).astype(np.float32)
        y = (x[:, :3] > 0).astype(np.float32)
        y[rng.random(y.shape) < 0.3] = np.nan
        return x, y
    (x, y), (xd, yd), (xt, yt) = part(examples), part(40), part(30)
    assert np.isnan(y[96:]).any()  # the partial last minibatch holds unknown labels
    np.savez(tmp_path / "tasks.npz", x=x, y=y, x_dev=xd, y_dev=yd, x_test=xt, y_test=yt)
    spec = write_spec(tmp_path, MULTITASK.format(data=tmp_path / "tasks.npz"))
    port = free_port()
    procs = [start_process(spec, tmp_path / "run", port, i, tmp_path / f"p{i}.log") for i in (1, 0)]
    for p in procs:
        p.communicate(timeout=300)
    logs = [(tmp_path / f"p{i}.log").read_text() for i in (1, 0)]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert "mesh data=4 over 4 cpu devices" in logs[1] and "error" not in "".join(logs)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    # each epoch: 3 full minibatches of 32 (16 rows per process) and the rest read whole
    assert info["timing"]["feed"]["examples"] == 3 * (3 * 16 + examples - 96)
    single = run_python("-m", "netc", "train", spec, "--out", tmp_path / "single", "--quiet",
                        env={**TWO_CPUS, "XLA_FLAGS": ""})
    assert single.returncode == 0, single.stderr
    assert max_gap(tmp_path / "run", tmp_path / "single") < 1e-5
    ours, theirs = metrics_of(tmp_path / "run"), metrics_of(tmp_path / "single")
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs):
        for key in ("loss", "accuracy", "dev_loss", "dev_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), key
        for key in ("task_accuracy", "dev_task_accuracy"):
            assert len(a[key]) == 3 and None not in a[key]
            assert a[key] == pytest.approx(b[key], rel=1e-5), key
    final = json.loads((tmp_path / "single" / "run.json").read_text())["final"]
    for split in ("train", "dev", "test"):
        assert info["final"][split]["task_known"] == final[split]["task_known"]
        assert info["final"][split]["task_accuracy"] == pytest.approx(
            final[split]["task_accuracy"], rel=1e-5)


@pytest.mark.slow
def test_both_processes_write_a_checkpoint_that_resumes_on_one(tmp_path):
    """With --shard-params each process holds half of every split array: both write their
    shards into the run's checkpoint (Orbax: one OCDBT folder per process); both resume
    from it (each reading its shards) for another epoch, then one process on one device
    resumes to the parameters of an uninterrupted 1-process run."""
    spec = write_spec(tmp_path, MLP.format(epochs=3))

    def both(*extra):
        port = free_port()
        procs = [start_process(spec, tmp_path / "run", port, i, tmp_path / f"p{i}.log",
                               extra=("--shard-params", "--checkpoint-every", "1", *extra))
                 for i in (1, 0)]
        for p in procs:
            p.communicate(timeout=300)
        logs = [(tmp_path / f"p{i}.log").read_text() for i in (1, 0)]
        assert [p.returncode for p in procs] == [0, 0], logs
        return logs

    both()
    steps = sorted((tmp_path / "run" / "checkpoints").iterdir())
    assert [p.name for p in steps] == ["ckpt_000002", "ckpt_000003"]
    assert sorted(p.name for p in (steps[-1] / "carry").glob("ocdbt.process_*")) == [
        "ocdbt.process_0", "ocdbt.process_1"]
    logs = both("--resume", "--set", "epochs=4")
    assert "resuming after epoch 3" in logs[1] and "warning" not in "".join(logs), logs
    # process 0 says which spec it continues with; process 1 is silent
    assert "resuming with" in logs[1] and "resuming with" not in logs[0], logs
    one = {**TWO_CPUS, "XLA_FLAGS": ""}
    resumed = run_python("-m", "netc", "train", spec, "--out", tmp_path / "run", "--resume",
                         "--set", "epochs=5", env=one)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 4" in resumed.stderr and "warning" not in resumed.stderr
    single = run_python("-m", "netc", "train", spec, "--out", tmp_path / "single", "--quiet",
                        "--set", "epochs=5", env=one)
    assert single.returncode == 0, single.stderr
    assert max_gap(tmp_path / "run", tmp_path / "single") < 1e-5


@pytest.mark.slow
def test_a_killed_process_is_named_by_the_other(tmp_path):
    spec = write_spec(tmp_path, MLP.format(epochs=100000))
    port = free_port()
    other = start_process(spec, tmp_path / "run", port, 1, tmp_path / "p1.log", timeout=5)
    first = start_process(spec, tmp_path / "run", port, 0, tmp_path / "p0.log", timeout=5)
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "run" / "metrics.jsonl").exists() or \
                not (tmp_path / "run" / "metrics.jsonl").read_text():
            assert first.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "p0.log").read_text()
            time.sleep(0.5)
        os.killpg(other.pid, signal.SIGKILL)  # process 1 and its training child
        first.communicate(timeout=120)
    finally:
        for p in (first, other):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    err = (tmp_path / "p0.log").read_text()
    assert first.returncode == 1
    assert err.strip().splitlines()[-1].startswith(
        "netc: error: process 1 stopped answering (no heartbeat within 5 s); process 0 "
        "stopped too"), err
    assert "Check failure" not in err and "Traceback" not in err


def test_a_process_that_does_not_join_is_named(tmp_path):
    spec = write_spec(tmp_path, MLP.format(epochs=2))
    port = free_port()
    alone = start_process(spec, tmp_path / "run", port, 0, tmp_path / "p0.log",
                          processes=3, timeout=2)
    alone.communicate(timeout=60)
    assert alone.returncode == 1
    assert (tmp_path / "p0.log").read_text().strip() == (
        f"netc: error: processes 1, 2 did not join within 2 s (--num-processes 3, coordinator "
        f"127.0.0.1:{port})")
    late = start_process(spec, tmp_path / "late", port, 2, tmp_path / "p2.log",
                         processes=3, timeout=2)
    late.communicate(timeout=60)
    assert late.returncode == 1
    assert (tmp_path / "p2.log").read_text().strip() == (
        f"netc: error: process 0 (the coordinator, 127.0.0.1:{port}) did not answer within 2 s")
    assert not (tmp_path / "run").exists() and not (tmp_path / "late").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--coordinator", "127.0.0.1:9"], "--coordinator, --num-processes and --process-id go "
                                       "together"),
    (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"],
     "expected HOST:PORT"),
    (["--coordinator", "127.0.0.1:9", "--num-processes", "2", "--process-id", "2"],
     "--process-id 2 is not one of 0 .. 1"),
])
def test_cluster_options_are_checked(tmp_path, extra, message):
    spec = write_spec(tmp_path, MLP.format(epochs=2))
    proc = run_python("-m", "netc", "train", spec, "--out", tmp_path / "run", *extra)
    assert proc.returncode == 2 and message in proc.stderr
    proc = run_python("-m", "netc", "train", spec, "--distributed")
    assert proc.returncode == 2 and "--distributed needs --out DIR" in proc.stderr
