"""The Compare tab's API as any visitor can call it: raw HTTP payloads naming server files, arguments of the wrong
type, HTML in file names, thin images, concurrent exports, and app.py's clean-up on SIGTERM."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import httpx
import numpy as np
import pytest
from app_fixtures import free_port, models_dir, serve  # noqa: F401,F811  (fixture)
from gradio.utils import get_upload_folder
from gradio_client import Client, handle_file
from PIL import Image

from cbam_viz.data import CLASSES, render_sample
from cbam_viz.images import MAX_ASPECT, ImageError, open_image
from cbam_viz.ui.compare import EXAMPLE_SEED, OWN, CompareTab, user_errors, write_examples
from cbam_viz.service import AppContext
from cbam_viz.ui.serving import REFUSED, Blocks, BoundedFolder, Uploads

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = ["demo", "gradcam", "layer4.1", OWN]  # model set, method, layer, target
META = {"_type": "gradio.FileData"}
ENDPOINTS = {"compare": lambda image, opts=OPTIONS: [image, *opts, False, "layer4.1", "baseline", "cbam"],
             "export": lambda image, opts=OPTIONS: [image, *opts]}


@pytest.fixture(scope="module")
def ctx(models_dir: Path) -> AppContext:  # noqa: F811
    return AppContext(models_dir=models_dir, device="cpu")


@pytest.fixture(scope="module")
def app_url(ctx: AppContext) -> Iterator[str]:
    with serve(ctx) as url:
        yield url


def call(url: str, api: str, data: list) -> tuple[str, Any]:
    """One call through Gradio's plain HTTP API: ("complete", outputs) or ("error", message)."""
    response = httpx.post(f"{url}gradio_api/call/{api}", json={"data": data}, timeout=30)
    response.raise_for_status()
    stream = httpx.get(f"{url}gradio_api/call/{api}/{response.json()['event_id']}", timeout=120).text
    events = [block.split("\n") for block in stream.strip().split("\n\n")]
    final = {e[0].removeprefix("event: "): json.loads(e[1].removeprefix("data: ")) for e in events if len(e) == 2}
    if "complete" in final:
        return "complete", final["complete"]
    error = final["error"]
    return "error", error["error"] if isinstance(error, dict) else error


def upload(url: str, name: str, content: bytes) -> str:
    """The server path of ``content`` uploaded as ``name`` through Gradio's upload route."""
    response = httpx.post(f"{url}gradio_api/upload", files={"files": (name, content, "image/png")})
    response.raise_for_status()
    return response.json()[0]


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PNG on the server's disk that nobody uploaded."""
    path = tmp_path_factory.mktemp("server") / "secret.png"
    render_sample(EXAMPLE_SEED, 3).image.save(path)
    return path


def _refused_paths(url: str, secret: Path) -> dict[str, str]:
    uploaded = upload(url, "mine.png", secret.read_bytes())
    return {"never uploaded png": str(secret), "passwd": "/etc/passwd", "directory": str(secret.parent),
            "missing": str(secret.parent / "id_rsa"), "dot-dot from an upload": f"{Path(uploaded).parent}/{os.path.relpath(secret, Path(uploaded).parent)}",
            "upload folder itself": str(Path(uploaded).parent.parent), "relative": "secret.png"}


@pytest.mark.parametrize("api", ENDPOINTS)
def test_only_uploaded_files_are_opened(app_url: str, secret: Path, api: str) -> None:
    """Every payload naming a file this app did not receive gets the same line, with or without Gradio's meta tag
    (or with another type tag), whether the file exists or not; no pixel comes back."""
    answers = {}
    for label, path in _refused_paths(app_url, secret).items():
        for tag in ({}, {"meta": META}, {"meta": {"_type": "gradio.Other"}}):
            answers[label, str(tag)] = call(app_url, api, ENDPOINTS[api]({"path": path, **tag}))
    assert set(answers.values()) == {("error", REFUSED)}, answers


@pytest.mark.parametrize("api", ENDPOINTS)
def test_uploads_and_examples_still_work_over_raw_http(app_url: str, secret: Path, api: str) -> None:
    path = upload(app_url, "fresh.png", secret.read_bytes())
    for payload in ({"path": path}, {"path": path, "orig_name": "fresh.png", "meta": META}):
        assert call(app_url, api, ENDPOINTS[api](payload))[0] == "complete"
    config = httpx.get(f"{app_url}config").json()
    samples = next(c["props"]["samples"] for c in config["components"] if c.get("type") == "dataset")
    state, outputs = call(app_url, api, ENDPOINTS[api](samples[0][0]))  # what a click on an example sends
    assert state == "complete"
    if api == "compare":
        assert "Ground truth: **circle**" in outputs[0]


def test_every_endpoint_with_a_file_input_is_guarded(secret: Path) -> None:
    """serving.Blocks checks file payloads before Gradio does, also for handlers that let Gradio preprocess
    (which opens a payload without meta unchecked): here one that would return the file's first bytes."""
    with Blocks() as app:
        image, out = gr.Image(type="filepath"), gr.Textbox()
        image.change(lambda path: repr(Path(path).read_bytes()[:8]), image, out, api_name="peek")
    app.queue().launch(server_name="127.0.0.1", server_port=(port := free_port()), prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        for path in (str(secret), "/etc/passwd", str(secret.parent)):
            for tag in ({}, {"meta": META}):
                assert call(url, "peek", [{"path": path, **tag}]) == ("error", REFUSED)
        state, head = call(url, "peek", [{"path": upload(url, "ok.png", secret.read_bytes()), "meta": META}])
        assert state == "complete" and "PNG" in head[0]
    finally:
        app.close()


def test_a_swapped_upload_is_refused(app_url: str, secret: Path) -> None:
    """An uploaded file replaced by a symlink leading out of Gradio's upload folder is not followed."""
    path = Path(upload(app_url, "swapped.png", secret.read_bytes() + b"swapped"))
    path.unlink()
    path.symlink_to(secret)
    assert call(app_url, "compare", ENDPOINTS["compare"]({"path": str(path), "meta": META})) == ("error", REFUSED)


BAD_ARGUMENTS = {  # name: compare arguments with one of them wrong
    "image as a string": ["/etc/passwd", *OPTIONS, False, "layer4.1", "baseline", "cbam"],
    "image as a list": [["/etc/passwd"], *OPTIONS, False, "layer4.1", "baseline", "cbam"],
    "null path": [{"path": None, "meta": META}, *OPTIONS, False, "layer4.1", "baseline", "cbam"],
    "path as a number": [{"path": 7}, *OPTIONS, False, "layer4.1", "baseline", "cbam"],
    "model set as a list": [{"path": "x"}, ["demo"], *OPTIONS[1:], False, "layer4.1", "baseline", "cbam"],
    "model set as null": [{"path": "x"}, None, *OPTIONS[1:], False, "layer4.1", "baseline", "cbam"],
    "method as a dict": [{"path": "x"}, "demo", {"a": 1}, *OPTIONS[2:], False, "layer4.1", "baseline", "cbam"],
    "layer as a number": [{"path": "x"}, *OPTIONS[:2], 4, OPTIONS[3], False, "layer4.1", "baseline", "cbam"],
    "target as a list": [{"path": "x"}, *OPTIONS[:3], [OWN], False, "layer4.1", "baseline", "cbam"],
    "shared as a string": [{"path": "x"}, *OPTIONS, "yes", "layer4.1", "baseline", "cbam"],
    "slider model as a list": [{"path": "x"}, *OPTIONS, False, "layer4.1", ["baseline"], "cbam"],
    "block as a list": [{"path": "x"}, *OPTIONS, False, ["layer4.1"], "baseline", "cbam"],
    "huge set name": [{"path": "x"}, "p" * 100_000, *OPTIONS[1:], False, "layer4.1", "baseline", "cbam"],
}


@pytest.mark.parametrize("name", BAD_ARGUMENTS)
def test_every_argument_is_validated(app_url: str, name: str) -> None:
    state, message = call(app_url, "compare", BAD_ARGUMENTS[name])
    assert state == "error" and message and "\n" not in message and len(message) < 200, message
    assert not any(word in message for word in ("Traceback", "unhashable", "validation error", "NoneType", "/etc")), message


def test_select_set_validates_its_argument(app_url: str) -> None:
    state, message = call(app_url, "select_set", [{"model_set": "demo"}])
    assert state == "error" and message.startswith("invalid model set"), message


def test_file_names_are_escaped(app_url: str) -> None:
    """Gradio renders error messages as HTML: a file name must not become markup."""
    path = upload(app_url, "x.png", b"not an image at all")
    name = '<img src=x onerror="alert(1)">.png'
    state, message = call(app_url, "compare", ENDPOINTS["compare"]({"path": path, "orig_name": name, "meta": META}))
    assert state == "error" and "not an image file" in message
    assert "<img" not in message and "&lt;img src=x" in message


def test_timing_reports_computing_and_cache_hits(app_url: str, tmp_path: Path) -> None:
    render_sample(EXAMPLE_SEED, 5).image.save(tmp_path / "timed.png")  # pixels no other test explains
    path = upload(app_url, "timed.png", (tmp_path / "timed.png").read_bytes())
    first, again = (call(app_url, "compare", ENDPOINTS["compare"]({"path": path}))[1][0] for _ in range(2))
    assert re.search(r"computed in \d+\.\d\d s on cpu", first) and "cached" not in first
    assert "cached result" in again and "computed in" not in again


def test_thin_images_are_refused_from_the_header(app_url: str, tmp_path: Path) -> None:
    """8 x 2,000,000 passes the pixel limit; resizing it to a model input would need tens of GB."""
    thin = Image.new("L", (8, 2_000_000))  # never decoded: the header says enough
    thin.save(tmp_path / "thin.png")
    with pytest.raises(ImageError, match=f"too elongated .at most {MAX_ASPECT}:1"):
        open_image(tmp_path / "thin.png")
    path = upload(app_url, "thin.png", (tmp_path / "thin.png").read_bytes())
    assert call(app_url, "compare", ENDPOINTS["compare"]({"path": path})) == (
        "error", f"thin.png: 8x{thin.height} pixels is too elongated (at most {MAX_ASPECT}:1)")
    for width, height in ((MAX_ASPECT * 8, 8), (8, MAX_ASPECT * 8)):  # the limit itself is fine
        Image.new("RGB", (width, height)).save(tmp_path / "edge.png")
        assert open_image(tmp_path / "edge.png").size == (width, height)


def test_unexpected_errors_show_no_internals() -> None:
    for error, message in ((MemoryError(), "not enough memory to explain this image: try a smaller one"),
                           (KeyError("/srv/secret/path"), "internal error while explaining this image (details in the "
                                                          "server log)")):
        with pytest.raises(gr.Error) as shown:
            with user_errors():
                raise error
        assert shown.value.message == message


def test_concurrent_exports_are_complete_and_distinct(ctx: AppContext, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Exports running at once, of one image and of several targets: every file whole, none shared."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    image = tmp_path / "uploads" / "abc" / "circle.png"
    image.parent.mkdir(parents=True)
    render_sample(EXAMPLE_SEED, 0).image.save(image)
    tab = CompareTab(ctx, write_examples(tmp_path / "examples", 1), BoundedFolder(tmp_path / "exports", 10**9, 3600),
                     Uploads(SimpleNamespace(upload_file_set={str(image)})))
    targets = [OWN, OWN, OWN, *CLASSES[:5]] * 2
    barrier = threading.Barrier(len(targets))

    def export(target: str) -> list[str]:
        barrier.wait()
        return tab.export({"path": str(image)}, "demo", "gradcam", "layer4.1", target)

    with ThreadPoolExecutor(len(targets)) as pool:
        results = list(pool.map(export, targets))
    files = [Path(f) for pair_of_files in results for f in pair_of_files]
    assert len(set(files)) == len(files) == 2 * len(targets)
    for (png, npz), target in zip(results, targets):
        assert Path(png).name.startswith(f"cbam-viz_demo_gradcam_layer4.1_{'own' if target == OWN else target}_")
        assert Image.open(png).width > 200
        with np.load(npz) as arrays:
            assert arrays["image"].shape == (64, 64, 3)
    assert not [p for p in (tmp_path / "exports").rglob("*") if p.name.startswith(".")]  # no temporary left


def test_concurrent_exports_through_the_api(app_url: str, secret: Path, tmp_path: Path) -> None:
    """Six clients (one tab may have only 3 requests in the queue) export at once."""
    clients = [Client(app_url, verbose=False, ssl_verify=False, download_files=tmp_path) for _ in range(6)]
    jobs = [client.submit(handle_file(str(secret)), "demo", "gradcam", "layer4.1", target, api_name="/export")
            for client, target in zip(clients, (OWN, *CLASSES[:5]))]
    for job in jobs:
        png, npz = sorted(job.result(timeout=120), key=lambda f: Path(f).suffix != ".png")
        assert Image.open(png).width > 200 and np.load(npz)["image"].shape == (64, 64, 3)


def test_exports_are_served_from_their_capped_folder_without_a_copy(app_url: str, secret: Path) -> None:
    """Gradio copied every export into its cache (outside the export cap, kept an hour): 9 GB/h under load."""
    path = upload(app_url, "exported.png", secret.read_bytes())
    status, (files,) = call(app_url, "export", ENDPOINTS["export"]({"path": path}))
    assert status == "complete" and len(files) == 2
    for file in files:
        served = Path(file["path"])
        assert served.parent.parent.name == "exports" and not served.is_relative_to(get_upload_folder())
        assert httpx.get(file["url"], timeout=30).content == served.read_bytes()


def test_sigterm_removes_the_temp_folders(tmp_path: Path, secret: Path) -> None:
    """app.py stopped like Docker or systemd stop it: its temp folders and uploads are gone, status 0."""
    tmp, uploads = tmp_path / "tmp", tmp_path / "gradio"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "GRADIO_TEMP_DIR": str(uploads), "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1"}
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--sets", "demo"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(180, proc.kill)  # a hung start-up fails the test instead of blocking it
    watchdog.start()
    try:
        lines = []
        while not any(line.startswith("ready in") for line in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)  # it exited before being ready
            lines.append(line)
        uploaded = Path(upload(f"http://127.0.0.1:{port}/", "mine.png", secret.read_bytes()))
        assert [p.name[:9] for p in tmp.iterdir()] == ["cbam-viz-"] and uploaded.is_file()
        cut = socket.create_connection(("127.0.0.1", port))  # an upload still arriving when the server stops
        cut.sendall(b"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                    b"Content-Length: 1000000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"files\"; "
                    b"filename=\"cut.png\"\r\nContent-Type: image/png\r\n\r\n" + b"p" * 100_000)
        deadline = time.monotonic() + 30
        while not [p for p in uploads.iterdir() if p.is_file()]:
            assert time.monotonic() < deadline, "no partial upload appeared"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stdout.read()
        cut.close()
    finally:
        watchdog.cancel()
        proc.kill()
    assert not list(tmp.iterdir()) and not uploaded.exists()
    assert not [p for p in uploads.iterdir() if p.is_file()]  # the partial upload too
