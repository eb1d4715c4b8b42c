"""A crowdsourced study's flow without Gradio or models (session + store, on SQLite): recruitment
links with platform ids, consent, practice, catch trials, time limits, three models; the owner's
report (exclusions, both views) and exports. The same flow through the app's HTTP API and a browser:
tests/test_study_browser.py."""
from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from cbam_viz.study import (
    ConfigError,
    DemoStimuli,
    Recruitment,
    StudyConfig,
    StudyError,
    VoteRejected,
    load_stimuli,
    open_store,
    write_votes,
)
from cbam_viz.study.records import ModelOutput, VoteMeta
from cbam_viz.study.report import build_report, write_exports, write_plots
from cbam_viz.study.session import StudySession
from cbam_viz.study.stimuli import RenderedStimulus, StimulusCache, catch_cams, stimulus_targets

MODELS = ("baseline", "se", "cbam")
LINK = "?PROLIFIC_PID=5f1a2b3c4d&STUDY_ID=study42&SESSION_ID=sess-1&other=x"
RECRUITMENT = Recruitment(params=("PROLIFIC_PID", "STUDY_ID", "SESSION_ID"), completion_code="C0DE99",
                          completion_url="https://app.prolific.com/submissions/complete?cc={code}&s={SESSION_ID}",
                          redirect=True)


def make_config(**overrides: object) -> StudyConfig:
    values = dict(name="crowd", pair="three", models=MODELS, stimuli=DemoStimuli(seed=2, count=10),
                  trials_per_participant=6, consent="## Consent\nYou agree to take part.", practice_trials=2,
                  catch_trials=2, min_response_ms=1000, recruitment=RECRUITMENT)
    return StudyConfig(**{**values, **overrides})


class FakeRender:
    """Distinct small byte strings per stimulus and map (no model needed)."""

    def __init__(self, models: tuple[str, ...] = MODELS) -> None:
        self.models = models

    def __call__(self, stimulus, target: str) -> RenderedStimulus:
        maps = {m: f"{stimulus.id}/{m}".encode() for m in (*self.models, "object", "background")}
        meta = VoteMeta(target_class=target, outputs={m: ModelOutput(f"pred-{m}", 0.5, m * 4) for m in self.models})
        return RenderedStimulus(stimulus.id, 0, target, f"{stimulus.id}/image".encode(), maps, meta, None)


@pytest.fixture
def study(tmp_path: Path):
    def start(**overrides: object) -> tuple[StudySession, object]:
        config = make_config(**overrides)
        stimuli = load_stimuli(config)
        cache = StimulusCache(stimuli, stimulus_targets(config, stimuli), FakeRender(config.models))
        store = open_store(f"sqlite:///{tmp_path / 'study.sqlite3'}")
        opened.append(store)
        store.ensure_study(config, stimuli)
        return StudySession(store, config, cache), store

    opened: list = []
    yield start
    for store in opened:
        store.close()


def answer_all(session: StudySession, view, answers=lambda trial, kind: "A", response_ms: int = 900):
    """Answer every trial from `view` on; the catch trial's answer comes from answers(trial, "catch")."""
    store = session.store
    while view.trial is not None:
        trial = next(t for t in store.trials(session.config.name, view.participant_id)
                     if t.position == view.trial.position)
        view, _ = session.vote(view.credential, trial.position, answers(trial, trial.kind), response_ms)
    return view


def test_a_link_with_platform_ids_is_an_attribute_and_the_credential_ends_with_the_completion_code(study) -> None:
    from cbam_viz.study.session import CONFLICT_MESSAGE

    session, store = study()
    assert not session.resume("", LINK).started  # a new link: the start screen
    first = session.join("", consent=True, link=LINK)
    pid = first.participant_id
    assert pid != "5f1a2b3c4d" and first.credential.startswith(pid + ".")  # our own id, never the platform's
    stored = store.participant("crowd", pid)
    assert stored.platform_ids == {"PROLIFIC_PID": "5f1a2b3c4d", "STUDY_ID": "study42", "SESSION_ID": "sess-1"}
    assert stored.consented_at is not None
    view, _ = session.vote(first.credential, first.trial.position, "A", 900)
    # the browser's credential resumes (with or without the link)
    for link in (LINK, ""):
        again = session.resume(first.credential, link)
        assert again.participant_id == pid and again.trial.position == view.trial.position
    # the same link in another browser (no credential) gets only the message: no credential, trial or code
    for arrival in (session.resume("", LINK), session.join("", link=LINK), session.join("", consent=True, link=LINK)):
        assert arrival.blocked and arrival.message == CONFLICT_MESSAGE
        assert (arrival.participant_id, arrival.credential, arrival.trial, arrival.completion) == ("", "", None, None)
    # someone else's credential with this link: blocked too, and both arrivals are on record
    other = session.join("", consent=True)
    assert session.resume(other.credential, LINK).blocked
    conflicts = {(c.participant_id, c.other_id): c.arrivals for c in store.conflicts("crowd")}
    assert conflicts == {(pid, ""): 3, (pid, other.participant_id): 1}
    assert len(store.participants("crowd")) == 2
    done = answer_all(session, again)
    assert done.done and done.completion.code == "C0DE99" and done.completion.redirect
    assert done.completion.url == "https://app.prolific.com/submissions/complete?cc=C0DE99&s=sess-1"
    assert session.resume(first.credential, LINK).completion == done.completion  # the end screen after a reload
    assert session.resume("", LINK).completion is None
    # before the end nobody sees the code
    assert session.resume(other.credential).completion is None


def test_without_recruitment_parameters_the_anonymous_flow_is_unchanged(study) -> None:
    session, store = study(recruitment=Recruitment(), consent="", practice_trials=0, catch_trials=0)
    view = session.join(None, link="?PROLIFIC_PID=ignored")
    assert store.participant("crowd", view.participant_id).platform_ids == {}
    assert view.trial.progress_text == "Trial 1 of 6"
    done = answer_all(session, view)
    assert done.done and done.completion is None and done.message.endswith("thank you for taking part!")


def test_bad_links_get_a_one_line_error(study) -> None:
    session, store = study()
    for link, message in [("?PROLIFIC_PID=a&PROLIFIC_PID=b", "more than once"),
                          ("?PROLIFIC_PID=<script>", "PROLIFIC_PID must be"), ("?" + "x" * 3000, "not a valid")]:
        with pytest.raises(StudyError, match=message):
            session.join("", consent=True, link=link)
        assert not session.resume("", link).started
    assert store.row_counts()["participants"] == 0


def test_consent_is_required_by_the_store_and_practice_answers_are_not_votes(study) -> None:
    session, store = study()
    with pytest.raises(StudyError, match="consent"):
        session.join("", consent=False)
    with pytest.raises(StudyError, match="consent"):
        store.get_or_create_participant("crowd", "direct")  # not only the UI: the store refuses
    assert store.row_counts()["participants"] == 0 and store.row_counts()["assignments"] == 0
    view = session.join("", consent=True)
    trials = store.trials("crowd", view.participant_id)
    assert [t.kind for t in trials[:2]] == ["practice", "practice"]
    assert view.trial.position == 0 and view.trial.progress_text == "Practice trial 1 of 2 (not recorded)"
    with pytest.raises(VoteRejected, match="practice trial"):
        store.record_vote("crowd", view.participant_id, 0, "A")  # practice never becomes a vote
    with pytest.raises(VoteRejected, match="not the current trial"):
        session.vote(view.credential, 2, "A", 900)  # the study's trials wait for the practice
    with pytest.raises(VoteRejected, match="answer practice trial 0 first"):
        store.record_vote("crowd", view.participant_id, 2, "A")  # so does the store, whoever calls it
    view, duplicate = session.vote(view.credential, 0, "B", 900)
    assert not duplicate and "not recorded" in view.message and view.trial.progress_text.startswith("Practice trial 2")
    assert session.vote(view.credential, 0, "B", 900)[1]  # again: a no-op
    view, _ = session.vote(view.credential, 1, "A", 900)
    assert view.trial.position == 2 and view.trial.progress_text == "Trial 1 of 8"  # 6 + 2 catch trials
    assert store.row_counts()["votes"] == 0
    assert store.answered_positions("crowd", view.participant_id) == {0, 1}


def test_three_models_in_balanced_pairs_and_the_stored_vote_names_both(study) -> None:
    session, store = study(practice_trials=0, catch_trials=0, trials_per_participant=9, stimuli=DemoStimuli(seed=2, count=9))
    view = answer_all(session, session.join("", consent=True), answers=lambda t, kind: "B")
    votes = store.votes("crowd")
    pairs = [frozenset((v.shown_as_a, v.shown_as_b)) for v in votes]
    assert sorted(map(sorted, set(pairs))) == [["baseline", "cbam"], ["baseline", "se"], ["cbam", "se"]]
    assert all(pairs.count(p) == 3 for p in set(pairs))
    for v in votes:
        assert v.chosen_model == v.shown_as_b and v.pred_a == f"pred-{v.shown_as_a}" and v.checksum_b == v.shown_as_b * 4
    buffer = io.StringIO()
    write_votes(votes, buffer, "csv")
    row = next(csv.DictReader(io.StringIO(buffer.getvalue())))
    for column in ("shown_as_a", "shown_as_b", "chosen_model", "kind", "too_fast", "pred_a", "prob_b", "checksum_a"):
        assert column in row
    assert view.done


def test_catch_trials_are_recorded_and_failures_are_excluded_by_default(study, tmp_path: Path) -> None:
    session, store = study()
    # four careful participants: CBAM wins 3 of every 4 of its trials, baseline vs SE alternates between the
    # models (counted per kind of trial, so neither the random trial order nor the sides decide who leads: at worst
    # CBAM ties SE 4-4 and beats the baseline 8-0, while SE ties the baseline);
    # one careless participant picks the baseline (and the background map of the catch trials)
    count = {"cbam": 0, "baseline-se": 0}

    def careful(t, kind: str) -> str:
        if kind == "catch":
            return "A" if t.model_a == "object" else "B"
        if "cbam" in (t.model_a, t.model_b):
            count["cbam"] += 1
            winner = "cbam" if count["cbam"] % 4 else next(m for m in (t.model_a, t.model_b) if m != "cbam")
        else:
            count["baseline-se"] += 1
            winner = "se" if count["baseline-se"] % 2 else "baseline"
        return "A" if t.model_a == winner else "B"

    for _ in range(4):
        answer_all(session, session.join("", consent=True), careful)
    careless = session.join("", consent=True, link="?PROLIFIC_PID=careless-5f")
    answer_all(session, careless, lambda t, kind: "A" if t.model_a == "baseline" else "B" if t.model_b == "baseline"
               else ("A" if t.model_a == "background" else "B"))
    votes = store.votes("crowd")
    catch = [v for v in votes if v.kind == "catch"]
    assert len(catch) == 10 and {v.chosen_model for v in catch} == {"object", "background"}
    report = build_report(store, "crowd")
    assert report.failed == [careless.participant_id]
    assert report.stats.participants == 4 and report.stats.votes == 24  # catch trials never count as votes
    (analysis,) = report.analyses
    assert len({c.participant for c in analysis.comparisons}) == 4
    assert analysis.ranking.strengths[0].model == "cbam"
    assert "1 of 5 participants failed at least one" in report.markdown
    assert "(careless-5f)" in report.markdown  # by the platform id the owner rejects on the platform
    assert "Left out: 6 votes from 1 participant who failed an attention check" in report.markdown
    assert "Power**: Power" not in report.markdown
    review = {row[0]: row[-1] for row in report.review[1]}
    assert list(review) == ["careless-5f"] and review["careless-5f"].startswith("failed an attention check")
    assert "votes too fast" in review["careless-5f"]  # answered the moment each trial arrived (server's measure)
    # the switch counts everyone in, in every figure and table
    everyone = build_report(store, "crowd", everyone=True)
    assert [a.who for a in report.analyses] == ["passed the attention checks"]
    assert [a.who for a in everyone.analyses] == ["everyone"]
    assert report.stats.participants == 4 and everyone.stats.participants == 5 and everyone.stats.votes == 30
    assert len(report.per_participant[1]) == 4 and len(everyone.per_participant[1]) == 5
    assert sum(r[1] for r in report.answers[1]) == 24 and sum(r[1] for r in everyone.answers[1]) == 30
    assert len({c.participant for c in everyone.analyses[0].comparisons}) == 5
    assert "Counted in: 1 participant who failed" in everyone.markdown
    # position bias once, with its per-vote and (where it exists) clustered interval
    assert report.markdown.count("Position bias") == 1 == everyone.markdown.count("Position bias")
    assert "with votes independent (Wilson)" in report.markdown
    row = next(r for r in report.participants[1] if r[0] == careless.participant_id)
    headers = report.participants[0]
    assert row[headers.index("catch failed")] == 2 and row[headers.index("PROLIFIC_PID")] == "careless-5f"
    assert row[headers.index("excluded")] == "failed an attention check"
    # catch votes counted one way: never among the votes, always among the attention checks
    votes_column = headers.index("votes (study trials)")
    assert row[votes_column] == 6 and sum(r[votes_column] for r in report.participants[1]) == everyone.stats.votes == 30
    paths = write_exports(report, "crowd", tmp_path / "out") + write_plots(report, tmp_path / "out")
    names = [p.name for p in paths]
    assert "crowd-catch-trials.png" in names and "crowd-ranking.png" in names and "crowd-votes-over-time.png" in names
    assert sum(n.startswith("crowd-images-") for n in names) == 3  # one forest plot per pair of models
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths if p.suffix == ".png")
    exported = json.loads((tmp_path / "out" / "crowd-votes.json").read_text())
    assert sum(r["kind"] == "catch" for r in exported) == 10
    # a study without attention checks does not speak of passing them
    plain, plain_store = study(name="plain", catch_trials=0)
    answer_all(plain, plain.join("", consent=True), careful)
    unchecked = build_report(plain_store, "plain", everyone=True)
    assert [a.who for a in unchecked.analyses] == ["everyone"] and "attention check" not in unchecked.markdown


def test_the_results_name_the_models_as_people_read_them(study) -> None:
    """Role titles for the known roles, the set's model title for another; in the text, tables and plots."""
    from matplotlib.text import Text

    from cbam_viz.study.report import figures

    session, store = study(models=("baseline", "se", "cbam-v2"), practice_trials=0, catch_trials=0, consent="")
    beats = {("baseline", "se"), ("se", "cbam-v2"), ("cbam-v2", "baseline")}  # a cycle: every model wins and loses
    for _ in range(3):
        answer_all(session, session.join(""), lambda t, kind: "A" if (t.model_a, t.model_b) in beats else "B")
    store.record_free_vote("voter1", "ab" * 32, "B", "se", "cbam-v2", pair="three", method="gradcam")
    titles = {"baseline": "ResNet-50 (torchvision)", "se": "SE-ResNet-50", "cbam-v2": "ResNet-50 + CBAM v2"}
    report = build_report(store, "crowd", titles=titles)
    assert "**Prefers ResNet-50 + CBAM v2** (of decisive votes, vs SE): 1/1" in report.free_markdown  # the blind vote's two
    assert report.names == {"baseline": "Baseline", "se": "SE", "cbam-v2": "ResNet-50 + CBAM v2"}
    assert "Models compared: Baseline = ResNet-50 (torchvision); SE = SE-ResNet-50; ResNet-50 + CBAM v2." in report.markdown
    assert report.analyses[0].ranking is not None and "Bradley-Terry ranking**: " in report.markdown
    assert {row[2] for row in report.ranking[1]} == {"Baseline", "SE", "ResNet-50 + CBAM v2"}
    assert {row[1] for row in report.pairwise[1]} == {"Baseline", "SE", "ResNet-50 + CBAM v2"}
    charts = figures(report)
    assert {"ranking", "preference", "images-baseline-vs-cbam-v2"} <= set(charts)
    for name in ("ranking", "preference", "images-baseline-vs-cbam-v2"):
        texts = " | ".join(t.get_text() for t in charts[name].findobj(Text))
        assert "ResNet-50 + CBAM v2" in texts and "Baseline" in texts, (name, texts)
        assert "cbam-v2" not in texts and "baseline" not in texts, (name, texts)


def test_fast_votes_are_flagged_and_the_study_time_is_limited(study) -> None:
    session, store = study(practice_trials=0, catch_trials=0, max_study_minutes=30)
    import time

    view = session.join("", consent=True)
    # "too fast" (under min_response_ms = 1000, well above a loaded machine's own time per vote) is the
    # server's measure: a client's claim changes nothing
    view, _ = session.vote(view.credential, view.trial.position, "A", 2500)  # claims 2.5 s, sent at once
    time.sleep(1.05)
    view, _ = session.vote(view.credential, view.trial.position, "B", 150)  # claims 150 ms after 1050
    votes = store.votes("crowd")
    assert [v.too_fast for v in votes] == [True, False]
    assert [v.response_ms for v in votes] == [2500, 150] and votes[0].server_ms < 1000 <= votes[1].server_ms
    assert "Too fast** (under 1000 ms): 1 of 2 votes" in build_report(store, "crowd").markdown
    assert 29 * 60 < store.time_left("crowd", view.participant_id) <= 30 * 60
    _age(store, view.participant_id, minutes=31)
    with pytest.raises(VoteRejected, match="time for this study"):
        session.vote(view.credential, view.trial.position, "A", 900)
    expired = session.resume(view.credential)
    assert expired.expired and expired.trial is None and expired.completion is None
    assert len(store.votes("crowd")) == 2


def _age(store, participant_id: str, minutes: float) -> None:
    """Pretend the participant joined `minutes` ago."""
    from sqlalchemy import update

    from cbam_viz.study.schema import ParticipantRow

    with store._sessions.begin() as s:
        s.execute(update(ParticipantRow).where(ParticipantRow.participant_id == participant_id)
                  .values(created_at=datetime.now(UTC) - timedelta(minutes=minutes)))


def test_catch_maps_come_from_the_real_maps_and_keep_a_clear_answer() -> None:
    from cbam_viz.data import render_sample
    from cbam_viz.study.catch import energy_in_box

    ys, xs = np.mgrid[0:64, 0:64] + 0.5
    for index in range(30):
        box = render_sample(4, index, 64).box
        x0, y0, x1, y1 = box
        blob = lambda dx, r: np.exp(-((xs - (x0 + x1) / 2 - dx) ** 2 + (ys - (y0 + y1) / 2) ** 2) / r ** 2)  # noqa: E731
        real = {"baseline": (0.9 * blob(2, 8)).astype(np.float32), "cbam": (0.95 * blob(-2, 12)).astype(np.float32)}
        cams = catch_cams(real, box, 0.6)
        again = catch_cams(real, box, 0.6)
        assert all(np.array_equal(cams[k], again[k]) for k in ("object", "background"))  # deterministic
        best = max(real, key=lambda m: energy_in_box(real[m], box) / real[m].sum())
        other = next(m for m in real if m != best)
        assert np.array_equal(cams["object"], real[best])  # a real map, untouched
        assert energy_in_box(cams["background"], box) <= 0.5 * energy_in_box(cams["object"], box)
        assert np.isclose(cams["background"].max(), real[other].max()) and np.isclose(cams["background"].min(), real[other].min())


@pytest.mark.parametrize("overrides, message", [
    ({"models": ("baseline", "se", "cbam", "x", "y")}, "two to 4 models"),
    ({"models": ("baseline", "object")}, "catch trial's maps"),
    ({"catch_trials": 11}, "between 0 and 10"),
    ({"practice_trials": -1}, "between 0 and 10"),
    ({"min_response_ms": -5}, "must not be negative"),
    ({"max_study_minutes": "soon"}, "a number"),
    ({"recruitment": Recruitment(params=("PROLIFIC PID",))}, "not a query parameter name"),
    ({"recruitment": Recruitment(params=("A",), participant_param="B")}, "must be one of params"),
    ({"recruitment": Recruitment(completion_url="javascript:alert(1)")}, "https://"),
    ({"recruitment": Recruitment(completion_url="https://x.org/?id={WORKER}")}, "placeholders"),
    ({"recruitment": Recruitment(redirect=True)}, "needs a completion_url"),
])
def test_bad_configs_name_the_key(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(**overrides)


def test_the_worked_example_config_loads() -> None:
    from cbam_viz.study import load_config

    config = load_config(Path(__file__).parents[1] / "studies" / "prolific.toml")
    assert config.recruitment.key_param == "PROLIFIC_PID" and config.consent and config.catch_trials >= 1
    assert len(config.models) == 3 and StudyConfig.from_dict(config.to_dict()) == config
    shown = config.trials_per_participant + config.repeat_trial + config.catch_trials + config.practice_trials
    assert f"You will see {shown} images" in config.consent  # the consent text tells the truth


def test_folder_stimuli_with_boxes_allow_catch_trials(tmp_path: Path) -> None:
    from PIL import Image

    from cbam_viz.study import FolderStimuli

    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    Image.new("RGB", (40, 30)).save(tmp_path / "b.png")
    (tmp_path / "stimuli.csv").write_text("file,target_class,x0,y0,x1,y1\na.png,cat,2,3,12,20\nb.png,dog,,,,\n")
    config = StudyConfig(name="f", pair="p", stimuli=FolderStimuli(tmp_path, tmp_path / "stimuli.csv"),
                         trials_per_participant=2)
    assert [s.box for s in load_stimuli(config)] == [(2, 3, 12, 20), None]
    (tmp_path / "stimuli.csv").write_text("file,target_class,x0,y0,x1,y1\na.png,cat,12,3,2,20\n")
    with pytest.raises(ConfigError, match="0 <= x0 < x1"):
        load_stimuli(config)
