"""Start-up of ``python -m cbam_viz`` on the answers that need no model: ``--help``, an argument error, a missing
input file (``explain``, ``figure``, ``evaluate --images``) and ``weights list``, against ``python -c pass``, in
one run. Goals on the project's 2-core machine: each error under 1 s, ``weights list`` under 1.5 s.

    .venv/bin/python -m benchmarks.bench_cli_startup [--repeats 7]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def seconds(args: list[str], repeats: int) -> float:
    """Median wall-clock seconds of ``python ARGS`` (output discarded)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        missing = str(Path(tmp) / "cheetah.jpg")
        cases = {
            "--help": (["--help"], 1.0),
            "argument error (explain without --out)": (["explain", missing], 1.0),
            "explain: missing image": (["explain", missing, "--out", tmp], 1.0),
            "figure: missing image": (["figure", missing, "--out", str(Path(tmp) / "fig.pdf")], 1.0),
            "evaluate --images: missing folder": (["evaluate", "--images", str(Path(tmp) / "photos"), "--annotations",
                                                   str(Path(tmp) / "boxes.csv")], 1.0),
            "weights list": (["weights", "list"], 1.5),
        }
        base = seconds(["-c", "pass"], args.repeats)
        print(f"python -c pass: {base:.3f} s (median of {args.repeats})")
        print("| command | median s | x python -c pass | goal s |\n|---|---|---|---|")
        failed = []
        for name, (argv, goal) in cases.items():
            took = seconds(["-m", "cbam_viz", *argv], args.repeats)
            print(f"| {name} | {took:.3f} | {took / base:.1f} | < {goal} |")
            if took >= goal:
                failed.append(name)
    if failed:
        raise SystemExit(f"over the goal: {', '.join(failed)}")


if __name__ == "__main__":
    main()
