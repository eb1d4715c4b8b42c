"""Every shipped study config (studies/*.toml) started as shipped, on the bundled models: a participant
arriving by the config's own instructions gets a trial over HTTP, and the owner's Results page answers
the password. A config that needs what does not ship (ImageNet weights) says so in its error."""
from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from app_fixtures import free_port

from cbam_viz.service import AppContext
from cbam_viz.study import ConfigError, build_runtime, load_config, open_store

STUDIES = Path(__file__).parents[1] / "studies"
SHIPPED = sorted(p.name for p in STUDIES.glob("*.toml"))
NEEDS_IMAGENET = {"prolific.toml"}
PASSWORD = "shipped-pw"


def call(url: str, api_name: str, *data: object) -> tuple[str, str]:
    base = f"{url}gradio_api/call/{api_name}"
    event_id = httpx.post(base, json={"data": list(data)}, timeout=120).json()["event_id"]
    return re.findall(r"event: (\w+)\ndata: (.*)", httpx.get(f"{base}/{event_id}", timeout=120).text)[-1]


def test_the_shipped_configs_are_the_ones_tested() -> None:
    assert set(SHIPPED) == {"crowd-demo.toml", "demo.toml", "prolific.toml"}
    for name in SHIPPED:  # the commands in each header use the password the app reads (never --admin-password)
        header = (STUDIES / name).read_text()
        assert "--admin-password " not in header and "CBAM_VIZ_ADMIN_PASSWORD=" in header and "/results" in header


@pytest.mark.parametrize("name", sorted(set(SHIPPED) - NEEDS_IMAGENET))
def test_a_shipped_config_runs_as_shipped(name: str, tmp_path: Path) -> None:
    import app as app_module

    config = load_config(STUDIES / name)
    header = (STUDIES / name).read_text()
    link = next(iter(re.findall(r"http://127\.0\.0\.1:7860/(\?PROLIFIC_PID=\S+)", header)), "")
    assert bool(link) == bool(config.recruitment.params)  # a platform study's header gives a link to try
    ctx = AppContext(sets=[config.pair], device="cpu")  # the bundled models
    store = open_store(None, tmp_path / "data")
    app = app_module.build_app(ctx, build_runtime(ctx, store, config, warm=False), PASSWORD, compare=False)
    port = free_port()
    app_module.launch(app, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        event, data = call(url, "study_start", "", "prefer not to say", True, link)
        assert event == "complete", data
        view = json.loads(data)
        first = "Practice trial 1 of" if config.practice_trials else "Trial 1 of"
        assert first in view[1] and isinstance(view[4], int) and view[3].count("data:image/png") == 3
        event, data = call(f"{url}results/", "study_results", PASSWORD, False, 0.6)
        assert event == "complete" and f"Study '{config.name}'" in data
    finally:
        app.close()
        store.close()


def test_the_imagenet_template_says_what_is_missing(tmp_path: Path) -> None:
    config = load_config(STUDIES / "prolific.toml")
    ctx = AppContext(sets=[config.pair], device="cpu")
    with open_store(None, tmp_path / "data") as store, pytest.raises(ConfigError, match="weights fetch imagenet|prolific-images"):
        build_runtime(ctx, store, config, warm=False)
