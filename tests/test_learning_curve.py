"""The learning curve drawn by the command line's helper process (runtime/plots.py
CurveProcess) is the one drawn in this process, byte for byte; a helper that cannot start or
fails leaves the drawing to this process, and one not asked to draw ends without a trace."""

from __future__ import annotations

import math
import sys

import pytest
from netc.runtime.plots import CurveProcess, learning_curve


def history(dev: bool = True) -> list[dict]:
    out = []
    for e in range(1, 301):
        rec = {"epoch": e, "lr": 0.01, "loss": 1 / e, "accuracy": 0.5, "seconds": 0.001}
        if dev and e % 3:
            rec["dev_loss"] = 1.2 / e
        out.append(rec)
    out[10]["loss"] = math.nan  # a diverged epoch still plots (a gap)
    return out


@pytest.mark.parametrize("dev", [True, False])
def test_the_helper_draws_this_process_figure(tmp_path, dev):
    curve = CurveProcess()
    curve.send(history(dev), tmp_path / "helper.png", title="t")
    curve.finish()
    learning_curve(history(dev), tmp_path / "here.png", title="t")
    drawn = (tmp_path / "helper.png").read_bytes()
    assert drawn[:8] == b"\x89PNG\r\n\x1a\n"
    assert drawn == (tmp_path / "here.png").read_bytes()


def test_without_a_helper_this_process_draws(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    curve = CurveProcess()
    assert curve.process is None
    curve.send(history(), tmp_path / "c.png", title="t")
    curve.finish()
    learning_curve(history(), tmp_path / "here.png", title="t")
    assert (tmp_path / "c.png").read_bytes() == (tmp_path / "here.png").read_bytes()


def test_a_failing_helper_leaves_the_drawing_here(tmp_path, monkeypatch):
    monkeypatch.setattr("netc.runtime.plots._HELPER", "raise SystemExit(3)")
    curve = CurveProcess()
    curve.send(history(), tmp_path / "c.png", title="t")
    curve.finish()
    learning_curve(history(), tmp_path / "here.png", title="t")
    assert (tmp_path / "c.png").read_bytes() == (tmp_path / "here.png").read_bytes()


def test_a_helper_not_asked_to_draw_ends(tmp_path):
    curve = CurveProcess()
    process = curve.process
    curve.close()
    assert process.poll() is not None and curve.process is None
    assert list(tmp_path.iterdir()) == []


def test_a_curve_sent_early_is_on_disk_after_finish(tmp_path):
    """send() hands the curve over and returns at once (the run takes its final figures
    meanwhile); finish() returns once the helper's file is there, the same bytes as here."""
    curve = CurveProcess()
    curve.send(history(), tmp_path / "helper.png", title="t")
    assert curve.process is not None  # still the helper's job
    curve.finish()
    learning_curve(history(), tmp_path / "here.png", title="t")
    assert curve.process is None
    assert (tmp_path / "helper.png").read_bytes() == (tmp_path / "here.png").read_bytes()


def test_finish_without_send_ends_the_helper(tmp_path):
    curve = CurveProcess()
    process = curve.process
    curve.finish()
    assert process.poll() is not None and curve.process is None
    assert list(tmp_path.iterdir()) == []


def test_closing_after_send_ends_the_helper_without_an_error(tmp_path):
    """A run that fails after handing the curve over (its final figures raised) closes the
    helper while the hand-over thread may still be talking to it: no second communicate()
    on the same process, no exception in place of the run's own."""
    for _ in range(5):
        curve = CurveProcess()
        process = curve.process
        curve.send(history(), tmp_path / "c.png", title="t")
        curve.close()
        assert process.poll() is not None and curve.process is None
