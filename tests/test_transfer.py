"""Transfer learning (issue 11): `init from="RUN_DIR" [layers=NAME,...]` in the train section.

A small moons net with batchnorm and def scopes is trained once as the base run; specs that
start from it check that
- the start variables are the base run's final values, exactly (the loader against load_run,
  Trainer.init_state(start=...) against both, and a run whose gd lr=1e-30 leaves the params
  as they were), while new layers get a fresh init's values for the same seed;
- `layers=` narrows the match (a layer or a block prefix), and a NAME that matches nothing is
  an error with a did-you-mean;
- a matched layer whose shapes differ, a missing folder, an empty one and a corrupt file are
  errors at the `init from=` line (netc check and netc train, exit 1, no traceback); an
  unfinished run starts from its newest checkpoint with a warning;
- the summary marks where each layer starts (table and --json), the train start line and
  run.json say what was taken, `--resume` continues from the run's own checkpoint, and
  `netc check` reads the run without importing JAX.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ERROR_HEADER, run_cli, run_python, write_spec
from netc.compiler.check import check_source
from netc.compiler.overrides import apply_overrides
from netc.compiler.settings import Choice, InitFrom
from netc.compiler.transfer_check import resolve_init_from
from netc.dsl.diagnostics import SpecError


def spec(body: str, init: str, *, train: str = "optimizer adam lr=0.01", epochs: int = 2,
         name: str = "new") -> str:
    """A net on moons whose train section starts with `init`."""
    return f"""net {name}
input 2
def block(n) {{ fc n -> bn -> relu }}
{body}
train {{
  {init}
  data moons n=120 noise=0.2
  split 0.75 0.25 0
  {train}
  batch 32
  epochs {epochs}
  seed 3
}}
"""


SAME = "block(8) -> block(4) -> softmax 2"
NEW_HEAD = "block(8) -> block(4) -> softmax 2 as head"
WIDER = "block(8) -> block(6) -> softmax 2"
CLASH = "block(8) -> block(4) -> softmax 3"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A trained base run at FOLDER/runs/base; specs go in FOLDER."""
    folder = tmp_path_factory.mktemp("transfer")
    path = write_spec(folder, spec(SAME, "", epochs=3, name="base"), "base.net")
    code, _, err = run_cli("train", path, "--out", folder / "runs" / "base", "--quiet")
    assert code == 0, err
    return folder / "runs" / "base"


def checked(folder: Path, text: str, name: str = "new.net"):
    path = write_spec(folder, text, name)
    return check_source(text, str(path)), path


def trainer_for(net, folder: Path):
    from netc.runtime.run import load_data, to_device
    from netc.runtime.train import Trainer

    splits, _ = load_data(net, folder, "cross_entropy")
    return Trainer(net, to_device(splits.train), to_device(splits.dev))


def numpy_tree(tree) -> dict:
    import jax

    return jax.tree.map(np.asarray, tree)


# ---- the start variables -------------------------------------------------------------------


def test_start_variables_are_the_base_runs_final_values(base):
    from netc.runtime.run import load_run
    from netc.runtime.transfer import cast_start, start_variables

    net, path = checked(base.parent.parent, spec(NEW_HEAD, 'init from="runs/base"'))
    transfer, start = start_variables(net, path.parent)
    _, final = load_run(base)
    final = numpy_tree(final)
    taken = ["block_1/fc_1", "block_1/batchnorm_1", "block_2/fc_1", "block_2/batchnorm_1"]
    assert list(transfer.layers) == taken
    assert transfer.fresh == ("head",)
    for group in ("params", "state"):
        for layer, arrays in start[group].items():
            for name, array in arrays.items():
                assert np.array_equal(array, final[group][layer][name]), (group, layer, name)
    assert set(start["state"]) == {"block_1/batchnorm_1", "block_2/batchnorm_1"}  # BN stats

    trainer = trainer_for(net, path.parent)
    params, state, _, _ = numpy_tree(trainer.init_state(start=cast_start(start, np.float32)))
    fresh_params, fresh_state, _, _ = numpy_tree(trainer.init_state())
    for layer in taken:
        for name, array in params[layer].items():
            assert np.array_equal(array, final["params"][layer][name])
        for name, array in state.get(layer, {}).items():
            assert np.array_equal(array, final["state"][layer][name])
    for name, array in params["head"].items():  # a new layer: a fresh init, same seed
        assert np.array_equal(array, fresh_params["head"][name])
    assert transfer.params == sum(a.size for layer in taken for a in params[layer].values())
    assert transfer.state == sum(a.size for a in fresh_state["block_1/batchnorm_1"].values()) \
        + sum(a.size for a in fresh_state["block_2/batchnorm_1"].values())


def test_training_with_a_tiny_rate_keeps_the_base_params_bit_for_bit(base, tmp_path):
    from conftest import params_of

    folder = base.parent.parent
    path = write_spec(folder, spec(SAME, 'init from="runs/base"', train="optimizer gd lr=1e-30",
                                   epochs=1), "tiny.net")
    out = tmp_path / "tiny"
    code, _, err = run_cli("train", path, "--out", out)
    assert code == 0, err
    assert "init from runs/base: 5 layers, 82 of 82 params and 24 of 24 state" in err
    assert err.index("init from runs/base") < err.index("training new")
    before, after = params_of(base), params_of(out)
    assert before.keys() == after.keys()
    for layer in before:
        for name in before[layer]:
            assert np.array_equal(before[layer][name], after[layer][name]), (layer, name)
    info = json.loads((out / "run.json").read_text())
    assert info["init_from"]["from"] == "runs/base"
    assert info["init_from"]["layers"] == ["block_1/fc_1", "block_1/batchnorm_1",
                                           "block_2/fc_1", "block_2/batchnorm_1", "softmax_1"]
    assert info["init_from"]["params"] == 82 and info["init_from"]["fresh"] == []


def test_a_population_starts_every_member_from_the_run(base, tmp_path):
    from conftest import params_of
    from netc.runtime.population import train_population

    folder = base.parent.parent
    nets = [check_source(spec(SAME, 'init from="runs/base"', epochs=1,
                              train=f"optimizer gd lr={lr}"), str(folder / "p.net"))
            for lr in ("1e-30", "2e-30")]
    results = train_population(nets, [tmp_path / "a", tmp_path / "b"], base_dir=folder)
    before = params_of(base)
    for result in results:
        after = params_of(result.out_dir)
        for layer in before:
            for name in before[layer]:
                assert np.array_equal(before[layer][name], after[layer][name])
        info = json.loads((result.out_dir / "run.json").read_text())
        assert info["init_from"]["from"] == "runs/base"


# ---- layers= -----------------------------------------------------------------------------


@pytest.mark.parametrize(("layers", "taken"), [
    ("block_1", ["block_1/fc_1", "block_1/batchnorm_1"]),
    ('"block_1/fc_1, block_2"', ["block_1/fc_1", "block_2/fc_1", "block_2/batchnorm_1"]),
    ("head", None),
])
def test_layers_narrows_the_match(base, layers, taken):
    folder = base.parent.parent
    net, path = checked(folder, spec(NEW_HEAD, f'init from="runs/base" layers={layers}'))
    if taken is None:
        with pytest.raises(SpecError) as err:
            resolve_init_from(net, folder)
        d = err.value.diagnostics[0]
        assert d.code == "E421"
        assert "'head', which is no layer of runs/base" in d.message
        return
    transfer = resolve_init_from(net, folder)
    assert list(transfer.layers) == taken
    assert set(transfer.fresh) == {"block_1/fc_1", "block_1/batchnorm_1", "block_2/fc_1",
                                   "block_2/batchnorm_1", "head"} - set(taken)


def test_a_layers_name_that_matches_nothing_is_an_error_with_a_did_you_mean(base):
    folder = base.parent.parent
    text = spec(NEW_HEAD, 'init from="runs/base" layers="block_1,blok_2/fc_1"')
    path = write_spec(folder, text, "typo.net")
    code, _, err = run_cli("check", path)
    assert code == 1
    head = ERROR_HEADER.match(err.splitlines()[0])
    assert head and head["line"] == "6" and head["col"] == "25"  # at layers=
    assert "layers= names 'blok_2/fc_1', which is no layer of this net" in err
    assert "did you mean block_2/fc_1?" in err
    code, out, _ = run_cli("check", path, "--json")
    assert code == 1 and json.loads(out)["errors"][0]["code"] == "E421"


# ---- errors at the init from= line --------------------------------------------------------


def test_a_head_whose_shape_differs_is_an_error_with_a_hint(base, tmp_path):
    folder = base.parent.parent
    path = write_spec(folder, spec(CLASH, 'init from="runs/base"'), "clash.net")
    code, _, err = run_cli("check", path)
    assert code == 1 and "Traceback" not in err
    head = ERROR_HEADER.match(err.splitlines()[0])
    assert head and (head["line"], head["col"]) == ("6", "3")
    assert head["msg"] == 'init from="runs/base": softmax_1\'s kernel is 4x2 there and 4x3 here'
    assert ("= help: give the new head its own name (softmax 3 as head) or leave it out: "
            'layers="block_1,block_2"') in err
    code, _, err_train = run_cli("train", path, "--out", tmp_path / "never")
    assert code == 1
    assert err_train.splitlines()[0] == err.splitlines()[0]
    assert not (tmp_path / "never").exists()  # checked before anything runs

    fixed = write_spec(folder, spec(CLASH, 'init from="runs/base" layers="block_1,block_2"'),
                       "fixed.net")
    assert run_cli("check", fixed)[0] == 0


def test_inner_layers_that_differ_each_get_an_error(base):
    folder = base.parent.parent
    net, _ = checked(folder, spec(WIDER, 'init from="runs/base"'))
    with pytest.raises(SpecError) as err:
        resolve_init_from(net, folder)
    messages = [d.message for d in err.value.diagnostics]
    assert messages == [
        'init from="runs/base": block_2/fc_1\'s kernel is 8x4 there and 8x6 here',
        'init from="runs/base": block_2/batchnorm_1\'s gamma is 4 there and 6 here',
        'init from="runs/base": softmax_1\'s kernel is 4x2 there and 6x2 here',
    ]
    assert all(d.code == "E422" for d in err.value.diagnostics)
    assert "changed layer its own name (fc n as new_fc)" in err.value.diagnostics[0].help
    assert err.value.diagnostics[0].help.endswith("leave it out: layers=block_1")


def test_a_layer_with_other_arrays_is_an_error(base):
    folder = base.parent.parent
    text = spec("block(8) -> fc 4 bias=false -> bn -> relu -> softmax 2",
                'init from="runs/base" layers="block_1,softmax_1"')
    net, _ = checked(folder, text)
    assert resolve_init_from(net, folder).fresh == ("fc_1", "batchnorm_1")
    net, _ = checked(folder, spec("block(8) -> block(4) -> fc 2 bias=false as softmax_1",
                                  'init from="runs/base"'))
    with pytest.raises(SpecError) as err:
        resolve_init_from(net, folder)
    assert err.value.diagnostics[0].message == \
        'init from="runs/base": softmax_1 holds bias, kernel there and kernel here'


def test_nothing_in_common_is_an_error(base):
    folder = base.parent.parent
    net, _ = checked(folder, spec("fc 3 -> sigmoid 1", 'init from="runs/base"'))
    with pytest.raises(SpecError) as err:
        resolve_init_from(net, folder)
    d = err.value.diagnostics[0]
    assert d.code == "E423" and "no layer of this net is named as a layer of runs/base" in \
        d.message
    assert "block_1/fc_1" in d.help


@pytest.mark.parametrize("case", ["missing", "file", "empty", "truncated", "garbage",
                                  "not netc"])
def test_a_run_folder_that_cannot_be_used_is_an_error(base, tmp_path, case):
    run = tmp_path / "runs" / "base"
    if case != "missing":
        run.parent.mkdir(parents=True)
    if case == "file":
        run.write_text("x")
    elif case != "missing":
        shutil.copytree(base, run)
        model = run / "model.safetensors"
        data = model.read_bytes()
        if case == "empty":
            model.unlink()
            shutil.rmtree(run / "checkpoints")
        elif case == "truncated":
            model.write_bytes(data[: len(data) // 2])
        elif case == "garbage":
            model.write_bytes(data[:8] + b"\xff" * (len(data) - 8))
        else:
            from safetensors.numpy import save_file

            save_file({"params/x/kernel": np.zeros(2, np.float32)}, str(model))
    path = write_spec(tmp_path, spec(NEW_HEAD, 'init from="runs/base"'), "new.net")
    words = {"missing": "no such run folder: runs/base", "file": "is a file, not a run folder",
             "empty": "holds no trained variables (no model.safetensors, no checkpoints)",
             "truncated": "model.safetensors is cut short or corrupt",
             "garbage": "model.safetensors is corrupt (its header is not JSON)",
             "not netc": "model.safetensors was not written by netc train"}[case]
    for command in ("check", "train"):
        code, _, err = run_cli(command, path, *(["--out", tmp_path / "o"] if command == "train"
                                                 else []))
        assert code == 1 and "Traceback" not in err
        head = ERROR_HEADER.match(err.splitlines()[0])
        assert head and (head["line"], head["col"]) == ("6", "3"), err
        assert words in head["msg"], err
    assert _json_code(path) == "E420"


def _json_code(path: Path) -> str:
    code, out, _ = run_cli("check", path, "--json")
    assert code == 1
    return json.loads(out)["errors"][0]["code"]


def test_a_corrupt_model_file_stops_train_before_it_runs(base, tmp_path):
    run = tmp_path / "runs" / "base"
    shutil.copytree(base, run)
    model = run / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-3] ^= 0xFF  # a tensor's bytes: the header still reads, the checksum does not match
    model.write_bytes(bytes(data))
    path = write_spec(tmp_path, spec(NEW_HEAD, 'init from="runs/base"'), "new.net")
    assert run_cli("check", path)[0] == 0  # netc check reads the header only
    code, _, err = run_cli("train", path, "--out", tmp_path / "o")
    assert code == 1 and "Traceback" not in err
    assert err.splitlines()[0] == (
        f"{path}:6:3: error: init from=\"runs/base\": runs/base/model.safetensors: contents do "
        "not match their checksum")
    assert not (tmp_path / "o").exists()


def test_an_unfinished_run_starts_from_its_newest_checkpoint(base, tmp_path):
    from netc.runtime.sharded_checkpoint import latest_variables
    from netc.runtime.transfer import start_variables

    run = tmp_path / "runs" / "base"
    shutil.copytree(base, run)
    (run / "model.safetensors").unlink()
    path = write_spec(tmp_path, spec(NEW_HEAD, 'init from="runs/base"'), "new.net")
    code, _, err = run_cli("check", path)
    assert code == 0
    assert "warning: init from=\"runs/base\": runs/base is unfinished (no model.safetensors): " \
        "starting from its newest checkpoint, epoch 3" in err
    code, out, _ = run_cli("check", path, "--json")
    assert [w["code"] for w in json.loads(out)["warnings"]] == ["W420"]
    transfer, start = start_variables(check_source(path.read_text(), str(path)), tmp_path)
    assert transfer.epoch == 3 and transfer.file.name == "ckpt_000003"
    variables, epoch = latest_variables(run / "checkpoints")
    assert epoch == 3
    for layer, arrays in start["params"].items():
        for name, array in arrays.items():
            assert np.array_equal(array, variables["params"][layer][name])


# ---- what the tools say --------------------------------------------------------------------


def test_the_summary_marks_where_each_layer_starts(base, monkeypatch):
    folder = base.parent.parent
    path = write_spec(folder, spec(NEW_HEAD, 'init from="runs/base" layers=block_1'),
                      "marked.net")
    code, out, _ = run_cli("check", path, "--json")
    assert code == 0
    summary = json.loads(out)
    origins = {layer["name"]: layer["from"] for layer in summary["layers"]}
    assert origins == {"block_1/fc_1": "runs/base", "block_1/batchnorm_1": "runs/base",
                       "block_1/relu_1": None, "block_2/fc_1": None,
                       "block_2/batchnorm_1": None, "block_2/relu_1": None, "head": None}
    assert summary["init_from"] == {"from": "runs/base", "file": str(base.absolute() /
                                                                     "model.safetensors"),
                                    "epoch": None, "layers": 2, "params": 32, "state": 16}
    monkeypatch.setenv("COLUMNS", "100")
    code, out, _ = run_cli("check", path)
    assert code == 0
    column = [line.split("│")[-1].strip() for line in out.splitlines() if line.count("│") == 5]
    assert column == ["", "runs/base", "runs/base", "", "", "fresh", "fresh", "", "fresh", ""]
    assert "init from runs/base: 2 layers, 32 of 82 params and 16 of 24 state; fresh: " \
        "block_2, head" in " ".join(out.split())


def fake_run(folder: Path, net) -> None:
    """A run folder whose model.safetensors has `net`'s variables in its header and zeros
    (a sparse file) after it: enough for netc check, which reads the header alone."""
    header: dict = {"__metadata__": {"format": "netc-checkpoint-1", "sha256": "", "meta": "{}"}}
    end = 0
    for leaf in net.leaves():
        for group in ("params", "state"):
            for name, shape in getattr(leaf, group).items():
                size = 4 * int(np.prod(shape))
                header[f"{group}/{leaf.name}/{name}"] = {"dtype": "F32", "shape": list(shape),
                                                         "data_offsets": [end, end + size]}
                end += size
    raw = json.dumps(header).encode()
    folder.mkdir(parents=True)
    with open(folder / "model.safetensors", "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little") + raw)
        fh.truncate(8 + len(raw) + end)


@pytest.mark.parametrize(("columns", "column"), [(80, None), (100, "run"),
                                                 (130, "runs/resnet50-20260101-120000")])
def test_the_from_column_never_squeezes_the_names(tmp_path, monkeypatch, columns, column):
    from conftest import EXAMPLES

    text = (EXAMPLES / "zoo" / "resnet50.net").read_text().replace("softmax 1000", "softmax 5")
    fake_run(tmp_path / "runs" / "resnet50-20260101-120000", check_source(text))
    text += ('\ntrain {\n  init from="runs/resnet50-20260101-120000" '
             'layers="conv_1,layer1,layer2"\n}\n')
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, _ = run_cli("check", write_spec(tmp_path, text, "r50.net"))
    assert code == 0
    assert "…" not in out and max(map(len, out.splitlines())) <= columns
    lines = out.splitlines()
    header = lines[1].split("┃")
    if column is None:
        assert len(header) == 5
    else:
        assert header[-1].strip() == "from"
        assert lines[3].split("│")[-1].strip() == column  # conv_1
        assert lines[4].split("│")[-1].strip() == "fresh"  # batchnorm_1
    assert "47 layers, 1,444,800 of 23,518,277 params and 9,984 of 53,120 state; fresh: " \
        "batchnorm_1, layer3, layer4, softmax_1" in " ".join(out.split())


def test_without_init_from_the_json_has_null_origins_and_the_table_no_column(tmp_path):
    path = write_spec(tmp_path, "input 2\nfc 3 -> sigmoid 1\n")
    code, out, _ = run_cli("check", path, "--json")
    assert code == 0
    assert [layer["from"] for layer in json.loads(out)["layers"]] == [None, None]
    assert "init_from" not in json.loads(out)
    code, out, _ = run_cli("check", path)
    assert "from" not in out and "taken" not in out


def test_resume_continues_from_its_own_checkpoint_without_the_base(base, tmp_path):
    from conftest import params_of

    run = tmp_path / "runs" / "base"
    shutil.copytree(base, run)
    path = write_spec(tmp_path, spec(NEW_HEAD, 'init from="runs/base"', epochs=2), "new.net")
    out = tmp_path / "tuned"
    assert run_cli("train", path, "--out", out, "--quiet")[0] == 0
    shutil.rmtree(run)  # the base is gone: a resumed run does not need it
    code, _, err = run_cli("train", path, "--out", out, "--resume", "--set", "epochs=3")
    assert code == 0, err
    assert "resuming after epoch 2" in err and "init from runs/base" not in err
    info = json.loads((out / "run.json").read_text())
    assert info["epochs_done"] == 3 and info["init_from"]["from"] == "runs/base"
    assert params_of(out).keys() == params_of(base).keys() - {"softmax_1"} | {"head"}
    code, _, err = run_cli("train", path, "--out", tmp_path / "fresh")  # a fresh start does
    assert code == 1 and "no such run folder" in err


def test_check_reads_the_run_without_jax(base):
    path = write_spec(base.parent.parent, spec(NEW_HEAD, 'init from="runs/base"'), "nojax.net")
    for flags in ([], ["--json"]):
        code = ("import sys, io, contextlib; from netc.runtime.cli import main\n"
                "with contextlib.redirect_stdout(io.StringIO()), "
                "contextlib.redirect_stderr(io.StringIO()):\n"
                f"    rc = main(['check', {str(path)!r}] + {flags!r})\n"
                "print(rc, 'jax' in sys.modules)")
        out = run_python("-c", code)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["0", "False"]


def test_relative_folders_are_read_from_the_spec_folder_and_stdin_from_the_cwd(base, tmp_path,
                                                                                monkeypatch):
    text = spec(NEW_HEAD, f'init from="{base}"')  # absolute: from anywhere
    assert run_cli("check", write_spec(tmp_path, text))[0] == 0
    text = spec(NEW_HEAD, 'init from="runs/base"')
    monkeypatch.chdir(base.parent.parent)
    code, _, err = run_cli("check", write_spec(tmp_path, text))
    assert code == 1 and "no such run folder" in err  # tmp_path/runs/base
    monkeypatch.setattr("sys.stdin", _Stdin(text))
    assert run_cli("check", "-")[0] == 0  # stdin: from the current folder


class _Stdin:
    def __init__(self, text: str):
        import io

        self.buffer = io.BytesIO(text.encode())


# ---- the train section ---------------------------------------------------------------------


def test_init_from_may_sit_beside_one_plain_init():
    net = check_source(spec(SAME, 'init from="runs/base" layers=block_1\n  init xavier'))
    assert net.train.init == Choice("xavier")
    assert net.train.init_from == InitFrom("runs/base", ("block_1",))
    assert net.train.init_from.span.line == 6
    for twice, what in (('init from="a"\n  init from="b"', "'init from=' is set twice"),
                        ("init he\n  init xavier", "'init' is set twice")):
        with pytest.raises(SpecError) as err:
            check_source(spec(SAME, twice))
        d = err.value.diagnostics[0]
        assert (d.code, d.span.line) == ("E402", 7) and what in d.message
    with pytest.raises(SpecError) as err:
        check_source(spec(SAME, 'init he from="a"'))
    assert err.value.diagnostics[0].message == "init from= goes on a line of its own"


@pytest.mark.parametrize(("line", "words"), [
    ("init from=runs", "init from=runs: expects a quoted run folder"),
    ('init from=""', "is empty"),
    ('init from="a" layers="a//b"', "'a//b' is not a layer name"),
    ('init from="a" layer=x', "init has no argument 'layer'"),
])
def test_malformed_init_from_lines(line, words):
    with pytest.raises(SpecError) as err:
        check_source(spec(SAME, line))
    assert words in err.value.diagnostics[0].message


@pytest.mark.parametrize(("line", "quoted"), [
    ('init from="r" layers=fc_1,fc_2', 'init from="r" layers="fc_1,fc_2"'),
    ('init from="r" layers=block_1/fc_1', 'init from="r" layers="block_1/fc_1"'),
    ('init from="r" layers=block_1/fc_1,fc_2', 'init from="r" layers="block_1/fc_1,fc_2"'),
])
def test_layer_lists_may_be_written_unquoted(line, quoted):
    """LANGUAGE.md's `layers=NAME,...`: names joined by ',' (and '/') read as the quoted
    list does."""
    from netc.compiler.settings import check_train
    from netc.dsl import nodes as n
    from netc.dsl.parser import parse

    def init_from(text):
        module = parse(f"input 2\nfc 1\ntrain {{\n  {text}\n}}\n", "t.net")
        block = next(s for s in module.statements if isinstance(s, n.TrainBlock))
        diags = []
        found = check_train(block, diags).init_from
        assert not diags, diags
        return found
    assert init_from(line) == init_from(quoted) and len(init_from(line).layers) >= 1


def test_set_keeps_both_init_lines_and_edits_init_from():
    text = spec(SAME, 'init from="runs/base" layers=block_1\n  init he')
    out = apply_overrides(text, ["epochs=5", "init=xavier"])
    assert 'init from="runs/base" layers=block_1\n  init xavier\n' in out
    out = check_source(apply_overrides(text, ["init.from=runs/other",
                                              "init.layers=block_1/fc_1,block_2"])).train
    assert out.init_from == InitFrom("runs/other", ("block_1/fc_1", "block_2"))
    assert out.init == Choice("he")
    added = check_source(apply_overrides(spec(SAME, ""), ["init.from=runs/x"])).train
    assert added.init_from == InitFrom("runs/x") and added.init == Choice("he")


def test_the_header_reader_agrees_with_the_checkpoint_module(base):
    from netc.compiler import transfer_check
    from netc.runtime import checkpoint, sharded_checkpoint

    assert transfer_check.FORMAT == checkpoint.FORMAT
    assert transfer_check.CHECKPOINT_NAME.pattern == checkpoint.CHECKPOINT_NAME.pattern
    assert transfer_check.STEP_NAME.pattern == sharded_checkpoint.STEP_NAME.pattern
    assert transfer_check.STEP_FORMAT == sharded_checkpoint.FORMAT
    tensors, _ = checkpoint.load_tensors(base / "model.safetensors")
    header, _ = transfer_check.read_header(base / "model.safetensors")
    assert header == {k: ("F32", a.shape) for k, a in tensors.items()}
    step = sharded_checkpoint.list_checkpoints(base / "checkpoints")[-1][1]
    arrays, epoch = transfer_check.read_step_meta(step)
    variables, loaded_epoch = sharded_checkpoint.load_variables(step)
    assert epoch == loaded_epoch
    assert {k: v for k, v in arrays.items() if not k.startswith("opt/")} == {
        k: ("float32", a.shape) for k, a in checkpoint.flatten_variables(variables).items()}
