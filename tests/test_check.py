"""`netc check` against the acceptance corpus (../shared/specs/expected.json) and the pinned
JSON shape of LANGUAGE.md section 6."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli, run_python, shared_expected
from netc.compiler.check import check_file, check_source

EXPECTED = shared_expected()


@pytest.mark.parametrize("name", sorted(EXPECTED) or ["<absent>"])
def test_shared_spec_matches_expected(name, shared_specs):
    code, out, err = run_cli("check", shared_specs / f"{name}.net", "--json")
    assert code == 0, err
    got = json.loads(out)
    want = EXPECTED[name]
    assert got["output"] == want["output"]
    assert got["params"] == want["params"]
    assert got["state"] == want["state"]
    assert got["macs"] == want["macs"]


def test_json_object_has_the_pinned_fields(shared_specs):
    code, out, err = run_cli("check", shared_specs / "lenet5.net", "--json")
    assert code == 0, err
    got = json.loads(out)
    assert got["net"] == "lenet5" and got["input"] == [32, 32, 1]
    assert {"net", "input", "output", "params", "state", "macs", "layers", "warnings"} <= set(got)
    first = got["layers"][0]
    assert first == {**first, "name": "conv_1", "kind": "conv", "line": 4, "output": [28, 28, 6],
                     "params": 156, "macs": 117600}
    # every leaf in execution order; per-layer figures add up to the totals
    assert sum(layer["params"] for layer in got["layers"]) == got["params"]
    assert sum(layer["macs"] for layer in got["layers"]) == got["macs"]


def test_card_example_is_accepted_verbatim():
    net = check_source("input 28x28x1\nconv f=3 s=1 p=same c=10 -> relu -> maxpool f=2 -> "
                       "fc 120 -> softmax 10\n")
    assert [leaf.out_shape for leaf in net.leaves()] == [
        (28, 28, 10), (28, 28, 10), (14, 14, 10), (120,), (10,)]


def test_course_size_rule_and_same_padding():
    # floor((n + 2p - f)/s) + 1 per axis, non-square input, and SAME = ceil(n/s)
    net = check_source("input 39x20x3\nconv f=5 s=2 p=1 c=4 -> conv f=3 s=2 p=same c=2")
    a, b = net.leaves()
    assert a.out_shape == ((39 + 2 - 5) // 2 + 1, (20 + 2 - 5) // 2 + 1, 4)
    assert b.out_shape == (-(-a.out_shape[0] // 2), -(-a.out_shape[1] // 2), 2)


def test_residual_projection_is_its_own_layer(shared_specs):
    net = check_file(shared_specs / "residual_projection.net")
    proj = [leaf for leaf in net.leaves() if leaf.attrs.get("projection")]
    assert len(proj) == 1 and proj[0].attrs["s"] == (2, 2) and proj[0].params["bias"] == (128,)


def test_bias_is_dropped_before_batchnorm_unless_forced():
    net = check_source("input 8x8x3\nconv f=3 c=4 -> bn -> conv f=3 c=4 bias=true -> bn")
    convs = [leaf for leaf in net.leaves() if leaf.kind == "conv"]
    assert "bias" not in convs[0].params and "bias" in convs[1].params


def test_names_are_scoped_and_stable():
    net = check_source("input 8\ndef blk(n) { fc n -> relu }\nblk(4) -> blk(4) -> fc 2 as out")
    assert [leaf.name for leaf in net.leaves()] == [
        "blk_1/fc_1", "blk_1/relu_1", "blk_2/fc_1", "blk_2/relu_1", "out"]


def test_huge_input_counts_are_exact():  # test_fuzz measures that nothing is allocated
    net = check_source("input 100000x100000x3\nconv f=3 c=8")
    assert net.params == 3 * 3 * 3 * 8 + 8
    assert net.macs == 99998 * 99998 * 8 * 27


def test_check_does_not_import_jax(shared_specs):
    code = ("import contextlib, io, sys\nfrom netc.runtime.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    rc = main(['check', {str(shared_specs / 'lenet5.net')!r}, '--json'])\n"
            "print(rc, 'jax' in sys.modules)")
    proc = run_python("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "False"]  # the check ran, and passed, without JAX


def test_the_minibatch_of_a_split_is_batch_at_most_its_size():
    from netc.compiler.settings import TrainConfig

    assert TrainConfig(batch=16).batch_of(100) == 16
    assert TrainConfig(batch=64).batch_of(10) == 10  # a split smaller than one batch
    assert TrainConfig(batch=None).batch_of(37) == 37  # batch full
