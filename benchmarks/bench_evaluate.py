"""Throughput of `evaluate` on the ImageNet-shaped three-model set (ResNet-50, SE-ResNet-50,
ResNet-50 + CBAM, random weights, Resize 256 + CenterCrop 224): one process vs torchrun x2, measured
in one run, and the time that projects to ImageNet val (50,000 images).

It writes the random weights and a models TOML to a temporary folder, generated 256 px images with
their masks and a CSV of boxes (classes named after ImageNet classes), then runs the real command
line: `python -m cbam_viz evaluate ...` and `torchrun --nproc-per-node 2 -m cbam_viz evaluate ...`
(gloo on loopback), with and without ROAD. For each it
prints the wall time of the whole command (start-up, model loading, the process group included) and
the rate after start-up (images over the longest progress-bar time of any rank). One process runs
with torch's default threads (one per core) and with one thread, torchrun with one thread per
process (OMP_NUM_THREADS=1, as torchrun sets it). The 50,000-image figure is a projection from that
rate on this machine, not a measurement.

    .venv/bin/python -m benchmarks.bench_evaluate [--n 8] [--batch-size 2] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from cbam_viz.data import HARD, write_samples
from cbam_viz.models.sets import imagenet_classes
from cbam_viz.service import random_imagenet_set

ROOT = Path(__file__).resolve().parents[1]
VAL_IMAGES = 50_000
ELAPSED = re.compile(r"\| \d+/\d+ \[([\d:]+)<")


def _write_set(folder: Path) -> Path:
    """The random ImageNet-shaped set as state dicts and a models TOML registering them as set `rand50`."""
    (folder / "classes.txt").write_text("\n".join(imagenet_classes()) + "\n")
    lines = []
    for role, model in random_imagenet_set("cpu").models.items():
        torch.save(model.state_dict(), folder / f"{role}.pt")
        attention = model.info.attention or "none"
        lines += [f"[models.rand50-{role}]", f'path = "{role}.pt"', "depth = 50", f'attention = "{attention}"',
                  'class_names_file = "classes.txt"', "input_size = 224", "resize = 256", ""]
    lines += ["[sets.rand50]", 'models = { baseline = "rand50-baseline", se = "rand50-se", cbam = "rand50-cbam" }']
    (folder / "models.toml").write_text("\n".join(lines) + "\n")
    return folder / "models.toml"


def _write_images(folder: Path, n: int) -> Path:
    """``n`` generated 256 px images with masks; boxes in a CSV whose classes are ImageNet class names."""
    write_samples(folder, n, seed=3, size=256, difficulty=HARD)
    names = imagenet_classes()
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(folder / "boxes.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "class", "x0", "y0", "x1", "y1"])
        for row in rows:
            writer.writerow([row["file"], names[int(row["label"]) * 80], row["x0"], row["y0"], row["x1"], row["y1"]])
    return folder / "boxes.csv"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _steady_rate(stderr: str, n: int) -> float:
    """Images/s after start-up: ``n`` over the longest progress-bar time of any rank (its last reading)."""
    elapsed: dict[str, float] = {}
    for line in re.split(r"[\r\n]", stderr):
        if "evaluating" in line and (m := ELAPSED.search(line)):
            rank = re.search(r"\[rank (\d+)/", line)
            parts = [int(x) for x in m.group(1).split(":")]
            elapsed[rank.group(1) if rank else "0"] = sum(v * 60 ** i for i, v in enumerate(reversed(parts)))
    return n / max(max(elapsed.values()), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="images per run")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as folder:
        _measure(args, Path(folder))


def _measure(args: argparse.Namespace, tmp: Path) -> None:
    models = _write_set(tmp)
    boxes = _write_images(tmp / "images", args.n)
    command = ["-m", "cbam_viz", "evaluate", "--models", str(models), "--set", "rand50", "--images", str(tmp / "images"),
               "--annotations", str(boxes), "--batch-size", str(args.batch_size), "--workers", "1", "--device", args.device]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}
    print(f"device {args.device}, {os.cpu_count()} CPU cores, {args.n} images, batch {args.batch_size}, Grad-CAM, "
          "three ResNet-50s (random weights) at 224 px")
    results = {}
    layouts = [(1, None), (1, 1), (2, 1)]  # processes, threads per process (None: torch's default, one per core)
    for road in (True, False):
        for procs, threads in layouts:
            launcher = [sys.executable] if procs == 1 else [
                sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(procs),
                "--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
            extra = [] if road else ["--no-road"]
            out = tmp / f"out-{procs}-{threads}-{road}"
            start = time.perf_counter()
            run = subprocess.run([*launcher, *command, *extra, "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                                 env={**env, "OMP_NUM_THREADS": str(threads)} if threads else env)
            wall = time.perf_counter() - start
            if run.returncode:
                sys.exit(f"run failed ({procs} process(es)):\n{run.stderr[-2000:]}")
            rate = results[(road, procs, threads)] = _steady_rate(run.stderr, args.n)
            label = (f"{'with' if road else 'without'} ROAD, " + ("1 process" if procs == 1 else f"torchrun x{procs}")
                     + f", {threads or torch.get_num_threads()} thread(s) each")
            print(f"{label:44s} wall {wall:6.1f} s, after start-up {rate:.3f} images/s -> ImageNet val (50,000) "
                  f"projected {VAL_IMAGES / rate / 3600:.1f} h", flush=True)
    for road in (True, False):
        ratios = [results[(road, 2, 1)] / results[(road, procs, threads)] for procs, threads in layouts[:2]]
        print(f"{'with' if road else 'without'} ROAD: torchrun x2 / 1 process = {ratios[0]:.2f}x (default threads), "
              f"{ratios[1]:.2f}x (1 thread)")
    print("projections divide 50,000 by the steady rate measured here; on this machine they are not measurements")


if __name__ == "__main__":
    main()
