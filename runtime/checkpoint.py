"""Saved models and atomic files: safetensors (never pickle), written atomically.

A saved model (model.safetensors) holds the variables with a SHA-256 of the tensor bytes in
its metadata, so a truncated or corrupted file is detected. Files are written to a temporary
name, fsynced and renamed: a crash at any moment leaves every earlier file intact.
Training checkpoints are Orbax's (runtime/sharded_checkpoint.py); the safetensors
checkpoints of earlier versions (ckpt-NNNNNN.safetensors, the same format as a saved model
with the optimiser's leaves added) are still read here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

FORMAT = "netc-checkpoint-1"
CHECKPOINT_NAME = re.compile(r"^ckpt-(\d{6,})\.safetensors$")  # earlier versions'


class CheckpointError(Exception):
    pass


# ---- atomic files --------------------------------------------------------------------


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), fsync it and rename it over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - not every platform opens folders
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- pytrees <-> flat named arrays ---------------------------------------------------


def flatten_variables(variables: dict) -> dict[str, np.ndarray]:
    """{"params": {"conv_1": {"kernel": a}}} -> {"params/conv_1/kernel": a}."""
    out = {}
    for group in ("params", "state"):
        for layer, arrays in variables.get(group, {}).items():
            for name, array in arrays.items():
                out[f"{group}/{layer}/{name}"] = np.asarray(array)
    return out


def unflatten_variables(flat: dict[str, np.ndarray]) -> dict:
    variables: dict = {"params": {}, "state": {}}
    for key, array in flat.items():
        group, rest = key.split("/", 1)
        if group not in variables:
            continue
        layer, name = rest.rsplit("/", 1)
        variables[group].setdefault(layer, {})[name] = array
    return variables


def _digest(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        a = np.ascontiguousarray(tensors[key])
        h.update(key.encode())
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_tensors(path: Path, tensors: dict[str, np.ndarray], meta: dict) -> None:
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    metadata = {"format": FORMAT, "sha256": _digest(tensors),
                "meta": json.dumps(meta, sort_keys=True)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_tensors(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """(tensors, meta). Raises CheckpointError for a missing, truncated or corrupted file."""
    try:
        with safe_open(str(path), framework="numpy") as fh:
            metadata = fh.metadata() or {}
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118
    except (OSError, SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{path.name}: unreadable ({exc})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path.name}: not a netc checkpoint")
    if _digest(tensors) != metadata.get("sha256"):
        raise CheckpointError(f"{path.name}: contents do not match their checksum")
    return tensors, json.loads(metadata.get("meta", "{}"))


# ---- checkpoints of earlier versions --------------------------------------------------


def read_checkpoint(path: Path) -> tuple[int, dict, list, dict]:
    """(epoch, variables, opt_leaves, meta) of a ckpt-NNNNNN.safetensors checkpoint, as netc
    wrote them before its checkpoints were Orbax's (runtime/sharded_checkpoint.py); still
    read so that such a run resumes. Raises CheckpointError."""
    tensors, meta = load_tensors(path)
    try:
        opt = [tensors[f"opt/{i:05d}"] for i in range(meta["opt_leaves"])]
        return meta["epoch"], unflatten_variables(tensors), opt, meta
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{Path(path).name}: incomplete ({exc})") from None
