"""The course's error analysis: `netc eval RUN --errors K` (errors.csv, errors.png) and
`--errors-summary CSV`. Predictions are recomputed here with netc.load + apply on the dev
split rebuilt from scikit-learn's digits and the documented seeded split."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from netc.runtime import cli
from netc.runtime.error_analysis import choose_split, predictions, split_tags
from netc.runtime.errors import RunError, UsageError
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netc: error: "), err
    return lines[0]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("errors") / "run"
    argv = ["train", str(ROOT / "examples" / "digits_mlp.net"), "--out", str(out), "--quiet",
            "--set", "epochs=2"]
    assert cli.main(argv) == 0
    return out


@pytest.fixture(scope="module")
def dev_predictions(digits_run):
    """(probabilities, labels) of the dev split, computed independently of netc eval:
    digits_mlp's `split 0.8 0.1 0.1`, `seed 0` is rows 1439..1617 of the seed-0 permutation."""
    import netc
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    dev = order[1439:1618]
    x = (digits.images[dev] / 16.0).astype(np.float32)[..., None]
    model, variables = netc.load(str(digits_run))
    return np.asarray(model.apply(variables, x), np.float64), digits.target[dev]


def test_csv_rows_are_the_wrong_dev_predictions_most_confident_first(digits_run,
                                                                      dev_predictions, capsys,
                                                                      tmp_path):
    probs, labels = dev_predictions
    predicted, confidence = probs.argmax(axis=1), probs.max(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    assert 5 <= len(wrong) < 179  # two epochs: a net with something to analyse
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")]

    code, out, err = run(capsys, "eval", digits_run, "--errors", 1000, "--out", tmp_path / "all")
    assert code == 0, err
    assert f"{len(wrong)} of 179 dev examples are wrong" in out
    rows = read_csv(tmp_path / "all" / "errors.csv")
    assert list(rows[0]) == ["split", "index", "true", "predicted", "probability", "category"]
    assert [int(r["index"]) for r in rows] == wrong.tolist()
    for r in rows:
        i = int(r["index"])
        assert r["split"] == "dev" and r["category"] == ""
        assert int(r["true"]) == labels[i] != int(r["predicted"]) == predicted[i]
        assert float(r["probability"]) == pytest.approx(confidence[i], abs=2e-6)
    probabilities = [float(r["probability"]) for r in rows]
    assert probabilities == sorted(probabilities, reverse=True)

    # K is respected: the K most confident of them, into the run folder by default
    code, out, err = run(capsys, "eval", digits_run, "--errors", 3)
    assert code == 0, err
    top = read_csv(digits_run / "errors.csv")
    assert [int(r["index"]) for r in top] == wrong[:3].tolist()
    assert "the 3 most confidently wrong written to" in out


def test_errors_png_is_written_for_image_inputs(digits_run, capsys, tmp_path):
    code, _, err = run(capsys, "eval", digits_run, "--errors", 12, "--out", tmp_path)
    assert code == 0, err
    with Image.open(tmp_path / "errors.png") as img:
        assert img.format == "PNG" and img.width > 600 and img.height > 150
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary left


def test_json_report(digits_run, dev_predictions, capsys, tmp_path):
    probs, labels = dev_predictions
    code, out, _ = run(capsys, "eval", digits_run, "--errors", 4, "--json", "--out", tmp_path)
    assert code == 0
    report = json.loads(out)
    assert report["split"] == "dev" and report["shown"] == 4
    assert report["errors"] == int((probs.argmax(axis=1) != labels).sum())
    assert report["image"] == str(tmp_path / "errors.png")
    for row in report["rows"]:
        assert row["probability"] == pytest.approx(probs[row["index"]].max(), abs=1e-6)


def test_another_split_is_named(digits_run, capsys, tmp_path):
    code, out, _ = run(capsys, "eval", digits_run, "--errors", 2, "--split", "test", "--out",
                       tmp_path)
    assert code == 0
    assert " test examples are wrong" in out
    assert {r["split"] for r in read_csv(tmp_path / "errors.csv")} == {"test"}


def test_the_split_falls_back_from_dev_and_says_so():
    parts = {"train": 1, "test": 1}
    assert choose_split(parts, None) == ("test", " (the run has no dev split, so the test split)")
    assert choose_split({"train": 1}, None)[0] == "train"
    assert choose_split({"train": 1, "dev": 1, "test": 1}, None) == ("dev", "")
    with pytest.raises(RunError, match="no dev split"):
        choose_split(parts, "dev")
    with pytest.raises(UsageError, match="one split"):
        choose_split(parts, "all")


def test_binary_predictions_threshold_at_one_half():
    model = SimpleNamespace(loss_name="binary_cross_entropy")
    out = np.array([[0.9], [0.2], [0.6], [0.7], [0.3]])
    y = np.array([[0.0], [0.0], [1.0], [np.nan], [1.0]])
    p = predictions(model, out, y, "dev")
    assert p.predicted.tolist() == [1, 0, 1, 1, 0]
    np.testing.assert_allclose(p.probability, [0.9, 0.8, 0.6, 0.7, 0.7])
    assert p.wrong.tolist() == [0, 4]  # the unknown label (NaN) is never an error


def test_softmax_ties_keep_the_lower_index_first():
    model = SimpleNamespace(loss_name="cross_entropy")
    out = np.array([[0.2, 0.8], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8]])
    p = predictions(model, out, np.array([0, 1, 1, 0]), "dev")
    assert p.wrong.tolist() == [0, 1, 3]


def test_a_regression_net_has_no_errors_to_analyse(tmp_path, capsys):
    spec = tmp_path / "reg.net"
    spec.write_text("net reg\ninput 2\nfc 1\ntrain {\n  data moons n=40\n  loss mse\n"
                    "  epochs 1\n}\n")
    assert cli.main(["train", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    capsys.readouterr()
    code, _, err = run(capsys, "eval", tmp_path / "run", "--errors", 5)
    assert code == 1
    assert "needs a classifier" in one_line_error(err)


def test_misuse(digits_run, capsys):
    code, _, err = run(capsys, "eval", digits_run, "--out", "x")
    assert code == 2 and "--out goes with --errors" in one_line_error(err)
    code, _, err = run(capsys, "eval", digits_run, "--errors", 0)
    assert code == 2 and "positive integer" in one_line_error(err)
    code, _, err = run(capsys, "eval", digits_run, "--errors", 2, "--split", "all")
    assert code == 2 and "one split" in one_line_error(err)


# ---- --errors-summary on a hand-written CSV ----------------------------------------------


def fake_run(tmp_path: Path, dev_accuracy: float = 0.9) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    final = {"train": {"loss": 0.1, "accuracy": 0.99},
             "dev": {"loss": 0.3, "accuracy": dev_accuracy}}
    (folder / "run.json").write_text(json.dumps({"net": "cats", "final": final}))
    return folder


TAGGED = """split,index,true,predicted,probability,category
dev,3,cat,dog,0.99,dog
dev,8,cat,dog,0.97,"blurry; dog"
dev,1,dog,cat,0.95,Blurry
dev,4,dog,cat,0.90,
dev,9,cat,dog,0.80,great cat
dev,2,dog,cat,0.70,blurry
dev,5,dog,cat,0.60,
dev,6,cat,dog,0.55,blurry|dog
dev,7,cat,dog,0.52,dog
dev,0,dog,cat,0.51,mislabeled
"""


def test_summary_shares_and_ceilings(tmp_path, capsys):
    folder = fake_run(tmp_path)
    (tmp_path / "errors.csv").write_text(TAGGED)
    code, out, err = run(capsys, "eval", folder, "--errors-summary", tmp_path / "errors.csv")
    assert code == 0, err
    lines = out.splitlines()
    assert "10 dev errors examined; dev error 10.0%" in lines[0]
    assert lines[1:] == [
        "  blurry:     4 of 10 errors (40%): fixing them all would cut dev error from 10.0% "
        "to 6.0%",
        "  dog:        4 of 10 errors (40%): fixing them all would cut dev error from 10.0% "
        "to 6.0%",
        "  great cat:  1 of 10 errors (10%): fixing them all would cut dev error from 10.0% "
        "to 9.0%",
        "  mislabeled: 1 of 10 errors (10%): fixing them all would cut dev error from 10.0% "
        "to 9.0%",
        "  untagged:   2 of 10 errors (20%): no category yet",
        "  (some errors have several categories: the shares add up to more)",
    ]
    code, out, _ = run(capsys, "eval", folder, "--errors-summary", tmp_path / "errors.csv",
                       "--json")
    dev = json.loads(out)["splits"]["dev"]
    assert dev["errors"] == 10 and dev["untagged"] == 2
    assert dev["categories"][0] == {"category": "blurry", "count": 4, "share": 0.4,
                                    "error_if_fixed": pytest.approx(0.06)}


def test_summary_finds_the_csv_in_the_run_folder(tmp_path, capsys, monkeypatch):
    folder = fake_run(tmp_path, dev_accuracy=0.8)
    (folder / "errors.csv").write_text("split,index,true,predicted,probability,category\n"
                                       "dev,0,1,2,0.9,\n")
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "eval", folder, "--errors-summary", "errors.csv")
    assert code == 0
    assert "  untagged: 1 of 1 errors (100%): no category yet" in out
    assert "no row is tagged yet" in out


def test_tags():
    assert split_tags(" Blurry ;dog|dog, great cat ") == ["blurry", "dog", "great cat"]
    assert split_tags("  ") == []


@pytest.mark.parametrize(("text", "words"), [
    (None, ["not found"]),
    ("a,b\n1,2\n", ["not an errors.csv", "split or category"]),
    ("split,index,true,predicted,probability,category\n", ["no rows"]),
    ("split,index,true,predicted,probability,category\ntest,0,1,2,0.9,x\n",
     ["test rows", "no test split", "train, dev"]),
    ("split,index,true,predicted,probability,category\ndev,0,1,2,0.9,x,extra\n",
     ["line 2", "more cells"]),
    ("split,index,true,predicted,probability,category\ndev,0,1\n", ["line 2", "fewer cells"]),
    (b"split,category\n\xff\xfe,x\n", ["cannot read"]),
])
def test_a_bad_csv_is_one_line(tmp_path, capsys, text, words):
    folder = fake_run(tmp_path)
    path = tmp_path / "tags.csv"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    code, out, err = run(capsys, "eval", folder, "--errors-summary", path)
    assert code == 1 and out == ""
    line = one_line_error(err)
    for word in words:
        assert word in line


def test_class_names_of_an_image_folder(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog", "horse"]):
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        for i in range(20):
            pixels = rng.random((6, 6, 3)) * 255 * (0.4 + 0.3 * c)
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    spec = tmp_path / "pets.net"
    spec.write_text('net pets\ninput 6x6x3\nfc 3 -> softmax 3\ntrain {\n  data "data"\n'
                    "  split 0.5 0.5 0\n  normalize standard\n  epochs 1\n}\n")
    assert cli.main(["train", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    code, _, err = run(capsys, "eval", tmp_path / "run", "--errors", 50)
    assert code == 0, err
    rows = read_csv(tmp_path / "run" / "errors.csv")
    assert rows, "one epoch of a 3-class net on noise should get some dev examples wrong"
    assert {r["true"] for r in rows} | {r["predicted"] for r in rows} <= {"cat", "dog", "horse"}
    assert all(r["true"] != r["predicted"] for r in rows)
    assert (tmp_path / "run" / "errors.png").stat().st_size > 1000
