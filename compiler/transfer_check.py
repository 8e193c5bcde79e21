"""`init from="RUN_DIR" layers=NAME,...`, checked before anything runs: which layers of this
net start from a trained run's variables, and every reason they cannot. No JAX, no numpy.

A run folder (runtime/run.py) keeps its final variables in model.safetensors, or, while it
is unfinished, in its Orbax checkpoints, checkpoints/ckpt_NNNNNN/ (earlier versions wrote
checkpoints/ckpt-NNNNNN.safetensors). Only headers are read here: a safetensors file's (8
bytes of little-endian length, then a JSON object {tensor name: {dtype, shape,
data_offsets}} with the `__metadata__` runtime/checkpoint.py writes), or a checkpoint's
`meta/metadata` JSON ({"arrays": {name: [dtype, shape]}, "epoch": ...}: runtime/
sharded_checkpoint.py). Tensors are named `params/LAYER/ARRAY` and `state/LAYER/ARRAY`,
LAYER being the names `netc check` prints. runtime/transfer.py loads the arrays themselves
(and verifies their checksums) at train time.

Matching: a layer of this net with variables starts from the run's layer of the same name;
`layers=` keeps only the layers it names (a NAME is a layer, or a block prefix: `layer1`
for `layer1/...`). A matched layer must hold arrays of the same names and shapes there and
here. Errors are diagnostics at the `init from=` line:

    E420  the run folder cannot be read: missing, no trained variables, a corrupt file
    E421  a layers= NAME that matches nothing here, or nothing in the run
    E422  a matched layer whose arrays differ (names or shapes)
    E423  nothing to take: no layer of this net is named as one of the run's
    W420  (warning) an unfinished run: its newest checkpoint is used
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from netc.dsl.diagnostics import Diagnostic, SpecError, error, warning

from .args import suggest
from .ir import Net, Node

MODEL_FILE = "model.safetensors"
CHECKPOINTS = "checkpoints"
FORMAT = "netc-checkpoint-1"  # runtime/checkpoint.py's FORMAT (a test keeps them equal)
CHECKPOINT_NAME = re.compile(r"^ckpt-(\d{6,})\.safetensors$")  # runtime/checkpoint.py's
STEP_NAME = re.compile(r"^ckpt_(\d{6,})$")  # runtime/sharded_checkpoint.py's
STEP_FORMAT = "netc-orbax-1"  # runtime/sharded_checkpoint.py's FORMAT
MAX_HEADER = 100 * 2**20  # a header larger than this is not one netc wrote
GROUPS = ("params", "state")
_ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
               "U8": 1, "BOOL": 1}
_FLOATS = ("F64", "F32", "F16", "BF16")


class RunFileError(Exception):
    """A run's variables file that cannot be used; the message completes 'FILE ...'."""


@dataclass(frozen=True)
class Transfer:
    """What `init from=` takes from a run, resolved against its folder."""

    written: str                            # the folder as the spec writes it
    run_dir: Path                           # where it is (absolute)
    file: Path                              # the file the variables are read from
    epoch: int | None                       # its epoch, for a checkpoint
    layers: dict[str, tuple[str, ...]]      # layer -> the tensor names taken for it
    fresh: tuple[str, ...]                  # this net's layers with variables not taken
    params: int                             # parameter numbers taken
    state: int                              # state numbers taken (batchnorm statistics)
    total_params: int                       # this net's
    total_state: int
    warnings: tuple[Diagnostic, ...] = field(default=(), compare=False)

    def origin(self, layer: str) -> str | None:
        """The folder (as written) a layer's variables come from, or None (fresh)."""
        return self.written if layer in self.layers else None

    def describe(self) -> str:
        """One line for `netc train`'s start: what was taken and what starts fresh."""
        count = len(self.layers)
        where = self.written + (f" (checkpoint of epoch {self.epoch})" if self.epoch else "")
        line = (f"init from {where}: {count} layer{'s' * (count != 1)}, "
                f"{self.params:,} of {self.total_params:,} params")
        if self.total_state:
            line += f" and {self.state:,} of {self.total_state:,} state"
        if self.fresh:
            names = short_names(self.fresh, [*self.layers, *self.fresh])
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more"
                                            if len(names) > 6 else "")
            line += f"; fresh: {shown}"
        return line

    def as_json(self) -> dict:
        """run.json's `init_from`."""
        return {"from": self.written, "run": str(self.run_dir), "file": str(self.file),
                "epoch": self.epoch, "layers": list(self.layers), "fresh": list(self.fresh),
                "params": self.params, "state": self.state}


# ---- the file header ---------------------------------------------------------------------


def read_header(path: Path) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict]:
    """({tensor name: (dtype, shape)}, metadata) of a safetensors file netc wrote, from its
    header alone. Raises RunFileError (or OSError when the file cannot be opened)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise RunFileError(f"is {size} bytes long: too short to hold variables")
        length = int.from_bytes(head, "little")
        if length > min(size - 8, MAX_HEADER):
            raise RunFileError("is cut short or corrupt (its header runs past its end)")
        raw = fh.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RunFileError("is corrupt (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise RunFileError("is corrupt (its header is not a JSON object)")
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RunFileError("was not written by netc train")
    body = size - 8 - length
    tensors = {}
    for name, entry in header.items():
        try:
            dtype, shape, (start, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            ok = (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
                  and isinstance(start, int) and isinstance(end, int)
                  and 0 <= start <= end <= body)
            if ok and dtype in _ITEM_BYTES:
                ok = end - start == math.prod(shape) * _ITEM_BYTES[dtype]
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise RunFileError(f"is cut short or corrupt (tensor {name})")
        tensors[name] = (dtype, tuple(shape))
    return tensors, meta


def read_step_meta(step: Path) -> tuple[dict[str, tuple[str, tuple[int, ...]]], int | None]:
    """({tensor name: (dtype, shape)}, epoch) of an Orbax checkpoint folder netc wrote, from
    its meta/metadata JSON. Raises RunFileError (or OSError when it cannot be opened)."""
    raw = (Path(step) / "meta" / "metadata").read_bytes()
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RunFileError("is corrupt (its meta/metadata is not JSON)") from None
    if not isinstance(meta, dict) or meta.get("format") != STEP_FORMAT:
        raise RunFileError("was not written by netc train")
    tensors = {}
    arrays = meta.get("arrays")
    for name, entry in (arrays.items() if isinstance(arrays, dict) else ()):
        try:
            dtype, shape = entry
            ok = isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise RunFileError(f"is corrupt (array {name})")
        tensors[name] = (str(dtype), tuple(shape))
    if not isinstance(arrays, dict) or not tensors:
        raise RunFileError("is corrupt (its meta/metadata lists no arrays)")
    epoch = meta.get("epoch")
    return tensors, epoch if isinstance(epoch, int) else None


def _epoch_of(meta: dict) -> int | None:
    try:
        epoch = json.loads(meta.get("meta", "{}")).get("epoch")
    except (ValueError, AttributeError):
        return None
    return epoch if isinstance(epoch, int) else None


def variables_file(run_dir: Path) -> tuple[Path, dict, int | None, list[str]]:
    """(the file to start from, its header's tensors, its epoch for a checkpoint, notes on
    newer checkpoints skipped). model.safetensors when the run finished, else its newest
    readable checkpoint, as `netc eval` does. Raises RunFileError naming the problem."""
    model = run_dir / MODEL_FILE
    if model.exists():
        try:
            tensors, _ = read_header(model)
        except OSError as exc:
            raise RunFileError(f"{MODEL_FILE} cannot be read ({exc.strerror or exc})") from None
        except RunFileError as exc:
            raise RunFileError(f"{MODEL_FILE} {exc}") from None
        return model, tensors, None, []
    folder = run_dir / CHECKPOINTS
    found = []  # (epoch, Orbax first at the same epoch, path)
    for path in folder.iterdir() if folder.is_dir() else ():
        if m := STEP_NAME.match(path.name):
            found.append((int(m.group(1)), 1, path))
        elif m := CHECKPOINT_NAME.match(path.name):
            found.append((int(m.group(1)), 0, path))
    skipped = []
    for _, _, path in sorted(found, reverse=True):
        try:
            if path.is_dir():
                tensors, epoch = read_step_meta(path)
            else:
                tensors, meta = read_header(path)
                epoch = _epoch_of(meta)
        except (OSError, RunFileError) as exc:
            skipped.append(f"skipped {CHECKPOINTS}/{path.name}: "
                           + (str(exc) if isinstance(exc, RunFileError) else "unreadable"))
            continue
        return path, tensors, epoch, skipped
    if skipped:
        raise RunFileError(f"has no {MODEL_FILE}, and no checkpoint of it is readable ("
                           + "; ".join(skipped) + ")")
    raise RunFileError(f"holds no trained variables (no {MODEL_FILE}, no checkpoints)")


# ---- matching ----------------------------------------------------------------------------


def _variables_here(net: Net) -> dict[str, dict[str, tuple[int, ...]]]:
    """{layer: {tensor name: shape}} of this net's layers with variables, in order."""
    out = {}
    for leaf in net.leaves():
        arrays = {f"{group}/{leaf.name}/{name}": tuple(shape) for group in GROUPS
                  for name, shape in getattr(leaf, group).items()}
        if arrays:
            out[leaf.name] = arrays
    return out


def _variables_there(tensors: dict) -> dict[str, dict[str, tuple[int, ...]]]:
    out: dict[str, dict] = {}
    for key, (_, shape) in tensors.items():
        group, _, rest = key.partition("/")
        if group in GROUPS and "/" in rest:
            out.setdefault(rest.rsplit("/", 1)[0], {})[key] = shape
    return out


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + "/")


def _prefixes(names) -> list[str]:
    """Every name and every block prefix of one (layer1/bottleneck_1/conv_2 gives layer1,
    layer1/bottleneck_1 and itself), in order."""
    out: dict[str, None] = {}
    for name in names:
        parts = name.split("/")
        for k in range(1, len(parts) + 1):
            out.setdefault("/".join(parts[:k]), None)
    return list(out)


def _shape(shape) -> str:
    return "x".join(map(str, shape)) if shape else "a scalar"


def short_names(keep, among) -> list[str]:
    """`keep`'s names, a block prefix standing for its layers when every one of `among`
    under it is kept: layer1 for layer1/conv_1, layer1/batchnorm_1, ..."""
    keep_set = set(keep)
    out: list[str] = []
    for name in keep:
        parts = name.split("/")
        chosen = name
        for k in range(1, len(parts)):
            prefix = "/".join(parts[:k])
            if all(n in keep_set for n in among if _under(n, prefix)):
                chosen = prefix
                break
        if chosen not in out:
            out.append(chosen)
    return out


def _keep_list(keep: list[str], among: list[str]) -> str:
    """A layers= value naming exactly `keep` among `among`."""
    text = ",".join(short_names(keep, among))
    return f'"{text}"' if ("," in text or "/" in text) else text


def _automatic(leaf: Node) -> bool:
    return re.fullmatch(rf"{re.escape(leaf.kind)}_\d+", leaf.name.rsplit("/", 1)[-1]) is not None


def _rename_example(leaf: Node, net: Net, is_head: bool) -> str:
    """`softmax 5 as head`: the layer as written, with a name of its own."""
    span = leaf.span
    lines = net.source.split("\n")
    text = leaf.kind
    if span.line == span.end_line and 1 <= span.line <= len(lines):
        written = lines[span.line - 1][span.col - 1:span.end_col - 1].strip()
        if written and len(written) <= 40 and " as " not in f" {written} ":
            text = written
    return f"{text} as {'head' if is_head else 'new_' + leaf.kind}"


def resolve_init_from(net: Net, base_dir) -> Transfer | None:
    """The layers `init from=` takes for `net`, its folder read relative to `base_dir` (the
    spec's folder). None without `init from=`. Raises SpecError with every problem found."""
    spec = getattr(net.train, "init_from", None)
    if spec is None:
        return None
    span = spec.span
    head = f'init from="{spec.path}"'
    run_dir = (Path(base_dir) / spec.path).absolute()
    where = f"{spec.path}" if Path(spec.path).is_absolute() else f"{spec.path} ({run_dir})"

    def fail(diags: list[Diagnostic]):
        raise SpecError(diags, list(net.warnings))

    if not run_dir.exists():
        fail([error("E420", f"{head}: no such run folder: {where}", span,
                    label="not found",
                    help="train it first (netc train BASE.net --out " + spec.path + "); a "
                    "relative folder is read from the spec's folder")])
    if not run_dir.is_dir():
        fail([error("E420", f"{head}: {where} is a file, not a run folder", span,
                    help="name the folder netc train wrote (its --out)")])
    try:
        file, tensors, epoch, skipped = variables_file(run_dir)
    except RunFileError as exc:
        fail([error("E420", f"{head}: {spec.path} {exc}", span,
                    help="is it a folder written by netc train --out? a corrupt file is not "
                    "used: train the base run again")])
    except OSError as exc:
        fail([error("E420", f"{head}: {spec.path} cannot be read ({exc.strerror or exc})",
                    span)])
    warnings: list[Diagnostic] = []
    if file.name != MODEL_FILE:
        shown = f"epoch {epoch}" if epoch is not None else file.name
        warnings.append(warning(
            "W420", f"{head}: {spec.path} is unfinished (no {MODEL_FILE}): starting from its "
            f"newest checkpoint, {shown}", span, notes=tuple(skipped),
            help="finish it with netc train --resume to start from its final variables"))

    here, there = _variables_here(net), _variables_there(tensors)
    leaves = {leaf.name: leaf for leaf in net.leaves()}
    diags: list[Diagnostic] = []
    chosen = [name for name in here if name in there]
    if spec.layers is not None:
        at = spec.layers_span or span
        for name in spec.layers:
            mine = [n for n in leaves if _under(n, name)]
            theirs = [n for n in there if _under(n, name)]
            if not mine:
                hint = suggest(name, _prefixes(leaves))
                diags.append(error("E421", f"{head}: layers= names '{name}', which is no layer "
                                   "of this net", at, help=hint or "names as netc check "
                                   "prints them; a block's name takes every layer in it"))
            elif not theirs:
                hint = suggest(name, _prefixes(there))
                what = "no layer with variables" if not any(n in here for n in mine) else \
                    "no layer"
                diags.append(error("E421", f"{head}: layers= names '{name}', which is {what} "
                                   f"of {spec.path}", at, help=hint or f"{spec.path} has: "
                                   + ", ".join(_prefixes(there)[:12])))
            elif not any(_under(n, name) for n in chosen):
                diags.append(error("E421", f"{head}: layers= names '{name}': no layer under "
                                   f"it is named alike here and in {spec.path}", at))
        chosen = [n for n in chosen if any(_under(n, name) for name in spec.layers)]
    if diags:
        fail(diags)
    if not chosen:
        fail([error("E423", f"{head}: no layer of this net is named as a layer of "
                    f"{spec.path}, so nothing would be taken", span,
                    help="layers are matched by the names netc check prints; "
                    f"{spec.path} has " + ", ".join(list(there)[:8])
                    + (" ..." if len(there) > 8 else ""))])

    clashes = [name for name in chosen if here[name] != there[name]]
    keep = [n for n in chosen if n not in clashes]
    for name in clashes[:5]:
        diags.append(_clash(name, here[name], there[name], leaves[name], net, head, span,
                            _keep_list(keep, list(here)) if keep else None,
                            name == list(here)[-1], len(clashes)))
    if diags:
        fail(diags)
    taken = {name: tuple(here[name]) for name in chosen}
    count = {g: sum(math.prod(shape) for name in chosen for key, shape in here[name].items()
                    if key.startswith(g + "/")) for g in GROUPS}
    return Transfer(spec.path, run_dir, file, epoch, taken,
                    tuple(n for n in here if n not in taken), count["params"], count["state"],
                    net.params, net.state, tuple(warnings))


def _clash(name, mine: dict, theirs: dict, leaf: Node, net: Net, head: str, span,
           keep: str | None, is_head: bool, clashes: int) -> Diagnostic:
    """E422 for a matched layer whose arrays differ."""
    short = {k.rsplit("/", 1)[1]: v for k, v in mine.items()}
    other = {k.rsplit("/", 1)[1]: v for k, v in theirs.items()}
    if set(short) != set(other):
        message = (f"{head}: {name} holds {', '.join(sorted(other))} there and "
                   f"{', '.join(sorted(short))} here")
    else:
        array = next(a for a in short if short[a] != other[a])
        message = (f"{head}: {name}'s {array} is {_shape(other[array])} there and "
                   f"{_shape(short[array])} here")
    leave_out = f"leave it out: layers={keep}" if keep else "start it fresh (no init from=)"
    if _automatic(leaf):
        rename = f"give the {'new head' if is_head else 'changed layer'} its own " \
                 f"name ({_rename_example(leaf, net, is_head)})"
    else:
        rename = "give it another name (as NAME)"
    notes = ()
    if clashes > 5:
        notes = (f"{clashes - 5} more layers differ too",)
    return error("E422", message, span, label=f"{name} differs", help=f"{rename} or {leave_out}",
                 notes=notes)
