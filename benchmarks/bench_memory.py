"""Does the server's RSS come back after large uploads? glibc's allocator with and without the thresholds that
app.py sets at start-up (cbam_viz.allocator: mallopt; run.sh and the Dockerfile: MALLOC_MMAP_THRESHOLD_ /
MALLOC_TRIM_THRESHOLD_).

Each mode runs in a fresh child process: one warm-up request, then ``--rounds`` rounds of ``--burst`` requests on
``--threads`` threads (as Gradio's worker threads run them), each the app's image path for a large photo
(open_image, the ImageNet set's input tensor, the display crop).
Prints RSS after the warm-up and after every round, and the final RSS over the post-warm-up RSS per mode.

    .venv/bin/python -m benchmarks.bench_memory [--side 6300] [--burst 8] [--rounds 3] [--threads 4]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

MODES = ("glibc default", "tuned at start-up")


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(mode: str, path: Path, burst: int, rounds: int, threads: int) -> None:
    """One process: the app's image path on ``path``; prints a JSON list of RSS (bytes) after warm-up and rounds."""
    if mode == MODES[1]:
        from cbam_viz.allocator import tune_allocator

        assert tune_allocator()
    from cbam_viz.images import open_image
    from cbam_viz.models import display_crop, preprocess
    from cbam_viz.models.sets import imagenet_info

    info = imagenet_info(None)

    def request() -> None:
        image = open_image(path)
        preprocess(image, info)
        np.asarray(display_crop(image, info))

    request()
    sizes = [rss()]
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(rounds):
            list(pool.map(lambda _: request(), range(burst)))
            sizes.append(rss())
    print(json.dumps(sizes))


def run(mode: str, path: Path, burst: int, rounds: int, threads: int) -> list[int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # the mode decides, not run.sh
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_memory", "--child", mode, "--image", str(path),
                          "--burst", str(burst), "--rounds", str(rounds), "--threads", str(threads)], env=env, capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def photo(side: int, folder: Path) -> Path:
    """A ``side`` x ``side`` JPEG with noise (so that it does not compress to nothing)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)
    path = folder / f"large-{side}.jpg"
    Image.fromarray(small).resize((side, side)).save(path, quality=85)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=6300)
    parser.add_argument("--burst", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--image", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.image, args.burst, args.rounds, args.threads)
    with tempfile.TemporaryDirectory() as folder:
        path = photo(args.side, Path(folder))
        print(f"{args.side}x{args.side} JPEG, {args.burst} requests per round on {args.threads} threads; RSS in MiB "
              "after warm-up, then per round")
        for mode in MODES:
            sizes = run(mode, path, args.burst, args.rounds, args.threads)
            mib = " ".join(f"{s / 2**20:.0f}" for s in sizes)
            print(f"{mode:>18}: {mib}   final/post-warm-up {sizes[-1] / sizes[0]:.2f}")


if __name__ == "__main__":
    main()
