"""Serving the app to anyone: which files a request may name, one-line refusals, atomic writes, temp folders.

Gradio 6 checks a file payload only when it carries ``"meta": {"_type": "gradio.FileData"}``, and then adds
any path inside its upload folder (a directory too) to the files it deletes. :class:`Blocks` checks every file
payload before Gradio sees it; :class:`Uploads` is the stricter check of handlers that open the file.
"""
from __future__ import annotations

import contextlib
import html
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable
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
