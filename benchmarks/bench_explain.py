"""Cost of one explanation vs a plain forward pass, measured side by side in one run.

Prints, for the ResNet-50 pair (baseline + CBAM, random weights, 224 px, batch 1):
  - median time of a plain forward of both models (inference mode),
  - median time of cbam_viz.explain (Grad-CAM, both models), and its ratio to the forward,
  - median time of plain pytorch-grad-cam usage (GradCAM(model, layers)(x) per model), and its ratio,
then RSS before and after N consecutive explain calls (memory must stay flat).

    .venv/bin/python -m benchmarks.bench_explain [--repeats 20] [--calls 500] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import statistics
import time

import psutil
import torch
from pytorch_grad_cam import GradCAM

from cbam_viz.explain import explain
from cbam_viz.models import build_resnet


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    models = {"baseline": build_resnet(50).eval().to(args.device), "cbam": build_resnet(50, "cbam").eval().to(args.device)}
    x = torch.randn(1, 3, 224, 224, device=args.device)

    def forward():
        with torch.inference_mode():
            for m in models.values():
                m(x)

    def ours():
        explain(models, x)

    def library():
        for m in models.values():
            with GradCAM(model=m, target_layers=[m.layer4[-1]]) as cam:
                cam(input_tensor=x, targets=None)  # its own top-1, like explain

    for fn in (forward, ours, library):  # warm-up
        fn()
    rounds = {"forward": [], "explain": [], "pytorch-grad-cam": []}
    for _ in range(3):  # interleave to share the machine's noise fairly
        rounds["forward"].append(median_ms(forward, args.repeats))
        rounds["explain"].append(median_ms(ours, args.repeats))
        rounds["pytorch-grad-cam"].append(median_ms(library, args.repeats))
    base = statistics.median(rounds["forward"])
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, ResNet-50 + CBAM ResNet-50, 224 px, batch 1")
    for name, values in rounds.items():
        ms = statistics.median(values)
        print(f"{name:18s} {ms:8.1f} ms   ratio to plain forward {ms / base:5.2f}x")
    process = psutil.Process()
    explain(models, x)
    before = process.memory_info().rss
    for _ in range(args.calls):
        explain(models, x)
    after = process.memory_info().rss
    print(f"RSS over {args.calls} explain calls: {before / 2**20:.0f} MiB -> {after / 2**20:.0f} MiB ({(after - before) / 2**20:+.1f} MiB)")


if __name__ == "__main__":
    main()
