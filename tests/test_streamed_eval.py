"""`netc eval`, `--errors K`, `netc export`'s sample batch and `netc predict` over data
streamed from disk (runtime/split_pass.py, runtime/data_inputs.py's open_inputs): the same
report, errors.csv, errors.png, export check and predictions as the in-memory path (the
reference: the same run read with `stream off`), with only the few examples asked for read
back, and one line naming an unreadable file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import one_error_line, run_cli, train_points, write_spec
from netc.runtime.evaluate import predict_file
from netc.runtime.export import export_run, sample_batch
from netc.runtime.host_feed import is_streamed
from netc.runtime.run import load_run
from netc.runtime.split_pass import raw_examples, run_splits, split_pass
from netc.runtime.stream import BatchReader

IMAGES = """net pets
input 6x5x3
conv f=3 s=1 p=same c=4 -> bn -> relu -> maxpool f=2 -> flatten -> softmax 3
train {
  data "pets" workers=0
  split 0.5 0.25 0.25
  optimizer adam lr=0.01
  batch 8
  epochs 3
  seed 1
  normalize standard
  stream off
}
"""



def image_folder(root: Path, per_class: int = 12) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(("cat", "dog", "eel")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 200, (6, 5, 3)) + 25 * k  # classes a little apart
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i:02d}.png")
    return root


def streamed_copy(run: Path, to: Path, old: str = "stream off", new: str = "stream on"
                  ) -> Path:
    """The run with its spec's `stream off` turned on (or `old` made `new`): the same
    model, its data streamed."""
    shutil.copytree(run, to)
    spec = to / "spec.net"
    text = spec.read_text()
    assert old in text
    spec.write_text(text.replace(old, new))
    return to


@pytest.fixture(scope="module")
def pets(tmp_path_factory) -> tuple[Path, Path]:
    """(in-memory run, the same run streamed) of a 36-image folder, normalize standard."""
    folder = tmp_path_factory.mktemp("pets")
    image_folder(folder / "pets")
    spec = write_spec(folder, IMAGES)
    code, _, err = run_cli("train", spec, "--out", folder / "memory", "--quiet")
    assert code == 0, err
    return folder / "memory", streamed_copy(folder / "memory", folder / "disk")


@pytest.fixture(scope="module")
def points(tmp_path_factory) -> tuple[Path, Path]:
    """(in-memory run, the same run streamed) of 2-feature points in an uncompressed .npz."""
    folder = tmp_path_factory.mktemp("points")
    memory = train_points(folder, "memory")
    return memory, streamed_copy(memory, folder / "disk")


def eval_json(run: Path, *args) -> dict:
    code, out, err = run_cli("eval", run, "--json", *args)
    assert code == 0, err
    report = json.loads(out)
    report.pop("run")
    for figures in report["splits"].values():
        figures.pop("plot", None)
    return report


def reads(monkeypatch) -> list[np.ndarray]:
    """The positions of every batch a streamed split's reader reads (workers=0: here)."""
    seen = []
    call = BatchReader.__call__

    def spy(self, positions):
        seen.append(np.asarray(positions).copy())
        return call(self, positions)

    monkeypatch.setattr(BatchReader, "__call__", spy)
    return seen


# ---- netc eval ----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["pets", "points"])
def test_streamed_eval_reports_what_the_in_memory_eval_reports(which, request):
    memory, disk = request.getfixturevalue(which)
    model, variables = load_run(disk)
    splits, stats = run_splits(model, variables, disk)
    assert all(is_streamed(part) for _, part in splits.parts())
    assert stats is not None  # the run's saved statistics, not a pass over train
    np.testing.assert_array_equal(stats["mean"].reshape(-1),
                                  np.asarray(variables["normalization"]["mean"]).reshape(-1))
    plain, streamed = eval_json(memory, "--split", "all"), eval_json(disk, "--split", "all")
    assert streamed == plain
    final = json.loads((memory / "run.json").read_text())["final"]
    for name, figures in streamed["splits"].items():
        # the figures training wrote, from the same batches of the same program
        assert figures["loss"] == pytest.approx(final[name]["loss"], rel=1e-6)
        assert figures["accuracy"] == pytest.approx(final[name]["accuracy"], rel=1e-6)
        confusion = np.asarray(figures["confusion"])
        assert confusion.sum() == figures["examples"]
        assert np.trace(confusion) / confusion.sum() == pytest.approx(figures["accuracy"])
    if which == "points":  # both sides share the program: check it against numpy
        params = {k: {n: np.asarray(a, np.float64) for n, a in v.items()}
                  for k, v in variables["params"].items()}
        for name, part in splits.parts():
            x = raw_examples(part, np.arange(len(part))).astype(np.float64)
            x = (x - stats["mean"]) / stats["std"]
            reference = numpy_figures(params, x, np.asarray(part.y))
            figures = streamed["splits"][name]
            assert figures["loss"] == pytest.approx(reference["loss"], rel=1e-5)
            assert figures["accuracy"] == reference["accuracy"]


def numpy_figures(params: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """POINTS_SPEC's fc 8 -> tanh -> softmax 3 with cross-entropy, in float64."""
    h = np.tanh(x @ params["fc_1"]["kernel"] + params["fc_1"]["bias"])
    z = h @ params["softmax_1"]["kernel"] + params["softmax_1"]["bias"]
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return {"loss": float(-np.mean(log_p[np.arange(len(y)), y])),
            "accuracy": float(np.mean(log_p.argmax(axis=1) == y))}


def test_eval_runs_the_net_once_over_each_batch(points, monkeypatch):
    memory, _ = points
    model, variables = load_run(memory)
    calls = []
    both = model.outputs_and_sums

    def counted(*args):
        calls.append(len(args[1]))
        return both(*args)

    def forbidden(*args):
        raise AssertionError("a second forward pass")
    for name, function in (("outputs_and_sums", counted), ("predict", forbidden),
                           ("evaluate_batch", forbidden)):
        monkeypatch.setitem(model.__dict__, name, function)
    splits, stats = run_splits(model, variables, memory)
    seen = split_pass(model, variables, splits.test, 16, stats)
    assert calls == [16, 16] and len(seen.outputs) == len(splits.test) == 24


def test_streamed_eval_draws_the_decision_boundary_of_the_same_points(points):
    memory, disk = points
    for run in points:
        assert run_cli("eval", run, "--split", "dev")[0] == 0
    from PIL import Image

    a, b = (np.asarray(Image.open(run / "decision_boundary.png")) for run in (memory, disk))
    np.testing.assert_array_equal(a, b)


# ---- netc eval --errors K ------------------------------------------------------------------


def test_streamed_errors_equal_the_in_memory_ones_and_read_back_only_those(pets, tmp_path,
                                                                           monkeypatch):
    memory, disk = pets
    assert run_cli("eval", memory, "--errors", 4, "--out", tmp_path / "memory")[0] == 0
    seen = reads(monkeypatch)
    code, out, err = run_cli("eval", disk, "--errors", 4, "--out", tmp_path / "disk")
    assert code == 0, err
    a, b = ((tmp_path / d / "errors.csv").read_text() for d in ("memory", "disk"))
    assert a == b
    rows = [int(line.split(",")[1]) for line in b.splitlines()[1:]]
    assert 1 <= len(rows) <= 4
    from PIL import Image

    pictures = [np.asarray(Image.open(tmp_path / d / "errors.png")) for d in ("memory", "disk")]
    np.testing.assert_array_equal(*pictures)
    # the dev split once, in batches of 8, then only the wrong examples shown
    dev = 9
    assert sum(len(p) for p in seen[:-1]) == dev and all(len(p) <= 8 for p in seen[:-1])
    assert seen[-1].tolist() == rows


def test_streamed_errors_of_vectors_print_the_same_table(points, tmp_path):
    memory, disk = points
    outs = []
    for run in points:
        code, out, err = run_cli("eval", run, "--errors", 3, "--out", tmp_path / run.name)
        assert code == 0, err
        outs.append(out.replace(str(run), "RUN").replace(str(tmp_path / run.name), "OUT"))
    assert outs[0] == outs[1]
    assert "x1" in outs[1]


# ---- netc export's sample batch --------------------------------------------------------------


def test_export_samples_the_first_raw_examples_either_way(pets, tmp_path):
    memory, disk = pets
    model, variables = load_run(disk)
    a, source_a = sample_batch(memory, model, 4, None)
    b, source_b = sample_batch(disk, model, 4, None)
    assert source_a == source_b == "the run's data"
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0 and a.max() <= 1  # pixels as the folder holds them, not standardised
    checks = [export_run(run, "stablehlo", out=tmp_path / f"{run.name}.stablehlo",
                         say=lambda text: None)[1] for run in pets]
    assert checks[0] == checks[1] and checks[1].ok


# ---- netc predict --------------------------------------------------------------------------


def flat_images(pets_run: Path, to: Path) -> Path:
    """The pet images in one folder of their own (no class subfolders)."""
    to.mkdir()
    for file in sorted((pets_run.parent / "pets").glob("*/*.png")):
        shutil.copy(file, to / f"{file.parent.name}-{file.name}")
    return to


@pytest.mark.parametrize("kind", ["class_folders", "flat_folder", "npy_folder", "npy_file"])
def test_streamed_predictions_equal_those_read_whole(pets, points, kind, tmp_path,
                                                     monkeypatch):
    run = pets[0] if kind in ("class_folders", "flat_folder") else points[0]
    model, variables = load_run(run)
    if kind == "class_folders":
        inputs = run.parent / "pets"
    elif kind == "flat_folder":
        inputs = flat_images(run, tmp_path / "new")
    else:
        x = np.random.default_rng(5).normal(size=(2500, 2))  # three batches of 1024
        inputs = tmp_path / "new.npy"
        if kind == "npy_folder":
            inputs = tmp_path / "new"
            inputs.mkdir()
            np.save(inputs / "y.npy", np.zeros(len(x), np.int64))
            inputs = inputs / "x.npy"
        np.save(inputs, x)
        inputs = inputs.parent if kind == "npy_folder" else inputs
    names = ["cat", "dog", "eel"]
    n = predict_file(model, variables, inputs, tmp_path / "whole.npz", names, run, stream="off")
    seen = reads(monkeypatch)
    monkeypatch.setattr("netc.runtime.evaluate.load_inputs", None)  # never read whole
    assert predict_file(model, variables, inputs, tmp_path / "streamed.npz", names, run,
                        stream="on") == n
    assert sum(len(p) for p in seen) == n and max(len(p) for p in seen) <= 1024
    with np.load(tmp_path / "whole.npz") as a, np.load(tmp_path / "streamed.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


def test_an_input_holding_nan_predicts_nan_streamed_or_read_whole(points, tmp_path):
    run = points[0]
    model, variables = load_run(run)
    x = np.random.default_rng(6).normal(size=(30, 2)).astype(np.float32)
    x[4, 1] = np.nan
    np.save(tmp_path / "new.npy", x)
    outputs = []
    for stream in ("off", "on"):
        out = tmp_path / f"{stream}.npz"
        assert predict_file(model, variables, tmp_path / "new.npy", out, None, run,
                            stream=stream) == 30
        with np.load(out) as saved:
            outputs.append(saved["outputs"])
    np.testing.assert_array_equal(*outputs)  # NaN where NaN, the same numbers elsewhere
    nan = np.isnan(outputs[0]).any(axis=1)
    assert nan.tolist() == [i == 4 for i in range(30)]
    assert np.isnan(outputs[0][4]).all()


def test_predict_with_stream_on_in_the_spec_writes_the_same_csv(pets, tmp_path):
    memory, disk = pets
    for run in pets:
        code, _, err = run_cli("predict", run, memory.parent / "pets", "--out",
                               tmp_path / f"{run.name}.csv")
        assert code == 0, err
    assert (tmp_path / "memory.csv").read_text() == (tmp_path / "disk.csv").read_text()


# ---- bad input -----------------------------------------------------------------------------


@pytest.fixture()
def a_bad_image(pets):
    """dog/05.png of the pets folder unreadable for one test, then restored."""
    path = pets[0].parent / "pets" / "dog" / "05.png"
    GOOD_BYTES[path] = path.read_bytes()
    path.write_bytes(b"not a png")
    yield path
    path.write_bytes(GOOD_BYTES.pop(path))


GOOD_BYTES: dict[Path, bytes] = {}  # the bad image's own bytes, while a test spoils it


@pytest.mark.parametrize("args", [["--split", "all"], ["--errors", "3", "--split", "all"]],
                         ids=["eval", "errors"])
def test_an_unreadable_image_met_during_eval_is_one_line_naming_it(pets, a_bad_image, args,
                                                                   tmp_path):
    if "--errors" in args:  # --errors looks at one split: the one holding the bad image
        args = ["--errors", "3", "--split", bad_split(pets[1]), "--out", tmp_path]
    code, _, err = run_cli("eval", pets[1], *args)
    assert code != 0
    line = one_error_line(err)
    assert "pets/dog/05.png" in line and line.startswith("netc: error: data: "), line


def bad_split(run: Path) -> str:
    """The split of a streamed run that holds dog/05.png."""
    model, variables = load_run(run)
    splits, _ = run_splits(model, variables, run)
    for name, part in splits.parts():
        if any(part.source.files[r].endswith("dog/05.png") for r in part.rows):
            return name
    raise AssertionError("dog/05.png is in no split")


def bad_position(run: Path, name: str) -> int:
    """dog/05.png's position in the split `name` of a streamed run."""
    model, variables = load_run(run)
    part = dict(run_splits(model, variables, run)[0].parts())[name]
    return [part.source.files[r].endswith("dog/05.png") for r in part.rows].index(True)


def test_an_unreadable_image_met_during_predict_is_one_line_naming_it(pets, a_bad_image,
                                                                      tmp_path):
    code, _, err = run_cli("predict", pets[1], a_bad_image.parent.parent, "--out",
                           tmp_path / "p.csv")
    assert code != 0
    line = one_error_line(err)
    assert "pets/dog/05.png" in line and line.startswith("netc: error: input: "), line
    assert not (tmp_path / "p.csv").exists()


# ---- a split's own file ----------------------------------------------------------------------


def test_a_streamed_test_file_in_the_courses_h5_layout_evaluates_as_in_memory(tmp_path):
    import h5py

    rng = np.random.default_rng(1)
    for name, prefix, m in (("train.h5", "train_set", 40), ("test.h5", "test_set", 12)):
        with h5py.File(tmp_path / name, "w") as f:  # only the course's names, no x and y
            f[f"{prefix}_x"] = rng.integers(0, 256, (m, 4, 4, 3)).astype(np.uint8)
            f[f"{prefix}_y"] = (np.arange(m) % 2).reshape(1, m)
            f["list_classes"] = np.asarray([b"non-cat", b"cat"])
    spec = write_spec(tmp_path, """net cats
input 4x4x3
flatten -> sigmoid 1
train {
  data "train.h5" test="test.h5"
  split 1 0 0
  optimizer adam lr=0.01
  batch 8
  epochs 2
  stream off
}
""")
    code, _, err = run_cli("train", spec, "--out", tmp_path / "memory", "--quiet")
    assert code == 0, err
    disk = streamed_copy(tmp_path / "memory", tmp_path / "disk")
    model, variables = load_run(disk)
    splits, _ = run_splits(model, variables, disk)
    assert is_streamed(splits.test) and len(splits.test) == 12
    assert eval_json(disk, "--split", "all") == eval_json(tmp_path / "memory", "--split", "all")


def test_skip_bad_leaves_the_unreadable_image_out_of_eval_and_errors(pets, a_bad_image,
                                                                     tmp_path):
    memory, disk = pets
    name = bad_split(disk)
    lenient = streamed_copy(disk, tmp_path / "lenient", "stream on",
                            "stream on\n  skip_bad true")
    report = eval_json(lenient, "--split", name)["splits"][name]
    m = json.loads((memory / "run.json").read_text())["examples"][name]
    assert report["skipped"] == 1 and report["examples"] == m - 1
    assert np.asarray(report["confusion"]).sum() == m - 1
    code, _, err = run_cli("eval", lenient, "--errors", 1000, "--split", name, "--out",
                           tmp_path / "lenient")
    assert code == 0, err
    kept = (tmp_path / "lenient" / "errors.csv").read_text().splitlines()
    # the same wrong examples as the whole split's, in the same order, less the bad one
    a_bad_image.write_bytes(GOOD_BYTES[a_bad_image])
    code, _, err = run_cli("eval", memory, "--errors", 1000, "--split", name, "--out",
                           tmp_path / "whole")
    assert code == 0, err
    every = (tmp_path / "whole" / "errors.csv").read_text().splitlines()
    position = bad_position(disk, name)
    assert kept == [row for row in every if row.split(",")[1] != str(position)]


def test_a_run_without_saved_statistics_gets_those_training_computed(pets):
    memory, disk = pets
    model, variables = load_run(memory)
    saved = {k: np.asarray(variables["normalization"][k]).reshape(6, 5, 3)
             for k in ("mean", "std")}
    _, in_memory = run_splits(model, {}, memory)  # as an interrupted run: no norm/ tensors
    splits, streamed = run_splits(load_run(disk)[0], {}, disk)
    assert is_streamed(splits.train)
    for key in ("mean", "std"):
        np.testing.assert_array_equal(in_memory[key], saved[key])  # prepare's own arithmetic
        np.testing.assert_allclose(streamed[key], saved[key], rtol=1e-5)  # merged in float64
