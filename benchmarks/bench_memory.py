"""Does the server's RSS come back after large uploads? glibc's allocator with and without the thresholds that
app.py sets at start-up (cbam_viz.allocator: mallopt; run.sh and the Dockerfile: MALLOC_MMAP_THRESHOLD_ /
MALLOC_TRIM_THRESHOLD_).

Each mode runs in a fresh child process: one warm-up request, then ``--rounds`` rounds of ``--burst`` requests on
``--threads`` threads (as Gradio's worker threads run them), each the app's image path for a large photo
(open_image, the ImageNet set's input tensor, the display crop).
Prints RSS after the warm-up and after every round, and the final RSS over the post-warm-up RSS per mode.

    .venv/bin/python -m benchmarks.bench_memory [--side 6300] [--burst 8] [--rounds 3] [--threads 4]

``--scorecam``: instead, the peak RSS growth of Score-CAM's weights at layer4.2 of a random ResNet-50 (224 px),
the grad-cam library's (masks all 2,048 channels at once) against cbam_viz's (one batch at a time), each in a
fresh process stopped after its first two batches of 16.
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
SCORECAMS = ("grad-cam library", "cbam_viz batched")


def rss(pid: int | str = "self") -> int:
    """Resident memory of process ``pid`` (this one by default) in bytes."""
    with open(f"/proc/{pid}/statm") as statm:
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


def scorecam_child(mode: str) -> None:
    """Prints the peak RSS growth (bytes) of Score-CAM's weights, stopped after two batches."""
    import resource

    import torch
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from cbam_viz.explain.engine import _BoundedScoreCAM
    from cbam_viz.models import build_from_info
    from cbam_viz.models.sets import imagenet_info

    model = build_from_info(imagenet_info(None)).eval()
    layer, calls = model.layer4[2], []
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        captured = []
        handle = layer.register_forward_hook(lambda m, i, o: captured.append(o.numpy()))
        model(x)
        handle.remove()

    class Stop(Exception):
        pass

    def forward(batch: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) > 2:
            raise Stop
        return model(batch)

    method = (ScoreCAM if mode == SCORECAMS[0] else _BoundedScoreCAM)(model=model, target_layers=[layer])
    method.activations_and_grads.release()
    method.model = forward
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        method.get_cam_weights(x, layer, [ClassifierOutputTarget(0)], captured[0], None)
    except Stop:
        pass
    print(json.dumps([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before]))


def run(mode: str, path: Path, burst: int, rounds: int, threads: int) -> list[int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # the mode decides, not run.sh
    flags = ["--child", mode] + (["--image", str(path), "--burst", str(burst), "--rounds", str(rounds), "--threads",
                                  str(threads)] if mode in MODES else [])
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_memory", *flags], env=env, capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parents[1])
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
    parser.add_argument("--scorecam", action="store_true", help="Score-CAM's memory instead (see above)")
    parser.add_argument("--child", choices=MODES + SCORECAMS, help=argparse.SUPPRESS)
    parser.add_argument("--image", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child in SCORECAMS:
        return scorecam_child(args.child)
    if args.child:
        return child(args.child, args.image, args.burst, args.rounds, args.threads)
    if args.scorecam:
        for mode in SCORECAMS:
            (grown,) = run(mode, Path(), 0, 0, 0)
            print(f"Score-CAM weights at layer4.2 of a ResNet-50, {mode}: peak RSS +{grown / 2**20:.0f} MiB")
        return None
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
