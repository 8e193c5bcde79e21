"""Orbax checkpoints (runtime/sharded_checkpoint.py) on their own: the per-array checksums
(every bit flip changes them; the same for jax and numpy arrays), what a checkpoint's meta
records against the arrays read back, the keep policy, and a checkpoint of another spec
refused with one line. Moving across device counts and processes: tests/test_devices.py,
tests/test_distributed.py; damage and fallback: tests/test_resume.py."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import moons_mlp, run_cli, write_spec
from netc.runtime.sharded_checkpoint import (
    CheckpointWriter,
    checksums,
    list_checkpoints,
    load_arrays,
    read_meta,
)

DTYPES = ["float32", "float64", "float16", "int32", "int8", "bool"]


def tree_of(array) -> dict:
    return {"params": {"block_1/fc_1": {"kernel": array}}, "state": {}, "opt": {}}


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_bit_flip_changes_the_checksum(dtype):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((5, 7)) * 3).astype(dtype)
    name = "params/block_1/fc_1/kernel"
    base = checksums(tree_of(a))[name]
    raw = a.view(np.uint8).reshape(-1)
    for byte in range(0, raw.size, 3):
        for bit in (0, 5):
            b = raw.copy()
            b[byte] ^= 1 << bit
            flipped = b.view(a.dtype).reshape(a.shape)
            assert checksums(tree_of(flipped))[name] != base, (byte, bit)


def test_swapped_rows_and_jax_arrays():
    import jax.numpy as jnp

    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    name = "params/block_1/fc_1/kernel"
    assert checksums(tree_of(a))[name] != checksums(tree_of(a[::-1].copy()))[name]
    assert checksums(tree_of(a)) == checksums(tree_of(jnp.asarray(a)))


def test_meta_describes_what_is_read_back_and_two_are_kept(tmp_path):
    import jax.numpy as jnp

    params = {"block_1/fc_1": {"kernel": jnp.arange(6.0).reshape(2, 3),
                               "bias": jnp.ones(3)}}
    opt = (jnp.int32(7), {"block_1/fc_1": {"kernel": jnp.zeros((2, 3)), "bias": jnp.ones(3)}})
    with CheckpointWriter(tmp_path / "checkpoints") as writer:
        for epoch in (1, 2, 3):
            writer.save(epoch, (params, {}, opt, None), {"net": "t", "seed": 4})
    kept = list_checkpoints(tmp_path / "checkpoints")
    assert [(e, p.name) for e, p in kept] == [(2, "ckpt_000002"), (3, "ckpt_000003")]
    meta = read_meta(kept[-1][1])
    assert (meta["epoch"], meta["net"], meta["seed"]) == (3, "t", 4)
    arrays, _ = load_arrays(kept[-1][1])
    assert {k: [str(v.dtype), list(v.shape)] for k, v in arrays.items()} == meta["arrays"]
    np.testing.assert_array_equal(arrays["params/block_1/fc_1/kernel"],
                                  np.arange(6.0).reshape(2, 3))
    assert int(arrays["opt/00000"]) == 7  # the (opt, watch) leaves in order
    assert checksums({"params": {"block_1/fc_1": {
        "kernel": arrays["params/block_1/fc_1/kernel"]}}})["params/block_1/fc_1/kernel"] \
        == meta["checksums"]["params/block_1/fc_1/kernel"]


def test_a_checkpoint_of_another_spec_is_refused_in_one_line(tmp_path):
    spec = write_spec(tmp_path, moons_mlp("fc 8 -> relu -> sigmoid 1", epochs=3), "a.net")
    out = tmp_path / "run"
    code, _, err = run_cli("train", spec, "--out", out, "--checkpoint-every", "1", "--quiet")
    assert code == 0, err
    (out / "model.safetensors").unlink()
    wider = write_spec(tmp_path, moons_mlp("fc 16 -> relu -> sigmoid 1", epochs=5), "b.net")
    (out / "spec.net").write_text(wider.read_text())  # --resume trains the spec as run
    code, _, err = run_cli("train", wider, "--out", out, "--resume", "--quiet")
    assert code == 1
    assert err.strip() == ("netc: error: the checkpoint does not fit this spec (ckpt_000003 "
                           "holds other arrays, such as opt/00001); train into a new --out "
                           "folder or without --resume"), err
