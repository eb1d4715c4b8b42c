"""Raw-HTTP clients for the fairness tests and benchmark: a browser tab (its own session) that uploads, joins
events through /queue/join and reads (or never reads) its result stream; an AppContext that counts the
explanations computing at once and can hold them."""
from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from cbam_viz.service import AppContext


class Tab:
    """One browser tab: a session hash of its own, optional extra headers (e.g. X-Forwarded-For)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None):
        self.url = url.rstrip("/") + "/gradio_api/"
        self.session = uuid.uuid4().hex
        self.http = httpx.Client(base_url=self.url, headers=headers or {}, timeout=60)
        self.headers = headers or {}
        self.messages: list[dict] = []
        self._stream: threading.Thread | None = None
        self._stop = threading.Event()

    def upload(self, path: Path) -> dict[str, Any]:
        response = self.http.post("upload", files={"files": (path.name, path.read_bytes(), "image/png")})
        response.raise_for_status()
        return {"path": response.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    def join(self, fn_index: int, data: list[Any]) -> httpx.Response:
        """POST /queue/join; the response (200 with an event id, or a refusal)."""
        return self.http.post("queue/join", json={"data": data, "fn_index": fn_index, "session_hash": self.session,
                                                  "event_data": None, "trigger_id": None})

    def listen(self) -> None:
        """Read this session's result stream in a thread until it closes or :meth:`leave` is called."""
        def read() -> None:
            with httpx.Client(base_url=self.url, headers=self.headers, timeout=None) as http:
                with http.stream("GET", "queue/data", params={"session_hash": self.session}) as response:
                    for line in response.iter_lines():
                        if self._stop.is_set():
                            return
                        if line.startswith("data: "):
                            self.messages.append(json.loads(line[6:]))
        self._stream = threading.Thread(target=read, daemon=True)
        self._stream.start()

    def leave(self) -> None:
        """Close the stream, as a closed tab does (returns once the connection is closed)."""
        self._stop.set()
        if self._stream is not None:
            self._stream.join(30)

    def completed(self) -> list[dict]:
        return [m for m in self.messages if m.get("msg") == "process_completed"]

    def started(self) -> int:
        return sum(m.get("msg") == "process_starts" for m in self.messages)

    def wait(self, count: int = 1, timeout: float = 120) -> list[dict]:
        """The first ``count`` completion messages, waiting for them."""
        deadline = time.monotonic() + timeout
        while len(self.completed()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.completed())} of {count} results after {timeout} s")
            time.sleep(0.05)
        return self.completed()[:count]


def fn_ids(url: str) -> dict[str, int]:
    """Event listener ids by api_name (the private compare after a set change is "after_set")."""
    config = httpx.get(url.rstrip("/") + "/config", timeout=30).json()
    return {dep["api_name"]: dep["id"] for dep in config["dependencies"] if dep.get("api_name")}


class Gauge(AppContext):
    """An AppContext that counts the explanations computing at once (``now``, ``peak``); while ``hold`` is clear
    they wait inside the slot before computing."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.now = self.peak = 0
        self.hold = threading.Event()
        self.hold.set()
        self._count = threading.Lock()

    def explain_timed(self, *args: Any, **kwargs: Any) -> Any:
        with self._count:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            self.hold.wait(120)
            return super().explain_timed(*args, **kwargs)
        finally:
            with self._count:
                self.now -= 1
