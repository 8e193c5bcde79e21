"""Interrupting and resuming `netc train`: SIGKILL, a damaged or unfinished newest checkpoint,
Ctrl-C, a checkpoint of an earlier version (safetensors), and a diverging loss. A resumed run
must end with the parameters of an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    assert_trees_close,
    metrics_of,
    moons_mlp,
    one_error_line,
    params_of,
    run_cli,
    run_python,
    write_spec,
)
from netc.compiler.check import check_source
from netc.runtime.checkpoint import flatten_variables, load_tensors, save_tensors
from netc.runtime.run import RunFailed, load_run, train_run
from netc.runtime.sharded_checkpoint import list_checkpoints, load_arrays, load_variables

EPOCHS = 400
# 13 minibatches per epoch (the last one partial), a few ms per epoch
SPEC = moons_mlp("fc 8 -> relu -> fc 8 -> relu -> sigmoid 1", name="moons_resume", n=200,
                 noise=0.2, optimizer="adam lr=0.01", epochs=EPOCHS, seed=7)


def metric_epochs(run_dir: Path) -> list[int]:
    return [record["epoch"] for record in metrics_of(run_dir)]


def assert_same_params(a: dict, b: dict) -> None:
    assert_trees_close(a, b, atol=1e-6)


def checkpoint_epochs(run_dir: Path) -> list[int]:
    return [epoch for epoch, _ in list_checkpoints(Path(run_dir) / "checkpoints")]


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    return write_spec(tmp_path_factory.mktemp("spec"), SPEC, "moons_resume.net")


@pytest.fixture(scope="module")
def reference(spec_file, tmp_path_factory) -> dict:
    """Final params of an uninterrupted run with the same seed."""
    out = tmp_path_factory.mktemp("reference") / "run"
    train_run(check_source(SPEC, str(spec_file)), out, base_dir=spec_file.parent)
    assert metric_epochs(out) == list(range(1, EPOCHS + 1))
    return params_of(out)


def start_training(spec_file: Path, out: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as fh:  # a file, not a pipe: a full pipe would block the child
        return subprocess.Popen(
            [sys.executable, "-m", "netc", "train", str(spec_file), "--out", str(out),
             "--checkpoint-every", "1"], stdout=fh, stderr=subprocess.STDOUT, text=True)


def wait_for_checkpoints(proc: subprocess.Popen, out: Path, log: Path, count: int = 2) -> None:
    deadline = time.monotonic() + 180
    while len(list_checkpoints(out / "checkpoints")) < count:
        if proc.poll() is not None:
            pytest.fail(f"netc train ended ({proc.returncode}) before {count} checkpoints:\n"
                        + log.read_text())
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no checkpoints after 180 s:\n" + log.read_text())
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be interrupted"


def resume(spec_file: Path, out: Path, *extra: str) -> str:
    code, _, err = run_cli("train", spec_file, "--out", out, "--resume", *extra)
    assert code == 0, err
    return err


# --------------------------------------------------------------------------- SIGKILL


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(spec_file, reference, tmp_path):
    out, log = tmp_path / "run", tmp_path / "train.log"
    proc = start_training(spec_file, out, log)
    try:
        wait_for_checkpoints(proc, out, log)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model.safetensors").exists()  # killed mid-run
    kept = checkpoint_epochs(out)
    assert kept and max(kept) < EPOCHS
    for _, path in list_checkpoints(out / "checkpoints"):  # atomic: every one is whole
        load_variables(path)

    err = resume(spec_file, out)
    assert f"resuming after epoch {max(kept)}" in err
    assert_same_params(params_of(out), reference)
    assert metric_epochs(out) == list(range(1, EPOCHS + 1))  # once each, no duplicates
    info = json.loads((out / "run.json").read_text())
    assert info["epochs_done"] == EPOCHS


# ----------------------------------------------------- damaged newest checkpoint


class StopAfter:
    """A reporter that presses Ctrl-C (SIGINT to this process) once epoch `k` is done."""

    def __init__(self, k: int):
        self.k, self.warnings, self.sent = k, [], False

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def start(self, net, trainer, done) -> None:
        pass

    def epochs(self, records) -> None:
        if records[-1]["epoch"] >= self.k and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)

    def finish(self, final, interrupted) -> None:
        pass


def stopped_run(spec_file: Path, out: Path, k: int) -> None:
    """A run stopped by Ctrl-C after epoch k, in process (checkpoints k-1 and k kept)."""
    result = train_run(check_source(SPEC, str(spec_file)), out, base_dir=spec_file.parent,
                       checkpoint_every=1, reporter=StopAfter(k))
    assert result.interrupted and result.epochs_done == k
    assert checkpoint_epochs(out) == [k - 1, k]
    assert metric_epochs(out) == list(range(1, k + 1))


def damage(step: Path, how: str) -> None:
    """An Orbax step folder damaged: 8 bytes flipped in the middle of every array file,
    or every array file cut in half, or the folder left as a crash during its save leaves
    it (Orbax renames it into place when every process is done). Every file: a step folder
    can hold a data file its restore does not read (two of the same size, one read, were
    seen; damaging "the largest" then picked either, by the order of their random names)."""
    if how == "unfinished":
        step.rename(step.with_name(step.name + ".orbax-checkpoint-tmp-1764400000"))
        return
    files = sorted((p for p in (step / "carry").rglob("*") if p.is_file() and p.parent.name
                    == "d"), key=lambda p: p.stat().st_size)
    assert files, list(step.rglob("*"))
    for path in files:
        data = bytearray(path.read_bytes())
        if how == "truncate":
            data = data[: len(data) // 2]
        else:
            for i in range(len(data) // 2, len(data) // 2 + 8):
                data[i] ^= 0xFF
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["corrupt", "truncate", "unfinished"])
def test_resume_falls_back_past_a_damaged_newest_checkpoint(spec_file, reference, tmp_path,
                                                            how):
    out = tmp_path / "run"
    stopped_run(spec_file, out, k=5)
    epoch, newest = list_checkpoints(out / "checkpoints")[-1]
    assert epoch == 5 and newest.name == "ckpt_000005"
    damage(newest, how)

    err = resume(spec_file, out, "--quiet")
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "ckpt_000005" in warnings[0], err
    assert "Traceback" not in err
    assert_same_params(params_of(out), reference)
    assert metric_epochs(out) == list(range(1, EPOCHS + 1))


def test_resume_with_every_checkpoint_damaged_starts_over(spec_file, reference, tmp_path):
    """In a process of its own: its whole output is the two warnings (TensorStore's reads
    still in flight when a restore fails must not print tracebacks after them)."""
    out = tmp_path / "run"
    stopped_run(spec_file, out, k=3)
    for _, path in list_checkpoints(out / "checkpoints"):
        damage(path, "truncate")
    proc = run_python("-m", "netc", "train", spec_file, "--out", out, "--resume", "--quiet")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["warning", "warning"], proc.stderr
    assert "ckpt_000003" in lines[0] and "ckpt_000002" in lines[1]
    assert_same_params(params_of(out), reference)
    assert metric_epochs(out) == list(range(1, EPOCHS + 1))


def test_the_save_after_a_fallback_removes_the_damaged_checkpoint_not_the_good_one(
        spec_file, reference, tmp_path):
    """Resumed from checkpoint 4 past a damaged 5, the run's next save (7, three epochs
    on) keeps 4 and 7: damaged 5 left in place would count among the two kept, and Orbax
    would remove 4. With 7 damaged as well, the run still resumes (from 4) and ends with
    the parameters of an uninterrupted run."""
    out = tmp_path / "run"
    stopped_run(spec_file, out, k=5)
    damage(list_checkpoints(out / "checkpoints")[-1][1], "corrupt")
    reporter = StopAfter(7)
    result = train_run(check_source(SPEC, str(spec_file)), out, base_dir=spec_file.parent,
                       resume=True, checkpoint_every=3, reporter=reporter)
    assert result.interrupted and result.epochs_done == 7
    assert any("skipping checkpoint ckpt_000005" in w for w in reporter.warnings), \
        reporter.warnings
    assert checkpoint_epochs(out) == [4, 7]
    damage(list_checkpoints(out / "checkpoints")[-1][1], "corrupt")
    err = resume(spec_file, out, "--quiet")
    assert "skipping checkpoint ckpt_000007" in err, err
    assert_same_params(params_of(out), reference)
    assert metric_epochs(out) == list(range(1, EPOCHS + 1))


def as_safetensors_checkpoint(step: Path) -> Path:
    """The ckpt-NNNNNN.safetensors file an earlier netc wrote for the Orbax checkpoint
    `step` (the same arrays: variables, then the optimiser's leaves as opt/NNNNN)."""
    tensors, meta = load_arrays(step)
    opt = [k for k in tensors if k.startswith("opt/")]
    path = step.parent / f"ckpt-{meta['epoch']:06d}.safetensors"
    save_tensors(path, tensors, {"net": meta["net"], "seed": meta["seed"],
                                 "epoch": meta["epoch"], "opt_leaves": len(opt)})
    return path


def test_a_safetensors_checkpoint_of_an_earlier_version_resumes(spec_file, reference,
                                                                 tmp_path):
    import shutil

    out = tmp_path / "run"
    stopped_run(spec_file, out, k=4)
    for _, step in list_checkpoints(out / "checkpoints"):
        old = as_safetensors_checkpoint(step)
        shutil.rmtree(step)
    assert [p.name for _, p in list_checkpoints(out / "checkpoints")] == [
        "ckpt-000003.safetensors", "ckpt-000004.safetensors"]
    load_tensors(old)  # a whole file with its checksum, as earlier versions wrote

    err = resume(spec_file, out)
    assert "resuming after epoch 4" in err and "warning" not in err, err
    assert_same_params(params_of(out), reference)
    # the Orbax checkpoints written since replace the safetensors ones
    assert [p.name for _, p in list_checkpoints(out / "checkpoints")] == [
        f"ckpt_{EPOCHS:06d}"]


# ---------------------------------------------------------------------------- SIGINT


@pytest.mark.slow
def test_sigint_stops_at_an_epoch_boundary_then_resumes(spec_file, reference, tmp_path):
    out, log = tmp_path / "run", tmp_path / "train.log"
    proc = start_training(spec_file, out, log)
    try:
        wait_for_checkpoints(proc, out, log)
        proc.send_signal(signal.SIGINT)  # once
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert code == 130, text
    assert "Traceback" not in text
    info = json.loads((out / "run.json").read_text())
    done = info["epochs_done"]
    assert 2 <= done < EPOCHS
    assert f"interrupted after epoch {done}" in text
    assert f"--out {out} --resume" in text  # the hint to continue
    assert checkpoint_epochs(out)[-1] == done  # saved at the boundary where it stopped
    assert metric_epochs(out) == list(range(1, done + 1))

    err = resume(spec_file, out)
    assert f"resuming after epoch {done}" in err
    assert_same_params(params_of(out), reference)
    assert metric_epochs(out) == list(range(1, EPOCHS + 1))


# ------------------------------------------------------------------------- divergence

DIVERGE = """net diverge
input 3
fc 1
train {
  data "reg.npz"
  split 1 0 0
  loss mse
  init zeros
  optimizer gd lr=10
  batch full
  epochs 50
}
"""


def test_diverging_run_exits_1_naming_the_epoch(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(32, 3)) * 100).astype(np.float32)  # unnormalised
    np.savez(tmp_path / "reg.npz", x=x, y=(x.sum(axis=1, keepdims=True) * 10))
    spec = write_spec(tmp_path, DIVERGE, "diverge.net")
    out = tmp_path / "run"
    code, _, err = run_cli("train", spec, "--out", out, "--checkpoint-every", "1", "--quiet")
    assert code == 1
    line = one_error_line(err)

    good = metric_epochs(out)  # the epochs whose loss was finite
    assert good and good == list(range(1, len(good) + 1)) and len(good) < 50
    bad = len(good) + 1
    assert f"at epoch {bad}" in line
    assert "inf" in line or "nan" in line
    assert all(np.isfinite(r["loss"]) for r in metrics_of(out))

    kept = list_checkpoints(out / "checkpoints")
    assert kept and checkpoint_epochs(out)[-1] == len(good)
    assert kept[-1][1].name in line
    for _, path in kept:
        variables, epoch = load_variables(path)
        assert epoch in good
        assert all(np.isfinite(v).all() for v in flatten_variables(variables).values())
    assert not (out / "model.safetensors").exists()
    _, variables = load_run(out)  # falls back to the newest checkpoint
    assert variables["params"]["fc_1"]["kernel"].shape == (3, 1)


def test_diverging_run_in_process_raises_run_failed(tmp_path):
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(16, 3)) * 100).astype(np.float32)
    np.savez(tmp_path / "reg.npz", x=x, y=(x.sum(axis=1, keepdims=True) * 10))
    spec = tmp_path / "diverge.net"
    with pytest.raises(RunFailed, match=r"at epoch \d+"):
        train_run(check_source(DIVERGE, str(spec)), tmp_path / "run", base_dir=tmp_path)


# ------------------------------------------------------------- the resume hint


def test_following_the_resume_hint_keeps_set_overrides(spec_file, tmp_path, monkeypatch):
    import shlex

    from netc.runtime import progress

    class CtrlCAfterEpoch3(progress.Reporter):
        def epochs(self, records):
            super().epochs(records)
            if records[-1]["epoch"] == 3:
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(progress, "Reporter", CtrlCAfterEpoch3)
    out = tmp_path / "run"
    code, _, err = run_cli("train", spec_file, "--out", out, "--checkpoint-every", "1",
                           "--set", "epochs=60", "--set", "optimizer.lr=0.02")
    assert code == 130, err
    assert "lr=0.02" in (out / "spec.net").read_text()
    hint = next(line for line in err.splitlines() if "continue with:" in line)
    argv = shlex.split(hint.split("continue with:", 1)[1])
    assert argv[:2] == ["netc", "train"]
    monkeypatch.undo()

    code, _, err = run_cli(*argv[1:], "--quiet")
    assert code == 0, err
    assert "lr=0.02" in (out / "spec.net").read_text()
    assert json.loads((out / "run.json").read_text())["epochs_done"] == 60
