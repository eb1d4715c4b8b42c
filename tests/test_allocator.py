"""RSS after a burst of large images, in a child process with the allocator settings of app.py's start-up."""
from __future__ import annotations

from pathlib import Path

from benchmarks.bench_memory import MODES, photo, run


def test_rss_returns_within_10_percent_after_a_burst_of_large_images(tmp_path: Path) -> None:
    warm, after = run(MODES[1], photo(3000, tmp_path), burst=8, rounds=1, threads=4)
    assert after <= 1.1 * warm, f"RSS {warm / 2**20:.0f} MiB after warm-up, {after / 2**20:.0f} MiB after the burst"
