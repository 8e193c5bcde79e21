#!/usr/bin/env python
"""Streamed training against in-memory training, through the real `netc train` (issue #15).

    python benchmarks/stream_training.py throughput [--n 10000] [--epochs 2] [--repeats 2]
                                                    [--runs off:0,off:0:step,on:0,on:1]
    python benchmarks/stream_training.py memory [--n 30000] [--runs on:0,on:1,off:0]

Both write N random RGB PNGs in 10 class folders (benchmarks/stream_memory.py's
`write_pngs`; kept and reused when the folder already holds N) and run `netc train` on them
in a subprocess, once per RUN (`stream:workers`, e.g. `on:1` is `stream on` with the data
line's `workers=1`; `off:0:step` adds `--loop step`), the runs interleaved over the
repeats.

throughput: a LeNet-5 of 32x32x3 inputs (examples/lenet5.net with RGB input; Adam, batch
128, `split 1 0 0`, `normalize none`) for EPOCHS epochs on 32x32 PNGs. Its figure is
examples trained per second of training (run.json: train examples x epochs over
`timing.train_seconds`, which leaves out loading and compiling), and for streamed runs
`timing.feed`'s data rate (how fast the reader hands over batches) and step rate (how fast
the steps run): the lower one limits the run.

memory: one epoch of a small ConvNet (stream_memory.py's: conv 3x3 c=16, pool 4, conv 3x3
c=32, pool 4, softmax 10; Adam, batch 64) on 64x64 PNGs (N x 64x64x3 x 4 bytes decoded:
1.47 GB at 30,000). Peak RSS of the training process from `/usr/bin/time -v`, and of its
worker processes (and of the whole tree) by sampling psutil every 0.1 s.

Prints one line per run and, as its LAST line, one JSON object with every run's figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from stream_memory import write_pngs

LENET = """net lenet5_rgb
input 32x32x3
conv f=5 s=1 c=6 -> tanh -> avgpool f=2 s=2
-> conv f=5 s=1 c=16 -> tanh -> avgpool f=2 s=2
-> fc 120 -> tanh -> fc 84 -> tanh -> softmax 10
train {
  data "FOLDER" workers=WORKERS
  split 1 0 0
  normalize none
  optimizer adam lr=0.001
  batch 128
  epochs EPOCHS
  seed 0
}
"""

CONVNET = """net stream_bench
input 64x64x3
conv f=3 s=1 p=same c=16 -> relu -> maxpool f=4
-> conv f=3 s=1 p=same c=32 -> relu -> maxpool f=4
-> flatten -> softmax 10
train {
  data "FOLDER" workers=WORKERS
  split 1 0 0
  normalize none
  optimizer adam lr=0.001
  batch 64
  epochs EPOCHS
  seed 0
}
"""


def parse_runs(text: str) -> list[tuple[str, int, str]]:
    """`stream:workers[:loop]` items: `off:0:step` is `stream off` with `--loop step`."""
    runs = []
    for item in text.split(","):
        mode, workers, *loop = item.split(":")
        runs.append((mode, int(workers), loop[0] if loop else "auto"))
    return runs


def train(spec_text: str, folder: pathlib.Path, mode: str, workers: int, loop: str,
          epochs: int, work: pathlib.Path) -> dict:
    """One `netc train` of the spec on FOLDER in a subprocess: run.json's figures, the peak
    RSS of the training process (/usr/bin/time -v) and of its workers (psutil samples)."""
    import psutil

    name = f"{mode}_w{workers}_{loop}"
    spec = work / f"{name}.net"
    spec.write_text(spec_text.replace("FOLDER", str(folder)).replace("WORKERS", str(workers))
                    .replace("EPOCHS", str(epochs)))
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    argv = [sys.executable, "-m", "netc", "train", str(spec), "--out", str(out), "--quiet",
            "--set", f"stream={mode}", "--loop", loop]
    timed = shutil.which("time") or "/usr/bin/time"
    log = work / f"{name}.time"
    started = time.perf_counter()
    proc = subprocess.Popen([timed, "-v", "-o", str(log), *argv])
    peaks = {"main": 0, "worker": 0, "tree": 0}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            kids = root.children(recursive=True)
            rss = {}
            for p in kids:
                with contextlib.suppress(psutil.Error):
                    rss[p.pid] = (p.memory_info().rss, p.ppid())
        except psutil.Error:
            break
        mains = [pid for pid, (_, parent) in rss.items() if parent == proc.pid]
        main = max((rss[pid][0] for pid in mains), default=0)
        workers_rss = [r for pid, (r, _) in rss.items() if pid not in mains]
        peaks["main"] = max(peaks["main"], main)
        peaks["worker"] = max(peaks["worker"], max(workers_rss, default=0))
        peaks["tree"] = max(peaks["tree"], main + sum(workers_rss))
        time.sleep(0.1)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{name}: netc train failed ({proc.returncode})")
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", log.read_text())
    info = json.loads((out / "run.json").read_text())
    timing = info["timing"]
    examples = info["examples"]["train"] * info["epochs_done"]
    result = {"run": name, "stream": mode, "workers": workers, "wall_seconds": round(wall, 1),
              "train_seconds": timing["train_seconds"],
              "examples_per_s": round(examples / timing["train_seconds"], 1),
              "loop": timing["loop"], "streamed": info["streamed"]["train"],
              "peak_rss_mb": round(int(found.group(1)) / 1024, 1) if found else None,
              "sampled_main_rss_mb": round(peaks["main"] / 2**20, 1),
              "sampled_worker_rss_mb": round(peaks["worker"] / 2**20, 1),
              "sampled_tree_rss_mb": round(peaks["tree"] / 2**20, 1)}
    if "feed" in timing:
        result["data_rate"] = timing["feed"]["data_rate"]
        result["step_rate"] = timing["feed"]["step_rate"]
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("throughput", "memory"))
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--runs", default=None)
    parser.add_argument("--folder", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    throughput = args.what == "throughput"
    n = args.n or (10000 if throughput else 30000)
    size = 32 if throughput else 64
    epochs = args.epochs or (2 if throughput else 1)
    repeats = args.repeats or (2 if throughput else 1)
    default = "off:0,off:0:step,on:0,on:1" if throughput else "on:0,on:1,off:0"
    runs = parse_runs(args.runs or default)
    tmp = pathlib.Path(tempfile.gettempdir())
    folder = args.folder or tmp / (f"netc_pngs_{n}" + ("" if size == 64 else f"_{size}"))
    made = write_pngs(folder, n, size)
    print(f"{n} {size}x{size} PNGs in {folder}" + (f" written in {made:.0f} s" if made else ""))
    work = pathlib.Path(tempfile.mkdtemp(prefix="netc_stream_training_"))
    results = []
    for repeat in range(repeats):
        for mode, workers, loop in runs:
            r = train(LENET if throughput else CONVNET, folder, mode, workers, loop, epochs,
                      work)
            r["repeat"] = repeat
            results.append(r)
            rates = (f" (data {r['data_rate']:,.0f}/s, steps {r['step_rate']:,.0f}/s)"
                     if "data_rate" in r else "")
            print(f"stream {mode} workers={workers} ({r['loop']} loop): "
                  f"{r['examples_per_s']:,.0f} examples/s"
                  f"{rates}; peak RSS {r['peak_rss_mb']:,.0f} MB, largest worker "
                  f"{r['sampled_worker_rss_mb']:,.0f} MB, all together "
                  f"{r['sampled_tree_rss_mb']:,.0f} MB; {r['wall_seconds']:.0f} s in all",
                  flush=True)
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"what": args.what, "n": n, "size": size, "epochs": epochs,
                      "runs": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
