"""The layer registry: every layer kind is one `LayerKind` record (layers/base.py), defined
in one module of this package with both its checking and its lowering.

    KINDS["conv"]        the record of a kind          lookup("conv2d")  by kind or alias
    has_weights(node)    whether a layer has a WEIGHT  (L2, initialisation, freezing, export)

Importing this package does not import JAX (each lowering imports it when it runs), so the
checker and `netc check` read the same records as the lowering. docs/adding-a-layer-kind.md
says how to add a kind.
"""

from __future__ import annotations

from . import activation, conv, dense, dropout, normalization, pool
from .base import (
    INITIALIZERS,
    ONES,
    WEIGHT,
    ZEROS,
    Context,
    Head,
    Inferred,
    LayerKind,
    ShapeError,
    Target,
    fans,
    init_scale,
    show_shape,
)


def check_kind(kind: LayerKind, registry: dict[str, LayerKind]) -> None:
    """Refuse an incomplete or clashing record: each kind has a shape rule and a lowering,
    parameter and state roles from the known set, and a name and aliases of its own."""
    missing = [part for part in ("infer", "lower") if not callable(getattr(kind, part))]
    if missing:
        raise ValueError(f"layer kind {kind.name!r} has no {' and no '.join(missing)}")
    roles = {**kind.params, **kind.state}
    bad = {name: role for name, role in roles.items() if role not in (WEIGHT, ZEROS, ONES)}
    if bad or any(role == WEIGHT for role in kind.state.values()):
        raise ValueError(f"layer kind {kind.name!r}: unknown or misplaced roles {bad or roles}")
    taken = {n for k in registry.values() for n in (k.name, *k.aliases)}
    clash = taken & {kind.name, *kind.aliases}
    if clash:
        raise ValueError(f"layer kind {kind.name!r}: {', '.join(sorted(clash))} already taken")


KINDS: dict[str, LayerKind] = {}
for _module in (conv, pool, dense, activation, normalization, dropout):
    for _kind in _module.KINDS:
        check_kind(_kind, KINDS)
        KINDS[_kind.name] = _kind

ALIASES: dict[str, str] = {a: kind.name for kind in KINDS.values() for a in kind.aliases}
# The name of each kind's positional argument (`fc 120` is `fc units=120`), aliases included:
# the parser's hint for `fc 2*n` names it.
POSITIONAL: dict[str, str] = {
    name: next(a.name for a in KINDS[ALIASES.get(name, name)].args if a.positional)
    for name in [*KINDS, *ALIASES]
    if any(a.positional for a in KINDS[ALIASES.get(name, name)].args)}


def lookup(name: str) -> LayerKind | None:
    """The record of a kind or one of its aliases."""
    return KINDS.get(ALIASES.get(name, name))


def weights_of(node) -> tuple[str, ...]:
    """The WEIGHT parameters a checked leaf has (a bare softmax has none)."""
    return tuple(p for p in KINDS[node.kind].weights if p in node.params)


def has_weights(node) -> bool:
    return bool(weights_of(node))


__all__ = ["ALIASES", "INITIALIZERS", "KINDS", "ONES", "POSITIONAL", "WEIGHT", "ZEROS",
           "Context", "Head", "Inferred", "LayerKind", "ShapeError", "Target", "check_kind",
           "fans", "has_weights", "init_scale", "lookup", "show_shape", "weights_of"]
