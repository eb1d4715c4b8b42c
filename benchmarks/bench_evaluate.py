"""Throughput of `evaluate` on the ImageNet-shaped three-model set (ResNet-50, SE-ResNet-50,
ResNet-50 + CBAM, random weights, Resize 256 + CenterCrop 224): one process vs torchrun x2, measured
in one run, and the time that projects to ImageNet val (50,000 images).

It writes the random weights and a models TOML to a temporary folder, generated 256 px images with
their masks and a CSV of boxes (classes named after ImageNet classes), then runs the real command
line twice per setting: `python -m cbam_viz evaluate ...` and `torchrun --nproc-per-node 2 -m cbam_viz
evaluate ...` (gloo on loopback; OMP_NUM_THREADS=1 per process, as torchrun sets it). For each it
prints the wall time of the whole command (start-up, model loading, the process group included) and
the steady rate the progress bars report (summed over ranks). The 50,000-image figure is a
projection from that rate on this machine, not a measurement.

    .venv/bin/python -m benchmarks.bench_evaluate [--n 8] [--batch-size 4] [--device cpu|cuda]
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
RATE = re.compile(r"(\d+(?:\.\d+)?)(s/img|img/s)")


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


def _steady_rate(stderr: str) -> float:
    """Images/s from the last progress-bar reading of each rank, summed."""
    rates: dict[str, float] = {}
    for line in re.split(r"[\r\n]", stderr):
        if "evaluating" in line and (m := RATE.findall(line)):
            value, unit = m[-1]
            rank = re.search(r"\[rank (\d+)/", line)
            rates[rank.group(1) if rank else "0"] = float(value) if unit == "img/s" else 1 / float(value)
    return sum(rates.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="images per run")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    models = _write_set(tmp)
    boxes = _write_images(tmp / "images", args.n)
    command = ["-m", "cbam_viz", "evaluate", "--models", str(models), "--set", "rand50", "--images", str(tmp / "images"),
               "--annotations", str(boxes), "--batch-size", str(args.batch_size), "--workers", "1", "--device", args.device]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}
    print(f"device {args.device}, {os.cpu_count()} CPU cores, {args.n} images, batch {args.batch_size}, Grad-CAM, "
          "three ResNet-50s (random weights) at 224 px")
    results = {}
    for road in (True, False):
        for procs in (1, 2):
            launcher = [sys.executable] if procs == 1 else [
                sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(procs),
                "--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
            extra = [] if road else ["--no-road"]
            out = tmp / f"out-{procs}-{road}"
            start = time.perf_counter()
            run = subprocess.run([*launcher, *command, *extra, "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                                 env={**env, "OMP_NUM_THREADS": "1"} if procs > 1 else env)
            wall = time.perf_counter() - start
            if run.returncode:
                sys.exit(f"run failed ({procs} process(es)):\n{run.stderr[-2000:]}")
            rate = _steady_rate(run.stderr)
            results[(road, procs)] = rate
            label = f"{'with' if road else 'without'} ROAD, {'1 process' if procs == 1 else f'torchrun x{procs}'}"
            print(f"{label:32s} wall {wall:6.1f} s ({args.n / wall:.3f} images/s incl. start-up), steady {rate:.3f} images/s"
                  f" -> ImageNet val projected {VAL_IMAGES / rate / 3600:.1f} h")
    for road in (True, False):
        print(f"torchrun x2 / 1 process ({'with' if road else 'without'} ROAD): {results[(road, 2)] / results[(road, 1)]:.2f}x")
    print("projections divide 50,000 by the steady rate measured here; on this machine they are not measurements")


if __name__ == "__main__":
    main()
