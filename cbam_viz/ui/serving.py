"""Serving the app to anyone: which files a request may name, one-line refusals, atomic writes, temp folders.

Gradio 6 checks a file payload only when it carries ``"meta": {"_type": "gradio.FileData"}``, and then adds
any path inside its upload folder (a directory too) to the files it deletes. :class:`Blocks` checks every file
payload before Gradio sees it; :class:`Uploads` is the stricter check of handlers that open the file.
"""
from __future__ import annotations

import contextlib
import html
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pydantic
from gradio.exceptions import InvalidPathError
from gradio.utils import get_upload_folder, is_static_file
from gradio_client.utils import is_file_obj, traverse

REFUSED = "this image is not available on the server: upload it again"  # the same for every refused payload


class Refused(ValueError):
    """A file payload that names no file this app received or served; the message is always :data:`REFUSED`."""

    def __init__(self) -> None:
        super().__init__(REFUSED)


class Uploads:
    """The files a request may open: what ``blocks``' upload route received, plus ``served`` (the cached copies
    of the app's examples, which Gradio hands back as their path)."""

    def __init__(self, blocks: gr.Blocks, served: Iterable[str] = ()):
        self.blocks = blocks
        self.served = frozenset(served)

    def path(self, payload: Any) -> Path:
        """The file of a payload ``{"path": ..., ...}``, or :class:`Refused`. A path is compared as given (no
        ``..`` variants), then must resolve (symlinks followed) to a regular file in Gradio's upload folder; a
        path that was never uploaded is refused before the file system is asked anything about it."""
        path = payload.get("path") if isinstance(payload, dict) else None
        if isinstance(path, str) and (path in self.served or path in self.blocks.upload_file_set):
            real = Path(path).resolve()
            if real.is_relative_to(Path(get_upload_folder()).resolve()) and real.is_file():
                return real
        raise Refused()


class Blocks(gr.Blocks):
    """``gr.Blocks`` that checks requests before Gradio handles them. A file payload (with or without ``meta``)
    must name a file this app received, created or serves (Gradio's temporary file sets, static paths), else
    :data:`REFUSED`; Gradio's own argument errors become one HTML-escaped line (pydantic's quote the payload)."""

    async def preprocess_data(self, block_fn: Any, inputs: list[Any], *args: Any, **kwargs: Any) -> Any:
        for block, value in zip(block_fn.inputs, inputs):
            if getattr(block, "data_model", None) is not None:
                traverse(value, self._check_file, is_file_obj)
        try:
            return await super().preprocess_data(block_fn, inputs, *args, **kwargs)
        except InvalidPathError:  # Gradio's own check (blocked paths, dot files)
            raise gr.Error(REFUSED, print_exception=False) from None
        except pydantic.ValidationError:
            raise gr.Error("invalid request: an argument has the wrong type", print_exception=False) from None
        except gr.Error as e:  # e.g. "Value: ... is not in the list of choices", quoting the request
            raise gr.Error(html.escape(str(e.message), quote=False), e.duration, e.visible, e.title,
                           print_exception=False) from None

    def _check_file(self, payload: dict) -> dict:
        path = payload["path"]
        if not (any(path in files for files in self.temp_file_sets) or is_static_file(path)):
            raise gr.Error(REFUSED, print_exception=False)
        return payload


class BoundedFolder:
    """One new subfolder of ``root`` per request, the whole kept within ``max_bytes`` and ``max_age_s``: before
    each new subfolder, those older than ``max_age_s`` go, then the oldest until the rest fit in ``max_bytes``.
    Subfolders younger than ``grace_s`` are kept (a concurrent request may still be writing or returning them),
    so the cap can be exceeded by what was written in the last ``grace_s`` seconds. Thread-safe."""

    def __init__(self, root: Path, max_bytes: int, max_age_s: float, grace_s: float = 30.0):
        self.root, self.max_bytes, self.max_age_s, self.grace_s = Path(root), max_bytes, max_age_s, grace_s
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def new(self) -> Path:
        """A fresh, empty subfolder (after evicting what no longer fits)."""
        with self._lock:
            self._evict(time.time())
            return Path(tempfile.mkdtemp(dir=self.root))

    def size(self) -> int:
        """Bytes in all subfolders."""
        return sum(size for _, size, _ in self._entries())

    def _entries(self) -> list[tuple[float, int, Path]]:
        entries = []
        for folder in self.root.iterdir():
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile (another process, a reaper)
                files = [f.stat().st_size for f in folder.rglob("*") if f.is_file()]
                entries.append((folder.stat().st_mtime, sum(files), folder))
        return sorted(entries)

    def _evict(self, now: float) -> None:
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        for mtime, size, folder in entries:  # oldest first
            if now - mtime < self.grace_s:
                break
            if now - mtime > self.max_age_s or total > self.max_bytes:
                shutil.rmtree(folder, ignore_errors=True)
                total -= size


_WORK_DIRS: list[weakref.finalize] = []


def work_dir(owner: object, prefix: str = "cbam-viz-") -> Path:
    """A new temporary folder, removed when ``owner`` is collected, at exit, or by :func:`remove_work_dirs`."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _WORK_DIRS[:] = [f for f in _WORK_DIRS if f.alive]
    _WORK_DIRS.append(weakref.finalize(owner, shutil.rmtree, path, ignore_errors=True))
    return path


def remove_work_dirs() -> None:
    """Remove every folder of :func:`work_dir` now (app.py calls it when it stops, on SIGTERM too)."""
    for finalizer in _WORK_DIRS:
        finalizer()


OVER_BUDGET = "upload limit reached for your network address: try again later"


@dataclass(frozen=True)
class UploadLimits:
    """What one upload request and one client address may send (see README "Server limits")."""

    files: int = 4  # files per upload request (Gradio's own parser takes up to 1,000)
    client_bytes: int = 256 * 2**20  # bytes per client address per window
    window_s: float = 3600.0
    stale_s: float = 120.0  # an untracked file this old at the upload folder's root is a partial upload


def sweep_uploads(blocks: gr.Blocks, older_than_s: float) -> int:
    """Remove the files at the root of Gradio's upload folder that Gradio does not track (uploads cut off mid-way:
    Gradio moves a finished upload into a subfolder) and were last written more than ``older_than_s`` ago."""
    removed, now = 0, time.time()
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(get_upload_folder()):
            with contextlib.suppress(FileNotFoundError):
                if (entry.is_file(follow_symlinks=False) and entry.path not in blocks.upload_file_set
                        and now - entry.stat(follow_symlinks=False).st_mtime >= older_than_s):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def remove_served_files(blocks: gr.Blocks) -> None:
    """At shutdown: every file Gradio received or created for ``blocks`` (as its lifespan clean-up does, which
    does not run when a request is still in flight) and every partial upload."""
    from gradio.route_utils import delete_files_created_by_app

    delete_files_created_by_app(blocks, None)
    sweep_uploads(blocks, 0)


class UploadGate:
    """ASGI middleware on Gradio's upload route: at most ``limits.files`` files per request and
    ``limits.client_bytes`` per client address and window (the request is cut off with 413 or 429 when it goes
    over); after every upload request, partial uploads older than ``limits.stale_s`` are swept."""

    def __init__(self, app: Any, blocks: gr.Blocks, limits: UploadLimits, address: Any):
        self.app, self.blocks, self.limits, self.address = app, blocks, limits, address
        self._sent: defaultdict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _spent(self, address: str, now: float) -> int:
        sent = self._sent[address]
        while sent and now - sent[0][0] > self.limits.window_s:
            sent.popleft()
        if not sent:  # forget quiet addresses: the table grows with the active ones only
            del self._sent[address]
        return sum(n for _, n in sent)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if not (scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path", "").endswith("/upload")):
            return await self.app(scope, receive, send)
        from starlette.requests import Request

        address = self.address(Request(scope))
        boundary = _boundary(scope)
        with self._lock:
            budget = self.limits.client_bytes - self._spent(address, time.monotonic())
        if budget <= 0:
            return await _answer(send, 429, OVER_BUDGET)
        state = {"bytes": 0, "parts": -1, "tail": b"", "refusal": None, "started": False}
        marker = b"--" + boundary if boundary else None

        async def counted() -> dict:
            if state["refusal"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                state["bytes"] += len(body)
                if marker:
                    window = state["tail"] + body
                    state["parts"] += window.count(marker)
                    state["tail"] = window[-(len(marker) - 1):]
                if marker and state["parts"] > self.limits.files:
                    state["refusal"] = (413, f"at most {self.limits.files} files per upload")
                elif state["bytes"] > budget:
                    state["refusal"] = (429, OVER_BUDGET)
                if state["refusal"]:
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except Exception:
            if not state["refusal"] or state["started"]:
                raise
        finally:
            with self._lock:
                self._sent[address].append((time.monotonic(), state["bytes"]))
            sweep_uploads(self.blocks, self.limits.stale_s)
        if state["refusal"] and not state["started"]:
            await _answer(send, *state["refusal"])


def _boundary(scope: dict) -> bytes | None:
    for name, value in scope.get("headers", []):
        if name == b"content-type" and b"boundary=" in value:
            return value.split(b"boundary=", 1)[1].split(b";", 1)[0].strip(b'"')
    return None


async def _answer(send: Any, status: int, text: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": text.encode()})
