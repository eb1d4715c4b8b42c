"""Does one slow request stall everybody else? Grad-CAM latency while a Score-CAM runs, vs idle, in one run.

Launches `app.py --random-imagenet --sets imagenet` (ResNet-50, SE-ResNet-50, ResNet-50 + CBAM, random weights, 224 px)
and drives it with gradio_client: Grad-CAM requests on fresh photos (no cache hits) while the app is idle, then
the same while another client's Score-CAM request (one forward pass per layer4 channel: minutes on a CPU)
is running. Prints both medians and their ratio; before the service lost its global model lock, every
Grad-CAM request waited until the Score-CAM finished.

    .venv/bin/python -m benchmarks.bench_concurrency [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from gradio_client import Client, handle_file

from benchmarks.bench_app import photos, start_app, stop
from cbam_viz.ui.compare import OWN

ARGS = dict(model_set="imagenet", layer="layer4.2", target=OWN, shared=False, block="layer4.2", left="baseline",
            right="cbam", api_name="/compare")


def gradcam_ms(client: Client, path: Path) -> float:
    start = time.perf_counter()
    client.predict(handle_file(str(path)), method="gradcam", **ARGS)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    proc, url, _ = start_app(["--random-imagenet", "--sets", "imagenet", "--trusted-proxy", "127.0.0.1"], threads)
    try:
        # Two users at two addresses (the server runs one request per address at a time).
        client, other = (Client(url, verbose=False, ssl_verify=False, headers={"X-Forwarded-For": address})
                         for address in ("198.51.100.7", "198.51.100.8"))
        for c in (client, other):
            c.predict("imagenet", api_name="/select_set")  # the session's choices: ResNet-50 layers, ImageNet classes
        with tempfile.TemporaryDirectory() as tmp:
            files = photos(2 * args.repeats + 3, Path(tmp))
            gradcam_ms(client, files[0])  # warm-up
            idle = [gradcam_ms(client, f) for f in files[1:1 + args.repeats]]
            start = time.perf_counter()
            slow = other.submit(handle_file(str(files[-1])), method="scorecam", **ARGS)
            time.sleep(2.0)  # let the Score-CAM get going
            busy = []
            for f in files[1 + args.repeats:1 + 2 * args.repeats]:
                busy.append(gradcam_ms(client, f))
                assert not slow.done(), "the Score-CAM finished early: the measurement no longer overlaps it"
            slow.result(timeout=3600)
            scorecam_s = time.perf_counter() - start
    finally:
        stop(proc)
    idle_ms, busy_ms = statistics.median(idle), statistics.median(busy)
    print(f"{threads} threads, ResNet-50 set of three models (random weights), 224 px, {args.repeats} Grad-CAM requests each")
    print(f"Grad-CAM request, app idle (median):             {idle_ms:7.0f} ms")
    print(f"Grad-CAM request, while a Score-CAM runs (median): {busy_ms:7.0f} ms   (max {max(busy):.0f})")
    print(f"ratio busy / idle:                               {busy_ms / idle_ms:7.2f} x")
    print(f"the Score-CAM request took:                      {scorecam_s:7.1f} s")


if __name__ == "__main__":
    main()
