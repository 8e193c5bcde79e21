"""Model.init outside a trace draws its standard normals in a program of their own and
assembles the variables in numpy (compiler/lower.py assemble_variables): the very arrays of
init_variables traced in one program (the path inside jit, and the Trainer's), for every
kind of parameter: weights under each init, biases, BatchNorm's ones and its state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import EXAMPLES
from netc.compiler.check import check_file, check_source
from netc.compiler.model import compile_net

SPEC = """net kinds
input 8x8x3
conv f=3 c=4 p=same bias=false -> batchnorm -> relu -> maxpool f=2 s=2
-> conv f=3 c=5 init=xavier -> relu -> fc 6 bias=false -> relu
-> fc 5 init=random -> softmax 3
train {
  init %s
  seed 0
}
"""


def traced_during(fn) -> list[str]:
    """The names of the functions JAX traced while fn() ran."""
    names, listening = [], [True]

    def listen(event, seconds, **kw):
        if listening and event == "/jax/core/compile/jaxpr_trace_duration":
            names.append(kw.get("fun_name"))
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        fn()
    finally:
        listening.clear()
    return names


def leaves_equal(a: dict, b: dict) -> None:
    flat_a, tree_a = jax.tree.flatten(a)
    flat_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(flat_a, flat_b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("init", ["he", "xavier", "random scale=0.05"])
@pytest.mark.parametrize("seed", [0, 5])
def test_assembled_variables_equal_the_program(init, seed):
    model = compile_net(check_source(SPEC % init))
    key = jax.random.key(seed)
    made = []
    assert "init_variables" not in traced_during(lambda: made.append(model.init(key)))
    assembled = made[0]
    in_program = jax.jit(model.init)(key)  # traced: init_variables in one program
    leaves_equal(assembled, in_program)
    assert set(assembled["state"]["batchnorm_1"]) == {"mean", "var"}
    np.testing.assert_array_equal(np.asarray(assembled["params"]["batchnorm_1"]["gamma"]), 1)
    kernel = np.asarray(assembled["params"]["conv_1"]["kernel"])
    assert 0.01 < kernel.std() < 1.0 and not np.array_equal(kernel, 0)


def test_float64_and_a_zoo_net():
    net = check_file(EXAMPLES / "zoo" / "resnet18.net")
    model = compile_net(net)
    key = jax.random.key(3)
    leaves_equal(model.init(key), jax.jit(model.init)(key))
    with jax.enable_x64(True):
        model64 = compile_net(check_source(SPEC % "he"), dtype=jnp.float64)
        assembled = model64.init(key)
        assert assembled["params"]["conv_1"]["kernel"].dtype == jnp.float64
        leaves_equal(assembled, jax.jit(model64.init)(key))


@pytest.mark.parametrize("make_key", [lambda: jax.random.PRNGKey(4),
                                      lambda: jax.random.key(4, impl="rbg"),
                                      lambda: jax.random.key(2**31 + 5)])
def test_every_kind_of_key(make_key):
    """Raw uint32 keys and threefry keys take the host bits; other generators draw in a
    program; either way the arrays of the traced init."""
    model = compile_net(check_source(SPEC % "he"))
    leaves_equal(model.init(make_key()), jax.jit(model.init)(make_key()))
