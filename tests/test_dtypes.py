"""dtype choices: float32 by default, bfloat16 compute on request (outputs stay float32)."""

import jax
import jax.numpy as jnp
import netc

SPEC = "input 8x8x1\nconv f=3 p=same c=4 -> relu -> maxpool f=2 -> fc 16 -> relu -> softmax 3"


def test_default_is_float32():
    model = netc.compile(SPEC)
    variables = model.init(jax.random.key(0))
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(variables))
    assert model.apply(variables, jnp.ones((2, 8, 8, 1))).dtype == jnp.float32


def test_bfloat16_compute_is_close_to_float32_and_returns_float32():
    full = netc.compile(SPEC)
    half = netc.compile(SPEC, compute_dtype=jnp.bfloat16)
    assert half is not full  # the dtype is part of the compile cache key
    variables = full.init(jax.random.key(0))  # float32 parameters for both
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
    a, b = full.apply(variables, x), half.apply(variables, x)
    assert b.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(a - b))) < 2e-2  # bfloat16 keeps ~3 significant digits
    assert float(jnp.max(jnp.abs(a - b))) > 0.0   # and really computed in bfloat16
