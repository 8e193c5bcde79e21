"""Figures written into a run directory (matplotlib, no display needed)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

# the helper process's program: Ctrl-C is the parent's to handle (the run stops at an epoch
# boundary and still draws its curve), so the helper ignores it; it runs at a lower priority,
# on the cores that the parent's XLA compiles leave idle
_HELPER = ("import gc; gc.disable(); "  # a short life: no collections while it imports
           "import os, signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
           "hasattr(os, 'nice') and os.nice(10); "
           "from netc.runtime.plots import serve_learning_curve; serve_learning_curve()")


def _matplotlib():
    """matplotlib's object API with the Agg canvas: no pyplot, no global state, no display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    return Figure, FigureCanvasAgg


def preload() -> threading.Thread:
    """Import matplotlib (~0.5 s) on a thread, while training keeps the main one busy."""
    thread = threading.Thread(target=_matplotlib, name="netc-preload-matplotlib", daemon=True)
    thread.start()
    return thread


class CurveProcess:
    """The learning curve drawn by a helper process that imports matplotlib (~0.5 s of
    Python) on another core as soon as it starts, while this process imports JAX, compiles
    and trains. Imported on a thread here instead, matplotlib held this interpreter's lock
    for a third of a moons run's training (benchmarks/FINDINGS.md, 2026-11-29). Without a
    usable helper (it could not start, or failed), `finish` draws in this process."""

    def __init__(self):
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _HELPER], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        except OSError:
            self.process = None
        self._job, self._handing = None, None

    def send(self, history: list[dict], path: Path, title: str = "") -> None:
        """Hand the helper learning_curve(history, path, title) and go on: it draws while
        this process takes its final figures; finish() waits for the file."""
        self._job = (history, Path(path), title)
        process = self.process
        if process is None or not history:
            return
        used = [{k: r[k] for k in ("epoch", "loss", "dev_loss", "lr") if k in r}
                for r in history]
        request = json.dumps({"history": used, "path": str(path), "title": title}).encode()

        def hand_over():  # on a thread: a helper still importing reads its input later
            try:
                process.communicate(request, timeout=120)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                process.kill()
                process.communicate()
        self._handing = threading.Thread(target=hand_over, name="netc-curve", daemon=True)
        self._handing.start()

    def finish(self) -> None:
        """Wait for the curve send() handed over; draw it in this process when the helper
        could not (it did not start, failed or wrote nothing)."""
        if self._job is None:  # nothing was sent
            self.close()
            return
        process, self.process = self.process, None
        history, path, title = self._job
        if self._handing is not None:
            self._handing.join()
            if process.returncode == 0 and path.exists():
                return
        elif process is not None:
            self.close(process)
        learning_curve(history, path, title)

    def close(self, process=None) -> None:
        """End the helper without drawing (the run failed, perhaps after send()); it exits
        at the end of its input too, so a parent that dies leaves no helper behind."""
        process = process or self.process
        self.process = None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        if self._handing is not None:  # its communicate() reaps the helper: only one may
            self._handing.join()
        else:
            process.communicate()


def serve_learning_curve() -> None:
    """The helper process of CurveProcess: import matplotlib, then draw the curve its
    parent sends on stdin as {"history", "path", "title"} (nothing: exit)."""
    _matplotlib()
    # a first figure while the parent trains: fonts and canvas set up (~0.05 s of the first)
    curve_figure([{"epoch": 1, "loss": 1.0, "dev_loss": 1.0, "lr": 0.1}]).savefig(
        io.BytesIO(), format="png")
    request = sys.stdin.read()
    if request:
        job = json.loads(request)
        learning_curve(job["history"], Path(job["path"]), title=job["title"])


def _figure(size):
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def learning_curve(history: list[dict], path: Path, title: str = "") -> None:
    """Cost against epochs (train, and dev when there is one), as the course plots it."""
    if history:
        _save(curve_figure(history, title), path)


def curve_figure(history: list[dict], title: str = ""):
    """learning_curve's figure."""
    epochs = [r["epoch"] for r in history]
    fig = _figure((6, 4))
    ax = fig.subplots()
    ax.plot(epochs, [r["loss"] for r in history], label="train")
    if any("dev_loss" in r for r in history):
        ax.plot([r["epoch"] for r in history if "dev_loss" in r],
                [r["dev_loss"] for r in history if "dev_loss" in r], label="dev")
        ax.legend()
    ax.set_xlabel("epochs")
    ax.set_ylabel("cost")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    lr = history[-1].get("lr")
    ax.set_title(f"{title}  (learning rate = {lr:g})" if lr is not None else title)
    fig.tight_layout()
    return fig


def decision_boundary(predict, x: np.ndarray, y: np.ndarray, path: Path, title: str = "") -> None:
    """The course's plot_decision_boundary: predicted class over a grid, data on top."""
    from matplotlib import colormaps

    pad = 0.5
    x0, x1 = x[:, 0].min() - pad, x[:, 0].max() + pad
    y0, y1 = x[:, 1].min() - pad, x[:, 1].max() + pad
    xx, yy = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
    grid = np.c_[xx.ravel(), yy.ravel()].astype(np.float32)
    zz = np.asarray(predict(grid)).reshape(xx.shape)
    fig = _figure((6, 5))
    ax = fig.subplots()
    spectral = colormaps["Spectral"]
    ax.contourf(xx, yy, zz, cmap=spectral, alpha=0.8)
    labels = y.reshape(len(y), -1)[:, 0] if y.ndim > 1 else y
    ax.scatter(x[:, 0], x[:, 1], c=labels, s=12, cmap=spectral, edgecolors="k",
               linewidths=0.3)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    from .checkpoint import atomic_write

    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png"))
