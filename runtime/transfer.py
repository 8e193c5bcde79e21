"""`init from="RUN_DIR"` at train time: the start variables Trainer.init_state(start=...) takes.

compiler/transfer_check.py decides which layers are taken (from the file's header alone,
as `netc check` does); this module reads that file (or Orbax checkpoint) in full, with its
checksums (runtime/checkpoint.py, runtime/sharded_checkpoint.py), and returns the arrays as
`{"params": {layer: {array: ndarray}}, "state": {layer: {array: ndarray}}}`.
Every problem is a SpecError at the `init from=` line, so `netc train` reports it like
`netc check` does, before anything is compiled or trained.

The source run's normalisation statistics (`norm/mean`, `norm/std`) are not taken: a new
run with `normalize standard` computes its own from its train split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from netc.compiler.ir import Net
from netc.compiler.transfer_check import Transfer, resolve_init_from
from netc.dsl.diagnostics import SpecError, error

from . import checkpoint as ckpt
from . import sharded_checkpoint as sharded


def load_start(transfer: Transfer, net: Net) -> dict:
    """The arrays of the layers `transfer` takes, read from its file in full. Raises
    SpecError when the file is corrupt or no longer what was checked."""
    spec = net.train.init_from
    head = f'init from="{transfer.written}"'
    where = f"{transfer.written}/{transfer.file.relative_to(transfer.run_dir).as_posix()}"

    def fail(what: str):
        raise SpecError([error("E420", f"{head}: {where}: {what}", spec.span,
                               help="a corrupt file is not used: train the base run again")],
                        list(net.warnings))

    try:
        if transfer.file.is_dir():  # an unfinished run's Orbax checkpoint
            tensors = ckpt.flatten_variables(sharded.load_variables(transfer.file)[0])
        else:
            tensors, _ = ckpt.load_tensors(transfer.file)
    except ckpt.CheckpointError as exc:
        fail(str(exc).split(": ", 1)[-1])
    shapes = leaf_shapes(net)
    start: dict = {"params": {}, "state": {}}
    for layer, keys in transfer.layers.items():
        for key in keys:
            array = tensors.get(key)
            if array is None or tuple(array.shape) != shapes[key]:
                fail(f"changed after it was checked (it no longer holds {key} as checked)")
            group, rest = key.split("/", 1)
            start[group].setdefault(layer, {})[rest.rsplit("/", 1)[1]] = array
    return start


def leaf_shapes(net: Net) -> dict[str, tuple[int, ...]]:
    """{"params/LAYER/ARRAY": shape} of every variable of `net`, as checkpoints name them."""
    return {f"{group}/{leaf.name}/{name}": tuple(shape) for leaf in net.leaves()
            for group in ("params", "state") for name, shape in getattr(leaf, group).items()}


def start_variables(net: Net, base_dir: Path) -> tuple[Transfer | None, dict | None]:
    """(what `init from=` takes, the start variables), or (None, None) without it. Raises
    SpecError."""
    transfer = resolve_init_from(net, base_dir)
    if transfer is None:
        return None, None
    return transfer, load_start(transfer, net)


def cast_start(start: dict | None, dtype) -> dict | None:
    """The start variables in the model's dtype (a run saved in float32 can start a float64
    one)."""
    if start is None:
        return None
    return {group: {layer: {name: np.asarray(a, dtype) for name, a in arrays.items()}
                    for layer, arrays in layers.items()} for group, layers in start.items()}


__all__ = ["cast_start", "leaf_shapes", "load_start", "start_variables"]
