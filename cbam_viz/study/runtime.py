"""One running study inside the app: stimulus cache + participant session, built once (app.py)
and passed to the Study and Results tabs. Free of Gradio."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import ConfigError, StudyConfig, load_stimuli
from .session import StudySession
from .stimuli import StimulusCache, renderer_from_context, resolve_target, stimulus_targets
from .storage import Store


@dataclass
class StudyRuntime:
    """A running study: its config, store, stimulus maps, participant session, and ``titles`` (the
    compared models' titles in the set, by role)."""

    config: StudyConfig
    store: Store
    cache: StimulusCache
    session: StudySession
    titles: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> dict[str, str]:
        """How each compared model reads in the Results tab (`StudyConfig.names` with the set's titles)."""
        return self.config.names(self.titles)

    def thumbnails(self) -> dict[str, Any]:
        """Every stimulus image as participants see it (PIL), by id, for the per-image plots."""
        import io

        from PIL import Image

        return {sid: Image.open(io.BytesIO(self.cache.get(sid).image)) for sid in self.cache.stimuli}

    def objective(self) -> dict[str, dict[str, float]]:
        """Energy pointing game per stimulus with ground truth: {id: {model role: score}}."""
        return self.cache.objective()


def build_cache(ctx: Any, config: StudyConfig) -> StimulusCache:
    """Check the study against the loaded model set (method, roles, every target class, ground truth for
    catch trials) and return its stimulus cache (nothing rendered yet). Raises ConfigError."""
    from ..explain.engine import METHODS

    if config.method not in METHODS:
        raise ConfigError(f"method must be one of {sorted(METHODS)}, got {config.method!r}")
    try:
        model_set = ctx.model_set(config.pair)
    except Exception as exc:  # SetUnavailable and friends: the study cannot run
        raise ConfigError(f"study {config.name!r}: model set {config.pair!r} is not available: {exc}") from None
    missing = [role for role in config.models if role not in model_set.models]
    if missing:
        raise ConfigError(f"study {config.name!r}: model set {config.pair!r} has no {' or '.join(map(repr, missing))} "
                          f"model (the study compares {list(config.models)}; the set has {model_set.roles})")
    renderer = renderer_from_context(ctx, config)
    stimuli = load_stimuli(config)
    targets = stimulus_targets(config, stimuli)
    for sid, target in targets.items():
        try:
            resolve_target(target, renderer.side.class_names)
        except ConfigError as exc:
            raise ConfigError(f"study {config.name!r}, stimulus {sid!r}: {exc}") from None
    cache = StimulusCache(stimuli, targets, renderer)
    if config.catch_trials and not cache.catch_ids():
        raise ConfigError(f"study {config.name!r}: catch_trials need stimuli with ground truth (kind = 'demo', or "
                          "x0,y0,x1,y1 box columns in the stimuli CSV)")
    return cache


def build_runtime(ctx: Any, store: Store, config: StudyConfig, warm: bool = True) -> StudyRuntime:
    """`build_cache`, then register the study in the store and start rendering every stimulus in the
    background. Raises ConfigError."""
    cache = build_cache(ctx, config)
    store.ensure_study(config, list(cache.stimuli.values()))
    if warm:
        cache.warm()
    model_set = ctx.model_set(config.pair)
    titles = {role: model_set.entries.get(role, {}).get("title") or model_set.models[role].info.title
              for role in config.models}
    return StudyRuntime(config, store, cache, StudySession(store, config, cache), titles)
