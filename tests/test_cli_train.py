"""`netc train / eval / predict` on bad input: one clear line on stderr, the documented exit
status (1: the user's data or run, 2: command-line misuse), never a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import moons_mlp, one_error_line, run_cli, run_python, write_spec
from netc.compiler.settings import KEYS

MLP = """net t
input 2
fc 3 -> relu -> {head}
train {{
  {data}
  epochs 2
}}
"""


def spec(folder: Path, data: str, head: str = "sigmoid 1", name: str = "t.net") -> Path:
    return write_spec(folder, MLP.format(head=head, data=data), name)


def x2(m: int = 10) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(m, 2)).astype(np.float32)


def y01(m: int = 10) -> np.ndarray:
    return (np.arange(m) % 2).astype(np.float32).reshape(-1, 1)


# ----------------------------------------------------------------------- data errors

DATA_ERRORS = {
    # name: (arrays or None, data line, head, words the message must hold)
    "feature_count": ({"x": np.zeros((10, 3), np.float32), "y": y01()}, 'data "d.npz"',
                      "sigmoid 1", ["3 features", "input is 2"]),
    "label_out_of_range": ({"x": x2(), "y": np.array([0, 1, 2, 3, 0, 1, 2, 0, 1, 2])},
                           'data "d.npz"\n  split 1 0 0', "softmax 3",
                           ["label 3", "out of range", "softmax 3"]),
    "negative_label": ({"x": x2(), "y": np.array([0, 1, 2, -1, 0, 1, 2, 0, 1, 2])},
                       'data "d.npz"\n  split 1 0 0', "softmax 3", ["out of range"]),
    "nan_input": ({"x": np.where(np.arange(20).reshape(10, 2) == 9, np.nan, x2()),
                   "y": y01()}, 'data "d.npz"\n  split 1 0 0', "sigmoid 1",
                  ["NaN", "row 4"]),
    "inf_input": ({"x": np.where(np.arange(20).reshape(10, 2) == 9, np.inf, x2()),
                   "y": y01()}, 'data "d.npz"\n  split 1 0 0', "sigmoid 1", ["inf"]),
    "empty_npz": ({"x": np.zeros((0, 2), np.float32), "y": np.zeros((0, 1), np.float32)},
                  'data "d.npz"', "sigmoid 1", ["empty"]),
    "x_y_lengths": ({"x": x2(10), "y": y01(9)}, 'data "d.npz"', "sigmoid 1",
                    ["x has 10 examples but y has 9"]),
    "no_y_array": ({"x": x2()}, 'data "d.npz"', "sigmoid 1", ["'y'"]),
    "sigmoid_label_2": ({"x": x2(), "y": np.full((10, 1), 2.0, np.float32)}, 'data "d.npz"',
                        "sigmoid 1", ["0, 1"]),
    "missing_file": (None, 'data "nope.npz"', "sigmoid 1", ["nope.npz", "not found"]),
    "no_data_line": (None, "split 1 0 0", "sigmoid 1", ["no data"]),
}


@pytest.mark.parametrize("case", list(DATA_ERRORS))
def test_data_error_exits_1_with_one_error_line(tmp_path, case):
    arrays, data, head, words = DATA_ERRORS[case]
    if arrays is not None:
        np.savez(tmp_path / "d.npz", **arrays)
    path = spec(tmp_path, data, head)
    out = tmp_path / "run"
    code, stdout, err = run_cli("train", path, "--out", out)
    assert code == 1
    line = one_error_line(err)
    for word in words:
        assert word in line, line
    assert stdout == ""
    # nothing half-written: the same --out can be used again without --resume
    assert not out.exists() or not any(out.iterdir())


def test_data_error_through_the_real_entry_point(tmp_path):
    path = spec(tmp_path, 'data "nope.npz"')
    proc = run_python("-m", "netc", "train", path, "--out", tmp_path / "run")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"netc: error: data: data file 'nope.npz' not found (looked in {tmp_path / 'nope.npz'})"]


def test_bad_split_is_reported(tmp_path):
    np.savez(tmp_path / "d.npz", x=x2(), y=y01())
    path = spec(tmp_path, 'data "d.npz"')
    code, _, err = run_cli("train", path, "--out", tmp_path / "run", "--set",
                           "split=0 0.5 0.5")
    assert code == 1
    assert "--set split=0 0.5 0.5: split fractions must add up to 1" in one_error_line(err)


# A mistyped --set names what was probably meant, as a flag to copy. A bad --set exits 1
# (like a bad setting in the spec's train block), in one line, before anything is trained.
SET_TYPOS = {
    "epoch=3": "unknown train setting 'epoch' (did you mean --set epochs=3?",
    "Epochs=3": "(did you mean --set epochs=3?",
    "optim.lr=0.1": "unknown train setting 'optim' (did you mean --set optimizer.lr=0.1?",
    "lr=0.1": "unknown train setting 'lr' (did you mean --set optimizer.lr=0.1?",
    "lrr=0.1": "(did you mean --set optimizer.lr=0.1?",
    "adam=1": "(did you mean --set optimizer=adam?",
    "optimizer.lrr=0.1": "optimizer adam has no argument 'lrr' (did you mean --set "
                         "optimizer.lr=0.1? optimizer adam takes: lr, b1, b2, eps)",
    "optimizer.beta=0.8": "optimizer adam has no argument 'beta'; beta is an argument of "
                          "optimizer momentum, rmsprop (e.g. --set optimizer=momentum "
                          "--set optimizer.beta=0.8)",
    "schedule.decay=0.5": "schedule constant has no argument 'decay'; decay is an argument of "
                          "schedule inverse_time",
    "data.nn=50": "data moons has no argument 'nn' (did you mean --set data.n=50?",
    "xyz=1": "unknown train setting 'xyz' (settings: data, split,",
}


@pytest.mark.parametrize("item", SET_TYPOS)
def test_mistyped_set_suggests_the_setting(tmp_path, item):
    path = spec(tmp_path, "data moons n=40")
    code, out, err = run_cli("train", path, "--out", tmp_path / "run", "--set", item)
    assert code == 1
    assert one_error_line(err).startswith(f"netc: error: --set {item}: "), err
    assert SET_TYPOS[item] in err
    assert out == "" and not (tmp_path / "run").exists()


def test_suggested_set_is_one_that_works(tmp_path):
    path = spec(tmp_path, "data moons n=40")
    code, _, err = run_cli("train", path, "--out", tmp_path / "run", "--quiet",
                       "--set", "optimizer.lr=0.1", "--set", "epochs=1")
    assert code == 0, err
    assert "epochs 1" in (tmp_path / "run" / "spec.net").read_text()


def test_mistyped_set_through_the_real_entry_point(tmp_path):
    path = spec(tmp_path, "data moons n=40")
    proc = run_python("-m", "netc", "train", path, "--set", "epoch=3", "--out", tmp_path / "run")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "netc: error: --set epoch=3: unknown train setting 'epoch' (did you mean --set epochs=3? "
        f"settings: {', '.join(KEYS)})"]


# -------------------------------------------------------------------- misuse: exit 2


def test_existing_run_folder_without_resume_exits_2(tmp_path):
    path = spec(tmp_path, "data moons n=40")
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, err = run_cli("train", path, "--out", out)
    assert code == 2
    line = one_error_line(err)
    assert "--resume" in line and str(out) in line
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "keep me"


def test_empty_existing_folder_is_fine(tmp_path):
    path = spec(tmp_path, "data moons n=40")
    out = tmp_path / "run"
    out.mkdir()
    code, _, err = run_cli("train", path, "--out", out, "--quiet")
    assert code == 0, err
    assert (out / "model.safetensors").exists()


def test_resume_without_out_exits_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = spec(tmp_path, "data moons n=40")
    code, _, err = run_cli("train", path, "--resume")
    assert code == 2
    assert "--out" in one_error_line(err)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv", [["--loop", "fast"], ["--checkpoint-every", "0"],
                                  ["--checkpoint-every", "x"], ["--bogus"]])
def test_bad_train_options_exit_2(tmp_path, argv):
    path = spec(tmp_path, "data moons n=40")
    code, _, err = run_cli("train", path, "--out", tmp_path / "run", *argv)
    assert code == 2
    one_error_line(err)


def test_missing_spec_file_exits_2(tmp_path):
    code, _, err = run_cli("train", tmp_path / "nope.net", "--out", tmp_path / "run")
    assert code == 2
    assert "nope.net" in one_error_line(err)


# ------------------------------------------------------------------ eval and predict


def test_eval_on_a_folder_that_is_not_a_run_exits_1(tmp_path):
    (tmp_path / "random.txt").write_text("hello")
    code, stdout, err = run_cli("eval", tmp_path)
    assert code == 1 and stdout == ""
    assert "not a netc run" in one_error_line(err)


def test_eval_on_a_missing_folder_exits_1(tmp_path):
    code, _, err = run_cli("eval", tmp_path / "nowhere", "--json")
    assert code == 1
    one_error_line(err)


def test_eval_on_a_run_without_weights_exits_1(tmp_path):
    write_spec(tmp_path, MLP.format(head="sigmoid 1", data="data moons n=40"))
    code, _, err = run_cli("eval", tmp_path)
    assert code == 1
    assert "no trained variables" in one_error_line(err)


def test_eval_on_a_corrupt_model_exits_1(tmp_path):
    path = spec(tmp_path, "data moons n=40")
    out = tmp_path / "run"
    code, _, err = run_cli("train", path, "--out", out, "--quiet")
    assert code == 0, err
    (out / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    code, _, err = run_cli("eval", out)
    assert code == 1
    assert "model.safetensors" in one_error_line(err)
    # predict reads the same file
    np.savez(tmp_path / "in.npz", x=x2())
    code, _, err = run_cli("predict", out, tmp_path / "in.npz", "--out", tmp_path / "p.npz")
    assert code == 1
    one_error_line(err)


def test_predict_on_bad_inputs_exits_1(tmp_path):
    path = spec(tmp_path, "data moons n=40")
    out = tmp_path / "run"
    code, _, err = run_cli("train", path, "--out", out, "--quiet")
    assert code == 0, err
    np.savez(tmp_path / "three.npz", x=np.zeros((4, 3), np.float32))
    code, _, err = run_cli("predict", out, tmp_path / "three.npz", "--out",
                           tmp_path / "p.npz")
    assert code == 1
    assert "inputs are 3 per example but the net expects 2" in one_error_line(err)
    code, _, err = run_cli("predict", out, tmp_path / "missing.npz", "--out",
                           tmp_path / "p.npz")
    assert code == 1
    assert "missing.npz" in one_error_line(err)
    assert not (tmp_path / "p.npz").exists()


@pytest.mark.parametrize(("head", "extra", "columns"), [
    ("sigmoid 1", "", ["output", "class"]),
    ("softmax 2", "", ["output_0", "output_1", "class"]),
    ("fc 1", "\n  loss mse", ["output"]),
    ("sigmoid 2", "", ["output_0", "output_1", "class_0", "class_1"]),
])
def test_predict_csv_without_class_names_has_a_header(tmp_path, head, extra, columns):
    m = 12
    y = {"sigmoid 2": np.stack([np.arange(m) % 2, np.arange(m) // 6], 1).astype(np.float32),
         "softmax 2": (np.arange(m) % 2)}.get(head, y01(m))
    np.savez(tmp_path / "d.npz", x=x2(m), y=y)
    path = spec(tmp_path, 'data "d.npz"\n  split 1 0 0' + extra, head=head)
    out = tmp_path / "run"
    code, _, err = run_cli("train", path, "--out", out, "--quiet")
    assert code == 0, err
    code, _, err = run_cli("predict", out, tmp_path / "d.npz", "--out", tmp_path / "p.npz")
    assert code == 0, err
    code, _, err = run_cli("predict", out, tmp_path / "d.npz", "--out", tmp_path / "p.csv")
    assert code == 0, err
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0].split(",") == columns and len(rows) == m + 1
    table = np.array([[float(v) for v in row.split(",")] for row in rows[1:]])
    with np.load(tmp_path / "p.npz") as want:
        outputs = want["outputs"].reshape(m, -1)
        np.testing.assert_allclose(table[:, :outputs.shape[1]], outputs, rtol=1e-6)
        if "classes" in want:
            np.testing.assert_array_equal(table[:, outputs.shape[1]:],
                                          want["classes"].reshape(m, -1))
        else:
            assert table.shape[1] == outputs.shape[1]


def test_a_failure_in_the_final_figures_is_the_runs_own_message(tmp_path, monkeypatch):
    """The learning curve is handed to its helper before the final figures: when they fail
    (here a DataError from reading a split), the command still says `netc: error: data:`
    and exits 1, the helper ended, not an internal error from closing it."""
    from netc.runtime.data import DataError

    def unreadable(*args, **kwargs):
        raise DataError("cannot read the split (test)")
    monkeypatch.setattr("netc.runtime.run.evaluate_split", unreadable)
    spec = write_spec(tmp_path, moons_mlp("fc 4 -> relu -> sigmoid 1", epochs=3))
    code, _, err = run_cli("train", spec, "--out", tmp_path / "run", "--quiet")
    assert code == 1, err
    assert "netc: error: data: cannot read the split (test)" in err
    assert "internal error" not in err
