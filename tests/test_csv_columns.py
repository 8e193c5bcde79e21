"""Csv files as users write them (issue #15): columns of categories expanded one-hot with
`onehot=COL,...` (checked against scikit-learn's OneHotEncoder), missing values named by
row and column, and the same expansion applied to a split's own file and to new inputs
(`load_inputs`, what `netc predict` reads)."""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest
from conftest import one_error_line, run_cli, write_spec
from netc.compiler.check import check_source
from netc.compiler.overrides import apply_overrides
from netc.runtime.data import load_source, make_splits
from netc.runtime.data_base import DataError
from netc.runtime.data_inputs import load_inputs
from PIL import Image
from sklearn.preprocessing import OneHotEncoder

ROWS = [  # w, color, h, size, kind
    ("1.5", "red", "2", "S", "dog"),
    ("3", "blue", "4", "M", "cat"),
    ("5", "red", "6", "L", "dog"),
    ("7", "green", "8", "M", "bird"),
    ("9", "blue", "10", "S", "cat"),
    ("11", "red", "12", "L", "bird"),
]
HEADER = ("w", "color", "h", "size", "kind")


def write_csv(path, rows, header=HEADER):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def reference(rows, categorical=(1, 3), label=4, categories="auto"):
    """The features as scikit-learn expands them: each categorical column replaced, in its
    place, by its OneHotEncoder columns."""
    table = np.asarray(rows, dtype=object)
    blocks = []
    for j in range(table.shape[1]):
        if j == label:
            continue
        if j in categorical:
            cats = "auto" if categories == "auto" else [categories[j]]
            encoder = OneHotEncoder(categories=cats, sparse_output=False)
            blocks.append(encoder.fit_transform(table[:, [j]].astype(str)))
        else:
            blocks.append(table[:, [j]].astype(np.float64))
    return np.concatenate(blocks, axis=1).astype(np.float32)


def test_onehot_columns_by_name_match_sklearn(tmp_path):
    write_csv(tmp_path / "d.csv", ROWS)
    arrays = load_source("d.csv", {"onehot": "color,size"}, base_dir=tmp_path)
    np.testing.assert_array_equal(arrays["x"], reference(ROWS))
    assert arrays["x"].dtype == np.float32
    assert arrays["class_names"].tolist() == ["bird", "cat", "dog"]
    layout = arrays["csv_layout"]
    assert layout["onehot"] == {"color": ["blue", "green", "red"], "size": ["L", "M", "S"]}
    assert layout["features"] == ["w", "color=blue", "color=green", "color=red", "h",
                                  "size=L", "size=M", "size=S"]
    assert (layout["columns"], layout["label"], layout["n_columns"]) == (list(HEADER), 4, 5)
    json.dumps(layout)  # run.json records it as it is


def test_onehot_by_index_without_header_and_numeric_categories(tmp_path):
    rows = [("10", "1", "0"), ("9", "2", "1"), ("10", "3", "0"), ("2", "4", "1")]
    write_csv(tmp_path / "n.csv", rows, header=None)
    arrays = load_source("n.csv", {"onehot": 0}, base_dir=tmp_path)
    # numbers sort as numbers: 2, 9, 10 (not "10" < "2" < "9" as text)
    assert arrays["csv_layout"]["onehot"] == {"0": ["2", "9", "10"]}
    expected = reference(rows, categorical=(0,), label=2,
                         categories={0: ["2", "9", "10"]})
    np.testing.assert_array_equal(arrays["x"], expected)
    np.testing.assert_array_equal(arrays["y"], [[0], [1], [0], [1]])
    same = load_source("n.csv", {"onehot": "0"}, base_dir=tmp_path)  # as `onehot="0"`
    np.testing.assert_array_equal(same["x"], arrays["x"])


@pytest.mark.parametrize(("text", "options", "words"), [
    # a word in a numeric feature column: the hint names the option
    ("w,color,kind\n1,red,a\n2,blue,b\n", {}, [
        "csv file 'd.csv' row 2, column 'color': 'red' is not a number",
        "add onehot=color to the data line"]),
    ("w,my color,kind\n1,red,a\n2,blue,b\n", {}, ['onehot="my color"']),
    # missing values, in feature and label columns
    ("w,h,kind\n1,2,a\n,3,b\n", {}, ["row 3, column 'w': missing value"]),
    ("w,h,kind\n1,2,a\n5,NA,b\n", {}, ["row 3, column 'h': missing value ('NA')"]),
    ("1,2,0\n3,nan,1\n", {}, ["row 2, column 1: missing value ('nan')"]),
    ("w,h,kind\n1,inf,a\n2,3,b\n", {}, ["row 2, column 'h': 'inf' is not a finite number"]),
    ("w,color,kind\n1,red,a\n2,,b\n", {"onehot": "color"},
     ["row 3, column 'color': missing value"]),
    ("w,h,v\n1,2,0.5\n2,3,\n", {}, ["row 3, column 'v': no label"]),
    ("w,h,v\n1,2,0\n2,3,NA\n3,4,1\n", {}, ["row 3, column 'v': no label ('NA')$"]),
    ("w,kind\n1,cat\n2,?\n3,dog\n", {},
     ["row 3, column 'kind': no label ('?') (the column holds class names)$"]),
    # onehot= itself
    ("w,color,kind\n1,red,a\n2,blue,b\n", {"onehot": "colour"},
     ["onehot column 'colour' not found", "columns: w, color, kind"]),
    ("w,color,kind\n1,red,a\n2,blue,b\n", {"onehot": "kind"},
     ["column 'kind' of csv file 'd.csv' is the label"]),
    ("1,red,0\n2,blue,1\n", {"onehot": "color"}, ["no header row, so onehot='color'"]),
    ("1,red,0\n2,blue,1\n", {"onehot": 7}, ["onehot column 7 out of range"]),
    # what the csv module itself cannot read: a field over its 131072 characters
    ("w,h,kind\n1,2,a\n" + "9" * 200_000 + ",3,b\n", {},
     ["cannot read csv file 'd.csv' at line 3: field larger than field limit (131072)$"]),
])
def test_csv_errors_name_the_row_and_column(tmp_path, text, options, words):
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(DataError) as error:
        load_source("d.csv", options, base_dir=tmp_path)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word.removesuffix("$") in message
        assert not word.endswith("$") or message.endswith(word[:-1])


def test_onehot_is_a_csv_option_only(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 2)), y=np.zeros(2))
    with pytest.raises(DataError, match=r"unknown option 'onehot' for data file 'd\.npz'"):
        load_source("d.npz", {"onehot": "a"}, base_dir=tmp_path)


def test_a_split_file_expands_to_the_main_files_categories(tmp_path):
    write_csv(tmp_path / "train.csv", ROWS)
    test_rows = [("2", "green", "3", "S", "cat"), ("4", "green", "5", "M", "dog")]
    write_csv(tmp_path / "test.csv", test_rows)  # neither blue nor red, no L
    options = {"onehot": "color,size", "test": "test.csv"}
    arrays = load_source("train.csv", options, base_dir=tmp_path)
    train_categories = {1: ["blue", "green", "red"], 3: ["L", "M", "S"]}
    np.testing.assert_array_equal(arrays["x_test"],
                                  reference(test_rows, categories=train_categories))
    assert arrays["y_test"].tolist() == [1, 2]  # renumbered by name: bird, cat, dog
    splits = make_splits(arrays, split=(1, 0, 0))
    assert splits.test.x.shape[1] == splits.train.x.shape[1] == 8
    write_csv(tmp_path / "odd.csv", [("2", "purple", "3", "S", "cat")])
    with pytest.raises(DataError, match=r"csv file 'odd\.csv' row 2, column 'color': "
                       r"'purple' is not one of the column's categories in the training "
                       r"data \(blue, green, red\)"):
        load_source("train.csv", {**options, "test": "odd.csv"}, base_dir=tmp_path)


# ---------------------------------------------------------------- new inputs (predict)


@pytest.fixture
def layout(tmp_path):
    write_csv(tmp_path / "train.csv", ROWS)
    return load_source("train.csv", {"onehot": "color,size"}, base_dir=tmp_path)


def test_csv_inputs_take_the_training_layout(tmp_path, layout):
    expected = layout["x"]
    same = [row[:4] for row in ROWS]  # no label column
    cases = {
        "with_label.csv": (ROWS, HEADER),
        "without_label.csv": (same, HEADER[:4]),
        "no_header.csv": (same, None),
        "no_header_with_label.csv": (ROWS, None),
        # by name, in another order, the label left out
        "reordered.csv": ([(r[3], r[2], r[1], r[0]) for r in ROWS], HEADER[3::-1]),
    }
    for name, (rows, header) in cases.items():
        write_csv(tmp_path / name, rows, header)
        x = load_inputs(tmp_path / name, name, {}, layout["csv_layout"])
        np.testing.assert_array_equal(x, expected, err_msg=name)
    write_csv(tmp_path / "new.csv", [("1", "red", "2", "XL")], HEADER[:4])
    with pytest.raises(DataError, match=r"^csv file 'new\.csv' row 2, column 'size': 'XL' is "
                       r"not one of the column's categories in the training data "
                       r"\(L, M, S\)$"):
        load_inputs(tmp_path / "new.csv", "new.csv", {}, layout["csv_layout"])
    write_csv(tmp_path / "short.csv", [("1", "red", "2")], None)
    with pytest.raises(DataError, match=r"has 3 columns but the run's data had 5 \(4 "
                       r"features and a label column\)"):
        load_inputs(tmp_path / "short.csv", "short.csv", {}, layout["csv_layout"])
    write_csv(tmp_path / "renamed.csv", [("1", "red", "2", "S")], ("w", "colour", "h", "size"))
    with pytest.raises(DataError, match=r"has no column 'color'; the run's data had the "
                       r"features w, color, h, size"):
        load_inputs(tmp_path / "renamed.csv", "renamed.csv", {}, layout["csv_layout"])


def test_inputs_of_other_files_are_read_as_in_training(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, 4, 5, 3), dtype=np.uint8)
    as_training = load_source("d.npz", {}, base_dir=_npz(tmp_path, pixels))["x"]
    np.testing.assert_array_equal(load_inputs(tmp_path / "d.npz", "d.npz"), as_training)
    np.save(tmp_path / "d.npy", pixels)
    np.testing.assert_array_equal(load_inputs(tmp_path / "d.npy", "d.npy"), as_training)
    with h5py.File(tmp_path / "test_course.h5", "w") as f:  # the course's test file
        f["test_set_x"], f["test_set_y"] = pixels, np.array([0, 1, 1])
    np.testing.assert_array_equal(load_inputs(tmp_path / "test_course.h5", "t.h5"),
                                  as_training)
    np.savez(tmp_path / "two.npz", x_dev=pixels, x_test=pixels)
    with pytest.raises(DataError, match="holds x_test and x_dev: name the inputs x"):
        load_inputs(tmp_path / "two.npz", "two.npz")
    np.savez(tmp_path / "none.npz", y=np.zeros(3))
    with pytest.raises(DataError, match=r"'none\.npz' has no inputs 'x' \(found: y\)"):
        load_inputs(tmp_path / "none.npz", "none.npz")
    with pytest.raises(DataError, match=r"input 'gone\.npz' not found"):
        load_inputs(tmp_path / "gone.npz", "gone.npz")
    # a run not trained on a csv file: every column is a feature, a header or not
    (tmp_path / "plain.csv").write_text("a,b\n1,2\n3,4.5\n")
    (tmp_path / "bare.csv").write_text("1,2\n3,4.5\n")
    for name in ("plain.csv", "bare.csv"):
        np.testing.assert_array_equal(load_inputs(tmp_path / name, name), [[1, 2], [3, 4.5]])
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match=r"^cannot read inputs 'bad\.npy'"):
        load_inputs(tmp_path / "bad.npy", "bad.npy")


def _npz(tmp_path, pixels):
    np.savez(tmp_path / "d.npz", x=pixels, y=np.array([0, 1, 1]))
    return tmp_path


def test_an_image_is_read_with_the_runs_size_and_mode(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "one.png")
    x = load_inputs(tmp_path / "one.png", "one.png", {"size": "3x4", "mode": "gray"})
    with Image.open(tmp_path / "one.png") as image:
        want = image.convert("L").resize((4, 3), Image.Resampling.BILINEAR)
    assert x.shape == (1, 3, 4, 1)
    np.testing.assert_allclose(x[0, ..., 0], np.asarray(want, np.float32) / 255, atol=1e-7)
    np.testing.assert_allclose(load_inputs(tmp_path / "one.png", "one.png")[0], rgb / 255,
                               atol=1e-7)
    # a folder of images as training reads one (class subfolders)
    (tmp_path / "folder" / "a").mkdir(parents=True)
    Image.fromarray(rgb).save(tmp_path / "folder" / "a" / "p.png")
    folder = load_inputs(tmp_path / "folder", "folder", {"size": "3x4", "mode": "L"})
    np.testing.assert_array_equal(folder, x)
    # ... or a folder of the images themselves, in name order
    (tmp_path / "flat").mkdir()
    Image.fromarray(rgb).save(tmp_path / "flat" / "b.png")
    Image.fromarray(rgb[::-1]).save(tmp_path / "flat" / "a.png")
    flat = load_inputs(tmp_path / "flat", "flat")
    np.testing.assert_allclose(flat, np.stack([rgb[::-1], rgb]) / 255, atol=1e-7)
    Image.fromarray(rgb[:5]).save(tmp_path / "flat" / "c.png")
    with pytest.raises(DataError, match=r"images in 'flat' differ in size; give size=HxW"):
        load_inputs(tmp_path / "flat", "flat")
    assert load_inputs(tmp_path / "flat", "flat", {"size": "2x2"}).shape == (3, 2, 2, 3)


# ---------------------------------------------------------------------- train and predict

SPEC = """net shop
input {features}
fc 8 -> relu -> softmax 3
train {{
  data "train.csv" onehot=color,size
  split 1 0 0
  epochs 3
}}
"""


def test_train_and_predict_with_onehot_columns(tmp_path):
    write_csv(tmp_path / "train.csv", ROWS)
    write_spec(tmp_path, SPEC.format(features=8), "shop.net")
    run = tmp_path / "run"
    code, _, err = run_cli("train", tmp_path / "shop.net", "--out", run, "--quiet")
    assert code == 0, err
    info = json.loads((run / "run.json").read_text())
    assert info["class_names"] == ["bird", "cat", "dog"]
    assert info["csv_layout"]["onehot"] == {"color": ["blue", "green", "red"],
                                            "size": ["L", "M", "S"]}
    # the reference: the same examples, expanded by scikit-learn, given as an .npz
    np.savez(tmp_path / "x.npz", x=reference(ROWS))
    code, _, err = run_cli("predict", run, tmp_path / "x.npz", "--out", tmp_path / "p.npz")
    assert code == 0, err
    write_csv(tmp_path / "new.csv", [row[:4] for row in ROWS], HEADER[:4])
    code, _, err = run_cli("predict", run, tmp_path / "new.csv", "--out", tmp_path / "p.csv")
    assert code == 0, err
    with np.load(tmp_path / "p.npz") as want:
        outputs, classes = want["outputs"], want["classes"]
    with open(tmp_path / "p.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["bird", "cat", "dog", "class", "name"]
    np.testing.assert_allclose([[float(v) for v in r[:3]] for r in rows[1:]], outputs,
                               rtol=1e-6)
    assert [int(r[3]) for r in rows[1:]] == classes.tolist()
    assert [r[4] for r in rows[1:]] == [["bird", "cat", "dog"][c] for c in classes]
    write_csv(tmp_path / "odd.csv", [("1", "pink", "2", "S")], HEADER[:4])
    code, _, err = run_cli("predict", run, tmp_path / "odd.csv", "--out", tmp_path / "q.csv")
    assert code == 1 and not (tmp_path / "q.csv").exists()
    assert "row 2, column 'color': 'pink' is not one of" in one_error_line(err)


def test_a_word_in_a_feature_column_stops_train_with_the_hint(tmp_path):
    write_csv(tmp_path / "train.csv", ROWS)
    write_spec(tmp_path, SPEC.format(features=8).replace(" onehot=color,size", ""), "s.net")
    code, _, err = run_cli("train", tmp_path / "s.net", "--out", tmp_path / "run", "--quiet")
    assert code == 1
    assert "column 'color': 'red' is not a number" in one_error_line(err)
    assert "onehot=color" in err


def test_onehot_option_is_checked(tmp_path):
    spec = SPEC.format(features=8).replace("onehot=color,size", "onehot=1.5")
    write_spec(tmp_path, spec, "s.net")
    code, _, err = run_cli("check", tmp_path / "s.net")
    assert code != 0 and "onehot" in err
    write_spec(tmp_path, SPEC.format(features=8), "ok.net")
    assert run_cli("check", tmp_path / "ok.net")[0] == 0
    bare = SPEC.format(features=8).replace(" onehot=color,size", "")
    for override, value in (("data.onehot=color,size", "color,size"), ("data.onehot=2", 2)):
        options = check_source(apply_overrides(bare, [override]), "s").train.data.options
        assert options == {"path": "train.csv", "onehot": value}


def test_nan_and_none_labels(tmp_path):
    """`nan` is an unknown label (sigmoid outputs allow them); `none` may be a class."""
    (tmp_path / "s.csv").write_text("w,v\n1,0\n2,nan\n3,1\n")
    y = load_source("s.csv", {}, base_dir=tmp_path)["y"]
    assert y[0, 0] == 0 and np.isnan(y[1, 0]) and y[2, 0] == 1
    (tmp_path / "c.csv").write_text("w,pain\n1,none\n2,mild\n3,none\n")
    arrays = load_source("c.csv", {}, base_dir=tmp_path)
    assert arrays["class_names"].tolist() == ["mild", "none"]
    assert arrays["y"].tolist() == [1, 0, 1]
