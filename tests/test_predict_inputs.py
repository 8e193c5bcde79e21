"""`netc predict` over the inputs runtime/data_inputs.py's open_inputs streams besides folders
and .npy files: an uncompressed .npz (memory-mapped), an .h5 file (a read per batch) and
ArrayRecord records. The reference for every kind is the same array saved as a .npy file and
predicted read whole; streamed and read whole, each kind gives those predictions to the bit.
An unusable file is the same one line either way, and `stream auto` streams only inputs
bigger than a quarter of memory."""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import one_error_line, run_cli, train_points
from netc.runtime.data_base import DataError
from netc.runtime.data_inputs import load_inputs, open_inputs
from netc.runtime.evaluate import predict_file
from netc.runtime.run import load_run
from netc.runtime.stream import BatchReader
from netc.runtime.stream_sources import ArrayRecordSource, ArraySource, H5Source


@pytest.fixture(scope="module")
def points(tmp_path_factory) -> Path:
    """A trained run of 2-feature points (normalize standard)."""
    return train_points(tmp_path_factory.mktemp("points"))


def record(**arrays) -> bytes:
    """An ArrayRecord record as docs/streaming.md writes them: the bytes of an .npz."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def write_records(path: Path, records) -> None:
    from array_record.python.array_record_module import ArrayRecordWriter

    writer = ArrayRecordWriter(str(path), "group_size:1")
    for r in records:
        writer.write(r)
    writer.close()


def inputs_file(kind: str, x: np.ndarray, folder: Path) -> Path:
    """`x` in a file of `kind`, with arrays beside it that are not the inputs."""
    labels = np.zeros(len(x), np.int64)
    if kind == "npz":
        np.savez(folder / "new.npz", x=x, y=labels, x_test=x[:5])  # x wins over x_test
        return folder / "new.npz"
    if kind == "npz_x_test":
        np.savez(folder / "new.npz", x_test=x, y_test=labels)
        return folder / "new.npz"
    if kind == "npz_compressed":
        np.savez_compressed(folder / "new.npz", x=x)
        return folder / "new.npz"
    if kind in ("h5", "h5_course"):
        with h5py.File(folder / "new.h5", "w") as handle:
            handle["x" if kind == "h5" else "test_set_x"] = x
            handle["y" if kind == "h5" else "test_set_y"] = labels
            handle["list_classes"] = np.asarray([b"a", b"b", b"c"])
        return folder / "new.h5"
    if kind == "array_record_unlabelled":  # inputs to predict need no y
        write_records(folder / "new.array_record", [record(x=row) for row in x])
        return folder / "new.array_record"
    records = [record(x=row, y=np.int64(0)) for row in x]
    if kind == "array_record":
        write_records(folder / "new.array_record", records)
        return folder / "new.array_record"
    shards = folder / "shards"  # three shards, read as one sequence in name order
    shards.mkdir()
    for k, part in enumerate(np.array_split(np.arange(len(x)), 3)):
        write_records(shards / f"part-{k}.array_record", [records[i] for i in part])
    return shards


SOURCES = {"npz": ArraySource, "npz_x_test": ArraySource, "h5": H5Source,
           "h5_course": H5Source, "array_record": ArrayRecordSource,
           "array_record_shards": ArrayRecordSource, "array_record_unlabelled": ArrayRecordSource}


@pytest.mark.parametrize("kind", list(SOURCES))
@pytest.mark.parametrize("dtype", ["float64", "uint8"])
def test_streamed_predictions_equal_those_of_the_same_array_read_whole(points, kind, dtype,
                                                                       tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    n = 600 if kind.startswith("array_record") else 2500  # npz, h5: three batches of 1024
    x = rng.normal(size=(n, 2)) if dtype == "float64" else \
        rng.integers(0, 256, (n, 2)).astype(np.uint8)  # divided by 255 as in training
    np.save(tmp_path / "reference.npy", x)
    inputs = inputs_file(kind, x, tmp_path)
    model, variables = load_run(points)
    assert isinstance(open_inputs(inputs, "new"), SOURCES[kind])
    predict_file(model, variables, tmp_path / "reference.npy", tmp_path / "reference.npz",
                 None, points, stream="off")
    assert predict_file(model, variables, inputs, tmp_path / "whole.npz", None, points,
                        stream="off") == n
    seen = []
    read = BatchReader.__call__
    monkeypatch.setattr(BatchReader, "__call__",
                        lambda self, rows: seen.append(len(rows)) or read(self, rows))
    monkeypatch.setattr("netc.runtime.evaluate.load_inputs", None)  # never read whole
    assert predict_file(model, variables, inputs, tmp_path / "streamed.npz", None, points,
                        stream="on") == n
    assert sum(seen) == n and max(seen) <= 1024
    with np.load(tmp_path / "reference.npz") as want:
        for name in ("whole", "streamed"):
            with np.load(tmp_path / f"{name}.npz") as got:
                assert sorted(got.files) == sorted(want.files)
                for key in want.files:
                    np.testing.assert_array_equal(got[key], want[key])


def test_a_records_label_is_not_read_by_predict(points, tmp_path):
    """Inputs to predict need no y; one that is there is not read (an object array, which
    np.load refuses without pickles, does not stop them)."""
    x = np.random.default_rng(9).normal(size=(30, 2))
    write_records(tmp_path / "new.array_record",
                  [record(x=row, y=np.asarray([None], dtype=object)) for row in x])
    np.save(tmp_path / "reference.npy", x)
    model, variables = load_run(points)
    for inputs, stream in ((tmp_path / "reference.npy", "off"),
                           (tmp_path / "new.array_record", "off"),
                           (tmp_path / "new.array_record", "on")):
        assert predict_file(model, variables, inputs, tmp_path / f"{inputs.stem}-{stream}.npz",
                            None, points, stream=stream) == 30
    with np.load(tmp_path / "reference-off.npz") as want:
        for stream in ("off", "on"):
            with np.load(tmp_path / f"new-{stream}.npz") as got:
                np.testing.assert_array_equal(got["outputs"], want["outputs"])


def test_a_compressed_npz_is_read_whole_even_with_stream_on(points, tmp_path):
    x = np.random.default_rng(7).normal(size=(40, 2))
    inputs = inputs_file("npz_compressed", x, tmp_path)
    assert open_inputs(inputs, "new.npz") is None  # cannot be read in pieces
    model, variables = load_run(points)
    for stream in ("off", "on"):
        assert predict_file(model, variables, inputs, tmp_path / f"{stream}.npz", None, points,
                            stream=stream) == 40
    with np.load(tmp_path / "off.npz") as a, np.load(tmp_path / "on.npz") as b:
        np.testing.assert_array_equal(a["outputs"], b["outputs"])


def test_image_records_are_decoded_with_the_runs_size_and_mode(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(8)
    images = []
    for i in range(5):  # sizes differ: size= makes them one
        pixels = rng.integers(0, 256, (6 + i, 7, 3)).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        images.append(np.frombuffer(buffer.getvalue(), np.uint8))
    write_records(tmp_path / "new.array_record", [record(image=b, y=np.int64(0)) if i % 2
                                                  else record(image=b)  # some without a y
                                                  for i, b in enumerate(images)])
    options = {"size": "4x3", "mode": "L"}
    source = open_inputs(tmp_path / "new.array_record", "new", options)
    streamed = source.read_rows(np.arange(len(source)))
    whole = load_inputs(tmp_path / "new.array_record", "new", options)
    want = np.stack([np.asarray(Image.open(io.BytesIO(b.tobytes())).convert("L")
                                .resize((3, 4), Image.BILINEAR), np.float32)[..., None] / 255
                     for b in images])
    assert whole.shape == (5, 4, 3, 1)
    np.testing.assert_array_equal(streamed, whole)
    np.testing.assert_allclose(whole, want, atol=1e-6)


def bad_file(name: str, folder: Path) -> Path:
    path = folder / name.split(":")[0]
    what = name.split(":")[1]
    if what == "text" and path.suffix == ".npz":
        np.savez(path, x=np.asarray(["a", "b"]))
    elif what == "objects":
        np.savez(path, x=np.asarray([1, None], dtype=object))
    elif what == "no_x" and path.suffix == ".npz":
        np.savez(path, y=np.zeros(3))
    elif what == "two" and path.suffix == ".npz":
        np.savez(path, x_test=np.zeros((3, 2)), x_dev=np.zeros((3, 2)))
    elif what == "not_a_file":
        path.write_bytes(b"not what it says")
    elif what == "no_records":
        write_records(path, [])
    elif what == "no_x" and path.suffix == ".array_record":
        write_records(path, [record(y=np.zeros(2))])
    elif what == "one_value" and path.suffix == ".npy":
        np.save(path, np.float64(3.0))
    elif what == "one_value" and path.suffix == ".npz":
        np.savez(path, x=np.float64(3.0))
    else:
        with h5py.File(path, "w") as handle:
            if what == "text":
                handle["x"] = np.asarray([b"ab", b"cd"])
            elif what == "no_x":
                handle["y"] = np.zeros(3)
            elif what == "one_value":
                handle["x"] = 3.0
            elif what == "group":
                handle.create_group("x")["x"] = np.zeros((3, 2))
            else:  # two
                handle["test_set_x"] = np.zeros((3, 2))
                handle["x_dev"] = np.zeros((3, 2))
    return path


BAD = {"t.npz:text": "array 'x' in 't.npz' is not numeric (dtype <U1)",
       "o.npz:objects": "array 'x' in 'o.npz' is not numeric (dtype object)",
       "n.npz:no_x": "'n.npz' has no inputs 'x' (found: y)",
       "w.npz:two": "'w.npz' holds x_test and x_dev: name the inputs x",
       "b.npz:not_a_file": "cannot read inputs 'b.npz': File is not a zip file",
       "v.npz:one_value": "'x' in 'v.npz' holds one value, not a batch of examples",
       "v.npy:one_value": "'v.npy' holds one value, not a batch of examples",
       "v.h5:one_value": "'x' in 'v.h5' holds one value, not a batch of examples",
       "t.h5:text": "dataset 'x' in 't.h5' is not numeric (dtype |S2)",
       "n.h5:no_x": "'n.h5' has no inputs 'x' (found: y)",
       "g.h5:group": "'x' in 'g.h5' is a group, not a dataset",
       "w.h5:two": "'w.h5' holds x_test and x_dev: name the inputs x",
       "b.h5:not_a_file": "cannot read inputs 'b.h5': ",
       "e.array_record:no_records": "ArrayRecord data 'e.array_record' holds no records",
       "y.array_record:no_x": "record 0 of 'y.array_record' needs an array 'x' (or 'image'); "
                              "found: y",
       "b.array_record:not_a_file": "cannot read inputs 'b.array_record': "}


@pytest.mark.parametrize("name", list(BAD))
def test_an_unusable_file_is_the_same_one_line_streamed_or_read_whole(points, name, tmp_path):
    path = bad_file(name, tmp_path)
    messages = []
    for read in (load_inputs, open_inputs):
        with pytest.raises(DataError) as error:
            read(path, path.name)
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith(BAD[name])
    code, _, err = run_cli("predict", points, path, "--out", tmp_path / "p.npz")
    assert code != 0
    message = messages[0].replace(f"'{path.name}'", f"'{path}'")
    assert one_error_line(err) == f"netc: error: input: {message}"


@pytest.mark.parametrize("kind", ["npz", "h5", "npy"])
@pytest.mark.parametrize("n", [5, 2])
def test_a_1d_array_is_one_value_per_example_the_same_message_streamed_or_read_whole(
        points, kind, n, tmp_path):
    x = np.zeros(n)  # the net expects 2 values per example
    inputs = tmp_path / "flat.npy" if kind == "npy" else inputs_file(kind, x, tmp_path)
    np.save(tmp_path / "flat.npy", x)
    model, variables = load_run(points)
    want = (f"inputs are an array of shape ({n},), one value per example, but the net "
            f"expects 2 per example")
    if n == 2:  # as many values as one example: how to give it
        want += " (one example of them is shape (1, 2))"
    for stream in ("on", "off"):
        with pytest.raises(DataError) as error:
            predict_file(model, variables, inputs, tmp_path / "p.npz", None, points,
                         stream=stream)
        assert str(error.value) == want
    code, _, err = run_cli("predict", points, inputs, "--out", tmp_path / "p.npz")
    assert code != 0 and one_error_line(err) == f"netc: error: input: {want}"


@pytest.mark.parametrize("memory, streams", [(10**12, False), (4 * 2500 * 2 * 4 - 1, True)])
def test_stream_auto_streams_inputs_bigger_than_a_quarter_of_memory(points, memory, streams,
                                                                    tmp_path, monkeypatch):
    x = np.random.default_rng(9).normal(size=(2500, 2))
    inputs = inputs_file("npz", x, tmp_path)  # 2500 x 2 float32: 20,000 bytes decoded
    monkeypatch.setattr("netc.runtime.stream.machine_memory", lambda: memory)
    model, variables = load_run(points)
    forbidden = "netc.runtime.evaluate.load_inputs" if streams else \
        "netc.runtime.evaluate.streamed_inputs"
    monkeypatch.setattr(forbidden, None)
    assert predict_file(model, variables, inputs, tmp_path / "p.npz", None, points,
                        stream="auto") == 2500
