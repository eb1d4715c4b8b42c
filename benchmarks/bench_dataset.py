"""Print how many synthetic images per second one core renders.

Usage: .venv/bin/python -m benchmarks.bench_dataset [--n 500] [--size 64]
"""
from __future__ import annotations

import argparse
import time

from cbam_viz.data import SynthShapes, render_sample


def _rate(fn, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    dataset = SynthShapes(seed=0, length=args.n, size=args.size)
    render_rate = _rate(lambda i: render_sample(0, i, args.size), args.n)
    print(f"render_sample  {args.size}px: {render_rate:7.0f} images/s")
    print(f"dataset[i]     {args.size}px: {_rate(dataset.__getitem__, args.n):7.0f} images/s")


if __name__ == "__main__":
    main()
