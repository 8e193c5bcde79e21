"""docs/workflow.md, run: every command on the page, in order, and the key figures it shows.

The page's convention, which this file reads it by:

- A command is a line of a ```sh block that starts with `netc `: one command per line, no
  continuation lines and no shell syntax but quoting (the line is split with shlex). Other
  lines of an sh block, and every other block, are not run.
- The commands run in order, each in a fresh interpreter as `python -m netc ARGS` (what the
  `netc` script runs), with the words as written: nothing is substituted. They run in a
  temporary folder that holds a copy of examples/workflow/ at the same relative path, so
  they run as they would from the repository's root, and their run folders (runs/, tunes/)
  land in the temporary folder. Each must exit 0.
- The ```text blocks after an sh block, up to the next sh block, are what its commands
  printed, one block per command, in order (none at all is allowed: output not shown). In
  each, every line that states a key fact (KEY_LINES: the trials' figures, the best trial,
  the early-stopping epochs, the diagnosis figures, the error counts...) must appear as is
  in what the command printed (stdout and stderr). Progress lines (`epoch N/M`, rates) and
  the per-split losses are not compared.
- The comparison table of step 6 (rows starting with "| `runs/") must hold each run's
  errors, 1 - accuracy from its run.json, as printed there (two decimals, percent).

Then facts the page states in words: the frozen layers of the fine-tuned run are
bit-identical to the run they came from, best.net reproduces the best trial, and
augmented.net trains at the learning rate the search found.

When one of these fails after a change to netc, rerun the page's commands and update the
outputs shown there (and its prose, where the figures moved).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT, run_python

DOC = ROOT / "docs" / "workflow.md"
SPECS = EXAMPLES / "workflow"

# lines of a shown output that state a deterministic fact, compared as they are
KEY_LINES = [re.compile(p) for p in (
    r"^training \S+: \d+ examples",                       # netc train: the data and the loop
    r"^init from ",                                       # what init from= took
    r"^early stopping: ",                                 # the best and the stopped epoch
    r"^trial \d+ \(round \d+\) ",                         # netc tune: each trial's figure
    r"^best: trial ",                                     # and the best trial
    r"^\S+: \d+ of \d+ \w+ examples are wrong",           # netc eval --errors
    r"^ +\S+: +\d+ of \d+ errors",                        # netc eval --errors-summary
    r"^ +(Bayes error|train error|train-dev error|dev error|test error) ",  # netc diagnose
    r"^The biggest gap is ",
    r"^\(early stopping: ",
    r"^trainable params: ",                               # netc check
)]


def blocks(text: str) -> list[tuple[str, list[str]]]:
    """[(info string, lines)] of the fenced blocks of a markdown text, in order."""
    found, fence, info, body = [], None, "", []
    for line in text.splitlines():
        stripped = line.strip()
        if fence is None:
            if stripped.startswith("```"):
                fence, info, body = "```", stripped[3:].strip(), []
        elif stripped == fence:
            found.append((info, body))
            fence = None
        else:
            body.append(line)
    assert fence is None, "an unclosed ``` block"
    return found


def steps(text: str) -> list[tuple[str, str | None]]:
    """[(command line, the output shown for it or None)], in the page's order."""
    out: list[tuple[str, str | None]] = []
    commands: list[str] = []
    shown: list[str] = []

    def flush():
        assert not shown or len(shown) == len(commands), (
            f"{len(shown)} output blocks after the sh block of {commands}: give one per "
            "command, or none")
        out.extend(zip(commands, shown or [None] * len(commands)))

    for info, body in blocks(text):
        if info == "sh":
            flush()
            commands = [line.strip() for line in body if line.strip().startswith("netc ")]
            assert not any(c.endswith("\\") for c in commands), "one command per line"
            shown = []
        elif info == "text" and commands:
            shown.append("\n".join(body))
    flush()
    return out


STEPS = steps(DOC.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory) -> tuple[Path, list[str]]:
    """Run every command of the page in order: (the folder, what each printed)."""
    folder = tmp_path_factory.mktemp("workflow")
    shutil.copytree(SPECS, folder / SPECS.relative_to(ROOT))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}  # as a pipe
    printed = []
    for command, _ in STEPS:
        argv = shlex.split(command)
        done = run_python("-m", "netc", *argv[1:], cwd=folder, env=env, timeout=600)
        text = done.stdout + done.stderr
        assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n{text}"
        assert "Traceback" not in text, text
        printed.append(text)
    return folder, printed


def test_the_page_has_its_commands():
    commands = [c for c, _ in STEPS]
    assert len(commands) >= 10
    for word in ("netc train", "netc diagnose", "netc tune", "netc eval", "netc check"):
        assert any(c.startswith(word) for c in commands), word
    assert any("--errors 20" in c for c in commands)
    assert any("--bayes-error" in c for c in commands)


@pytest.mark.slow
def test_every_command_runs_and_prints_what_the_page_shows(walkthrough):
    _, printed = walkthrough
    checked = 0
    for (command, shown), text in zip(STEPS, printed):
        if shown is None:
            continue
        real = {line.rstrip() for line in text.splitlines()}
        for line in shown.splitlines():
            if any(p.search(line) for p in KEY_LINES):
                assert line.rstrip() in real, (
                    f"docs/workflow.md shows, for `{command}`:\n  {line}\nbut it printed:\n"
                    f"{text}")
                checked += 1
    assert checked >= 30, checked


def final_errors(run: Path) -> dict[str, str]:
    final = json.loads((run / "run.json").read_text())["final"]
    return {split: f"{100 * (1 - figures['accuracy']):.2f}%" for split, figures in final.items()}


@pytest.mark.slow
def test_the_comparison_table_holds_the_runs_figures(walkthrough):
    folder, _ = walkthrough
    rows = [line for line in DOC.read_text(encoding="utf-8").splitlines()
            if line.startswith("| `runs/")]
    assert len(rows) >= 4
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        run = folder / cells[0].strip("`")
        shown = dict(zip(("train", "train_dev", "dev", "test"), cells[2:6]))
        assert shown == final_errors(run), row


def best_trial(printed: list[str]) -> tuple[int, str]:
    """(number, learning rate) of the best trial, as netc tune printed it."""
    text = next(t for (c, _), t in zip(STEPS, printed) if c.startswith("netc tune"))
    found = re.search(r"^best: trial (\d+)  optimizer\.lr=(\S+) ", text, re.M)
    assert found, text
    return int(found.group(1)), found.group(2)


@pytest.mark.slow
def test_best_net_reruns_the_best_trial_and_augmented_net_uses_its_rate(walkthrough):
    folder, printed = walkthrough
    number, lr = best_trial(printed)
    assert f"optimizer adam lr={lr}\n" in (folder / "tunes/base/best.net").read_text()
    assert f"optimizer adam lr={lr} " in (SPECS / "augmented.net").read_text()
    trial = json.loads((folder / f"tunes/base/trials/{number:04d}/run.json").read_text())
    rerun = json.loads((folder / "runs/tuned/run.json").read_text())
    # the trial trained in a population, the rerun alone: the same run, up to float32 rounding
    for split, figures in trial["final"].items():
        assert rerun["final"][split]["accuracy"] == figures["accuracy"], split
        assert rerun["final"][split]["loss"] == pytest.approx(figures["loss"], rel=1e-5)


@pytest.mark.slow
def test_the_frozen_layers_end_bit_identical(walkthrough):
    import numpy as np
    from netc.runtime.run import load_run

    folder, _ = walkthrough
    _, tuned = load_run(folder / "runs/tuned")
    _, tuned_again = load_run(folder / "runs/finetune")
    for layer in ("conv_1", "batchnorm_1", "conv_2"):
        for name, value in tuned["params"][layer].items():
            np.testing.assert_array_equal(tuned_again["params"][layer][name], value)
    for name, value in tuned["state"]["batchnorm_1"].items():
        np.testing.assert_array_equal(tuned_again["state"]["batchnorm_1"][name], value)
    head = tuned_again["params"]["head"]["kernel"]
    assert not np.array_equal(head, tuned["params"]["softmax_1"]["kernel"])
    info = json.loads((folder / "runs/finetune/run.json").read_text())
    assert info["init_from"]["layers"] == ["conv_1", "batchnorm_1", "conv_2"]
    assert info["init_from"]["fresh"] == ["head"]


@pytest.mark.slow
def test_early_stopping_kept_the_epochs_the_page_shows(walkthrough):
    folder, _ = walkthrough
    text = DOC.read_text(encoding="utf-8")
    for run in ("early_stop", "augmented"):
        info = json.loads((folder / "runs" / run / "run.json").read_text())
        line = (f"(early stopping: the run stopped after epoch {info['stopped_epoch']} of "
                f"{info['epochs']}; these are the figures of epoch {info['best_epoch']}, its best)")
        assert line in text, run
