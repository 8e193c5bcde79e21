"""Training checkpoints with Orbax: one step folder per checkpoint, every process writing the
shards it holds, restored onto whatever mesh the resuming run has.

    RUN/checkpoints/ckpt_000005/carry/   params, state and the optimiser's and early
                                         stopping's leaves (Orbax PyTree, OCDBT)
    RUN/checkpoints/ckpt_000005/meta/    JSON: format, epoch, net, seed, every array's
                                         dtype and shape, and a checksum per array

A save is Orbax's: asynchronous (the arrays are copied off the device before save()
returns, the files written on a thread), into a temporary folder renamed into place once
every process is done, so a crash leaves a `ckpt_N.orbax-checkpoint-tmp-*` folder that is
skipped (with a warning) and removed. Orbax checks no array bytes (a flipped bit reads back
silently), so `meta` keeps a checksum of each array, checked after a restore: a
position-weighted sum of its bits mod 2**32, which each process computes on the host over
the shards it holds (exact integer sums: the same on any mesh, and no XLA program to
compile). A damaged newest checkpoint is reported and resume falls back to the previous one;
the resumed run's first save removes the damaged one (CheckpointWriter's `start`).

A restore builds its target from the resuming run's fresh carry (its shapes, dtypes and
shardings): a checkpoint written on 4 devices, replicated or with --shard-params, resumes on
1 device and the reverse. Checkpoints of earlier netc versions (ckpt-NNNNNN.safetensors,
whole arrays: runtime/checkpoint.py) are still read; new ones are always Orbax's.
compiler/transfer_check.py reads `meta` without JAX for `init from=` an unfinished run.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from pathlib import Path

import jax
import numpy as np

from . import checkpoint as legacy
from .checkpoint import CheckpointError
from .devices import put_same_on_every_process

FORMAT = "netc-orbax-1"
PREFIX = "ckpt"
STEP_NAME = re.compile(rf"^{PREFIX}_(\d{{6,}})$")
UNFINISHED_NAME = re.compile(rf"^{PREFIX}_(\d{{6,}})\.orbax-checkpoint-tmp")
KEEP = 2


def _orbax():
    """orbax.checkpoint, imported when first needed (0.12-0.3 s: not in `netc eval` of a
    finished run, nor before training starts)."""
    import orbax.checkpoint as ocp
    from absl import logging as absl_logging

    logger = absl_logging.get_absl_logger()  # records name their caller: Orbax's file
    if not any(isinstance(f, _OrbaxNotes) for f in logger.filters):
        logger.addFilter(_OrbaxNotes())
    return ocp


class _OrbaxNotes(logging.Filter):
    """Orbax logs through absl: its notes and warnings (a save that waited for the previous
    one, a metadata file netc does not use) are not for netc's users; errors still pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or "orbax" not in record.pathname


class CheckpointMismatch(Exception):
    """A readable checkpoint whose arrays are not this run's (another spec wrote it)."""


# ---- the folder ----------------------------------------------------------------------


def step_path(folder: Path, epoch: int) -> Path:
    return Path(folder) / f"{PREFIX}_{epoch:06d}"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of every finished checkpoint, oldest first: Orbax step folders and
    the safetensors files of earlier versions (an Orbax one first at the same epoch)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        if (m := STEP_NAME.match(path.name)) and path.is_dir():
            found.append((int(m.group(1)), 1, path))
        elif m := legacy.CHECKPOINT_NAME.match(path.name):
            found.append((int(m.group(1)), 0, path))
    return [(epoch, path) for epoch, _, path in sorted(found)]


def unfinished_checkpoints(folder: Path) -> list[Path]:
    """Step folders a crash left before Orbax renamed them into place."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if UNFINISHED_NAME.match(p.name))


def read_meta(step: Path) -> dict:
    """The `meta` of an Orbax step folder. Raises CheckpointError."""
    try:
        meta = json.loads((Path(step) / "meta" / "metadata").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{Path(step).name}: unreadable ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{Path(step).name}: not a netc checkpoint")
    return meta


# ---- carry <-> the saved tree ----------------------------------------------------------


def carry_tree(carry) -> dict:
    """{"params", "state", "opt": {"00000": leaf, ...}}: the optimiser's and early
    stopping's leaves flattened in order, as the safetensors checkpoints held them."""
    params, state, opt, watch = carry
    leaves = jax.tree.leaves((opt, watch))
    return {"params": params, "state": state,
            "opt": {f"{i:05d}": leaf for i, leaf in enumerate(leaves)}}


def tree_carry(tree: dict, fresh):
    """carry_tree's inverse, with the optimiser's structure taken from the fresh carry."""
    _, _, opt0, watch0 = fresh
    treedef = jax.tree.structure((opt0, watch0))
    opt_leaves = [tree["opt"][key] for key in sorted(tree["opt"])]
    opt, watch = jax.tree.unflatten(treedef, opt_leaves)
    return tree["params"], tree["state"], opt, watch


def named_leaves(tree: dict) -> dict:
    """{"params/LAYER/ARRAY": leaf, "opt/00000": leaf, ...}."""
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        out["/".join(str(getattr(k, "key", k)) for k in path)] = leaf
    return out


# word weights: even * position + odd, always odd, so that no bit flip multiplies out to 0
_WEIGHT, _OFFSET = np.uint32(2 * 2654435761 % 2**32), np.uint32(0x9E3779B9)


def _words(block: np.ndarray) -> np.ndarray:
    """A block's bits as uint32 words, shape + (words per number,): float64 and int64 have
    two, the others one (16- and 8-bit numbers widened)."""
    block = np.ascontiguousarray(block)
    if block.dtype == np.bool_:
        block = block.view(np.uint8)
    size = block.dtype.itemsize
    if size == 8:
        return block.view(np.uint32).reshape(*block.shape, 2)
    if size == 4:
        return block.view(np.uint32)[..., None]
    return block.view(np.uint16 if size == 2 else np.uint8).astype(np.uint32)[..., None]


def _block_sum(block: np.ndarray, start, shape) -> int:
    """sum(word * f(its position in the whole array)) mod 2**32 over one block of an array
    of `shape` that starts at index `start`: the blocks' sums add up to the whole array's,
    however it is split (integer sums wrap exactly), and every bit flip changes it."""
    words = _words(block)
    position = np.zeros(block.shape, np.uint32)
    stride = 1
    for axis in reversed(range(block.ndim)):
        index = np.arange(block.shape[axis], dtype=np.uint32) + np.uint32(start[axis])
        position = position + (index * np.uint32(stride % 2**32)).reshape(
            [-1 if k == axis else 1 for k in range(block.ndim)])
        stride *= shape[axis]
    per = words.shape[-1]
    position = position[..., None] * np.uint32(per) + np.arange(per, dtype=np.uint32)
    return int(np.sum(words * (position * _WEIGHT + _OFFSET), dtype=np.uint32))


def _array_sum(a) -> int:
    """This process's part of an array's checksum: its shards that no other device's copy
    stands for (replica 0), fetched to the host; a numpy array whole."""
    if not isinstance(a, jax.Array):
        a = np.asarray(a)
        return _block_sum(a, (0,) * a.ndim, a.shape)
    total = 0
    for shard in a.addressable_shards:
        if shard.replica_id == 0:
            start = [part.start or 0 for part in shard.index]
            total += _block_sum(np.asarray(shard.data), start, a.shape)
    return total % 2**32


def checksums(tree: dict) -> dict[str, int]:
    """{name: checksum} of every array of a saved tree, the same on any mesh: each process
    sums the shards it holds, and a distributed run adds up the processes' sums."""
    names = named_leaves(tree)
    sums = np.asarray([_array_sum(a) for a in names.values()], np.uint32)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        gathered = multihost_utils.process_allgather(sums)  # (processes, arrays)
        sums = np.asarray(gathered).astype(np.int64).sum(axis=0)
    return {name: int(v) % 2**32 for name, v in zip(names, sums)}


def _describe(tree: dict) -> dict[str, list]:
    return {k: [str(np.dtype(v.dtype)), list(np.shape(v))]
            for k, v in named_leaves(tree).items()}


# ---- writing -----------------------------------------------------------------------------


class CheckpointWriter:
    """Saves a run's checkpoints into its checkpoints folder, keeping the newest `keep`.
    `start` is the epoch the run starts from: the restored checkpoint's (0 for a fresh
    start); the first save removes every checkpoint after it (see save()).
    Every process of a distributed run makes the same calls with the same folder (a disk
    every process sees): each writes its shards, process 0 the metadata. close() (or the
    end of a `with` block, whatever ends it) waits for the last save."""

    def __init__(self, folder: Path, keep: int = KEEP, start: int = 0):
        self.folder = Path(folder).absolute()
        self.keep = keep
        self.start = start
        self._manager = None
        self._loading = threading.Thread(target=_orbax, name="netc-import-orbax", daemon=True)

    def preload(self) -> None:
        """Start importing Orbax (0.12 s of Python alone) on a thread, once. train_run
        calls this when the first epochs have run: beside the tracing, the import competed
        for the interpreter's lock (a moons run's tracing took 0.19 s instead of 0.10). A
        save imports it (or waits for the import) in any case."""
        if self._loading.ident is None:
            self._loading.start()

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def _open(self):
        if self._manager is None:
            self.preload()
            self._loading.join()
            ocp = _orbax()
            options = ocp.CheckpointManagerOptions(
                max_to_keep=self.keep, step_prefix=PREFIX, step_format_fixed_length=6,
                cleanup_tmp_directories=True, create=True)
            self._manager = ocp.CheckpointManager(self.folder, options=options,
                                                  item_names=("carry", "meta"))
        return self._manager

    def save(self, epoch: int, carry, meta: dict) -> Path:
        """Start saving the carry after `epoch` epochs; returns once the arrays are off the
        devices. Checkpoints newer than the run's start are removed first (ones a resume
        skipped as damaged, or an earlier run's when this one started over): left in place
        they would count among the `keep` newest, and Orbax would remove the good one the
        run resumed from."""
        manager, ocp = self._open(), _orbax()
        for step in manager.all_steps():
            if step > self.start:
                manager.delete(step)
        if jax.process_index() == 0:  # an earlier version's, which Orbax does not list
            for old, path in list_checkpoints(self.folder):
                if old > self.start and path.is_file():
                    path.unlink(missing_ok=True)
        self.start = epoch
        tree = carry_tree(carry)
        info = {**meta, "format": FORMAT, "epoch": epoch, "arrays": _describe(tree),
                "checksums": checksums(tree)}
        manager.save(epoch, args=ocp.args.Composite(carry=ocp.args.PyTreeSave(tree),
                                                    meta=ocp.args.JsonSave(info)))
        return step_path(self.folder, epoch)

    def wait(self) -> None:
        """Wait until the last save is on disk."""
        if self._manager is not None:
            self._manager.wait_until_finished()

    def close(self) -> None:
        """Wait for the last save; then remove the safetensors checkpoints of an earlier
        version that the Orbax ones replace."""
        if self._manager is None:
            return
        self._manager.wait_until_finished()
        self._manager.close()
        self._manager = None
        if jax.process_index() == 0:
            for _, path in list_checkpoints(self.folder):
                if path.is_file():
                    path.unlink(missing_ok=True)


# ---- reading -----------------------------------------------------------------------------


def _everyone(ok: bool) -> bool:
    """True when every process of a distributed run says so (one process alone: ok)."""
    if jax.process_count() == 1:
        return ok
    from jax.experimental import multihost_utils

    return bool(np.asarray(multihost_utils.process_allgather(np.int32(ok))).min())


def _verify(step: Path, tree: dict, meta: dict) -> None:
    sums = meta.get("checksums", {})
    for name, value in checksums(tree).items():
        if sums.get(name) != value:
            raise CheckpointError(f"{step.name}: {name} does not match its checksum")


def _restore_tree(step: Path, target: dict, meta: dict, partial: bool = False) -> dict:
    """Orbax's restore of `target`'s arrays (ShapeDtypeStructs with shardings, or numpy
    placeholders), checked against the checksums. Raises CheckpointError."""
    ocp = _orbax()
    if partial:
        args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
    else:
        args = ocp.checkpoint_utils.construct_restore_args(target)
    _quiet_failed_reads()
    try:
        with ocp.PyTreeCheckpointer() as reader:
            tree = reader.restore(step.absolute() / "carry", args=ocp.args.PyTreeRestore(
                item=target, restore_args=args, partial_restore=partial))
    except Exception as exc:  # Orbax and TensorStore raise many kinds for a damaged file
        text = str(exc).strip()
        code = re.match(r"([A-Z_]+): ", text)  # TensorStore's status: OUT_OF_RANGE, ...
        why = code.group(1) if code else (text.splitlines() or [type(exc).__name__])[0][:120]
        raise CheckpointError(f"{step.name}: its files are damaged or missing ({why})") \
            from None
    _verify(step, tree, meta)
    return tree


def _quiet_failed_reads() -> None:
    """When a restore fails, the reads still in flight end on their own: TensorStore's call
    back into the event loop Orbax has closed (Python prints 'RuntimeError: Event loop is
    closed' through sys.unraisablehook), and Orbax's other read tasks fail with nobody to
    take their errors (asyncio logs 'Task (or Future) exception was never retrieved' when
    it collects them). Both come with tracebacks after the warning that already says what happened:
    leave them out; anything else goes on as before. The filters stay for the rest of the
    process: those reads end when they end (scoped to the restore, they were let through on
    a loaded machine, tests/test_resume.py), and they let through everything but these two."""
    previous = sys.unraisablehook
    if getattr(previous, "netc_quiet", False):
        return

    def hook(unraisable):
        value = unraisable.exc_value
        if not (isinstance(value, RuntimeError) and str(value) == "Event loop is closed"):
            previous(unraisable)
    hook.netc_quiet = True
    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(_UnretrievedReads())


class _UnretrievedReads(logging.Filter):
    """asyncio's report of an Orbax task or TensorStore future whose error nobody took (see
    above)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith(("Task exception was never retrieved",
                                         "Future exception was never retrieved"))
                    and ("orbax" in message or "tensorstore" in message))


def _check_fits(step: Path, meta: dict, target: dict) -> None:
    saved = {k: tuple(v[1]) for k, v in meta.get("arrays", {}).items()}
    wanted = {k: tuple(np.shape(v)) for k, v in named_leaves(target).items()}
    if saved != wanted:
        differ = sorted(set(saved) ^ set(wanted)) or \
            sorted(k for k in saved if saved[k] != wanted[k])
        raise CheckpointMismatch(f"{step.name} holds other arrays, such as {differ[0]}")


def _legacy_carry(path: Path, fresh):
    """A safetensors checkpoint of an earlier version, placed like the fresh carry."""
    _, variables, opt_leaves, _ = legacy.read_checkpoint(path)
    target = carry_tree(fresh)
    tree = {"params": variables["params"], "state": variables["state"],
            "opt": {f"{i:05d}": a for i, a in enumerate(opt_leaves)}}
    try:
        if jax.tree.structure(tree) != jax.tree.structure(target):
            raise ValueError("its arrays are named otherwise")
        tree = jax.tree.map(lambda ref, a: put_same_on_every_process(
            np.asarray(a, ref.dtype).reshape(ref.shape), ref.sharding), target, tree)
    except (ValueError, TypeError) as exc:
        raise CheckpointMismatch(f"{path.name}: {exc}") from None
    return tree_carry(tree, fresh)


def restore_latest(folder: Path, fresh, warn=print):
    """(epoch, carry) of the newest readable checkpoint, its arrays placed as `fresh`'s
    (the resuming run's init_state()), or None. Damaged or unfinished newer ones are
    reported through `warn` and skipped. Raises CheckpointMismatch for a readable one that
    does not fit this run."""
    for path in unfinished_checkpoints(folder):
        warn(f"warning: skipping checkpoint {path.name.split('.')[0]}: its save did not "
             "complete")
    target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype,
                                                         sharding=a.sharding),
                          carry_tree(fresh))
    for epoch, path in reversed(list_checkpoints(folder)):
        try:
            if path.is_file():
                carry = _legacy_carry(path, fresh)
            else:
                meta = read_meta(path)
                _check_fits(path, meta, target)
                carry = tree_carry(_restore_tree(path, target, meta), fresh)
            failure = None
        except CheckpointError as exc:
            failure, carry = exc, None
        if not _everyone(failure is None):
            reason = failure or f"{path.name}: unreadable on another process"
            warn(f"warning: skipping checkpoint {reason}; falling back to an older one")
            continue
        return epoch, carry
    return None


def load_arrays(step: Path, groups=("params", "state", "opt")) -> tuple[dict, dict]:
    """({"params/LAYER/ARRAY": ndarray, "opt/00000": ndarray, ...} of the given groups, meta)
    of an Orbax checkpoint, read whole onto the host and checked against its checksums.
    Raises CheckpointError."""
    step = Path(step)
    meta = read_meta(step)
    wanted = {k: v for k, v in meta.get("arrays", {}).items() if k.split("/", 1)[0] in groups}
    target: dict = {group: {} for group in groups}
    for key, (dtype, shape) in wanted.items():  # params/LAYER/ARRAY (LAYER may hold a /)
        group, rest = key.split("/", 1)
        node = target[group]
        if group != "opt":
            layer, rest = rest.rsplit("/", 1)
            node = node.setdefault(layer, {})
        node[rest] = np.zeros(shape, dtype)  # restored as numpy arrays of this shape
    tree = _restore_tree(step, target, {"checksums": {
        k: v for k, v in meta.get("checksums", {}).items() if k in wanted}}, partial=True)
    return {k: np.asarray(v) for k, v in named_leaves(tree).items()}, meta


def load_variables(path: Path) -> tuple[dict, int]:
    """({"params", "state"} as numpy arrays, epoch) of one checkpoint of either kind.
    Raises CheckpointError."""
    path = Path(path)
    if path.is_file():
        epoch, variables, _, _ = legacy.read_checkpoint(path)
        return variables, epoch
    arrays, meta = load_arrays(path, ("params", "state"))
    return legacy.unflatten_variables(arrays), meta["epoch"]


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def latest_variables(folder: Path, warn=_to_stderr) -> tuple[dict, int] | None:
    """load_variables of the newest readable checkpoint, or None; damaged newer ones are
    reported through `warn` and skipped (for eval, predict and export of an unfinished
    run)."""
    for _, path in reversed(list_checkpoints(folder)):
        try:
            return load_variables(path)
        except CheckpointError as exc:
            warn(f"warning: skipping checkpoint {exc}; falling back to an older one")
    return None

