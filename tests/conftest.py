"""Shared test helpers, imported by the test files as `from conftest import ...` (tests/ has no
__init__.py, so pytest puts tests/ on sys.path and this module is importable as `conftest`).

- where things are: the repository, examples/, and the acceptance corpus in ../shared/specs
  (NETC_SHARED moves ../shared; the `shared_specs` fixture skips a test when it is absent);
- running `netc`: in process (`run_cli`) or in a fresh interpreter (`run_python`);
- spec files: `write_spec`, and `moons_mlp`, the small moons net that training tests share;
- run folders written by `netc train`: `params_of`, `metrics_of`, `assert_trees_close`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EXAMPLE_SPECS = sorted(EXAMPLES.rglob("*.net"))
SHARED_SPECS = Path(os.environ.get("NETC_SHARED", ROOT.parent / "shared")) / "specs"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # numpy_reference


# ---- the acceptance corpus ------------------------------------------------------------------


def shared_expected() -> dict:
    path = SHARED_SPECS / "expected.json"
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture
def shared_specs() -> Path:
    if not (SHARED_SPECS / "expected.json").exists():
        pytest.skip("../shared/specs is not present")
    return SHARED_SPECS


# ---- running netc ---------------------------------------------------------------------------


def run_cli(*argv) -> tuple[int, str, str]:
    """`netc ARGV` in this process: (exit status, stdout, stderr). Arguments may be Paths.

    It captures by redirecting sys.stdout/sys.stderr, not with capsys, so it also serves
    hypothesis tests (which cannot take function-scoped fixtures)."""
    from netc.runtime.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def run_python(*args, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """`python ARGS` in a fresh interpreter (this one's), text output captured; `-m netc ...`
    runs the real entry point. kwargs go to subprocess.run (cwd, env)."""
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, check=False, **kwargs)


# ---- many processes (runtime/distributed.py) -------------------------------------------------

# each process of a run with 2 CPU devices, and no compilation cache shared between them
TWO_CPUS = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
            "NETC_CACHE_DIR": "off"}


def free_port() -> int:
    """A free port with the next one free too (the processes of a run meet there)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        try:
            with socket.socket() as b:
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free pair of ports")


def start_process(spec: Path, out: Path, port: int, process: int, log: Path,
                  processes: int = 2, timeout: float = 60,
                  extra: tuple = ()) -> subprocess.Popen:
    """`netc train SPEC --out OUT EXTRA` as process `process` of a run of `processes` that
    meet at 127.0.0.1:PORT, each with 2 CPU devices: stderr into the file `log`, stdout a
    pipe; in a session of its own (os.killpg ends it with its children)."""
    argv = [sys.executable, "-m", "netc", "train", str(spec), "--out", str(out),
            "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes),
            "--process-id", str(process), "--timeout", str(timeout), *map(str, extra)]
    with open(log, "w") as fh:  # the child keeps its own copy of the file
        return subprocess.Popen(argv, env=TWO_CPUS, stdout=subprocess.PIPE, stderr=fh,
                                text=True, start_new_session=True)


# the first line of each diagnostic `netc check` prints on stderr
ERROR_HEADER = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+): error: (?P<msg>.+)$")


def one_error_line(err: str) -> str:
    """The only line of stderr, which must be `netc: error: ...` without a traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("netc: error: "), err
    return lines[0]


# ---- spec files -----------------------------------------------------------------------------


def write_spec(folder: Path, text: str, name: str = "spec.net") -> Path:
    """Write `text` (UTF-8) to folder/NAME; the path."""
    path = Path(folder) / name
    path.write_text(text, encoding="utf-8")
    return path


def moons_mlp(layers: str, *, name: str = "mlp", n: int = 90, noise: float = 0.25,
              optimizer: str = "momentum lr=0.1", batch: int | str = 16, epochs: int = 8,
              seed: int = 0, split: str = "1 0 0") -> str:
    """A small net on the built-in moons data (2 features in, LAYERS after) with a full train
    section: he init, shuffled minibatches, a fixed seed."""
    return f"""net {name}
input 2
{layers}
train {{
  data moons n={n} noise={noise}
  split {split}
  init he
  optimizer {optimizer}
  batch {batch}
  epochs {epochs}
  seed {seed}
}}
"""


# ---- run folders ----------------------------------------------------------------------------


def params_of(run_dir: Path) -> dict:
    """The final params of a run (or of its newest checkpoint) as numpy arrays."""
    import jax
    import numpy as np
    from netc.runtime.run import load_run

    _, variables = load_run(run_dir)
    return jax.tree.map(np.asarray, variables["params"])


def metrics_of(run_dir: Path) -> list[dict]:
    """The records of metrics.jsonl, one per epoch."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def assert_trees_close(a: dict, b: dict, atol: float = 0.0) -> None:
    """Same tree structure, every leaf within `atol` (0: bitwise equal)."""
    import jax
    import numpy as np

    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=0, atol=atol)


class Crash(Exception):
    """What CrashAfter raises: a process that dies in the middle of a run."""


class CrashAfter:
    """A reporter (runtime/progress.Reporter's interface) that stops train_run with Crash
    once epoch `epoch` is done: the run keeps the checkpoints written before it."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def warn(self, message):
        pass

    def start(self, net, trainer, done):
        pass

    def epochs(self, records):
        if records[-1]["epoch"] >= self.epoch:
            raise Crash

    def finish(self, final, interrupted):
        pass



# ---- a small trained run on 2-feature points in an uncompressed .npz (streamed eval/predict)

POINTS_SPEC = """net points
input 2
fc 8 -> tanh -> softmax 3
train {
  data "points.npz" workers=0
  split 0.6 0.2 0.2
  optimizer adam lr=0.05
  batch 16
  epochs 4
  seed 2
  normalize standard
  stream off
}
"""


def train_points(folder: Path, out: str = "run") -> Path:
    """folder/points.npz (120 points of 3 classes, uncompressed: streamable) and
    POINTS_SPEC trained in memory into folder/OUT; the run folder."""
    import numpy as np

    rng = np.random.default_rng(3)
    y = np.arange(120) % 3
    x = (rng.normal(size=(120, 2)) + np.stack([y, y % 2], axis=1) * 1.5).astype(np.float32)
    np.savez(folder / "points.npz", x=x, y=y)
    code, _, err = run_cli("train", write_spec(folder, POINTS_SPEC), "--out", folder / out,
                           "--quiet")
    assert code == 0, err
    return folder / out
