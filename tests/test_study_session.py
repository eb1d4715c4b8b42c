"""The participant logic without Gradio or models: blinded trial views, vote checks, response time,
resume, the stimulus cache and renderer, the owner's report."""
from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from cbam_viz.study import (
    BASELINE,
    CBAM,
    ConfigError,
    DemoStimuli,
    ModelOutput,
    StudyConfig,
    VoteMeta,
    VoteRejected,
    load_stimuli,
    open_store,
)
from cbam_viz.study.report import build_report, write_exports
from cbam_viz.study.session import StudySession, answer_choices
from cbam_viz.study.stimuli import (
    ModelSide,
    RenderedStimulus,
    StimulusCache,
    StimulusRenderer,
    box_to_input,
    resolve_target,
    stimulus_targets,
)

META = VoteMeta(target_class=None, outputs={BASELINE: ModelOutput("zebra", 0.75, "b" * 64),
                                           CBAM: ModelOutput("okapi", 0.5, "c" * 64)})


def make_config(**overrides: object) -> StudyConfig:
    values = dict(name="s1", pair="demo", stimuli=DemoStimuli(seed=1, count=6), trials_per_participant=4)
    return StudyConfig(**{**values, **overrides})


class FakeRender:
    """Three distinct small byte strings per stimulus; counts calls."""

    def __init__(self, folder: Path):
        self.calls = []

    def __call__(self, stimulus, target: str) -> RenderedStimulus:
        self.calls.append(stimulus.id)
        data = {kind: f"{stimulus.id}/{kind}".encode() for kind in ("image", BASELINE, CBAM)}
        objective = {BASELINE: 0.25, CBAM: 0.75} if stimulus.index % 2 else {BASELINE: 0.5, CBAM: 0.25}
        return RenderedStimulus(stimulus.id, 0, target, data["image"], {BASELINE: data[BASELINE], CBAM: data[CBAM]},
                                META, objective)


@pytest.fixture
def setup(tmp_path: Path):
    config = make_config(repeat_trial=True)
    stimuli = load_stimuli(config)
    render = FakeRender(tmp_path)
    cache = StimulusCache(stimuli, stimulus_targets(config, stimuli), render)
    with open_store(f"sqlite:///{tmp_path / 'db.sqlite3'}") as store:
        store.ensure_study(config, stimuli)
        session = StudySession(store, config, cache)
        yield session, store, render, None


def test_views_are_blinded_and_follow_the_server_side_assignment(setup) -> None:
    session, store, render, _ = setup
    view = session.join(None)
    pid = view.participant_id
    trials = store.trials("s1", pid)
    seen_sides = set()
    while view.trial is not None:
        trial = trials[view.trial.position]
        rendered = session.cache.get(trial.stimulus_id)
        assert {trial.model_a, trial.model_b} == {BASELINE, CBAM}
        assert (view.trial.map_a, view.trial.map_b) == (rendered.maps[trial.model_a], rendered.maps[trial.model_b])
        seen_sides.add(trial.model_a)
        public = json.dumps({k: str(v) for k, v in vars(view.trial).items() if not isinstance(v, bytes)})
        for secret in ("baseline", "cbam", "0.75", "0.5", "zebra", "okapi", "b" * 64, "c" * 64):
            assert secret not in public.lower()
        assert view.trial.question == f"Which map better covers the {view.trial.target_class}?"
        view, duplicate = session.vote(view.credential, view.trial.position, "A", 500)
        assert not duplicate
    assert seen_sides == {BASELINE, CBAM}
    assert view.done and (view.answered, view.total) == (5, 5) and view.progress_text == "5 of 5 done"
    votes = store.votes("s1")
    assert [v.position for v in votes] == list(range(5))
    for v in votes:
        a, b = META.outputs[v.shown_as_a], META.outputs[v.shown_as_b]
        assert (v.pred_a, v.prob_a, v.checksum_a, v.pred_b, v.prob_b, v.checksum_b) == (
            a.pred, a.prob, a.checksum, b.pred, b.prob, b.checksum)
    assert sum(v.is_repeat for v in votes) == 1


def test_progress_text_and_resume_with_the_same_credential(setup) -> None:
    session, _, _, _ = setup
    view = session.join(None)
    pid, credential = view.participant_id, view.credential
    assert view.trial.progress_text == "Trial 1 of 5"
    session.vote(credential, 0, "B", 10)
    again = session.resume(credential)  # a reload: the same credential from the browser
    assert again.trial.position == 1 and again.trial.progress_text == "Trial 2 of 5"
    assert session.join(credential).participant_id == pid  # "start" again: the same participant
    assert session.resume("") == session.resume(None)
    assert not session.resume("never-seen").started
    assert session.store.answered_positions("s1", pid) == {0}
    assert session.store.answered_positions("s1", "never-seen") == set()
    assert session.store.answered_positions("no-such-study", pid) == set()


def test_participant_ids_are_issued_by_the_server_and_an_id_alone_is_worthless(setup) -> None:
    session, store, _, _ = setup
    chosen = session.join("my-own-id")  # a made-up id is never used
    assert chosen.participant_id != "my-own-id" and chosen.credential.startswith(chosen.participant_id + ".")
    victim = session.join(None)
    forged = [victim.participant_id, f"{victim.participant_id}.{'0' * 32}", victim.credential[:-1] + "x",
              f"{victim.participant_id}.{chosen.credential.rpartition('.')[2]}", victim.credential + ".x"]
    before = store.row_counts()
    for credential in forged:
        with pytest.raises(VoteRejected, match="unknown participant"):
            session.vote(credential, 0, "A", 10)
        assert not session.resume(credential).started
        assert session.join(credential).participant_id != victim.participant_id
    assert store.votes("s1") == [] and store.row_counts()["votes"] == before["votes"]
    # the same id in another study (another secret) gets another credential
    other = make_config(name="s2")
    store.ensure_study(other, load_stimuli(other))
    assert StudySession(store, other, session.cache).credentials.verify(victim.credential) is None


def test_response_times_from_the_client_and_measured_by_the_server(setup) -> None:
    import time

    session, store, _, _ = setup
    p1 = session.join(None).credential
    session.vote(p1, 0, "A", 1234.4)  # claimed 1.2 s, sent at once
    time.sleep(0.3)  # the next trial was sent with the vote's answer
    session.vote(p1, 1, "A", None)
    votes = {v.position: v for v in store.votes("s1")}
    assert (votes[0].response_ms, votes[1].response_ms) == (1234, None)  # the client's values, as sent
    assert votes[0].server_ms is not None and votes[0].server_ms < 1234  # the claim is longer than possible
    assert votes[1].server_ms >= 300
    for vote in votes.values():
        assert vote.shown_at < vote.received_at
        assert vote.server_ms == round((vote.received_at - vote.shown_at).total_seconds() * 1000)


@pytest.mark.parametrize("participant, position, answer, response_ms, message", [
    ("nobody", 0, "A", 10, "unknown participant"),
    ("", 0, "A", 10, "start the study first"),
    ("p1", 99, "A", 10, "not assigned"),
    ("p1", -1, "A", 10, "not assigned"),
    ("p1", 1, "A", 10, "not the current trial"),
    ("p1", 0, "C", 10, "not one of"),
    ("p1", 0, "A", -1, "response time"),
    ("p1", 0, "A", 10**12, "response time"),
    ("p1", 0.5, "A", 10, "must be an integer"),
    ("p1", True, "A", 10, "must be an integer"),
    ("p1", "zero", "A", 10, "must be an integer"),
    ("p1", 0, "A", "soon", "must be an integer"),
])
def test_bad_submissions_change_nothing(setup, participant, position, answer, response_ms, message) -> None:
    session, store, _, _ = setup
    credential = session.join(None).credential
    before = store.row_counts()
    with pytest.raises(VoteRejected, match=message):
        session.vote(credential if participant == "p1" else participant, position, answer, response_ms)
    assert store.row_counts() == before


def test_replay_same_answer_is_idempotent_and_different_answer_refused(setup) -> None:
    session, store, _, _ = setup
    p1 = session.join(None).credential
    first, dup = session.vote(p1, 0, "A", 100)
    assert not dup and first.trial.position == 1
    again, dup = session.vote(p1, 0, "A", 999)  # a double click or a retry after a lost response
    assert dup and again.trial.position == 1 and "already" in again.message
    with pytest.raises(VoteRejected, match="replay"):
        session.vote(p1, 0, "B", 100)
    assert [(v.position, v.answer, v.response_ms) for v in store.votes("s1")] == [(0, "A", 100)]


def test_expertise_is_recorded_only_when_collected(tmp_path: Path) -> None:
    config = make_config(collect_expertise=True)
    stimuli = load_stimuli(config)
    cache = StimulusCache(stimuli, stimulus_targets(config, stimuli), FakeRender(tmp_path))
    with open_store(f"sqlite:///{tmp_path / 'db.sqlite3'}") as store:
        store.ensure_study(config, stimuli)
        session = StudySession(store, config, cache)
        p1 = session.join(None, "ML/vision expert")
        p2 = session.join(None, "prefer not to say")
        session.vote(p1.credential, 0, "A")
        session.vote(p2.credential, 0, "A")
        assert {v.participant_id: v.expertise for v in store.votes("s1")} == {p1.participant_id: "ML/vision expert",
                                                                             p2.participant_id: None}


def test_cache_renders_each_stimulus_once_under_concurrency(tmp_path: Path) -> None:
    config = make_config()
    stimuli = load_stimuli(config)
    render = FakeRender(tmp_path)
    cache = StimulusCache(stimuli, stimulus_targets(config, stimuli), render)
    threads = [threading.Thread(target=cache.get, args=(stimuli[i % 3].id,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cache.warm().join()
    assert sorted(render.calls) == sorted(s.id for s in stimuli)
    assert cache.ready.is_set()
    assert set(cache.objective()) == {s.id for s in stimuli}
    with pytest.raises(KeyError):
        cache.get("demo:1:999")


def test_answer_labels() -> None:
    assert answer_choices(("A", "B", "same", "neither")) == [
        ("A", "A"), ("B", "B"), ("about the same", "same"), ("neither", "neither")]


def test_targets_and_class_lookup() -> None:
    config = make_config()
    targets = stimulus_targets(config, load_stimuli(config))
    from cbam_viz.data import CLASSES, render_sample

    assert all(targets[f"demo:1:{i}"] == render_sample(1, i, 32).class_name for i in range(6))
    assert resolve_target("Star", CLASSES) == CLASSES.index("star")
    with pytest.raises(ConfigError, match="not a class"):
        resolve_target("tabby cat", CLASSES)


def test_box_to_input() -> None:
    assert box_to_input((8, 16, 24, 32), (64, 64), 64, None) == (8, 16, 24, 32)
    assert box_to_input((8, 16, 24, 32), (64, 64), 128, None) == (16, 32, 48, 64)
    # 256x256 image, resize 256 then centre crop 224: offset 16 on each side, clipped
    assert box_to_input((0, 100, 256, 140), (256, 256), 224, 256) == (0, 84, 224, 124)


def test_renderer_encodes_fixed_size_maps_and_objective() -> None:
    from cbam_viz.data import CLASSES, render_sample

    class Expl:
        def __init__(self, cam: np.ndarray, probs: np.ndarray):
            self.cam, self.probs = cam, probs

        @property
        def prediction(self) -> int:
            return int(self.probs.argmax())

    sample = render_sample(1, 2, 64)
    x0, y0, x1, y1 = sample.box
    inside = np.zeros((64, 64))
    inside[y0:y1, x0:x1] = 1.0
    outside = 1.0 - inside
    probs = np.full(len(CLASSES), 0.01)
    probs[3] = 0.89

    def explain(image, target):
        return {BASELINE: Expl(outside, probs), CBAM: Expl(inside, probs)}

    for display in ("overlay", "threshold"):
        config = make_config(display=display)
        side = ModelSide(class_names=list(CLASSES), input_size=64, resize=None, checksums={BASELINE: "x", CBAM: "y"})
        renderer = StimulusRenderer(config, side, explain, lambda img: np.asarray(img.convert("RGB")))
        stimulus = load_stimuli(config)[2]
        rendered = renderer(stimulus, sample.class_name)
        assert rendered.objective == {BASELINE: 0.0, CBAM: 1.0}
        assert rendered.meta.outputs[BASELINE].pred == CLASSES[3]
        assert rendered.meta.outputs[CBAM].prob == pytest.approx(0.89) and rendered.meta.outputs[CBAM].checksum == "y"
        assert rendered.meta.target_class == sample.class_name
        from PIL import Image

        maps = [Image.open(io.BytesIO(rendered.maps[m])) for m in (BASELINE, CBAM)]
        assert all(m.size == (256, 256) for m in maps)  # upscaled for display
        # different pictures, the same byte length (uncompressed), no metadata
        assert maps[0].tobytes() != maps[1].tobytes()
        assert len(rendered.maps[BASELINE]) == len(rendered.maps[CBAM])
        assert all(m.info == {} or set(m.info) <= {"dpi"} for m in maps), [m.info for m in maps]
        assert Image.open(io.BytesIO(rendered.image)).size == (256, 256)


def test_report_and_exports(setup, tmp_path: Path) -> None:
    session, store, _, _ = setup
    for _ in range(2):
        view = session.join(None)
        while view.trial is not None:
            view, _ = session.vote(view.credential, view.trial.position, "A", 100)
    store.record_free_vote("s" * 8, "ab" * 32, "B", CBAM, BASELINE, pair="demo", method="gradcam")
    report = build_report(store, "s1", session.cache.objective())
    assert report.stats.votes == 8 and report.stats.participants == 2
    assert report.per_image[0][-2:] == ["energy PG Baseline", "energy PG CBAM"]
    assert "Agrees with the objective score" in report.markdown
    assert "Votes on uploads" in report.free_markdown and "1 vote from 1 participant " in report.free_markdown
    paths = write_exports(report, "s1", tmp_path / "out")
    assert [p.name for p in paths] == ["s1-votes.csv", "s1-votes.json", "s1-participants.csv", "s1-platform-review.csv",
                                       "s1-conflicts.csv", "s1-upload-votes.csv"]
    assert paths[3].read_text().count("\n") == 1 and paths[4].read_text().count("\n") == 1  # headers: no platform ids
    assert paths[2].read_text().count("\n") == 3  # a header and the two participants
    rows = json.loads(paths[1].read_text())
    assert len(rows) == 10 and {r["chosen_model"] for r in rows} <= {BASELINE, CBAM}
    assert all(r["server_ms"] is not None and r["shown_at"] < r["received_at"] for r in rows)
    assert paths[0].read_text().count("\n") == 11


def test_demo_stimuli_and_the_app_examples_come_from_the_sets_generator(tmp_path):
    """A set trained on one generator is shown and studied on images of that generator."""
    from cbam_viz.data import CLASSES, DIFFICULTIES, render_sample
    from cbam_viz.ui.compare import EXAMPLE_SEED, write_examples

    config = make_config()
    stimulus = load_stimuli(config)[2]
    for generator in ("easy", "harder"):
        side = ModelSide(class_names=list(CLASSES), input_size=64, resize=None, checksums={}, generator=generator)
        renderer = StimulusRenderer(config, side, lambda image, target: {}, lambda img: np.asarray(img))
        image, box = renderer.load(stimulus)
        expected = render_sample(config.stimuli.seed, stimulus.index, 64, difficulty=DIFFICULTIES[generator])
        assert image.tobytes() == expected.image.tobytes() and box == expected.box
        (example, *_) = write_examples(tmp_path / generator, count=1, generator=generator)
        assert example.sample.image.tobytes() == render_sample(EXAMPLE_SEED, 0, difficulty=DIFFICULTIES[generator]).image.tobytes()
    easy, harder = (render_sample(config.stimuli.seed, stimulus.index, 64, difficulty=DIFFICULTIES[g]) for g in ("easy", "harder"))
    assert easy.image.tobytes() != harder.image.tobytes()  # the generator matters
