"""The progress lines of `netc train`: what the ex/s figure measures."""

from __future__ import annotations

import io
import re

from conftest import metrics_of, moons_mlp, write_spec
from netc.compiler.check import check_file
from netc.runtime.progress import Reporter
from netc.runtime.run import train_run


def test_the_rate_is_examples_over_the_epochs_training_seconds(tmp_path):
    """ex/s is the shown epochs' examples over their `seconds` in metrics.jsonl (compiling
    left out), not over the time since the run started, which holds the compile."""
    spec = write_spec(tmp_path, moons_mlp("fc 4 -> relu -> sigmoid 1", n=90, epochs=8), "m.net")
    shown = io.StringIO()
    train_run(check_file(spec), tmp_path / "run", base_dir=tmp_path,
              reporter=Reporter("plain", shown))
    records = metrics_of(tmp_path / "run")  # one chunk of 8 epochs: one line, the last
    line = next(x for x in shown.getvalue().splitlines() if x.startswith("epoch 8/8"))
    rate = float(re.search(r"([\d,]+) ex/s", line).group(1).replace(",", ""))
    want = len(records) * 90 / sum(r["seconds"] for r in records)
    assert abs(rate - want) <= 0.5 + 1e-9 * want, (line, want)
