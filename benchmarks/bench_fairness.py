"""Does one client flooding the server slow everybody else down? A Grad-CAM request's latency while one client
floods (Score-CAMs it reads, plus many requests it never reads) over its idle latency, measured in one run, and the
server's RSS after the flood against before. Goal: at most 2x.

Launches `app.py --sets demo` (or `--random-imagenet --sets imagenet`: ResNet-50, SE-ResNet-50, ResNet-50 + CBAM,
random weights) with its default limits for this machine. The victim's Grad-CAM requests (fresh photos: no cache
hits) come from another client address (X-Forwarded-For, believed with --trusted-proxy 127.0.0.1); the
flooder joins ``--scorecams`` Score-CAMs at the last layer (one tab each, streams read) and ``--unread`` requests it
never reads, all from 127.0.0.1. Prints how many the server accepted, both medians and their ratio.

    .venv/bin/python -m benchmarks.bench_fairness [--random-imagenet] [--repeats 5] [--scorecams 8] [--unread 100]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import torch
from gradio_client import Client, handle_file

from benchmarks.bench_app import photos, start_app, stop
from benchmarks.bench_memory import rss
from cbam_viz.ui.compare import OWN

VICTIM = {"X-Forwarded-For": "198.51.100.7"}


class Flooder:
    """Many tabs of one client over raw HTTP: joins requests; reads the results of some, never of the others."""

    def __init__(self, url: str):
        self.api = url.rstrip("/") + "/gradio_api/"
        self.http = httpx.Client(base_url=self.api, timeout=60)
        self.accepted = self.refused = 0
        self._streams: list[httpx.Client] = []

    def join(self, fn_index: int, data: list, read: bool) -> None:
        session = uuid.uuid4().hex
        response = self.http.post("queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                                      "event_data": None, "trigger_id": None})
        if response.status_code != 200:
            self.refused += 1
            return
        self.accepted += 1
        if read:
            client = httpx.Client(base_url=self.api, timeout=None)
            self._streams.append(client)

            def drain() -> None:
                try:
                    with client.stream("GET", "queue/data", params={"session_hash": session}) as stream:
                        for _ in stream.iter_lines():
                            pass
                except httpx.HTTPError:
                    pass
            threading.Thread(target=drain, daemon=True).start()

    def upload(self, path: Path) -> dict:
        response = self.http.post("upload", files={"files": (path.name, path.read_bytes(), "image/jpeg")})
        response.raise_for_status()
        return {"path": response.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    def leave(self) -> None:
        """Close every tab (the server then stops what they still compute)."""
        for client in self._streams:
            client.close()


def gradcam_ms(client: Client, path: Path, args: dict) -> float:
    start = time.perf_counter()
    client.predict(handle_file(str(path)), method="gradcam", **args)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--random-imagenet", action="store_true", help="the three random ResNet-50s instead of demo")
    parser.add_argument("--repeats", type=int, default=5, help="victim requests, idle and during the flood")
    parser.add_argument("--scorecams", type=int, default=8)
    parser.add_argument("--unread", type=int, default=100)
    args = parser.parse_args()
    name = "imagenet" if args.random_imagenet else "demo"
    threads = torch.get_num_threads()
    sets = ["--random-imagenet", "--sets", "imagenet"] if args.random_imagenet else ["--sets", "demo"]
    proc, url, _ = start_app([*sets, "--trusted-proxy", "127.0.0.1"], threads, timeout=300)
    try:
        victim = Client(url, verbose=False, ssl_verify=False, headers=VICTIM)
        layer = victim.predict(name, api_name="/select_set")[1]["value"]
        request = dict(model_set=name, layer=layer, target=OWN, shared=False, block=None, left="baseline", right="cbam",
                       api_name="/compare")
        ids = {d["api_name"]: d["id"] for d in httpx.get(url + "config", timeout=30).json()["dependencies"]
               if d.get("api_name")}
        with tempfile.TemporaryDirectory() as folder:
            images = photos(2 * args.repeats + 2 + args.scorecams + args.unread, Path(folder))
            gradcam_ms(victim, images[0], request)  # warm-up
            idle = [gradcam_ms(victim, images[1 + i], request) for i in range(args.repeats)]
            before = rss(proc.pid) / 2**20  # MiB
            flooder = Flooder(url)
            flood_images = iter(images[1 + 2 * args.repeats + 1:])
            data = [name, "scorecam", layer, OWN, False, None, "baseline", "cbam"]
            for _ in range(args.scorecams):
                flooder.join(ids["compare"], [flooder.upload(next(flood_images)), *data], read=True)
            for i in range(args.unread):
                method = "scorecam" if i % 2 else "gradcam"
                flooder.join(ids["compare"], [flooder.upload(next(flood_images)), name, method, *data[2:]], read=False)
            time.sleep(1.0)  # the flood is computing
            flooded = [gradcam_ms(victim, images[1 + args.repeats + i], request) for i in range(args.repeats)]
            flooder.leave()
            time.sleep(5.0)  # its requests are stopped at their next batch
            after = rss(proc.pid) / 2**20
    finally:
        stop(proc)
    idle_ms, flood_ms = statistics.median(idle), statistics.median(flooded)
    print(f"set {name}, CPU threads {threads}; the server's default limits for this machine")
    print(f"flood from one address: {args.scorecams} Score-CAMs read + {args.unread} requests never read -> "
          f"{flooder.accepted} accepted, {flooder.refused} refused at the door")
    print(f"victim Grad-CAM idle:         median {idle_ms:8.0f} ms  ({', '.join(f'{t:.0f}' for t in idle)})")
    print(f"victim Grad-CAM during flood: median {flood_ms:8.0f} ms  ({', '.join(f'{t:.0f}' for t in flooded)})")
    print(f"ratio flood/idle: {flood_ms / idle_ms:.2f}x (goal <= 2x)")
    print(f"server RSS: {before:.0f} MiB before the flood, {after:.0f} MiB after ({after / before:.2f}x)")


if __name__ == "__main__":
    main()
