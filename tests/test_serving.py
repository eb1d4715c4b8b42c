"""Bounded temporary folders: size and age caps with oldest-first eviction."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from cbam_viz.ui.serving import BoundedFolder


def _age(folder: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(folder, (then, then))


def test_300_requests_stay_under_the_size_cap_oldest_first(tmp_path: Path) -> None:
    bounded = BoundedFolder(tmp_path / "exports", max_bytes=50_000, max_age_s=3600, grace_s=0)
    made = []
    for i in range(300):
        folder = bounded.new()
        (folder / "figure.png").write_bytes(b"x" * (1000 + 37 * (i % 50)))
        _age(folder, 1000 - i)  # created in order, one second apart
        made.append(folder)
        assert bounded.size() <= 50_000 + 1000 + 37 * 49  # the cap, plus the folder just written
    survivors = sorted(p for p in made if p.exists())
    assert survivors == sorted(made[-len(survivors):])  # the newest survive, the oldest went first
    assert 20 < len(survivors) < 60


def test_old_folders_go_and_young_ones_are_kept_even_over_the_cap(tmp_path: Path) -> None:
    bounded = BoundedFolder(tmp_path / "exports", max_bytes=10, max_age_s=60, grace_s=30)
    old, young = bounded.new(), bounded.new()
    (old / "a").write_bytes(b"x" * 100)
    (young / "b").write_bytes(b"x" * 100)
    _age(old, 61)
    bounded.new()
    assert not old.exists() and young.exists()  # young: a concurrent request may still be returning it


def test_concurrent_requests_get_distinct_folders(tmp_path: Path) -> None:
    bounded = BoundedFolder(tmp_path / "exports", max_bytes=10**9, max_age_s=3600)
    made: list[Path] = []
    threads = [threading.Thread(target=lambda: made.append(bounded.new())) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 50 and all(p.is_dir() for p in made)
