"""A trained run's data read back for `netc eval`, `--errors` and `netc export`: every split
in memory or streamed from disk (runtime/stream.py) as the spec's ``stream`` setting says,
and one pass of the net over a split, batch by batch, that keeps only what is small (the
net's outputs and the labels).

    splits, info = run_splits(model, variables, run_dir)
    seen = split_pass(model, variables, splits.test, batch)   # seen.figures, seen.outputs
    images = raw_examples(splits.test, rows)                  # a few examples, as stored

The examples are normalized with the run's saved statistics (model.safetensors' ``norm/``)
rather than statistics recomputed from the data, which for a streamed train split would
cost one more pass over it; a run without saved statistics (an interrupted one) gets them
computed as training computed them. A split in memory and the same split streamed give
the same batches, so the same figures, bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .data import apply_normalization, standard_stats
from .host_feed import ctrl_c_to_this_process_only, is_streamed, padded_batch

__all__ = ["SplitPass", "raw_examples", "run_info", "run_splits", "split_pass"]


def run_info(run_dir: Path) -> dict:
    """run.json of a run folder ({} without one)."""
    path = Path(run_dir) / "run.json"
    return json.loads(path.read_text()) if path.exists() else {}


def run_splits(model, variables, run_dir: Path, info: dict | None = None, *,
               normalized: bool = True):
    """(Splits, statistics) of a run's data: the splits its spec cuts, each a Dataset in
    memory or a StreamedSplit on disk (``stream auto|on|off``, as training decides), with
    raw (unnormalized) examples; ``statistics`` ({"mean", "std"} shaped as one input, or
    None) normalize them, which :func:`split_pass` does batch by batch (not ``normalized``:
    None, nothing computed). Relative data paths are the spec's folder's (run.json's
    ``data_dir``)."""
    from .run import load_data

    info = run_info(run_dir) if info is None else info
    data_dir = Path(info.get("data_dir") or run_dir)
    net = model.net
    raw = replace(net, train=replace(net.train, normalize="none"))
    splits, _ = load_data(raw, base_dir=data_dir, loss=model.loss_name, streaming=True)
    shape = tuple(int(d) for d in net.input_shape)
    if net.train.normalize != "standard" or not normalized:
        return splits, None
    saved = (variables or {}).get("normalization") or {}
    if saved.get("mean") is not None and saved.get("std") is not None:
        stats = {k: np.asarray(saved[k], np.float32) for k in ("mean", "std")}
    else:
        stats = train_stats(splits.train)
    return splits, {k: v.reshape(shape) for k, v in stats.items()}


def train_stats(train) -> dict[str, np.ndarray]:
    """``normalize standard``'s statistics of a train split, as training computes them
    (runtime/data.py's prepare in memory, runtime/stream.py's streamed_stats on disk)."""
    if is_streamed(train):
        from .stream import streamed_stats

        return streamed_stats(train)
    return standard_stats(np.asarray(train.x))


def padded_split_batches(split, batch: int, stats: dict | None
                         ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(x, y, weights, positions) of a split in order, normalized with ``stats``, in batches
    of exactly ``batch`` examples (the last padded with zeros and weighted 0, as
    runtime/split_figures.py's padded_batches cuts them); ``positions`` are the batch's real rows'
    positions in the split (a streamed split's ``skip_bad`` may leave some out)."""
    if is_streamed(split):
        split = getattr(split, "split", split)
        batches = split.positioned_batches(np.arange(len(split)), batch, stats=stats)
        for x, y, kept in ctrl_c_to_this_process_only(batches):
            yield (*padded_batch(x, y, batch), kept)
        return
    x_all, y_all = np.asarray(split.x), np.asarray(split.y)
    for start in range(0, len(x_all), batch):
        x = apply_normalization(x_all[start:start + batch], stats)
        yield (*padded_batch(x, y_all[start:start + batch], batch),
               np.arange(start, start + len(x)))


@dataclass
class SplitPass:
    """What one pass of a net over a split found: ``figures`` (loss and accuracy, as
    runtime/split_figures.py's evaluate computes them), the net's ``outputs`` and the labels ``y``
    of the examples read, their ``positions`` in the split, the examples themselves where
    ``keep_x`` asked (``x``, normalized) and the names of those ``skip_bad`` left out."""

    figures: dict
    outputs: np.ndarray
    y: np.ndarray
    positions: np.ndarray
    x: np.ndarray | None = None
    skipped: list[str] = field(default_factory=list)


def split_pass(model, variables, split, batch: int, stats: dict | None = None, *,
               keep_x: bool = False) -> SplitPass:
    """One pass of the net over ``split`` (in memory or streamed) in batches of ``batch``:
    each batch's outputs and its figures (loss and accuracy, as runtime/split_figures.py's
    evaluate sums them) from one forward pass (the Model's ``outputs_and_sums``), and the
    outputs and labels of every example (only those are held, never the split's examples,
    unless ``keep_x``)."""
    outputs, labels, positions, xs = [], [], [], []
    skipped_before = list(getattr(getattr(split, "split", split), "skipped_names", []))
    run = model.outputs_and_sums
    sums = np.zeros(4, np.float32)  # added up in float32, as the training's final figures
    for x, y, weights, kept in padded_split_batches(split, batch, stats):
        n = len(kept)
        out, batch_sums = run(variables, x, y, weights)
        sums = sums + np.asarray(batch_sums)
        outputs.append(np.asarray(out)[:n])
        labels.append(y[:n])
        positions.append(kept)
        if keep_x:
            xs.append(x[:n])
    loss_sum, n, hits, counted = sums.astype(np.float64).tolist()
    figures = {"loss": loss_sum / max(n, 1)}
    if counted:
        figures["accuracy"] = hits / counted
    shape = tuple(int(d) for d in model.input_shape)
    y_all = getattr(split, "y", None)
    skipped = list(getattr(getattr(split, "split", split), "skipped_names", []))
    return SplitPass(
        figures,
        np.concatenate(outputs) if outputs else np.zeros((0, *model.output_shape), np.float32),
        np.concatenate(labels) if labels else np.asarray(y_all)[:0],
        np.concatenate(positions).astype(np.int64) if positions else np.zeros(0, np.int64),
        (np.concatenate(xs) if xs else np.zeros((0, *shape), np.float32)) if keep_x else None,
        skipped[len(skipped_before):])


def raw_examples(split, positions: np.ndarray) -> np.ndarray:
    """The examples at ``positions`` of a split as the data holds them (not normalized),
    float32: a streamed split reads only these (an unreadable one is an error naming it)."""
    positions = np.asarray(positions, dtype=np.int64)
    if is_streamed(split):
        split = getattr(split, "split", split)
        x, _, _ = split.reader(normalized=False, skip_bad=False)(positions)
        return x
    x = np.asarray(split.x)[positions]
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    return x

