"""A temporary models folder with a random-init "demo" set, for the study UI tests and the
load benchmark (the trained demo set is not needed to test plumbing and blinding).

`write_demo_models(folder)` is plain Python so `benchmarks/` can use it without pytest.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from cbam_viz.data import CLASSES, MEAN, STD
from cbam_viz.models import build_resnet, save_checkpoint, sha256

TITLES = {"baseline": "Demo ResNet-18", "se": "Demo ResNet-18 + SE", "cbam": "Demo ResNet-18 + CBAM"}
ATTENTION = {"baseline": None, "se": "se", "cbam": "cbam"}


def write_demo_models(folder: str | Path, seed: int = 0, roles: tuple[str, ...] = ("baseline", "cbam")) -> Path:
    """Random-init ResNet-18s (width 16, 64 px, 12 classes) for `roles` (of baseline, se, cbam) and a
    manifest whose "demo" set holds them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    models = {}
    for role in roles:
        attention = ATTENTION[role]
        model = build_resnet(18, attention, num_classes=len(CLASSES), width=16, stem="small")
        model.info.class_names = list(CLASSES)
        model.info.input_size, model.info.resize = 64, None
        model.info.mean, model.info.std = tuple(MEAN), tuple(STD)
        model.info.name = TITLES[role]
        path = save_checkpoint(model.eval(), folder / f"demo-{role}.pt")
        models[f"demo-{role}"] = {"kind": "shipped", "title": TITLES[role], "file": path.name,
                                  "sha256": sha256(path), "generator": "hard"}  # as train writes it
    manifest = {"models": models,
                "sets": {"demo": {"models": {role: f"demo-{role}" for role in roles},
                                  "description": "random-init test set"}}}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


@contextmanager
def serve_study(models_dir: Path, data_dir: Path, config, password: str, **build) -> Iterator[tuple[str, object]]:
    """The app with a running study on 127.0.0.1 (``build``: more ``app.build_app`` arguments); yields its
    URL and the study store, and closes both."""
    import app as app_module
    from app_fixtures import free_port

    from cbam_viz.service import AppContext
    from cbam_viz.study import open_store
    from cbam_viz.study.runtime import build_runtime

    ctx = AppContext(sets=["demo"], models_dir=models_dir, device="cpu")
    store = open_store(None, data_dir)
    runtime = build_runtime(ctx, store, config)
    app = app_module.build_app(ctx, runtime, password, **build)
    port = free_port()
    app_module.launch(app, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    assert runtime.cache.ready.wait(120)
    try:
        yield f"http://127.0.0.1:{port}/", store
    finally:
        app.close()
        store.close()
