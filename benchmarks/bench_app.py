"""End-to-end latency of the running app against a plain forward pass of every model, in one run.

1. Start-up: launches `app.py` with the bundled sets and prints the seconds until it serves.
2. Latency: launches `app.py --random-imagenet --sets imagenet` (ResNet-50, SE-ResNet-50, ResNet-50 + CBAM,
   random weights, 224 px) and drives it with gradio_client: upload a new photo -> /compare (all three models,
   Grad-CAM, every attention panel) -> all outputs downloaded. Interleaved with those requests, this process
   times a plain forward pass of the same three models (inference mode, same thread count, same device).
   Prints both medians, their ratio (goal: at most 1.6x) and the time explain() took inside the app
   (read from the summary it returns).

    .venv/bin/python -m benchmarks.bench_app [--repeats 15] [--threads 2] [--skip-startup]
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import httpx  # noqa: E402
import torch  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from matplotlib import cbook  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from cbam_viz.models import preprocess  # noqa: E402
from cbam_viz.ui.compare import OWN  # noqa: E402
from cbam_viz.service import random_imagenet_set  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(args: list[str], threads: int, timeout: float = 120) -> tuple[subprocess.Popen, str, float]:
    """``app.py`` in a subprocess; returns it, its URL and the seconds until it answered HTTP."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited with status {proc.returncode}:\n{proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc, url, time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"app.py did not answer within {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def photos(n: int, folder: Path) -> list[Path]:
    """``n`` different JPEGs (a marked copy of grace_hopper.jpg each), so that no request hits the app's cache."""
    base = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    paths = []
    for i in range(n):
        image = base.copy()
        ImageDraw.Draw(image).rectangle((8, 8, 40, 40), fill=(i * 37 % 256, i * 91 % 256, i * 53 % 256))
        paths.append(folder / f"photo-{i:03d}.jpg")
        image.save(paths[-1], quality=90)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip-startup", action="store_true", help="skip the start-up measurement with the bundled sets")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if not args.skip_startup:
        proc, _, seconds = start_app([], args.threads)
        stop(proc)
        print(f"start-up to ready, bundled sets:           {seconds:6.1f} s")

    proc, url, seconds = start_app(["--random-imagenet", "--sets", "imagenet"], args.threads)
    print(f"start-up to ready, --random-imagenet:      {seconds:6.1f} s")
    try:
        models = random_imagenet_set().models
        device = next(models["cbam"].parameters()).device
        # Plain HTTP on 127.0.0.1: ssl_verify=False only spares gradio_client loading the CA bundle into the fresh
        # httpx client it makes for each of its ~9 HTTP calls per request (~35 ms each on 2 cores), which neither
        # the app nor a browser pays.
        client = Client(url, verbose=False, ssl_verify=False)
        client.predict("imagenet", api_name="/select_set")  # the session's choices: ResNet-50 layers and ImageNet classes
        with tempfile.TemporaryDirectory() as tmp:
            files = photos(args.warmup + args.repeats, Path(tmp))
            x = preprocess(Image.open(files[0]), models["cbam"].info).to(device)
            forward_ms, request_ms, explain_ms = [], [], []
            for i, path in enumerate(files):
                start = time.perf_counter()
                with torch.inference_mode():
                    for model in models.values():
                        model(x)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                forward = (time.perf_counter() - start) * 1000
                start = time.perf_counter()
                outputs = client.predict(handle_file(str(path)), model_set="imagenet", method="gradcam",
                                         layer="layer4.2", target=OWN, shared=False, block="layer4.2", left="baseline",
                                         right="cbam", api_name="/compare")
                request = (time.perf_counter() - start) * 1000
                assert len(outputs[1]) == 3 and outputs[5] and outputs[6], "a CAM or an attention panel is missing"
                if i >= args.warmup:
                    forward_ms.append(forward)
                    request_ms.append(request)
                    explain_ms.append(float(re.search(r"computed in ([\d.]+) s", outputs[0]).group(1)) * 1000)
    finally:
        stop(proc)
    forward, request, explained = (statistics.median(v) for v in (forward_ms, request_ms, explain_ms))
    print(f"device {device}, {args.threads} threads, {args.repeats} requests (after {args.warmup} warm-up), 224 px photo")
    print(f"plain forward, all three models (median):  {forward:6.0f} ms")
    print(f"app end to end, upload -> all panels:      {request:6.0f} ms   "
          f"(min {min(request_ms):.0f}, max {max(request_ms):.0f})")
    print(f"  of which explain() in the app (median):  {explained:6.0f} ms   (the rest: upload, rendering, encoding, HTTP)")
    print(f"ratio:                                     {request / forward:6.2f} x   (goal: <= 1.6)")


if __name__ == "__main__":
    main()
