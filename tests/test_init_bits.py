"""The init's random bits drawn on the host (compiler/lower.py normal_bits) are exactly the
bits JAX's threefry draws in a program, and the variables from them exactly the variables
from the key: the Trainer's init program then compiles without threefry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from netc.compiler.check import check_source
from netc.compiler.lower import HOST_DRAW_LIMIT, drawn_count, init_variables, normal_bits


@pytest.mark.parametrize("seed", [0, 1, 3, 12345, 2**31 - 1])
@pytest.mark.parametrize("count", [1, 2, 3, 30, 1001])
def test_bits_equal_jax_threefry(seed, count):
    key = jax.random.split(jax.random.key(seed), 3)[0]
    expected = np.asarray(jax.random.bits(key, (count,), jnp.uint32))
    np.testing.assert_array_equal(normal_bits(seed, count, np.float32), expected)


def test_no_host_bits_where_they_would_differ():
    assert normal_bits(-1, 10, np.float32) is None
    assert normal_bits(2**31, 10, np.float32) is None
    assert normal_bits(3, 10, jnp.bfloat16) is None
    assert normal_bits(3, 0, np.float32) is None


def test_large_draws_stay_in_the_program():
    assert normal_bits(3, HOST_DRAW_LIMIT, np.float32) is not None
    assert normal_bits(3, HOST_DRAW_LIMIT + 1, np.float32) is None


SPEC = """net bits
input 6x6x1
conv f=3 c=3 -> relu -> fc 7 -> relu -> sigmoid 1
train {
  init he
  seed %d
}
"""


@pytest.mark.parametrize("seed", [0, 3])
def test_variables_from_host_bits_equal_variables_from_key(seed):
    net = check_source(SPEC % seed)
    key = jax.random.split(jax.random.key(seed), 3)[0]
    bits = normal_bits(seed, drawn_count(net), np.float32)
    assert bits is not None and len(bits) == 3 * 3 * 3 + 4 * 4 * 3 * 7 + 7
    from_key = jax.jit(lambda k: init_variables(net, k))(key)
    from_bits = jax.jit(lambda b: init_variables(net, None, normal_bits=b))(bits)
    for a, b in zip(jax.tree.leaves(from_key), jax.tree.leaves(from_bits), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
