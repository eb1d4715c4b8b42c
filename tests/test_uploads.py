"""The upload route's limits: files per request, bytes per client address, partial uploads swept."""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from app_fixtures import models_dir, serve  # noqa: F401  (fixture)

from cbam_viz.service import AppContext
from cbam_viz.ui.serving import UploadLimits


@pytest.fixture
def app_url(models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:  # noqa: F811
    """The app with an upload folder of its own (partial uploads are swept at once: stale_s=0)."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    with serve(AppContext(models_dir=models_dir, device="cpu"),
               uploads=UploadLimits(files=2, client_bytes=300_000, stale_s=0)) as url:
        yield url


def _root_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []


def test_files_per_request_and_bytes_per_address(app_url: str) -> None:
    upload = app_url + "gradio_api/upload"
    files = [("files", (f"{i}.png", b"x" * 1000, "image/png")) for i in range(3)]
    refused = httpx.post(upload, files=files, timeout=30)
    assert refused.status_code == 413 and refused.text == "at most 2 files per upload"
    assert len(httpx.post(upload, files=files[:2], timeout=30).json()) == 2
    assert httpx.post(upload, files=[("files", ("a.png", b"a" * 150_000, "image/png"))], timeout=30).status_code == 200
    over = httpx.post(upload, files=[("files", ("b.png", b"b" * 200_000, "image/png"))], timeout=30)
    assert over.status_code == 429 and "your network address" in over.text
    assert httpx.post(upload, files=files[:1], timeout=30).status_code == 429  # spent: refused before reading


def test_an_upload_cut_off_mid_way_leaves_no_file(app_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "gradio"
    url = urlparse(app_url)
    head = (b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n")
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(b"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 1000000\r\n\r\n" + head + b"p" * 100_000)
        deadline = time.monotonic() + 30
        while not _root_files(folder):  # Gradio's parser writes the part to a file at the folder's root
            assert time.monotonic() < deadline, "no partial file appeared"
            time.sleep(0.05)
        (partial,) = _root_files(folder)
    deadline = time.monotonic() + 30
    while partial.exists():
        assert time.monotonic() < deadline, f"{partial} left behind"
        time.sleep(0.05)
    assert not _root_files(folder) and os.path.isdir(folder)
