"""The course's own data files, side by side: `data "train_catvnoncat.h5"
test="test_catvnoncat.h5"` (or `dev=`). The files written here have exactly the course's
layout: train_set_x / test_set_x uint8 (m, 64, 64, 3), train_set_y / test_set_y int (m,),
list_classes bytes [b'non-cat', b'cat'] in both. The class names flow to run.json, netc
eval, netc predict and the error analysis."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import one_error_line, run_cli, write_spec
from netc.runtime.data import DataError, load_source, make_splits
from PIL import Image

CLASSES = np.array([b"non-cat", b"cat"])
M_TRAIN, M_TEST = 40, 12


def _pictures(rng, m):
    """Noise pictures; cats (y=1) are redder, so a logistic regression can learn them."""
    y = np.arange(m) % 2
    rng.shuffle(y)
    x = rng.integers(0, 160, size=(m, 64, 64, 3))
    x[..., 0] += 90 * y[:, None, None]
    return x.astype(np.uint8), y.astype(np.int64)


def course_files(folder: Path, seed: int = 0) -> dict:
    """train_catvnoncat.h5 and test_catvnoncat.h5 in `folder`, as the course ships them
    (two test labels flipped: mislabeled pictures, so the error analysis finds some)."""
    rng = np.random.default_rng(seed)
    train_x, train_y = _pictures(rng, M_TRAIN)
    test_x, test_y = _pictures(rng, M_TEST)
    test_y[:2] = 1 - test_y[:2]
    with h5py.File(folder / "train_catvnoncat.h5", "w") as f:
        f["train_set_x"], f["train_set_y"], f["list_classes"] = train_x, train_y, CLASSES
    with h5py.File(folder / "test_catvnoncat.h5", "w") as f:
        f["test_set_x"], f["test_set_y"], f["list_classes"] = test_x, test_y, CLASSES
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


def test_the_course_files_load_as_train_and_test(tmp_path):
    files = course_files(tmp_path)
    arrays = load_source("train_catvnoncat.h5", {"test": "test_catvnoncat.h5"},
                         base_dir=tmp_path)
    assert set(arrays) == {"x", "y", "x_test", "y_test", "class_names"}
    np.testing.assert_allclose(arrays["x"], files["train_x"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(arrays["y"], files["train_y"])
    np.testing.assert_allclose(arrays["x_test"], files["test_x"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(arrays["y_test"], files["test_y"])
    assert arrays["class_names"].tolist() == ["non-cat", "cat"]
    splits = make_splits(arrays, split=(1, 0, 0))
    assert (len(splits.train), splits.dev, len(splits.test)) == (M_TRAIN, None, M_TEST)
    assert splits.class_names == ("non-cat", "cat")
    # dev= instead: the test file's pictures become the dev split
    arrays = load_source("train_catvnoncat.h5", {"dev": "test_catvnoncat.h5"},
                         base_dir=tmp_path)
    np.testing.assert_array_equal(arrays["y_dev"], files["test_y"])
    assert "x_test" not in arrays
    # the test file alone is no training data
    with pytest.raises(DataError, match=r"^data file 'test_catvnoncat\.h5' needs arrays 'x' "
                       r"and 'y'; found: list_classes, test_set_x, test_set_y$"):
        load_source("test_catvnoncat.h5", {}, base_dir=tmp_path)


def test_split_files_of_other_kinds_and_their_errors(tmp_path):
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    np.savez(tmp_path / "train.npz", x=x, y=np.arange(6) % 2)
    np.savez(tmp_path / "more.npz", x=x[:2] + 100, y=[1, 0])
    np.savez(tmp_path / "own.npz", x=x, y=np.zeros(6), x_test=x[:1] + 7, y_test=[1],
             x_dev=x[:3], y_dev=[0, 0, 0])
    (tmp_path / "dev.csv").write_text("a,b,c,d,label\n1,2,3,4,1\n5,6,7,8,0\n9,9,9,9,1\n")
    arrays = load_source("train.npz", {"test": "more.npz", "dev": "own.npz"}, base_dir=tmp_path)
    np.testing.assert_array_equal(arrays["x_test"], x[:2] + 100)  # its x, y
    np.testing.assert_array_equal(arrays["x_dev"], x[:3])  # its own dev arrays, before x, y
    arrays = load_source("dev.csv", {"test": "dev.csv", "label": "label"}, base_dir=tmp_path)
    assert arrays["x_test"].shape == (3, 4) and arrays["y_test"].ravel().tolist() == [1, 0, 1]

    def error(source, **options):
        with pytest.raises(DataError) as caught:
            load_source(source, options, base_dir=tmp_path)
        return str(caught.value)

    assert error("train.npz", test="missing.h5").startswith(
        "test file 'missing.h5' not found (looked in ")
    assert error("own.npz", test="more.npz") == (
        "data file 'own.npz' brings its own test split (x_test, y_test) and "
        'test="more.npz" names another; keep one')
    np.savez(tmp_path / "bare.npz", images=x)
    assert error("train.npz", dev="bare.npz") == (
        "dev file 'bare.npz' needs arrays 'x_dev' and 'y_dev' (or 'x' and 'y'); found: images")
    assert error("moons", test="more.npz") == (
        "test= names the test split's own file, for data read from a file; 'moons' is not one")
    assert error("train.npz", test="dev.csv", label="label").startswith(
        "unknown option 'label' for data file 'train.npz'")  # options go to every file


def _image_folder(root: Path, classes, seed=0):
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_a_test_folder_missing_a_class_keeps_the_train_folders_class_ids(tmp_path):
    _image_folder(tmp_path / "train", ["cat", "dog", "fox"])
    _image_folder(tmp_path / "test", ["cat", "fox"])  # sorted alone, fox would be class 1
    arrays = load_source("train", {"test": "test"}, base_dir=tmp_path)
    assert arrays["class_names"].tolist() == ["cat", "dog", "fox"]
    assert arrays["y_test"].tolist() == [0, 0, 2, 2]
    _image_folder(tmp_path / "other", ["cat", "wolf"])
    with pytest.raises(DataError, match=r"^class 'wolf' of 'other' is not a class of 'train' "
                       r"\(cat, dog, fox\)$"):
        load_source("train", {"dev": "other"}, base_dir=tmp_path)


def test_the_checker_wants_quoted_paths(tmp_path):
    body = "input 64x64x3\nsigmoid 1\ntrain {{\n  {data}\n}}\n"
    ok = write_spec(tmp_path, body.format(data='data "train.h5" test="test.h5" dev="d.h5"'))
    code, out, err = run_cli("check", ok, "--json")
    assert code == 0, err  # the files need not exist to check the spec
    for data, column in (('data "train.h5" test=test_h5', 19), ('data "train.h5" dev=1', 19)):
        bad = write_spec(tmp_path, body.format(data=data), "bad.net")
        code, out, _ = run_cli("check", bad, "--json")
        assert code == 1
        (problem,) = json.loads(out)["errors"]
        assert (problem["line"], problem["col"]) == (4, column)
        assert "expects a quoted file path" in problem["message"]
    # --set data.test="..." adds the option to the spec's data line
    from netc.compiler.check import check_source
    from netc.compiler.overrides import apply_overrides

    text = apply_overrides(body.format(data='data "train.h5"'), ['data.test="test.h5"'])
    assert check_source(text, "spec").train.data.options == {"path": "train.h5",
                                                             "test": "test.h5"}


# ---- a run on the course's files ---------------------------------------------------------------

CAT_SPEC = """net catvnoncat
input 64x64x3
sigmoid 1
train {{
  data "train_catvnoncat.h5" {split_file}
  split {split}
  optimizer adam lr=0.002
  batch full
  epochs 15
}}
"""


@pytest.fixture(scope="module")
def cat_run(tmp_path_factory) -> Path:
    """The course's logistic regression (week 2) on the two files: trained on all of the
    train file, tested on the test file."""
    folder = tmp_path_factory.mktemp("cats")
    course_files(folder)
    spec = write_spec(folder, CAT_SPEC.format(split_file='test="test_catvnoncat.h5"',
                                              split="1 0 0"))
    code, _, err = run_cli("train", spec, "--out", folder / "run", "--quiet")
    assert code == 0, err
    return folder / "run"


def test_run_json_has_the_test_files_examples_and_the_class_names(cat_run):
    info = json.loads((cat_run / "run.json").read_text())
    assert info["examples"] == {"train": M_TRAIN, "test": M_TEST}
    assert info["class_names"] == ["non-cat", "cat"]
    assert set(info["final"]) == {"train", "test"}
    assert info["final"]["train"]["accuracy"] > 0.9
    assert "task_accuracy" not in info["final"]["test"]  # one output: no tasks


def test_the_test_split_is_the_test_file(cat_run):
    """netc eval's test figures are those of the test file's pictures, recomputed here."""
    import netc

    with h5py.File(cat_run.parent / "test_catvnoncat.h5") as f:
        x = f["test_set_x"][()] / 255.0
        y = f["test_set_y"][()]
    model, variables = netc.load(str(cat_run))
    predicted = (np.asarray(model.apply(variables, x.astype(np.float32)))[:, 0] > 0.5)
    code, out, _ = run_cli("eval", cat_run, "--json")
    assert code == 0
    report = json.loads(out)
    test = report["splits"]["test"]
    assert test["examples"] == M_TEST
    assert test["accuracy"] == pytest.approx(np.mean(predicted == y))
    assert report["class_names"] == ["non-cat", "cat"]
    assert [row["name"] for row in test["per_class"]] == ["non-cat", "cat"]
    assert [row["support"] for row in test["per_class"]] == [int((y == 0).sum()),
                                                             int((y == 1).sum())]
    code, out, _ = run_cli("eval", cat_run)
    assert code == 0 and "1 cat" in out and "0 non-cat" in out


def test_predict_writes_the_class_names(cat_run, tmp_path):
    source = cat_run.parent / "test_catvnoncat.h5"  # predict reads test_set_x
    code, _, err = run_cli("predict", cat_run, source, "--out", tmp_path / "p.npz")
    assert code == 0, err
    with np.load(tmp_path / "p.npz") as pred:
        classes, names, outputs = pred["classes"], pred["names"], pred["outputs"]
    assert classes.shape == names.shape == (M_TEST,)
    assert names.tolist() == [["non-cat", "cat"][c] for c in classes]
    np.testing.assert_array_equal(classes, outputs[:, 0] > 0.5)
    code, _, err = run_cli("predict", cat_run, source, "--out", tmp_path / "p.csv")
    assert code == 0, err
    with open(tmp_path / "p.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["output", "class", "name"] and len(rows) == M_TEST + 1
    for row, c, p in zip(rows[1:], classes, outputs[:, 0]):
        assert (float(row[0]), int(row[1]), row[2]) == (pytest.approx(p, rel=1e-6), c,
                                                         ["non-cat", "cat"][c])


def test_predict_resizes_a_picture_to_the_nets_input(cat_run, tmp_path):
    """A photo of another size is read as the net's 64x64 RGB input (bilinear, as training
    resizes an image folder): the same predictions as the resized picture in an .npz."""
    photo = np.random.default_rng(3).integers(0, 256, size=(90, 120, 4), dtype=np.uint8)
    Image.fromarray(photo, "RGBA").save(tmp_path / "photo.png")
    with Image.open(tmp_path / "photo.png") as image:
        small = image.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR)
    np.savez(tmp_path / "small.npz", x=np.asarray(small)[None])
    for name in ("photo.png", "small.npz"):
        code, _, err = run_cli("predict", cat_run, tmp_path / name, "--out",
                               tmp_path / f"{name}.npz")
        assert code == 0, err
    with np.load(tmp_path / "photo.png.npz") as got, np.load(tmp_path / "small.npz.npz") as want:
        np.testing.assert_allclose(got["outputs"], want["outputs"], rtol=1e-5)
        assert got["names"].tolist() == want["names"].tolist()


def test_the_error_analysis_names_the_classes(cat_run, tmp_path):
    code, _, err = run_cli("eval", cat_run, "--errors", 20, "--out", tmp_path)
    assert code == 0, err
    with open(tmp_path / "errors.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows, "two test labels are flipped: some test pictures are wrong"
    assert {r["split"] for r in rows} == {"test"}
    assert all({r["true"], r["predicted"]} == {"cat", "non-cat"} for r in rows)
    assert (tmp_path / "errors.png").stat().st_size > 1000


@pytest.mark.parametrize(("split_file", "split", "examples"), [
    ('dev="test_catvnoncat.h5"', "1 0 0", {"train": M_TRAIN, "dev": M_TEST}),
    # the test file replaces the test fraction; dev is cut from the train file (4 of 40)
    ('test="test_catvnoncat.h5"', "0.8 0.1 0.1", {"train": 36, "dev": 4, "test": M_TEST}),
])
def test_other_ways_to_name_the_test_file(tmp_path, split_file, split, examples):
    course_files(tmp_path)
    spec = write_spec(tmp_path, CAT_SPEC.format(split_file=split_file, split=split)
                      .replace("epochs 15", "epochs 1"))
    code, _, err = run_cli("train", spec, "--out", tmp_path / "run", "--quiet")
    assert code == 0, err
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["examples"] == examples


def test_a_missing_test_file_is_a_data_error_naming_it(tmp_path):
    course_files(tmp_path)
    spec = write_spec(tmp_path, CAT_SPEC.format(split_file='test="test_cats.h5"', split="1 0 0"))
    code, _, err = run_cli("train", spec, "--out", tmp_path / "run", "--quiet")
    assert code == 1
    assert one_error_line(err).startswith(
        "netc: error: data: test file 'test_cats.h5' not found (looked in ")


def test_csv_files_with_words_as_labels(tmp_path):
    """A train and a test csv whose label column holds words (LANGUAGE.md section 7): the
    classes are the train file's sorted words; the test file's own sorted ids (it has no
    'bird') are renumbered to them; the names reach run.json and netc eval."""
    rng = np.random.default_rng(0)

    def table(path, kinds, m):
        lines = ["w,h,kind"]
        for i in range(m):
            kind = kinds[i % len(kinds)]
            centre = {"bird": 0, "cat": 5, "dog": 10}[kind]
            lines.append(f"{centre + rng.normal():.3f},{rng.normal():.3f},{kind}")
        path.write_text("\n".join(lines) + "\n")
    table(tmp_path / "train.csv", ["dog", "cat", "bird"], 60)
    table(tmp_path / "test.csv", ["dog", "cat"], 10)
    spec = write_spec(tmp_path, 'input 2\nsoftmax 3\ntrain {\n  data "train.csv" '
                      'test="test.csv"\n  split 1 0 0\n  normalize standard\n'
                      '  optimizer adam lr=0.1\n  epochs 60\n}\n')
    code, _, err = run_cli("train", spec, "--out", tmp_path / "run", "--quiet")
    assert code == 0, err
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["class_names"] == ["bird", "cat", "dog"]
    assert info["examples"] == {"train": 60, "test": 10}
    code, out, _ = run_cli("eval", tmp_path / "run", "--json")
    assert code == 0
    test = json.loads(out)["splits"]["test"]
    assert [(r["name"], r["support"]) for r in test["per_class"]] == [("bird", 0), ("cat", 5),
                                                                       ("dog", 5)]
    assert test["accuracy"] >= 0.8
