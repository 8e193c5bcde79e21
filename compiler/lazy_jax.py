"""JAX, imported on first use: `from netc.compiler.lazy_jax import jax, jnp, lax`.

Each layer kind keeps its checking (pure Python, what `netc check` runs) and its lowering
(JAX) in one module. These stand-ins let the lowering be written as ordinary JAX code
while importing that module costs nothing: the real module is imported the first time an
attribute is read, which happens only when a net is lowered or a loss computed.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule(ModuleType):
    """A module object that imports `name` when one of its attributes is first read."""

    def __init__(self, name: str):
        super().__init__(name)
        self._target: ModuleType | None = None

    def __getattr__(self, attr: str):
        if attr.startswith("__") or attr == "_target":
            raise AttributeError(attr)
        if self._target is None:
            self._target = importlib.import_module(self.__name__)
        return getattr(self._target, attr)

    def __repr__(self) -> str:
        state = "imported" if self._target is not None else "not yet imported"
        return f"<lazy module {self.__name__!r} ({state})>"


jax = LazyModule("jax")
jnp = LazyModule("jax.numpy")
lax = LazyModule("jax.lax")
optax = LazyModule("optax")

__all__ = ["LazyModule", "jax", "jnp", "lax", "optax"]
