"""Progress of a run: a live rich display on a terminal, plain lines otherwise, or nothing."""

from __future__ import annotations

import sys
import time
from dataclasses import replace


def _fmt(rec: dict) -> str:
    parts = [f"loss {rec['loss']:.4f}"]
    if "accuracy" in rec:
        parts.append(f"acc {rec['accuracy']:.3f}")
    if "dev_loss" in rec:
        parts.append(f"dev_loss {rec['dev_loss']:.4f}")
    if "dev_accuracy" in rec:
        parts.append(f"dev_acc {rec['dev_accuracy']:.3f}")
    return "  ".join(parts)


class Reporter:
    """Prints to stderr so that stdout stays clean for --json."""

    def __init__(self, mode: str = "auto", stream=None):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "rich" if self.stream.isatty() else "plain"
        self.mode = mode
        self._live = None

    def warn(self, message: str) -> None:
        if self.mode != "quiet" or message.startswith("warning"):
            print(message, file=self.stream)

    def start(self, net, trainer, done: int) -> None:
        self.total = net.train.epochs
        self.examples = trainer.train_data.m
        # a train split streamed from disk: its reading and stepping rates (host_feed.py)
        self.feed = trainer.feed_rates if getattr(trainer, "streamed", False) else None
        # a copy of the feed's figures when the shown epochs began
        self._fed = None if self.feed is None else replace(self.feed)
        self.last_line = 0.0
        if self.mode == "quiet":
            return
        where = f", resuming after epoch {done}" if done else ""
        placement = getattr(trainer, "placement", None)
        mesh = ""
        if placement is not None:
            sharded = ", parameters sharded" if placement.shard_params else ""
            mesh = (f", mesh data={placement.count} over {placement.count} "
                    f"{placement.describe()['platform']} devices{sharded}")
        # fed from the host but held in memory: several processes, each feeding its rows
        on_disk = not hasattr(getattr(trainer.train_data, "split", None), "x")
        streamed = " streamed from disk" if self.feed is not None and on_disk else ""
        print(f"training {net.name}: {self.examples} examples{streamed}, batch {trainer.batch}, "
              f"{self.total} epochs, {trainer.loop} loop{mesh}{where}", file=self.stream)
        if self.mode == "rich":
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._live = Progress(TextColumn("epoch"), MofNCompleteColumn(), BarColumn(),
                                  TextColumn("{task.fields[metrics]}"),
                                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                  console=Console(file=self.stream), transient=False)
            self._task = self._live.add_task("train", total=self.total, completed=done,
                                             metrics="", rate="")
            self._live.start()

    def epochs(self, records: list[dict]) -> None:
        """Show the newest of these epochs' figures, and how fast they trained: examples
        over their training seconds (compiling left out, as in metrics.jsonl)."""
        last = records[-1]
        seconds = sum(r.get("seconds", 0.0) for r in records)
        # no rate for epochs whose training time is nothing once compiling is left out
        rate = f"{len(records) * self.examples / seconds:,.0f} ex/s" if seconds > 0 else ""
        feed = None
        if self.feed is not None:
            feed, self._fed = self.feed.since(self._fed), replace(self.feed)
        rate_text = rate + _feed_rates(feed)
        if self._live is not None:
            self._live.update(self._task, completed=last["epoch"], metrics=_fmt(last),
                              rate=rate_text)
        elif self.mode == "plain":
            now = time.perf_counter()
            if now - self.last_line >= 1.0 or last["epoch"] == self.total:
                self.last_line = now
                print(f"epoch {last['epoch']}/{self.total}  {_fmt(last)}  {rate_text}",
                      file=self.stream, flush=True)

    def finish(self, final: dict, interrupted: bool) -> None:
        if self._live is not None:
            self._live.stop()
        if self.mode == "quiet":
            return
        width = max(map(len, final), default=5)
        for split, metrics in final.items():
            acc = f"  accuracy {metrics['accuracy']:.4f}" if "accuracy" in metrics else ""
            tasks = _tasks(metrics.get("task_accuracy"))
            print(f"{split:>{width}}: loss {metrics['loss']:.4f}{acc}{tasks}", file=self.stream)


def _feed_rates(rates) -> str:
    """`  (data 52,000 ex/s, steps 9,100 ex/s)` for a streamed train split over the line's
    epochs (host_feed.FeedRates.since): how fast the reader handed over examples and how
    fast the steps took them; the lower one limits the run. '' when the data is in memory."""
    if rates is None or not rates.examples:
        return ""
    return f" (data {rates.data_rate():,.0f} ex/s, steps {rates.step_rate():,.0f} ex/s)"


def _tasks(accuracies: list | None, shown: int = 8) -> str:
    """A multi-task net's per-task accuracies, as `  tasks 0.912 0.850 -` (- where no label
    of the task is known; the first `shown`, then how many more)."""
    if not accuracies:
        return ""
    text = " ".join("-" if a is None else f"{a:.3f}" for a in accuracies[:shown])
    more = f" (+{len(accuracies) - shown} more)" if len(accuracies) > shown else ""
    return f"  tasks {text}{more}"
