"""This project's localization metrics against Quantus 0.6.0's on the same maps: time per map, measured
in one run, and the largest difference of the values (tests/test_quantus_equality.py pins equality).

Maps: ``--n`` CAMs of 8x8 random cells placed on ``--size`` px (as `evaluate` places them: bilinear, edge
values repeated, so ties occur), masks a box each. Quantus is called as its docs show, on a batch
(``model=None``: its localisation metrics need no model), with its warnings off. Also prints the time
`import quantus` takes in a fresh process.

    .venv/bin/python -m benchmarks.bench_localization_metrics [--n 64] [--size 224] [--repeat 3]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings

import numpy as np

from cbam_viz.data import concentration, match_concentration, place_cam, pointing_game, rank_hit, roc_auc
from cbam_viz.evaluate.scoring import energy_share


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import warnings; warnings.simplefilter('ignore'); import quantus"], check=True)
    print(f"import quantus in a fresh process (python start-up included): {time.perf_counter() - start:.2f} s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import quantus
    rng = np.random.default_rng(0)
    n, size = args.n, args.size
    maps = np.stack([place_cam(rng.random((8, 8)), (size, size)) for _ in range(n)]).astype(np.float64)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        y, x = rng.integers(0, size // 2, 2)
        masks[i, y:y + size // 3, x:x + size // 4] = True
    x_batch = np.zeros((n, 3, size, size), np.float32)
    ours = {"pointing (tolerance 0)": (quantus.PointingGame, lambda a, s: pointing_game(a, s, tolerance=0)),
            "auc": (quantus.AUC, roc_auc), "rank_hit": (quantus.RelevanceRankAccuracy, rank_hit),
            "energy": (quantus.RelevanceMassAccuracy, energy_share)}
    print(f"{n} maps of {size}x{size} px, best of {args.repeat}; ms per map")
    print("| metric | this project | Quantus | Quantus / this | largest difference |")
    print("|---|---|---|---|---|")
    for name, (metric, mine) in ours.items():
        values: dict[str, np.ndarray] = {}

        def run_quantus() -> None:
            values["q"] = np.asarray(metric(disable_warnings=True)(model=None, x_batch=x_batch, y_batch=np.zeros(n, int),
                                                                    a_batch=maps[:, None], s_batch=masks[:, None]), float)

        def run_ours() -> None:
            values["o"] = np.asarray([mine(a, s) for a, s in zip(maps, masks)], float)

        t_q, t_o = _best(run_quantus, args.repeat), _best(run_ours, args.repeat)
        print(f"| {name} | {1000 * t_o / n:.3f} | {1000 * t_q / n:.3f} | {t_q / t_o:.1f}x "
              f"| {np.abs(values['q'] - values['o']).max():.2g} |")
    t_c = _best(lambda: [concentration(a) for a in maps], args.repeat)
    t_m = _best(lambda: [match_concentration([a, b]) for a, b in zip(maps[::2], maps[1::2])], args.repeat)
    print(f"concentration: {1000 * t_c / n:.3f} ms per map; concentration matching: {2000 * t_m / n:.3f} ms per pair "
          "(no Quantus counterpart)")


if __name__ == "__main__":
    main()
