"""Who computes when: one budget of slots for every listener that explains (Gradio's ``concurrency_id``
:data:`COMPUTE`), a smaller lane for slow requests so that fast ones always find a free slot, at most one
computing and a few waiting requests per browser tab and per client address, a bounded queue, and requests
whose client has gone dropped from the queue or stopped at their next batch.

Gradio 6 limits concurrency per ``concurrency_id`` and drops queued events of a session whose stream
(``/queue/data``) disconnects, marking its running ones ``alive = False``; a sync handler keeps running.
:class:`FairQueue` (a ``gradio.queueing.Queue``) adds the rest: it refuses at ``/queue/join`` (HTTP 503, the
message says why) and picks, among the waiting explanations, the first one whose client computes nothing and
whose lane has room. :func:`stop_check` gives a handler the test its computation polls between batches.
"""
from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import gradio as gr
from gradio import route_utils
from gradio.context import LocalContext
from gradio.queueing import Event, Queue
from starlette.middleware import Middleware

from .clients import client_address

COMPUTE = "cbam_viz_explain"  # the concurrency_id of every listener that computes explanations
BUSY = "The server is busy: try again in a minute."


@dataclass(frozen=True)
class Limits:
    """The server's limits (see README "Server limits"); :func:`machine_limits` sizes them for this machine."""

    slots: int = 2  # explanations computing at once, every listener together
    slow_slots: int = 1  # of which slow ones (Score-CAM, or an estimate above slow_seconds); at most slots - 1
    per_client: int = 3  # requests of one browser tab waiting or computing (one computes at a time)
    per_address: int = 6  # requests of one client address waiting or computing
    address_running: int = 1  # requests of one client address computing at once
    queue_size: int = 64  # explanations waiting, all clients together (every event waiting: 8 times as many)
    slow_seconds: float = 10.0  # an estimated cost above this goes to the slow lane
    max_request_seconds: float = 600.0  # requests estimated above this are refused before computing
    connect_grace_s: float = 10.0  # a request whose client opened no result stream within this has gone

    def __post_init__(self) -> None:
        if not 1 <= self.slow_slots < self.slots:
            raise ValueError(f"need 1 <= slow slots < slots (fast requests keep a slot), got {self.slow_slots} "
                             f"of {self.slots}")
        if min(self.per_client, self.per_address, self.address_running, self.queue_size) < 1:
            raise ValueError("per-client, per-address and queue limits must be at least 1")


def machine_limits(device: str, **overrides: Any) -> Limits:
    """Slots from the machine: half the CPU cores (each explanation uses several threads), at least 2, at most 8;
    4 on a GPU. A third of them, at least 1, for slow requests. ``overrides``: fields given explicitly (None: keep)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
    slots = 4 if device.startswith("cuda") else max(2, min(8, cores // 2))
    given = {k: v for k, v in overrides.items() if v is not None}
    slots = given.pop("slots", slots)
    return Limits(slots=slots, slow_slots=given.pop("slow_slots", max(1, min(slots - 1, slots // 3))), **given)


def register_cost(blocks: gr.Blocks, fn: Callable, estimate: Callable[[list[Any]], float]) -> None:
    """``estimate(inputs)``: the seconds a request of listener ``fn`` will compute, from its raw inputs (0 when
    they are invalid: the handler refuses them at once); it decides the lane. Must be quick (a table look-up)."""
    blocks.__dict__.setdefault("_cbam_costs", {})[fn] = estimate


class Streams:
    """Result streams open now, by session (``/queue/data``) and by event (``/call/<api>/<event_id>``)."""

    def __init__(self) -> None:
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def change(self, key: str, delta: int) -> None:
        with self._lock:
            self._open[key] += delta
            if self._open[key] <= 0:
                del self._open[key]

    def open(self, *keys: str) -> bool:
        with self._lock:
            return any(self._open[k] > 0 for k in keys if k in self._open)


class StreamTracker:
    """ASGI middleware that counts the result streams clients hold open (see :class:`Streams`)."""

    def __init__(self, app: Any, streams: Streams):
        self.app, self.streams = app, streams

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        key = None
        if scope["type"] == "http" and scope.get("method") == "GET":
            path = scope.get("path", "")
            if path.endswith("/queue/data"):
                key = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash", [None])[0]
            elif "/call/" in path:
                key = path.rstrip("/").rsplit("/", 1)[-1]
        if not key:
            return await self.app(scope, receive, send)
        self.streams.change(key, 1)
        try:
            await self.app(scope, receive, send)
        finally:
            self.streams.change(key, -1)


class FairQueue(Queue):
    """Gradio's queue with :class:`Limits` on the :data:`COMPUTE` group (other groups are Gradio's own)."""

    limits: Limits
    streams: Streams

    @classmethod
    def replacing(cls, queue: Queue, limits: Limits, streams: Streams) -> FairQueue:
        """A FairQueue with the settings of ``queue`` (created by ``Blocks.queue``, not started yet)."""
        fair = cls(queue.live_updates, queue.max_thread_count, queue.update_intervals, queue.max_size, queue.blocks,
                   queue.default_concurrency_limit)
        fair.limits, fair.streams = limits, streams
        return fair

    def create_event_queue_for_fn(self, block_fn: Any) -> None:
        super().create_event_queue_for_fn(block_fn)
        if block_fn.concurrency_id == COMPUTE:
            self.event_queue_per_concurrency_id[COMPUTE].concurrency_limit = self.limits.slots

    def _mine(self) -> tuple[list[Event], list[Event]]:
        """The COMPUTE group's waiting and computing events."""
        waiting = self.event_queue_per_concurrency_id.get(COMPUTE)
        running = [e for job in self.active_jobs if job for e in job if e.concurrency_id == COMPUTE]
        return (list(waiting.queue) if waiting else []), running

    async def push(self, body: Any, request: Any, username: str | None) -> tuple[bool, Any, str]:
        try:
            fn = route_utils.get_fn(self.blocks, None, body)
        except Exception:  # noqa: BLE001 - Gradio's own push answers an unknown function
            fn = None
        if fn is not None and fn.concurrency_id == COMPUTE:
            waiting, running = self._mine()
            mine = waiting + running
            address = client_address(request)
            if body.session_hash and sum(e.session_hash == body.session_hash for e in mine) >= self.limits.per_client:
                return False, (f"Too many requests from this page: at most {self.limits.per_client} at a time; wait for "
                               "them to finish."), "queue_full"
            if sum(self._address(e) == address for e in mine) >= self.limits.per_address:
                return False, (f"Too many requests from your network address: at most {self.limits.per_address} at "
                               "a time; wait for them to finish."), "queue_full"
            if len(waiting) >= self.limits.queue_size:
                return False, BUSY, "queue_full"
        if self.max_size is not None and len(self) >= self.max_size:
            return False, BUSY, "queue_full"
        return await super().push(body, request, username)

    def gone(self, event: Event) -> bool:
        """Whether ``event``'s client has gone: Gradio saw its stream close, or it never opened one."""
        if not event.alive:
            return True
        return (time.monotonic() - event.enqueue_time > self.limits.connect_grace_s
                and not self.streams.open(event.session_hash, event._id))

    def _drop(self, event: Event) -> None:
        """Forget a waiting event whose client has gone (as Gradio's ``clean_events`` does)."""
        event.alive = False
        self.event_queue_per_concurrency_id[COMPUTE].queue.remove(event)
        self.event_ids_to_events.pop(event._id, None)
        ids = self.pending_event_ids_session.get(event.session_hash)
        if ids is not None:
            ids.discard(event._id)
            if not ids:
                self.pending_event_ids_session.pop(event.session_hash, None)

    def _cost(self, event: Event) -> float:
        """The event's estimated seconds (computed once: the queue loop asks often while a lane is full)."""
        if not hasattr(event, "cbam_cost"):
            estimate = self.blocks.__dict__.get("_cbam_costs", {}).get(event.fn.fn)
            try:
                event.cbam_cost = float(estimate(list(event.data.data))) if estimate and event.data else 0.0
            except Exception:  # noqa: BLE001 - a malformed request: fast lane, its handler refuses it
                event.cbam_cost = 0.0
        return event.cbam_cost

    @staticmethod
    def _address(event: Event) -> str:
        if not hasattr(event, "cbam_address"):
            event.cbam_address = client_address(event.request)
        return event.cbam_address

    def _next(self) -> Event | None:
        """The first waiting explanation that may start now, or None; drops those whose client has gone."""
        waiting, running = self._mine()
        if len(running) >= self.limits.slots:
            return None
        sessions = {e.session_hash for e in running}
        addresses = Counter(self._address(e) for e in running)
        slow_running = sum(getattr(e, "cbam_slow", False) for e in running)
        for event in waiting:
            if self.gone(event):
                self._drop(event)
                continue
            if event.session_hash in sessions or addresses[self._address(event)] >= self.limits.address_running:
                continue
            cost = self._cost(event)
            slow = self.limits.slow_seconds < cost <= self.limits.max_request_seconds  # above: refused at once
            if slow and slow_running >= self.limits.slow_slots:
                continue
            event.cbam_slow = slow
            return event
        return None

    def get_events(self) -> tuple[list[Event], bool, str] | None:
        ids = list(self.event_queue_per_concurrency_id)
        if COMPUTE in ids:  # ours first (Gradio shuffles the groups), then Gradio's choice among the others
            event = self._next()
            if event is not None:
                self.event_queue_per_concurrency_id[COMPUTE].queue.remove(event)
                return [event], False, COMPUTE
            mine = self.event_queue_per_concurrency_id.pop(COMPUTE)
            try:
                return super().get_events()
            finally:
                self.event_queue_per_concurrency_id[COMPUTE] = mine
        return super().get_events()


def install(blocks: gr.Blocks, limits: Limits) -> Middleware:
    """Replace ``blocks``' queue (after ``blocks.queue(...)``, before launch) by a :class:`FairQueue`; returns
    the middleware the launched app needs (``launch(app_kwargs={"middleware": [...]})``)."""
    streams = Streams()
    blocks._queue = FairQueue.replacing(blocks._queue, limits, streams)
    return Middleware(StreamTracker, streams=streams)


def stop_check() -> Callable[[], bool]:
    """Inside a handler: a function that tells whether the client of the current request has gone (always
    False outside a :class:`FairQueue` event)."""
    blocks = LocalContext.blocks.get(None)
    queue = getattr(blocks, "_queue", None)
    event = queue.event_ids_to_events.get(LocalContext.event_id.get(None) or "") if isinstance(queue, FairQueue) else None
    if event is None:
        return lambda: False
    return lambda: queue.gone(event)


def current_limits() -> Limits | None:
    """Inside a handler: the limits of the app serving it (None without a :class:`FairQueue`)."""
    queue = getattr(LocalContext.blocks.get(None), "_queue", None)
    return queue.limits if isinstance(queue, FairQueue) else None
