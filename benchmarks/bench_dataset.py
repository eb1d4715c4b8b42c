"""Print how many generated images per second one core renders, per generator level (easy, medium, hard, harder).

Usage: .venv/bin/python -m benchmarks.bench_dataset [--n 500] [--size 96]
"""
from __future__ import annotations

import argparse
import time

from cbam_viz.data import DIFFICULTIES, SynthShapes, render_sample


def _rate(fn, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    rates = {}
    for name, level in DIFFICULTIES.items():
        rates[name] = _rate(lambda i: render_sample(0, i, args.size, difficulty=level), args.n)
        print(f"render_sample {name} {args.size}px: {rates[name]:7.0f} images/s")
    dataset = SynthShapes(seed=0, length=args.n, size=args.size)
    print(f"dataset[i]    hard {args.size}px: {_rate(dataset.__getitem__, args.n):7.0f} images/s")
    for name in [n for n in rates if n != "easy"]:
        print(f"{name} / easy render rate: {rates[name] / rates['easy']:.2f}x")


if __name__ == "__main__":
    main()
