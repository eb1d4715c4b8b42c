"""Fixtures for the app tests: a models folder with a random-weight demo set, and the app served in-process.

`models_dir`: a manifest whose "demo" set is two random-init ResNet-18s (width 16, 64 px, the 12
synthetic classes; study_ui_fixtures.write_demo_models), plus the real manifest's other sets: the
"imagenet" set, whose weight files are absent here, is unavailable. `serve(ctx)`: the app on 127.0.0.1.
"""
from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from study_ui_fixtures import write_demo_models

from cbam_viz.models.sets import MODELS_DIR, read_manifest
from cbam_viz.service import AppContext
from cbam_viz.ui.fairness import Limits
from cbam_viz.ui.serving import UploadLimits

MAX_FILE_SIZE = "2mb"  # small, so that the over-size test upload stays small


def write_models(folder: Path, trained_demo: bool = False) -> Path:
    """A "demo" set plus every other set of models/manifest.json, whose external weight files are looked for
    only in ``folder`` (so they stay missing on any machine). The demo set is the random-weight one of
    study_ui_fixtures, or with ``trained_demo`` the bundled (trained) one."""
    real = read_manifest(MODELS_DIR)
    if trained_demo:
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {"models": {}, "sets": {"demo": real["sets"]["demo"]}}
        for model_id in real["sets"]["demo"]["models"].values():
            entry = manifest["models"][model_id] = real["models"][model_id]
            (folder / entry["file"]).symlink_to(MODELS_DIR / entry["file"])
    else:
        write_demo_models(folder)
        manifest = json.loads((folder / "manifest.json").read_text())
    replicas = set(real["sets"]["demo"].get("replicates", []))
    for name, spec in real["sets"].items():
        if name != "demo" and name not in replicas:
            manifest["sets"][name] = spec
            for model_id in spec["models"].values():
                entry = real["models"][model_id]
                if entry["kind"] == "external":  # no environment variable, no torch hub cache
                    entry = {**entry, "env": "CBAM_VIZ_TEST_NO_SUCH_VARIABLE", "path": None, "torch_hub_cache": False}
                manifest["models"][model_id] = entry
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_models(tmp_path_factory.mktemp("models"))


@contextmanager
def serve(ctx: AppContext, limits: Limits | None = None, uploads: UploadLimits | None = None,
          trusted_proxies: tuple[str, ...] = ()) -> Iterator[str]:
    """The app for ``ctx`` served in this process on 127.0.0.1 (a free port) within ``limits`` and ``uploads``
    (defaults: `Limits()`, `UploadLimits()`), believing X-Forwarded-For from ``trusted_proxies``; yields its URL."""
    import app as app_module

    app = app_module.build_app(ctx)
    port = free_port()
    app_module.launch(app, "127.0.0.1", port, MAX_FILE_SIZE, prevent_thread_lock=True, quiet=True, limits=limits,
                      uploads=uploads, trusted_proxies=trusted_proxies)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()
