"""XLA compiler options per backend and net (compiler/xla_options.py): which nets get XLA:CPU's
loop emitters, that the option is one XLA knows (a misspelt one fails to compile), that every
top-level program of a run compiles with the net's options, and that a run trained with them
ends where the same run with XLA's defaults ends."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_trees_close, moons_mlp, params_of, write_spec
from netc.compiler.check import check_source
from netc.compiler.xla_options import SMALL_NET_MACS, compiler_options
from netc.runtime.run import train_run

LOOP_EMITTERS = {"xla_cpu_use_fusion_emitters": False}
MOONS = moons_mlp("fc 5 -> relu -> fc 2 -> relu -> sigmoid 1", epochs=40, batch=16)
CONVNET = """net small_conv
input 8x8x1
conv f=3 c=8 p=same -> relu -> maxpool f=2 -> softmax 10
"""


def test_the_course_small_nets_get_the_loop_emitters_on_cpu_only():
    moons = check_source(MOONS)
    assert moons.macs == 2 * 5 + 5 * 2 + 2 * 1 <= SMALL_NET_MACS
    assert compiler_options("cpu", moons.macs) == LOOP_EMITTERS
    assert compiler_options("gpu", moons.macs) is None
    assert compiler_options("tpu", moons.macs) is None
    conv = check_source(CONVNET)
    assert conv.macs == 8 * 8 * 8 * 9 + 4 * 4 * 8 * 10 > SMALL_NET_MACS
    assert compiler_options("cpu", conv.macs) is None


def test_model_jit_compiles_with_the_options_xla_knows():
    """The option names are XLA's: a misspelt one is an INVALID_ARGUMENT at compile time."""
    import netc

    model = netc.compile(MOONS)
    assert model.compiler_options == (LOOP_EMITTERS if jax.default_backend() == "cpu"
                                      else None)
    variables = model.init(jax.random.key(0))
    x = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32)
    ours = model.jit(lambda v, x: model.apply(v, x))(variables, x)
    np.testing.assert_allclose(ours, model.predict(variables, x), rtol=1e-6, atol=1e-7)
    bad = jax.jit(lambda x: x + 1, compiler_options={"xla_cpu_use_fusion_emitterz": False})
    with pytest.raises(Exception, match="fusion_emitterz"):
        bad(jnp.ones(3))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the option is XLA:CPU's")
def test_a_run_with_the_loop_emitters_ends_where_xla_defaults_end(tmp_path, monkeypatch):
    """The same moons run (scan loop, shuffled minibatches, momentum) trained with the loop
    emitters and with XLA's fusion emitters: the same parameters to float32 rounding."""
    def run(text, name):
        spec = write_spec(tmp_path, text, f"{name}.net")
        train_run(check_source(text, str(spec)), tmp_path / name, base_dir=tmp_path,
                  loop="scan")
        return params_of(tmp_path / name)

    chosen = run(MOONS, "chosen")
    monkeypatch.setattr("netc.compiler.model.compiler_options", lambda *args: None)
    default = run(MOONS + "# XLA's defaults (another text: another Model)\n", "default")
    assert_trees_close(chosen, default, atol=1e-5)


MISSPELT = {"xla_cpu_use_fusion_emitterz": False}


@pytest.mark.parametrize("loop", ["scan", "step"])
def test_every_program_of_a_run_compiles_with_the_nets_options(tmp_path, monkeypatch, loop):
    """Options XLA does not know make a compile fail: with them as the net's, training in
    either loop fails, and so do the final figures and a multi-task net's (its own Model, so
    a program of its own), each compiled on its own here: all of them pass the net's options
    to XLA."""
    from netc.compiler.model import compile_net
    from netc.runtime.data import Dataset
    from netc.runtime.split_figures import evaluate_split
    from netc.runtime.task_metrics import task_figures

    monkeypatch.setattr("netc.compiler.model.compiler_options", lambda *args: MISSPELT)
    text = MOONS + f"# {loop}: another text, another Model\n"
    spec = write_spec(tmp_path, text, f"{loop}.net")
    with pytest.raises(Exception, match="fusion_emitterz"):
        train_run(check_source(text, str(spec)), tmp_path / loop, base_dir=tmp_path,
                  loop=loop)
    model = compile_net(check_source(text))
    variables = model.init(jax.random.key(0))
    x = np.zeros((8, 2), np.float32)
    y = np.zeros((8, 1), np.float32)
    with pytest.raises(Exception, match="fusion_emitterz"):
        evaluate_split(model, variables, Dataset(x, y), 4)
    tasks = compile_net(check_source(MOONS.replace("sigmoid 1", "sigmoid 3") + "# tasks\n"))
    with pytest.raises(Exception, match="fusion_emitterz"):
        task_figures(tasks, tasks.init(jax.random.key(0)), x, np.zeros((8, 3), np.float32), 4)
