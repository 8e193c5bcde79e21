"""Tests for netc.runtime.data: loading, splitting and preparing training data."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from conftest import run_python
from netc.runtime.data import (
    DataError,
    Dataset,
    Splits,
    apply_normalization,
    load_source,
    make_splits,
    prepare,
)
from PIL import Image
from sklearn.datasets import load_digits, make_circles, make_moons

# --------------------------------------------------------------------------------------------
# Built-in data sets
# --------------------------------------------------------------------------------------------


def test_module_does_not_import_jax():
    code = "import sys, netc.runtime.data; sys.exit('jax' in sys.modules)"
    proc = run_python("-c", code)
    assert proc.returncode == 0, proc.stderr


def test_moons_equals_sklearn():
    arrays = load_source("moons", {"n": 120, "noise": 0.3}, seed=7)
    x, y = make_moons(n_samples=120, noise=0.3, random_state=7)
    np.testing.assert_array_equal(arrays["x"], x.astype(np.float32))
    np.testing.assert_array_equal(arrays["y"], y.reshape(-1, 1).astype(np.float32))
    assert arrays["x"].dtype == np.float32 and arrays["y"].shape == (120, 1)


def test_moons_defaults_and_seed_option():
    arrays = load_source("moons", {}, seed=3)
    x, _ = make_moons(n_samples=300, noise=0.2, random_state=3)
    np.testing.assert_array_equal(arrays["x"], x.astype(np.float32))
    seeded = load_source("moons", {"seed": 11}, seed=3)
    x11, _ = make_moons(n_samples=300, noise=0.2, random_state=11)
    np.testing.assert_array_equal(seeded["x"], x11.astype(np.float32))


def test_options_given_as_strings_are_parsed():
    arrays = load_source("moons", {"n": "50", "noise": "0.1"}, seed=0)
    x, _ = make_moons(n_samples=50, noise=0.1, random_state=0)
    np.testing.assert_array_equal(arrays["x"], x.astype(np.float32))


def test_circles_equals_sklearn():
    arrays = load_source("circles", {"n": 80, "factor": 0.3}, seed=5)
    x, y = make_circles(n_samples=80, noise=0.05, factor=0.3, random_state=5)
    np.testing.assert_array_equal(arrays["x"], x.astype(np.float32))
    np.testing.assert_array_equal(arrays["y"], y.reshape(-1, 1).astype(np.float32))


@pytest.mark.parametrize(("n", "noise", "seed"), [(2, 0.0, 0), (7, 0.5, 1), (301, 0.1, 123)])
def test_numpy_generators_are_bit_identical_to_sklearn(n, noise, seed):
    moons = load_source("moons", {"n": n, "noise": noise}, seed=seed)
    x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    np.testing.assert_array_equal(moons["x"], x.astype(np.float32))
    np.testing.assert_array_equal(moons["y"][:, 0], y.astype(np.float32))
    circles = load_source("circles", {"n": n, "noise": noise, "factor": 0.7}, seed=seed)
    x, y = make_circles(n_samples=n, noise=noise, factor=0.7, random_state=seed)
    np.testing.assert_array_equal(circles["x"], x.astype(np.float32))
    np.testing.assert_array_equal(circles["y"][:, 0], y.astype(np.float32))


def _course_planar_dataset():
    """Transcription of load_planar_dataset() from the deep learning course (global RNG)."""
    np.random.seed(1)
    m = 400
    N = int(m / 2)
    D = 2
    X = np.zeros((m, D))
    Y = np.zeros((m, 1), dtype="uint8")
    a = 4
    for j in range(2):
        ix = range(N * j, N * (j + 1))
        t = np.linspace(j * 3.12, (j + 1) * 3.12, N) + np.random.randn(N) * 0.2
        r = a * np.sin(4 * t) + np.random.randn(N) * 0.2
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        Y[ix] = j
    X = X.T
    Y = Y.T
    return X, Y


def test_flower_equals_course_code():
    saved = np.random.get_state()
    try:
        X, Y = _course_planar_dataset()
    finally:
        np.random.set_state(saved)
    arrays = load_source("flower", {}, seed=123)  # the seed argument does not change it
    assert arrays["x"].shape == (400, 2) and arrays["y"].shape == (400, 1)
    np.testing.assert_array_equal(arrays["x"], X.T.astype(np.float32))
    np.testing.assert_array_equal(arrays["y"], Y.T.astype(np.float32))


def test_flower_leaves_global_random_state_alone():
    before = np.random.get_state()[1].copy()
    load_source("flower", {"n": 100, "petals": 3})
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_flower_seed_option_changes_it():
    a = load_source("flower", {"seed": 2})
    b = load_source("flower", {})
    assert not np.array_equal(a["x"], b["x"])


def test_digits_shape_and_range():
    arrays = load_source("digits", {})
    assert arrays["x"].shape == (1797, 8, 8, 1) and arrays["x"].dtype == np.float32
    assert arrays["x"].min() == 0.0 and arrays["x"].max() == 1.0
    assert arrays["y"].dtype == np.int32
    digits = load_digits()
    np.testing.assert_array_equal(arrays["y"], digits.target)
    np.testing.assert_array_equal(arrays["x"][..., 0], (digits.images / 16).astype(np.float32))


def test_digits_without_the_bundled_file_falls_back_to_sklearn(monkeypatch):
    import netc.runtime.data_builtin as data_module

    direct = load_source("digits", {})
    monkeypatch.setattr(data_module, "_sklearn_data_file", lambda name: None)
    via_sklearn = load_source("digits", {})
    np.testing.assert_array_equal(direct["x"], via_sklearn["x"])
    np.testing.assert_array_equal(direct["y"], via_sklearn["y"])


def test_unknown_builtin_suggests_close_name():
    with pytest.raises(
        DataError,
        match=r"^unknown data set 'mons'; built-in: moons, circles, flower, digits "
        r"\(did you mean moons\?\)$",
    ):
        load_source("mons", {})


def test_unknown_builtin_without_close_name():
    with pytest.raises(DataError, match=r"unknown data set 'zzz'; built-in: .*digits$"):
        load_source("zzz", {})


def test_unknown_builtin_option_names_allowed_ones():
    with pytest.raises(DataError, match=r"unknown option 'nosie'.*allowed options: n, noise, seed"):
        load_source("moons", {"nosie": 0.1})
    with pytest.raises(DataError, match=r"unknown option 'n' for .*'digits'.*none"):
        load_source("digits", {"n": 5})


def test_bad_option_value():
    with pytest.raises(DataError, match=r"option n='many' must be a whole number"):
        load_source("moons", {"n": "many"})


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"data file 'x\.npz' not found \(looked in .*x\.npz\)"):
        load_source("x.npz", {}, base_dir=tmp_path)


def test_unsupported_extension(tmp_path):
    (tmp_path / "data.txt").write_text("1,2\n")
    with pytest.raises(DataError, match=r"unsupported data file 'data\.txt'.*\.npz, \.csv"):
        load_source("data.txt", {}, base_dir=tmp_path)


def test_npz_round_trip_with_dev_and_test(tmp_path):
    rng = np.random.default_rng(0)
    stored = {
        "x": rng.normal(size=(10, 3)),
        "y": rng.integers(0, 2, size=10),
        "x_dev": rng.normal(size=(4, 3)),
        "y_dev": rng.integers(0, 2, size=4),
        "x_test": rng.normal(size=(5, 3)),
        "y_test": rng.integers(0, 2, size=5),
    }
    np.savez(tmp_path / "d.npz", **stored)
    arrays = load_source("d.npz", {}, base_dir=tmp_path)
    assert set(arrays) == set(stored)
    for key, value in stored.items():
        np.testing.assert_array_equal(arrays[key], value)
    # absolute paths ignore base_dir
    absolute = load_source(str(tmp_path / "d.npz"), {}, base_dir="/nonexistent")
    np.testing.assert_array_equal(absolute["x"], stored["x"])


def test_npz_missing_arrays_lists_found(tmp_path):
    np.savez(tmp_path / "d.npz", features=np.zeros((3, 2)), labels=np.zeros(3))
    with pytest.raises(DataError, match=r"needs arrays 'x' and 'y'; found: features, labels"):
        load_source("d.npz", {}, base_dir=tmp_path)


def test_npz_half_pair(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2)), y=np.zeros(3), x_dev=np.zeros((1, 2)))
    with pytest.raises(DataError, match=r"only one of 'x_dev' and 'y_dev'"):
        load_source("d.npz", {}, base_dir=tmp_path)


def test_npz_never_unpickles(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    with pytest.raises(DataError, match=r"^cannot read data file 'd\.npz': .*pickle"):
        load_source("d.npz", {}, base_dir=tmp_path)


def test_corrupt_npz_is_data_error(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match=r"^cannot read data file 'bad\.npz'"):
        load_source("bad.npz", {}, base_dir=tmp_path)


def test_csv_without_header_label_last(tmp_path):
    (tmp_path / "d.csv").write_text("1,2,0\n3,4.5,1\n-1,0,1\n")
    arrays = load_source("d.csv", {}, base_dir=tmp_path)
    np.testing.assert_array_equal(arrays["x"], [[1, 2], [3, 4.5], [-1, 0]])
    np.testing.assert_array_equal(arrays["y"], [[0], [1], [1]])
    assert arrays["x"].dtype == np.float32 and arrays["y"].dtype == np.float32


def test_csv_with_header_and_label_by_name(tmp_path):
    (tmp_path / "d.csv").write_text("price,size,rooms\n100,50,2\n200,80,3\n")
    arrays = load_source("d.csv", {"label": "price"}, base_dir=tmp_path)
    np.testing.assert_array_equal(arrays["x"], [[50, 2], [80, 3]])
    np.testing.assert_array_equal(arrays["y"], [[100], [200]])


def test_csv_label_by_index(tmp_path):
    (tmp_path / "d.csv").write_text("1,2,3\n4,5,6\n")
    arrays = load_source("d.csv", {"label": 1}, base_dir=tmp_path)
    np.testing.assert_array_equal(arrays["x"], [[1, 3], [4, 6]])
    np.testing.assert_array_equal(arrays["y"], [[2], [5]])
    as_text = load_source("d.csv", {"label": "0"}, base_dir=tmp_path)
    np.testing.assert_array_equal(as_text["y"], [[1], [4]])


def test_csv_non_numeric_cell(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,c\n1,2,3\n4,oops,6\n")
    with pytest.raises(DataError, match=r"csv file 'd\.csv' row 3, column 'b': 'oops' is not"):
        load_source("d.csv", {}, base_dir=tmp_path)


def test_csv_label_errors(tmp_path):
    (tmp_path / "h.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"label column 'c' not found.*columns: a, b"):
        load_source("h.csv", {"label": "c"}, base_dir=tmp_path)
    (tmp_path / "n.csv").write_text("1,2\n3,4\n")
    with pytest.raises(DataError, match=r"no header row, so label='a' must be a column index"):
        load_source("n.csv", {"label": "a"}, base_dir=tmp_path)
    with pytest.raises(DataError, match=r"label column 5 out of range"):
        load_source("n.csv", {"label": 5}, base_dir=tmp_path)


def test_csv_ragged_and_empty(tmp_path):
    (tmp_path / "r.csv").write_text("1,2,3\n4,5\n")
    with pytest.raises(DataError, match=r"row 2 has 2 columns, expected 3"):
        load_source("r.csv", {}, base_dir=tmp_path)
    (tmp_path / "e.csv").write_text("\n")
    with pytest.raises(DataError, match=r"csv file 'e\.csv' is empty"):
        load_source("e.csv", {}, base_dir=tmp_path)


def test_h5_plain_layout(tmp_path):
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    y = np.array([0, 1, 1, 0])
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"], f["y"] = x, y
        f["x_test"], f["y_test"] = x[:2], y[:2]
    arrays = load_source("d.h5", {}, base_dir=tmp_path)
    np.testing.assert_array_equal(arrays["x"], x)
    np.testing.assert_array_equal(arrays["y"], y)
    np.testing.assert_array_equal(arrays["x_test"], x[:2])
    assert "x_dev" not in arrays


def test_h5_course_layout(tmp_path):
    rng = np.random.default_rng(1)
    train_x = rng.integers(0, 256, size=(6, 64, 64, 3), dtype=np.uint8)
    train_y = rng.integers(0, 2, size=(1, 6))
    test_x = rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    test_y = np.array([1, 0])
    with h5py.File(tmp_path / "train_catvnoncat.hdf5", "w") as f:
        f["train_set_x"], f["train_set_y"] = train_x, train_y
        f["test_set_x"], f["test_set_y"] = test_x, test_y
        f["list_classes"] = np.array([b"non-cat", b"cat"])
    arrays = load_source("train_catvnoncat.hdf5", {}, base_dir=tmp_path)
    assert set(arrays) == {"x", "y", "x_test", "y_test", "class_names"}
    assert arrays["class_names"].tolist() == ["non-cat", "cat"]
    assert arrays["x"].dtype == np.float32
    np.testing.assert_allclose(arrays["x"], train_x / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(arrays["y"], train_y.reshape(6))
    np.testing.assert_allclose(arrays["x_test"], test_x / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(arrays["y_test"], test_y)
    splits = make_splits(arrays, split=(0.5, 0.5, 0.0), seed=0)
    assert len(splits.train) == 3 and len(splits.dev) == 3 and len(splits.test) == 2


def test_h5_unknown_layout_and_corrupt(tmp_path):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["images"] = np.zeros((2, 2))
    with pytest.raises(DataError, match=r"needs arrays 'x' and 'y'; found: images"):
        load_source("d.h5", {}, base_dir=tmp_path)
    (tmp_path / "bad.h5").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"^cannot read data file 'bad\.h5'"):
        load_source("bad.h5", {}, base_dir=tmp_path)


def _write_image(path, size, color, mode="RGB"):
    Image.new(mode, (size[1], size[0]), color).save(path)


def _image_folder(root, size=(4, 5)):
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    _write_image(root / "cat" / "a.png", size, (255, 0, 0))
    _write_image(root / "cat" / "b.png", size, (0, 255, 0))
    _write_image(root / "dog" / "c.png", size, (0, 0, 255))
    (root / "dog" / "notes.txt").write_text("ignored")
    return root


def test_image_folder(tmp_path):
    _image_folder(tmp_path / "pets")
    arrays = load_source("pets", {}, base_dir=tmp_path)
    assert arrays["x"].shape == (3, 4, 5, 3) and arrays["x"].dtype == np.float32
    np.testing.assert_array_equal(arrays["y"], np.array([0, 0, 1], dtype=np.int32))
    assert arrays["y"].dtype == np.int32
    assert list(arrays["class_names"]) == ["cat", "dog"]
    np.testing.assert_array_equal(arrays["x"][0, 0, 0], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(arrays["x"][2, 3, 4], [0.0, 0.0, 1.0])
    splits = make_splits(arrays, split=(1, 0, 0))
    assert splits.class_names == ("cat", "dog")


def test_image_folder_gray_and_resize(tmp_path):
    _image_folder(tmp_path / "pets")
    arrays = load_source("pets", {"mode": "gray", "size": "2x3"}, base_dir=tmp_path)
    assert arrays["x"].shape == (3, 2, 3, 1)
    expected_red = Image.new("RGB", (1, 1), (255, 0, 0)).convert("L").getpixel((0, 0)) / 255
    np.testing.assert_allclose(arrays["x"][0], expected_red, rtol=1e-6)


def test_image_folder_differing_sizes(tmp_path):
    root = _image_folder(tmp_path / "pets")
    _write_image(root / "dog" / "d.png", (6, 6), (0, 0, 0))
    with pytest.raises(
        DataError,
        match=r"images differ in size: 'pets/cat/a\.png' is 4x5 but 'pets/dog/d\.png' is 6x6",
    ):
        load_source("pets", {}, base_dir=tmp_path)
    arrays = load_source("pets", {"size": "4x5"}, base_dir=tmp_path)
    assert arrays["x"].shape == (4, 4, 5, 3)


def test_image_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"image folder 'empty' has no class subfolders"):
        load_source("empty", {}, base_dir=tmp_path)
    (tmp_path / "one" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match=r"class folder 'one/cls' has no images"):
        load_source("one", {}, base_dir=tmp_path)
    (tmp_path / "one" / "cls" / "x.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"^cannot read image 'one/cls/x\.png'"):
        load_source("one", {}, base_dir=tmp_path)
    with pytest.raises(DataError, match=r"option size='big' must look like HxW"):
        load_source("one", {"size": "big"}, base_dir=tmp_path)
    with pytest.raises(DataError, match=r"option mode='CMYK' must be RGB or L"):
        load_source("one", {"mode": "CMYK"}, base_dir=tmp_path)


# --------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------


def _arrays(m=100, features=2):
    x = np.arange(m * features, dtype=np.float32).reshape(m, features)
    return {"x": x, "y": np.arange(m) % 3}


def test_split_fractions_and_disjointness():
    splits = make_splits(_arrays(100), split=(0.7, 0.2, 0.1), seed=0)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (70, 20, 10)
    rows = np.concatenate([splits.train.x[:, 0], splits.dev.x[:, 0], splits.test.x[:, 0]])
    np.testing.assert_array_equal(np.sort(rows), np.arange(100) * 2)
    # labels travel with their rows
    for ds in splits.parts():
        np.testing.assert_array_equal(ds[1].y, (ds[1].x[:, 0] // 2) % 3)


def test_split_rounds_dev_and_test_down():
    splits = make_splits(_arrays(19), split=(0.8, 0.1, 0.1))
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (17, 1, 1)


def test_split_seed_determinism():
    a = make_splits(_arrays(), seed=4)
    b = make_splits(_arrays(), seed=4)
    c = make_splits(_arrays(), seed=5)
    np.testing.assert_array_equal(a.train.x, b.train.x)
    np.testing.assert_array_equal(a.test.y, b.test.y)
    assert not np.array_equal(a.train.x, c.train.x)
    order = np.random.default_rng(4).permutation(100)
    np.testing.assert_array_equal(a.train.x[:, 0], order[:80] * 2)


def test_split_all_train_keeps_order():
    splits = make_splits(_arrays(10), split=(1, 0, 0))
    assert splits.dev is None and splits.test is None
    np.testing.assert_array_equal(splits.train.x, _arrays(10)["x"])


def test_split_uses_brought_test_and_ratio_for_dev():
    arrays = _arrays(100)
    arrays["x_test"], arrays["y_test"] = np.zeros((7, 2)), np.zeros(7)
    splits = make_splits(arrays, split=(0.8, 0.2, 0.0))
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (80, 20, 7)
    splits = make_splits(arrays, split=(0.8, 0.1, 0.1))  # train:dev = 8:1
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (89, 11, 7)
    np.testing.assert_array_equal(splits.test.x, np.zeros((7, 2)))


def test_split_uses_brought_dev_and_test():
    arrays = _arrays(10)
    arrays.update(x_dev=np.ones((3, 2)), y_dev=np.ones(3), x_test=np.ones((0, 2)), y_test=[])
    splits = make_splits(arrays)
    assert len(splits.train) == 10 and len(splits.dev) == 3 and splits.test is None
    np.testing.assert_array_equal(splits.train.x, arrays["x"])


def test_split_errors():
    with pytest.raises(DataError, match=r"must sum to 1"):
        make_splits(_arrays(), split=(0.5, 0.1, 0.1))
    with pytest.raises(DataError, match=r"three non-negative fractions"):
        make_splits(_arrays(), split=(0.5, 0.5))
    with pytest.raises(DataError, match=r"x has 3 examples but y has 2"):
        make_splits({"x": np.zeros((3, 1)), "y": np.zeros(2)})


# --------------------------------------------------------------------------------------------
# Preparing for a net
# --------------------------------------------------------------------------------------------


def _splits(x, y, dev=None, test=None):
    return Splits(train=Dataset(np.asarray(x), np.asarray(y)), dev=dev, test=test, class_names=None)


def test_prepare_reshapes_flat_rows_to_images_and_back():
    x = np.arange(2 * 12, dtype=np.float64).reshape(2, 12)
    prepared, stats = prepare(
        _splits(x, [0, 1]), input_shape=(2, 2, 3), labels="classes", n_outputs=2
    )
    assert prepared.train.x.shape == (2, 2, 2, 3) and prepared.train.x.dtype == np.float32
    np.testing.assert_array_equal(prepared.train.x, x.reshape(2, 2, 2, 3))
    assert prepared.train.x.flags.c_contiguous
    assert stats == {"mean": None, "std": None}
    digits = make_splits(load_source("digits", {}), split=(1, 0, 0))
    flat, _ = prepare(digits, input_shape=(64,), labels="classes", n_outputs=10)
    np.testing.assert_array_equal(flat.train.x, load_digits().data / 16)


def test_prepare_shape_mismatch_messages():
    with pytest.raises(
        DataError,
        match=r"^data has 3 features per example but the net's input is 2 \(train split\)$",
    ):
        prepare(
            _splits(np.zeros((4, 3)), np.zeros(4)), input_shape=(2,), labels="binary", n_outputs=1
        )
    with pytest.raises(
        DataError,
        match=r"^data examples are 64x64x3 but the net's input is 32x32x1 \(train split\)$",
    ):
        prepare(
            _splits(np.zeros((1, 64, 64, 3)), [0]),
            input_shape=(32, 32, 1),
            labels="classes",
            n_outputs=2,
        )


def test_prepare_softmax_labels():
    x = np.zeros((3, 2))
    ids, _ = prepare(
        _splits(x, [[0.0], [2.0], [1.0]]), input_shape=(2,), labels="classes", n_outputs=3
    )
    assert ids.train.y.dtype == np.int32 and ids.train.y.shape == (3,)
    np.testing.assert_array_equal(ids.train.y, [0, 2, 1])
    one_hot = np.eye(3)[[0, 2, 1]]
    hot, _ = prepare(_splits(x, one_hot), input_shape=(2,), labels="classes", n_outputs=3)
    assert hot.train.y.dtype == np.float32
    np.testing.assert_array_equal(hot.train.y, one_hot)


def test_prepare_softmax_label_errors():
    y = np.zeros(20, dtype=np.int64)
    y[17] = 10
    with pytest.raises(
        DataError,
        match=r"^label 10 out of range for softmax 10 \(classes are 0\.\.9\) in train split, "
        r"row 17$",
    ):
        prepare(_splits(np.zeros((20, 2)), y), input_shape=(2,), labels="classes", n_outputs=10)
    with pytest.raises(
        DataError, match=r"class id 1\.5 is not a whole number in train split, row 1"
    ):
        prepare(_splits(np.zeros((2, 2)), [0, 1.5]), input_shape=(2,), labels="classes",
                n_outputs=3)
    with pytest.raises(DataError, match=r"y holds NaN in train split \(row 0\)"):
        prepare(
            _splits(np.zeros((2, 2)), [np.nan, 1]), input_shape=(2,), labels="classes", n_outputs=3
        )
    with pytest.raises(DataError, match=r"one-hot label row 1 in train split"):
        prepare(
            _splits(np.zeros((2, 2)), [[1, 0], [1, 1]]),
            input_shape=(2,),
            labels="classes",
            n_outputs=2,
        )


def test_prepare_sigmoid_labels():
    x = np.zeros((3, 2))
    single, _ = prepare(_splits(x, [0, 1, 1]), input_shape=(2,), labels="binary", n_outputs=1)
    assert single.train.y.shape == (3, 1) and single.train.y.dtype == np.float32
    multi_y = [[0, np.nan], [1, 1], [np.nan, 0]]
    multi, _ = prepare(_splits(x, multi_y), input_shape=(2,), labels="binary", n_outputs=2)
    np.testing.assert_array_equal(multi.train.y, np.array(multi_y, dtype=np.float32))
    with pytest.raises(DataError, match=r"sigmoid label 2 in train split, row 1 must be 0, 1"):
        prepare(_splits(x, [0, 2, 1]), input_shape=(2,), labels="binary", n_outputs=1)
    with pytest.raises(DataError, match=r"sigmoid 2 needs labels of shape \(m, 2\)"):
        prepare(_splits(x, [0, 1, 1]), input_shape=(2,), labels="binary", n_outputs=2)


def test_prepare_regression_targets():
    x = np.zeros((3, 2))
    out, _ = prepare(_splits(x, [1.5, 2, 3]), input_shape=(2,), labels="values", n_outputs=1)
    assert out.train.y.shape == (3, 1) and out.train.y.dtype == np.float32
    with pytest.raises(DataError, match=r"y holds NaN in train split \(row 2\)"):
        prepare(_splits(x, [1, 2, np.nan]), input_shape=(2,), labels="values", n_outputs=1)


def test_prepare_x_and_split_errors():
    x = np.zeros((5, 2))
    x[3, 1] = np.nan
    with pytest.raises(DataError, match=r"^x holds NaN in train split \(row 3\)$"):
        prepare(_splits(x, np.zeros(5)), input_shape=(2,), labels="values", n_outputs=1)
    x[3, 1] = np.inf
    with pytest.raises(DataError, match=r"^x holds inf in train split \(row 3\)$"):
        prepare(_splits(x, np.zeros(5)), input_shape=(2,), labels="values", n_outputs=1)
    with pytest.raises(DataError, match=r"^train split is empty$"):
        prepare(
            _splits(np.zeros((0, 2)), np.zeros(0)), input_shape=(2,), labels="values", n_outputs=1
        )
    dev = Dataset(np.zeros((2, 2)), np.zeros(3))
    with pytest.raises(DataError, match=r"x has 2 examples but y has 3 in dev split"):
        prepare(
            _splits(np.zeros((2, 2)), np.zeros(2), dev=dev),
            input_shape=(2,),
            labels="values",
            n_outputs=1,
        )
    with pytest.raises(DataError, match=r"unknown normalize 'minmax'"):
        prepare(
            _splits(np.zeros((2, 2)), np.zeros(2)),
            input_shape=(2,),
            labels="values",
            n_outputs=1,
            normalize="minmax",
        )
    with pytest.raises(DataError, match=r"unknown kind of labels 'tanh'"):
        prepare(_splits(np.zeros((2, 2)), np.zeros(2)), input_shape=(2,), labels="tanh",
                n_outputs=1)


def test_standard_normalization_uses_train_stats():
    train_x = np.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    dev = Dataset(np.array([[3.0, 7.0]]), np.array([1]))
    test = Dataset(np.array([[7.0, 5.0], [1.0, 4.0]]), np.array([0, 1]))
    splits = _splits(train_x, [0, 1, 0], dev=dev, test=test)
    prepared, stats = prepare(
        splits, input_shape=(2,), labels="classes", n_outputs=2, normalize="standard"
    )
    std0 = np.std([1.0, 3.0, 5.0])
    np.testing.assert_allclose(stats["mean"], [3.0, 5.0])
    np.testing.assert_allclose(stats["std"], [std0, 1.0])  # zero std replaced by 1
    np.testing.assert_allclose(prepared.train.x, [[-2 / std0, 0], [0, 0], [2 / std0, 0]], rtol=1e-6)
    np.testing.assert_allclose(prepared.dev.x, [[0.0, 2.0]], atol=1e-6)
    np.testing.assert_allclose(prepared.test.x, [[4 / std0, 0.0], [-2 / std0, -1.0]], rtol=1e-6)
    for _, ds in prepared.parts():
        assert ds.x.dtype == np.float32 and ds.x.flags.c_contiguous
    np.testing.assert_allclose(apply_normalization(test.x, stats), prepared.test.x)
    lists = {"mean": stats["mean"].tolist(), "std": stats["std"].tolist()}
    np.testing.assert_allclose(apply_normalization(test.x, lists), prepared.test.x)


def test_standard_normalization_on_images_has_input_shape_stats():
    splits = make_splits(load_source("digits", {}), split=(0.8, 0.2, 0.0), seed=1)
    prepared, stats = prepare(
        splits, input_shape=(8, 8, 1), labels="classes", n_outputs=10, normalize="standard"
    )
    assert stats["mean"].shape == (8, 8, 1) and stats["std"].shape == (8, 8, 1)
    np.testing.assert_allclose(stats["mean"], splits.train.x.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(prepared.train.x.mean(axis=0), 0.0, atol=1e-5)
    expected_dev = (splits.dev.x - stats["mean"]) / stats["std"]
    np.testing.assert_allclose(prepared.dev.x, expected_dev, rtol=1e-5, atol=1e-6)


def test_apply_normalization_without_stats_and_bad_shape():
    x = np.ones((2, 3), dtype=np.float64)
    out = apply_normalization(x, {"mean": None, "std": None})
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x)
    stats = {"mean": np.zeros(2), "std": np.ones(2)}
    with pytest.raises(DataError, match=r"data examples are 3 features but the saved"):
        apply_normalization(x, stats)


def test_end_to_end_moons():
    arrays = load_source("moons", {"n": 200}, seed=0)
    splits = make_splits(arrays, seed=0)
    prepared, _ = prepare(splits, input_shape=(2,), labels="binary", n_outputs=1)
    assert (len(prepared.train), len(prepared.dev), len(prepared.test)) == (160, 20, 20)
    assert prepared.train.y.shape == (160, 1)


def test_npz_uint8_images_scaled_to_unit_range(tmp_path):
    x = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([1]))
    arrays = load_source("d.npz", {}, base_dir=tmp_path)
    assert arrays["x"].dtype == np.float32
    np.testing.assert_allclose(arrays["x"], [[[0, 1], [0.2, 0.4]]], rtol=1e-6)


def test_csv_string_labels_are_classes_in_sorted_order(tmp_path):
    """LANGUAGE.md section 7: a label column of words; classes are the sorted unique values."""
    (tmp_path / "h.csv").write_text("w,h,kind\n1,2,dog\n3,4,cat\n5,6,dog\n7,8,bird\n")
    arrays = load_source("h.csv", {}, base_dir=tmp_path)
    assert arrays["class_names"].tolist() == ["bird", "cat", "dog"]
    assert arrays["y"].tolist() == [2, 1, 2, 0] and arrays["y"].dtype == np.int32
    np.testing.assert_array_equal(arrays["x"], [[1, 2], [3, 4], [5, 6], [7, 8]])
    # no header row: the first row's word is a label like the others'
    (tmp_path / "n.csv").write_text("1,2,yes\n3,4,no\n")
    arrays = load_source("n.csv", {}, base_dir=tmp_path)
    assert arrays["x"].shape == (2, 2) and arrays["class_names"].tolist() == ["no", "yes"]
    # by name, in any column
    (tmp_path / "f.csv").write_text("kind,w\ncat,1\ndog,2\n")
    arrays = load_source("f.csv", {"label": "kind"}, base_dir=tmp_path)
    assert arrays["y"].tolist() == [0, 1] and arrays["x"].ravel().tolist() == [1, 2]
    splits = make_splits(arrays, split=(1, 0, 0))
    assert splits.class_names == ("cat", "dog")
    (tmp_path / "e.csv").write_text("w,kind\n1,cat\n2,\n3,dog\n")
    with pytest.raises(DataError, match=r"^csv file 'e\.csv' row 3, column 'kind': no label "
                       r"\(the column holds class names\)$"):
        load_source("e.csv", {}, base_dir=tmp_path)
    (tmp_path / "m.csv").write_text("w,v\n1,0\n2,\n")
    with pytest.raises(DataError, match=r"^csv file 'm\.csv' row 3, column 'v': no label$"):
        load_source("m.csv", {}, base_dir=tmp_path)
    (tmp_path / "x.csv").write_text("w,kind\n1,cat\noops,dog\n")
    with pytest.raises(DataError, match=r"row 3, column 'w': 'oops' is not a number"):
        load_source("x.csv", {}, base_dir=tmp_path)


def test_class_names_in_npz_and_h5_files(tmp_path):
    x, y = np.zeros((3, 2), np.float32), np.array([0, 1, 1])
    np.savez(tmp_path / "d.npz", x=x, y=y, class_names=np.array(["ant", "bee"]))
    assert load_source("d.npz", {}, base_dir=tmp_path)["class_names"].tolist() == ["ant", "bee"]
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"], f["y"], f["class_names"] = x, y, np.array([b"ant", "b\u00e9e".encode()])
    assert load_source("d.h5", {}, base_dir=tmp_path)["class_names"].tolist() == ["ant", "b\u00e9e"]
    with h5py.File(tmp_path / "n.h5", "w") as f:
        f["x"], f["y"], f["list_classes"] = x, y, np.array([0, 1])
    with pytest.raises(DataError, match=r"^'list_classes' in 'n\.h5' must hold class names as "
                       r"text, not int64 numbers$"):
        load_source("n.h5", {}, base_dir=tmp_path)
