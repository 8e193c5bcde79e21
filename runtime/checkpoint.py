"""Checkpoints and saved runs: safetensors files (never pickle), written atomically.

A checkpoint holds params, state and the optimiser state of an epoch boundary, with its
epoch and a SHA-256 of the tensor bytes in the metadata, so a truncated or corrupted file is
detected and resume falls back to the previous one. Files are written to a temporary name,
fsynced and renamed: a crash at any moment leaves every earlier file intact.
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
_CKPT = re.compile(r"^ckpt-(\d{6,})\.safetensors$")


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


# ---- training checkpoints ------------------------------------------------------------


def checkpoint_path(folder: Path, epoch: int) -> Path:
    return Path(folder) / f"ckpt-{epoch:06d}.safetensors"


def save_checkpoint(folder: Path, epoch: int, variables: dict, opt_leaves: list, meta: dict,
                    keep: int = 2) -> Path:
    """Write the checkpoint of a completed epoch (1-based count of epochs done); keep the
    newest `keep` files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = flatten_variables(variables)
    for i, leaf in enumerate(opt_leaves):
        tensors[f"opt/{i:05d}"] = np.asarray(leaf)
    path = checkpoint_path(folder, epoch)
    save_tensors(path, tensors, {**meta, "epoch": epoch, "opt_leaves": len(opt_leaves)})
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint files, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT.match(p.name))]
    return [p for _, p in sorted(found)]


def load_latest_checkpoint(folder: Path, warn=print):
    """(epoch, variables, opt_leaves, meta) of the newest readable checkpoint, or None.
    Unreadable newer files are reported through `warn` and skipped."""
    for path in reversed(list_checkpoints(folder)):
        try:
            tensors, meta = load_tensors(path)
        except CheckpointError as exc:
            warn(f"warning: skipping checkpoint {exc}; falling back to an older one")
            continue
        opt = [tensors[f"opt/{i:05d}"] for i in range(meta["opt_leaves"])]
        return meta["epoch"], unflatten_variables(tensors), opt, meta
    return None
