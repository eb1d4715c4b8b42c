"""Serving a study: the owner's Results page mounted at ``/results`` beside the participants' page, and
routes a study does not need taken away, before the server takes its first request.

Gradio's multipage routes (``Blocks.route``) would put the Results page into the participants' ``/config``
and ``/gradio_api/info``: a second Blocks, mounted, keeps them apart.
"""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import gradio as gr
from gradio.route_utils import API_PREFIX
from starlette.responses import PlainTextResponse
from starlette.routing import Route

RESULTS_PATH = "/results"
UPLOAD_ROUTE = f"{API_PREFIX}/upload"


async def _not_found(request: Any) -> PlainTextResponse:
    return PlainTextResponse("Not Found", status_code=404)


def drop_routes(app: Any, *paths: str) -> None:
    """Make `paths` answer 404 (every method) in a Starlette/FastAPI app: a route placed before all others
    (FastAPI keeps included routers' routes in the routers themselves, so removing one is no option)."""
    for path in paths:
        app.router.routes.insert(0, Route(path, _not_found, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]))


def study_lifespan(results: gr.Blocks | None, uploads: bool, **mount: Any) -> Callable[[Any], Any]:
    """A FastAPI lifespan for the participants' app (``launch(app_kwargs={"lifespan": ...})``): mounts
    `results` at ``/results`` (`mount`: gr.mount_gradio_app's options) and starts its queue; without
    `uploads`, neither page keeps Gradio's upload route."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        if not uploads:
            drop_routes(app, UPLOAD_ROUTE)
        if results is None:
            yield
            return
        gr.mount_gradio_app(app, results, RESULTS_PATH, **mount)
        mounted = app.router.routes.pop()  # before the participants' catch-all routes
        app.router.routes.insert(0, mounted)
        sub = mounted.app
        if not uploads:
            drop_routes(sub, UPLOAD_ROUTE)
        async with sub.router.lifespan_context(sub):
            results.run_startup_events()
            await results.run_extra_startup_events()
            yield

    return lifespan
