"""`netc diagnose RUN`: the course's diagnosis (LANGUAGE.md section 7) from a run's final
figures, checked against numbers computed here from run.json, and on a trained run against
1 - accuracy of each split as `netc eval --json` reports it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from netc.runtime import cli

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("train_error", "dev_error", "test_error", "train_dev_error", "bayes_error",
        "avoidable_bias", "variance", "data_mismatch", "dev_overfitting")


def run_folder(tmp_path: Path, final, name: str = "run", **extra) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    info = {"net": "fake", "loss": "cross_entropy", "epochs_done": 10, "epochs": 10,
            "final": final, **extra}
    (folder / "run.json").write_text(json.dumps(info))
    return folder


def diagnose(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(["diagnose", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def as_json(capsys, *argv) -> dict:
    code, out, err = diagnose(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def expected(final: dict, bayes: float = 0.0) -> dict:
    """The section 7 formulas, in numpy, straight from the final figures."""
    acc = all("accuracy" in v for v in final.values())
    err = {s: (1 - np.float64(v["accuracy"])) if acc else np.float64(v["loss"])
           for s, v in final.items()}
    tr, td, dev, test = (err.get(s) for s in ("train", "train_dev", "dev", "test"))

    def gap(a, b):
        return None if a is None or b is None else float(np.subtract(a, b))

    return {"train_error": tr, "train_dev_error": td, "dev_error": dev, "test_error": test,
            "bayes_error": bayes, "avoidable_bias": float(tr - bayes),
            "variance": gap(td, tr) if td is not None else gap(dev, tr),
            "data_mismatch": gap(dev, td), "dev_overfitting": gap(test, dev)}


def same(result: dict, want: dict) -> None:
    for key in KEYS:
        if want[key] is None:
            assert result[key] is None, key
        else:
            assert result[key] == pytest.approx(float(want[key]), abs=1e-12), key


FOUR = {"train": {"loss": 0.05, "accuracy": 0.99}, "train_dev": {"loss": 0.1, "accuracy": 0.97},
        "dev": {"loss": 0.4, "accuracy": 0.88}, "test": {"loss": 0.45, "accuracy": 0.87}}


@pytest.mark.parametrize("splits", [("train", "train_dev", "dev", "test"),
                                    ("train", "dev", "test"), ("train", "dev"),
                                    ("train", "train_dev"), ("train",)])
@pytest.mark.parametrize("bayes", [0.0, 0.004])
def test_formulas_match_the_final_figures(tmp_path, capsys, splits, bayes):
    final = {s: FOUR[s] for s in splits}
    result = as_json(capsys, run_folder(tmp_path, final), "--bayes-error", bayes)
    same(result, expected(final, bayes))
    assert result["metric"] == "accuracy"


def test_data_mismatch_dominates_with_its_remedies(tmp_path, capsys):
    folder = run_folder(tmp_path, FOUR)
    result = as_json(capsys, folder, "--bayes-error", "0.5%")
    assert result["bayes_error"] == 0.005
    assert result["dominant"] == "data_mismatch"  # 0.09 > bias 0.005, variance 0.02
    assert any("error analysis" in r for r in result["remedies"])
    code, out, _ = diagnose(capsys, folder)
    assert code == 0
    assert "The biggest gap is data mismatch (9.00%)" in out
    assert "  train-dev error         3.00%   variance               2.00%   = train-dev - " \
           "train" in out
    assert "  dev error              12.00%   data mismatch          9.00%   = dev - " \
           "train-dev" in out
    assert "--errors 100" in out and str(folder) in out


@pytest.mark.parametrize(("final", "dominant", "remedy"), [
    ({"train": {"loss": 1, "accuracy": 0.8}, "dev": {"loss": 1, "accuracy": 0.78}},
     "avoidable_bias", "bigger network"),
    ({"train": {"loss": 1, "accuracy": 0.99}, "dev": {"loss": 1, "accuracy": 0.85}},
     "variance", "regularise"),
    ({"train": {"loss": 1, "accuracy": 0.99}, "dev": {"loss": 1, "accuracy": 0.98},
      "test": {"loss": 1, "accuracy": 0.9}}, "dev_overfitting", "bigger dev set"),
    ({"train": {"loss": 1, "accuracy": 1.0}, "dev": {"loss": 1, "accuracy": 1.0}}, None, None),
])
def test_the_dominant_problem(tmp_path, capsys, final, dominant, remedy):
    result = as_json(capsys, run_folder(tmp_path, final))
    assert result["dominant"] == dominant
    if remedy is None:
        assert result["remedies"] == []
        assert "No gap is above zero" in diagnose(capsys, tmp_path / "run")[1]
    else:
        assert any(remedy in r for r in result["remedies"])


def test_variance_without_a_train_dev_split_is_dev_minus_train(tmp_path, capsys):
    final = {s: FOUR[s] for s in ("train", "dev")}
    code, out, _ = diagnose(capsys, run_folder(tmp_path, final))
    assert code == 0
    assert "  train-dev error             -   (no train-dev split)" in out
    assert "= dev - train" in out and "data mismatch" not in out.split("The biggest")[0]


def test_regression_errors_are_the_loss(tmp_path, capsys):
    final = {"train": {"loss": 0.25}, "dev": {"loss": 0.75}, "test": {"loss": 0.8}}
    folder = run_folder(tmp_path, final, loss="mse")
    result = as_json(capsys, folder, "--bayes-error", "0.1")
    same(result, expected(final, 0.1))
    assert result["metric"] == "loss" and result["dominant"] == "variance"
    out = diagnose(capsys, folder)[1]
    assert "errors are the loss" in out and "0.2500" in out


def test_interrupted_run_is_diagnosed_and_says_so(tmp_path, capsys):
    folder = run_folder(tmp_path, FOUR, epochs_done=4)
    code, out, _ = diagnose(capsys, folder)
    assert code == 0 and "after epoch 4 of 10" in out


@pytest.mark.parametrize(("setup", "argv", "code", "words"), [
    ("none", [], 1, ["not found"]),
    ("empty", [], 1, ["not a netc run folder", "run.json"]),
    ("unfinished", [], 1, ["no final figures yet", "--resume"]),
    ("ok", ["--bayes-error", "1.5"], 2, ["between 0 and 1"]),
    ("ok", ["--bayes-error", "-0.1"], 2, ["between 0 and 1"]),
    ("ok", ["--bayes-error", "abc"], 2, ["0.05 or 5%"]),
])
def test_errors_are_one_line(tmp_path, capsys, setup, argv, code, words):
    folder = tmp_path / "run"
    if setup == "empty":
        folder.mkdir()
    elif setup == "unfinished":
        run_folder(tmp_path, None)
    elif setup == "ok":
        run_folder(tmp_path, FOUR)
    rc, out, err = diagnose(capsys, folder, *argv)
    assert rc == code and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netc: error: "), err
    for word in words:
        assert word in lines[0]


def test_diagnose_never_imports_jax(tmp_path):
    folder = run_folder(tmp_path, FOUR)
    code = ("import sys; from netc.runtime import cli; rc = cli.main(['diagnose', sys.argv[1], "
            "'--json']); sys.exit(rc or ('jax' in sys.modules) * 7)")
    done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr


# ---- a trained run ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("diag") / "run"
    argv = ["train", str(ROOT / "examples" / "digits_mlp.net"), "--out", str(out), "--quiet",
            "--set", "epochs=2", "--set", "train_dev=0.1"]
    assert cli.main(argv) == 0
    return out


def test_a_trained_run_matches_netc_eval(digits_run, capsys):
    assert cli.main(["eval", str(digits_run), "--split", "all", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["splits"]
    assert list(report) == ["train", "train_dev", "dev", "test"]
    result = as_json(capsys, digits_run)
    for split in report:
        assert result[f"{split}_error"] == pytest.approx(1 - report[split]["accuracy"],
                                                         abs=1e-9), split
    info = json.loads((digits_run / "run.json").read_text())
    same(result, expected(info["final"]))


def test_a_train_error_below_the_bayes_error_is_a_note_not_an_error(tmp_path, capsys):
    """A net can memorise its training set (train error 1%) below a Bayes error of 2%: the
    avoidable bias is then -1%, and the diagnosis says why instead of refusing."""
    folder = run_folder(tmp_path, FOUR)
    code, out, _ = diagnose(capsys, folder, "--bayes-error", "0.02")
    assert code == 0
    assert "Note: the train error 1.00% is below the Bayes error 2.00%" in out
    code, out, _ = diagnose(capsys, folder, "--bayes-error", "2%", "--json")
    result = json.loads(out)
    assert result["avoidable_bias"] == pytest.approx(0.01 - 0.02)
    assert len(result["notes"]) == 1 and "memorised" in result["notes"][0]



def test_an_early_stopped_run_says_whose_figures_they_are(tmp_path, capsys):
    # early stopping keeps the best epoch's parameters, so the final figures are that epoch's,
    # not those of the epoch the run stopped after
    folder = run_folder(tmp_path, FOUR, epochs_done=39, epochs=60, best_epoch=29,
                        stopped_epoch=39, stop_reason="patience")
    code, out, _ = diagnose(capsys, folder)
    assert code == 0
    assert "stopped after epoch 39 of 60; these are the figures of epoch 29, its best" in out
    assert "these are its figures then" not in out
    done = run_folder(tmp_path, FOUR, name="full", best_epoch=7, stopped_epoch=None)
    out = diagnose(capsys, done)[1]
    assert "ran to its last epoch; these are the figures of epoch 7, its best" in out
