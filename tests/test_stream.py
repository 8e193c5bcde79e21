"""Streamed data (runtime/stream.py, runtime/stream_sources.py) against the in-memory path.

Every source kind is read both ways from the same files: runtime/data.py's load_source ->
make_splits -> prepare gives the reference arrays, and a StreamedSplit's batches in a given
order must equal them indexed by that order, bit for bit, with the same split examples,
class names and normalization statistics.
"""

from __future__ import annotations

import io
import json
import re
import zipfile

import h5py
import netc
import numpy as np
import pytest
from conftest import one_error_line, run_cli, write_spec
from netc.compiler.check import check_source
from netc.dsl.diagnostics import SpecError
from netc.runtime.data import (
    DataError,
    Dataset,
    load_source,
    make_splits,
    prepare,
)
from netc.runtime.stream import (
    StreamedSplit,
    decoded_bytes,
    load_streamed,
    should_stream,
)
from PIL import Image

SPEC = """net t
input {shape}
flatten -> fc 4 -> {head}
train {{
  data "{data}"{options}
  split {split}
  normalize {normalize}
  seed {seed}
  epochs 1
  {extra}
}}
"""


def make_net(tmp_path, data, *, shape="6x5x3", head="softmax 3", normalize="none", seed=0,
             options="", split="0.6 0.2 0.2", extra="", **stream_options):
    path = tmp_path / "t.net"
    path.write_text(SPEC.format(shape=shape, head=head, data=data, options=options,
                                normalize=normalize, seed=seed, split=split,
                                extra=extra))
    net = netc.check(str(path))
    net.train.data.options.update(stream_options)  # workers=, skip_bad= (data options)
    return net


def in_memory(net, tmp_path, loss_kind, n_outputs):
    """The reference: the data read, split and prepared in memory."""
    cfg = net.train
    options = dict(cfg.data.options)
    source = options.pop("path")
    arrays = load_source(source, options, seed=cfg.seed, base_dir=tmp_path)
    splits = make_splits(arrays, split=cfg.split, seed=cfg.seed, train_dev=cfg.train_dev)
    return prepare(splits, input_shape=tuple(net.input_shape), labels=loss_kind,
                   n_outputs=n_outputs, normalize=cfg.normalize)


def assert_the_same_error_in_memory_and_streamed(net, tmp_path, message: str) -> None:
    """Reading the net's data in memory and streaming it fail alike: DataError matching
    `message` (a regular expression)."""
    with pytest.raises(DataError, match=message):
        in_memory(net, tmp_path, "classes", 3)
    with pytest.raises(DataError, match=message):
        streamed(net, tmp_path)


def streamed(net, tmp_path, loss="cross_entropy", **kw):
    result = load_streamed(net, tmp_path, loss, stream=kw.pop("stream", "on"), **kw)
    assert result is not None
    return result


def all_batches(split: StreamedSplit, order, batch):
    xs, ys = zip(*split.batches(order, batch))
    return np.concatenate(xs), np.concatenate(ys)


def assert_same_splits(got, want, *, seed=0, batch=4):
    """Every split streams the examples the in-memory path holds, in the trainer's order."""
    assert got.class_names == want.class_names
    assert [name for name, _ in got.parts()] == [name for name, _ in want.parts()]
    for (name, split), (_, ref) in zip(got.parts(), want.parts()):
        assert isinstance(split, StreamedSplit), name
        assert len(split) == len(ref.x)
        np.testing.assert_array_equal(split.y, ref.y)
        assert split.y.dtype == ref.y.dtype
        order = np.random.default_rng([seed, 1]).permutation(len(split))
        x, y = all_batches(split, order, batch)
        assert x.dtype == np.float32 and x.shape == ref.x.shape
        np.testing.assert_array_equal(x, ref.x[order])
        np.testing.assert_array_equal(y, ref.y[order])
        np.testing.assert_array_equal(split.read(order[:3]), ref.x[order[:3]])


def image_folder(root, classes=("cat", "dog", "eel"), per_class=6, size=(6, 5), seed=0):
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    return root


def arrays_xy(m=20, shape=(6, 5, 3), dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (m, *shape)).astype(dtype)
    y = (np.arange(m) % 3).astype(np.int64)
    return x, y


# -------------------------------------------------------------------- each source kind


def test_image_folder_streams_the_in_memory_examples(tmp_path):
    image_folder(tmp_path / "pets")
    net = make_net(tmp_path, "pets", workers=0)
    got, stats = streamed(net, tmp_path)
    want, want_stats = in_memory(net, tmp_path, "classes", 3)
    assert got.class_names == ("cat", "dog", "eel")
    assert_same_splits(got, want)
    assert stats == {"mean": None, "std": None} == want_stats


def test_image_folder_resized_gray(tmp_path):
    image_folder(tmp_path / "pets")
    net = make_net(tmp_path, "pets", shape="4x4x1", options=' size=4x4 mode=gray', workers=0)
    got, _ = streamed(net, tmp_path)
    assert_same_splits(got, in_memory(net, tmp_path, "classes", 3)[0])


def test_standard_normalization_matches_prepare(tmp_path):
    image_folder(tmp_path / "pets", per_class=10)
    net = make_net(tmp_path, "pets", normalize="standard", workers=0)
    got, stats = streamed(net, tmp_path)
    want, want_stats = in_memory(net, tmp_path, "classes", 3)
    np.testing.assert_allclose(stats["mean"], want_stats["mean"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(stats["std"], want_stats["std"], rtol=1e-6, atol=1e-7)
    assert stats["mean"].dtype == stats["std"].dtype == np.float32
    order = np.arange(len(got.train))
    x, _ = all_batches(got.train, order, 5)
    np.testing.assert_allclose(x, want.train.x, rtol=1e-5, atol=1e-5)


def test_npy_folder(tmp_path):
    x, y = arrays_xy()
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    np.save(folder / "class_names.npy", np.asarray(["a", "b", "c"]))
    net = make_net(tmp_path, "arrays", extra="train_dev 0.25", workers=0)
    got, _ = streamed(net, tmp_path)
    want, _ = in_memory(net, tmp_path, "classes", 3)
    np.testing.assert_array_equal(load_source("arrays", base_dir=tmp_path)["x"],
                                  x.astype(np.float32) / 255)
    assert got.class_names == ("a", "b", "c")
    assert len(got.train_dev) == 3  # a quarter of the 12 training rows
    assert_same_splits(got, want)


@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
def test_uncompressed_npz_with_its_own_test_split(tmp_path, dtype):
    x, y = arrays_xy(dtype=dtype)
    x_test, y_test = arrays_xy(m=7, dtype=dtype, seed=1)
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x_test, y_test=y_test)
    net = make_net(tmp_path, "d.npz", workers=0)
    got, _ = streamed(net, tmp_path)
    want, _ = in_memory(net, tmp_path, "classes", 3)
    assert len(got.test) == 7
    assert_same_splits(got, want)


def test_compressed_npz_is_an_error_naming_np_savez(tmp_path):
    x, y = arrays_xy()
    np.savez_compressed(tmp_path / "d.npz", x=x, y=y)
    net = make_net(tmp_path, "d.npz", workers=0)
    with pytest.raises(DataError, match=r"'x' in 'd.npz' is compressed.*np\.savez"):
        streamed(net, tmp_path)


def test_h5_plain_and_course_layout(tmp_path):
    x, y = arrays_xy(m=24)
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = x
        f["y"] = y
    with h5py.File(tmp_path / "course.h5", "w") as f:
        f["train_set_x"] = x
        f["train_set_y"] = y.reshape(1, -1)
        f["list_classes"] = np.asarray([b"a", b"b", b"c"])
    for name in ("plain.h5", "course.h5"):
        net = make_net(tmp_path, name, workers=0)
        got, _ = streamed(net, tmp_path)
        assert_same_splits(got, in_memory(net, tmp_path, "classes", 3)[0], batch=5)


def test_h5_dataset_of_text_is_the_same_error_in_memory_and_streamed(tmp_path):
    x, y = arrays_xy(m=24)
    with h5py.File(tmp_path / "words.h5", "w") as f:
        f["x"] = x
        f["y"] = np.asarray([b"cat"] * 24)
    net = make_net(tmp_path, "words.h5", workers=0)
    message = r"dataset 'y' in 'words.h5' is not numeric \(dtype \|S3\)"
    assert_the_same_error_in_memory_and_streamed(net, tmp_path, message)


@pytest.mark.parametrize("group", ["x", "y", "list_classes"])
def test_an_h5_group_where_an_array_belongs_is_the_same_error_in_memory_and_streamed(
        tmp_path, group):
    x, y = arrays_xy(m=24)
    with h5py.File(tmp_path / "nested.h5", "w") as f:
        arrays = {"x": x, "y": y, "list_classes": np.asarray([b"a", b"b", b"c"])}
        for key, array in arrays.items():
            if key == group:  # a group holding the array, not the array itself
                f.create_group(key)[key] = array
            else:
                f[key] = array
    net = make_net(tmp_path, "nested.h5", workers=0)
    message = rf"^'{group}' in 'nested\.h5' is a group, not a dataset$"
    assert_the_same_error_in_memory_and_streamed(net, tmp_path, message)


@pytest.mark.parametrize("name", ["one.npz", "one.h5", "one"])  # one: a folder of .npy
def test_one_value_for_x_is_the_same_error_in_memory_and_streamed(tmp_path, name):
    _, y = arrays_xy(m=24)
    path = tmp_path / name
    if name == "one.npz":
        np.savez(path, x=np.float64(3.0), y=y)
    elif name == "one.h5":
        with h5py.File(path, "w") as f:
            f["x"], f["y"] = 3.0, y
    else:
        path.mkdir()
        np.save(path / "x.npy", np.float64(3.0))
        np.save(path / "y.npy", y)
    net = make_net(tmp_path, name, workers=0)
    message = rf"^'x' in '{re.escape(name)}' holds one value, not a batch of examples$"
    assert_the_same_error_in_memory_and_streamed(net, tmp_path, message)


def test_h5_batch_with_repeated_rows_reads_them_in_order(tmp_path):
    x, y = arrays_xy(m=60)
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = x
        f["y"] = y
    from netc.runtime.stream_sources import H5Source

    def open_files():
        return h5py.h5f.get_obj_count(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE)
    before = open_files()
    source = H5Source(tmp_path / "plain.h5", "plain.h5", "x")
    assert open_files() == before  # opening it reads its shape and closes the file again
    for rows in ([7, 2, 7, 0], [55, 3, 55, 40]):  # dense (one slice read), sparse (points)
        rows = np.asarray(rows)
        np.testing.assert_array_equal(source.read_rows(rows), x[rows].astype(np.float32) / 255)


def record(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def write_records(path, records):
    from array_record.python.array_record_module import ArrayRecordWriter

    writer = ArrayRecordWriter(str(path), "group_size:1")
    for r in records:
        writer.write(r)
    writer.close()


def test_array_record_shards_of_arrays(tmp_path):
    x, y = arrays_xy(m=21)
    folder = tmp_path / "shards"
    folder.mkdir()
    for k, rows in enumerate(np.array_split(np.arange(21), 3)):
        write_records(folder / f"part-{k}.array_record", [record(x=x[i], y=y[i]) for i in rows])
    net = make_net(tmp_path, "shards", workers=0)
    got, _ = streamed(net, tmp_path)
    want, _ = in_memory(net, tmp_path, "classes", 3)
    np.testing.assert_array_equal(load_source("shards", base_dir=tmp_path)["x"],
                                  x.astype(np.float32) / 255)
    assert_same_splits(got, want)


def test_array_record_of_encoded_images(tmp_path):
    root = image_folder(tmp_path / "pets")
    files = sorted(root.glob("*/*.png"))
    write_records(tmp_path / "pets.array_record",
                  [record(image=np.frombuffer(f.read_bytes(), np.uint8),
                          y=np.int64(["cat", "dog", "eel"].index(f.parent.name)))
                   for f in files])
    net = make_net(tmp_path, "pets.array_record", workers=0)
    got, _ = streamed(net, tmp_path)
    want, _ = in_memory(net, tmp_path, "classes", 3)
    assert_same_splits(got, want)
    folder = load_source("pets", base_dir=tmp_path)
    np.testing.assert_array_equal(load_source("pets.array_record", base_dir=tmp_path)["x"],
                                  folder["x"])


def test_array_record_training_data_needs_every_records_label(tmp_path):
    """Inputs to predict may leave y out; training data may not, streamed or read whole."""
    x, y = arrays_xy(m=6)
    write_records(tmp_path / "d.array_record",
                  [record(x=x[i], y=y[i]) if i != 4 else record(x=x[i]) for i in range(6)])
    net = make_net(tmp_path, "d.array_record", workers=0)
    want = "record 4 of 'd.array_record' needs arrays 'y' and 'x' (or 'image'); found: x"
    assert_the_same_error_in_memory_and_streamed(net, tmp_path, f"^{re.escape(want)}$")


def test_split_file_of_another_image_folder_renumbers_classes(tmp_path):
    image_folder(tmp_path / "train")
    image_folder(tmp_path / "test", classes=("dog", "eel"), per_class=3, seed=5)
    net = make_net(tmp_path, "train", options=' test="test"', workers=0)
    got, _ = streamed(net, tmp_path)
    want, _ = in_memory(net, tmp_path, "classes", 3)
    assert set(got.test.y) == {1, 2}
    assert_same_splits(got, want)


@pytest.mark.parametrize("head, loss, kind, n", [("sigmoid 1", "binary_cross_entropy",
                                                  "binary", 1)])
def test_labels_are_checked_and_shaped_like_prepare(tmp_path, head, loss, kind, n):
    x, _ = arrays_xy()
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", (np.arange(20) % 2).astype(np.float64))
    net = make_net(tmp_path, "arrays", head=head, workers=0)
    got, _ = streamed(net, tmp_path, loss)
    assert_same_splits(got, in_memory(net, tmp_path, kind, n)[0])
    np.save(folder / "y.npy", np.arange(20) % 3)
    with pytest.raises(DataError, match=r"sigmoid label 2 in train split, row \d+ must be 0, 1"):
        streamed(net, tmp_path, loss)


def test_input_shape_mismatch_is_prepares_message(tmp_path):
    image_folder(tmp_path / "pets")
    net = make_net(tmp_path, "pets", shape="4x4x3", workers=0)
    with pytest.raises(DataError, match=r"data examples are 6x5x3 but the net's input is "
                                        r"4x4x3 \(train split\)"):
        streamed(net, tmp_path)


# -------------------------------------------------------------------- bad files


def test_corrupt_image_mid_epoch_is_an_error_naming_it(tmp_path):
    root = image_folder(tmp_path / "pets")
    (root / "dog" / "03.png").write_bytes(b"not a png")
    net = make_net(tmp_path, "pets", split="1 0 0", workers=0)
    got, _ = streamed(net, tmp_path)  # no pass over x before training: found mid-epoch
    read = []
    with pytest.raises(DataError, match=r"^cannot read image 'pets/dog/03\.png': "):
        for x, _ in got.train.batches(np.arange(len(got.train)), 2):
            read.append(len(x))
    assert read == [2, 2, 2, 2]  # the batches before position 9's


def test_skip_bad_reads_a_batch_with_a_bad_file_row_by_row(tmp_path):
    x, y = arrays_xy(m=12)
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    net = make_net(tmp_path, "arrays", split="1 0 0", skip_bad=True, workers=0)
    got, _ = streamed(net, tmp_path)
    np.save(folder / "x.npy", x[:5])  # rows 5.. gone: reading them is a library error
    got.train.source.array = None
    order = np.arange(12)[::-1]
    batches = list(got.train.batches(order, 4))
    assert [len(b[0]) for b in batches] == [0, 1, 4]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y[4::-1])
    assert got.train.skipped == 7 and got.train.skipped_names[0] == "row 11 of 'arrays'"


def test_skip_bad_leaves_the_file_out_and_counts_it(tmp_path):
    root = image_folder(tmp_path / "pets")
    net = make_net(tmp_path, "pets", split="1 0 0", skip_bad="true", workers=0)
    want, _ = in_memory(net, tmp_path, "classes", 3)  # split 1 0 0: train in file order
    bad = root / "dog" / "03.png"
    bad.write_bytes(b"not a png")
    got, _ = streamed(net, tmp_path)
    position = 6 + 3  # cat's 6 images, then dog's 00..03
    order = np.random.default_rng([0, 3]).permutation(len(got.train))
    x, y = all_batches(got.train, order, 4)
    kept = order[order != position]
    np.testing.assert_array_equal(x, want.train.x[kept])
    np.testing.assert_array_equal(y, want.train.y[kept])
    assert got.train.skipped == 1 and got.train.skipped_names == ["pets/dog/03.png"]
    all_batches(got.train, order, 4)
    assert got.train.skipped == 2  # counted each time it is met


def test_the_data_line_says_skip_bad_and_workers_as_the_docs_do(tmp_path):
    root = image_folder(tmp_path / "pets")
    net = check_source('net t\ninput 6x5x3\nflatten -> fc 4 -> softmax 3\ntrain {\n'
                       '  data "pets" skip_bad=true workers=0\n  split 1 0 0\n  epochs 1\n}\n')
    assert net.train.skip_bad is False  # the train setting; the data line's overrides it
    (root / "dog" / "03.png").write_bytes(b"not a png")
    got, _ = streamed(net, tmp_path)
    assert (got.train.skip_bad, got.train.workers) == (True, 0)
    x, _ = all_batches(got.train, np.arange(len(got.train)), 4)
    assert len(x) == 17 and got.train.skipped_names == ["pets/dog/03.png"]
    with pytest.raises(SpecError, match=r"skip_bad.*expects true or false"):
        check_source('net t\ninput 2\nfc 1 -> sigmoid 1\ntrain {\n'
                     '  data "d.npz" skip_bad=1\n}\n')


# -------------------------------------------------------------------- when to stream


def test_auto_streams_only_what_exceeds_a_quarter_of_memory(tmp_path):
    image_folder(tmp_path / "pets")
    net = make_net(tmp_path, "pets", workers=0)
    train_bytes = decoded_bytes(10, (6, 5, 3))  # 18 examples: 10 train, 4 dev, 4 test
    assert load_streamed(net, tmp_path, "cross_entropy", stream="auto",
                         memory_bytes=10**12) is None
    splits, _ = load_streamed(net, tmp_path, "cross_entropy", stream="auto",
                              memory_bytes=4 * train_bytes - 1)
    assert isinstance(splits.train, StreamedSplit)
    assert isinstance(splits.dev, Dataset) and isinstance(splits.test, Dataset)
    want, _ = in_memory(net, tmp_path, "classes", 3)
    np.testing.assert_array_equal(splits.dev.x, want.dev.x)
    assert load_streamed(net, tmp_path, "cross_entropy", stream="off") is None
    assert should_stream("auto", 10, (6, 5, 3), 4 * train_bytes) is False
    assert should_stream("auto", 11, (6, 5, 3), 4 * train_bytes) is True
    with pytest.raises(DataError, match="stream 'sometimes' must be one of: auto, on, off"):
        should_stream("sometimes", 1, (1,))


def test_builtin_and_csv_data_do_not_stream(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,0,1\n")
    net = make_net(tmp_path, "d.csv", shape="2", head="sigmoid 1")
    assert load_streamed(net, tmp_path, "binary_cross_entropy", stream="on") is None


CSV_TEST_FILE = """net points
input 2
fc 4 -> tanh -> softmax 3
train {
  data "d.npz" test="t.csv" workers=0
  split 0.75 0.25 0
  batch 8
  epochs 2
  seed 0
}
"""


def points_with_a_csv_test_file(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 2)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(40) % 3)
    rows = [f"{a:.3f},{b:.3f},{k % 3}" for k, (a, b) in enumerate(rng.normal(size=(9, 2)))]
    (tmp_path / "t.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")
    return write_spec(tmp_path, CSV_TEST_FILE)


def test_a_csv_test_file_beside_data_that_streams_is_read_in_memory(tmp_path):
    spec = points_with_a_csv_test_file(tmp_path)
    # stream auto (the default): nothing needs to stream, so all of it is read in memory,
    # and the run is the run of stream off (the in-memory path)
    code, _, err = run_cli("train", spec, "--out", tmp_path / "auto", "--quiet")
    assert code == 0, err
    code, _, err = run_cli("train", spec, "--out", tmp_path / "off", "--quiet",
                           "--set", "stream=off")
    assert code == 0, err
    auto, off = (json.loads((tmp_path / run / "run.json").read_text())
                 for run in ("auto", "off"))
    assert auto["streamed"] == {"train": False, "dev": False, "test": False}
    assert auto["final"]["test"] == off["final"]["test"]
    code, out, err = run_cli("eval", tmp_path / "auto", "--json")
    assert code == 0, err
    assert json.loads(out)["splits"]["test"]["examples"] == 9
    # stream on asks every split to stream: the csv file cannot
    code, _, err = run_cli("train", spec, "--out", tmp_path / "on", "--quiet",
                          "--set", "stream=on")
    assert code != 0
    assert one_error_line(err) == ("netc: error: data: test file 't.csv' cannot stream (a csv "
                                   "file); set stream auto or off")


def test_a_csv_test_file_beside_streamed_data_is_served_from_memory(tmp_path):
    spec = points_with_a_csv_test_file(tmp_path)
    net = netc.check(str(spec))
    got, _ = load_streamed(net, tmp_path, "cross_entropy", stream="auto", memory_bytes=1)
    assert isinstance(got.train, StreamedSplit) and isinstance(got.test, StreamedSplit)
    assert_same_splits(got, in_memory(net, tmp_path, "classes", 3)[0])


def test_in_memory_reader_ignores_the_stream_options(tmp_path):
    image_folder(tmp_path / "pets")
    a = load_source("pets", {"workers": 3, "skip_bad": "true"}, base_dir=tmp_path)
    b = load_source("pets", {}, base_dir=tmp_path)
    np.testing.assert_array_equal(a["x"], b["x"])


def test_npz_member_offsets_survive_zip64_and_extra_fields(tmp_path):
    x, y = arrays_xy()
    with zipfile.ZipFile(tmp_path / "d.npz", "w", zipfile.ZIP_STORED) as archive:
        for name, array in (("y", y), ("x", x)):
            buffer = io.BytesIO()
            np.save(buffer, array)
            info = zipfile.ZipInfo(f"{name}.npy")
            info.extra = b"\xca\xfe\x04\x00abcd"  # an extra field the reader must skip
            archive.writestr(info, buffer.getvalue())
    net = make_net(tmp_path, "d.npz", workers=0)
    got, _ = streamed(net, tmp_path)
    assert_same_splits(got, in_memory(net, tmp_path, "classes", 3)[0])


# -------------------------------------------------------------------- worker processes


def test_worker_processes_give_the_same_batches_and_errors(tmp_path):
    root = image_folder(tmp_path / "pets", per_class=8)
    net = make_net(tmp_path, "pets", normalize="standard", workers=2)
    got, stats = streamed(net, tmp_path)
    net0 = make_net(tmp_path, "pets", normalize="standard", workers=0)
    ref, ref_stats = streamed(net0, tmp_path)
    np.testing.assert_array_equal(stats["mean"], ref_stats["mean"])
    m = len(got.train)
    orders = np.stack([np.random.default_rng([0, e]).permutation(m) for e in (2, 3)])
    two_epochs = list(got.train.batches(orders, 5))  # one set of workers for both epochs
    per_epoch = -(-m // 5)
    assert len(two_epochs) == 2 * per_epoch
    for e in range(2):
        x0, y0 = all_batches(ref.train, orders[e], 5)
        epoch = two_epochs[e * per_epoch : (e + 1) * per_epoch]
        assert [len(b[0]) for b in epoch] == [5] * (per_epoch - 1) + [m - 5 * (per_epoch - 1)]
        np.testing.assert_array_equal(np.concatenate([b[0] for b in epoch]), x0)
        np.testing.assert_array_equal(np.concatenate([b[1] for b in epoch]), y0)
    (root / "eel" / "05.png").write_bytes(b"broken")
    net = make_net(tmp_path, "pets", workers=2)
    got, _ = streamed(net, tmp_path)
    with pytest.raises(DataError, match=r"^cannot read image 'pets/eel/05\.png'") as raised:
        for split in (got.train, got.dev, got.test):
            all_batches(split, np.arange(len(split)), 3)
    assert "\n" not in str(raised.value)  # one line, as the CLI prints it


def test_each_process_shard_reads_its_part_of_every_batch(tmp_path):
    x, y = arrays_xy(m=23)
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    net = make_net(tmp_path, "arrays", split="1 0 0", workers=0)
    got, _ = streamed(net, tmp_path)
    order = np.random.default_rng([0, 4]).permutation(23)
    whole = list(got.train.batches(order, 8))
    parts = [list(got.train.batches(order, 8, shard=(k, 3))) for k in range(3)]
    assert [len(b[0]) for b in parts[0]] == [3, 3, 3]  # 8 = 3 + 3 + 2, 7 = 3 + 2 + 2
    for i, (bx, by) in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([p[i][0] for p in parts]), bx)
        np.testing.assert_array_equal(np.concatenate([p[i][1] for p in parts]), by)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in whole]),
                                  x[order].astype(np.float32) / 255)


def test_machine_memory_is_the_container_limit_when_smaller(tmp_path, monkeypatch):
    import psutil
    from netc.runtime import stream

    limit = tmp_path / "memory.max"
    monkeypatch.setattr(stream, "CGROUP_LIMITS", (str(tmp_path / "absent"), str(limit)))
    limit.write_text("max\n")
    assert stream.machine_memory() == psutil.virtual_memory().total
    limit.write_text("123456789\n")
    assert stream.machine_memory() == 123456789
    # a quarter of it is 30,864,197.25 bytes; an example of 8 float32 takes 32
    assert should_stream("auto", 964_506, (8,)) is False  # 30,864,192 bytes
    assert should_stream("auto", 964_507, (8,)) is True  # 30,864,224 bytes


# -------------------------------------------------------------------- a process of its own

STREAM_SCRIPT = """
import sys
import numpy as np
from netc.runtime.stream import BatchReader, read_batches
from netc.runtime.stream_sources import ArraySource

if __name__ == "__main__":
    source = ArraySource(sys.argv[1], "x.npy")
    reader = BatchReader(source, np.arange(len(source)), (4,), "train")
    total = 0.0
    try:
        for epoch in range(int(sys.argv[2])):
            for x, kept, bad in read_batches(reader, np.arange(len(source)), 8, 1):
                total += float(x.sum())
                if epoch == 1:
                    print("reading", flush=True)
                    sys.stdin.readline()  # the test interrupts here
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
    print(f"{total:.3f}")
"""


def stream_script(tmp_path):
    x = np.random.default_rng(0).random((40, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "stream_script.py"
    script.write_text(STREAM_SCRIPT)
    return script, x


def test_a_process_reading_with_workers_exits_quietly(tmp_path):
    from conftest import run_python

    script, x = stream_script(tmp_path)
    proc = run_python(script, tmp_path / "x.npy", 1, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) == pytest.approx(float(x.sum()), abs=1e-2)
    assert proc.stderr == ""  # no worker's shared memory reported leaked at exit


def test_ctrl_c_stops_the_workers_without_their_tracebacks(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    script, _ = stream_script(tmp_path)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "x.npy"), "3"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "reading"
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C does: the whole process group
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and out.strip() == "interrupted", out + err
    assert "Traceback" not in err and "leaked" not in err, err
