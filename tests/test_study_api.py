"""The study through the app's real HTTP API (app.build_app served in-process, random-weight demo pair):
blinding of every payload a participant can read, bad submissions, response time, resume after a
reload, the password-protected Results endpoint and the blinded vote on an upload."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from app_fixtures import free_port, models_dir  # noqa: F401  (fixture)
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from cbam_viz.study import BASELINE, CBAM, MODELS, DemoStimuli, StudyConfig, open_store
from cbam_viz.study.runtime import runtime_for
from cbam_viz.ui.context import AppContext, image_sha256

PASSWORD = "s3cret-owner"
CONFIG = StudyConfig(name="api-test", pair="demo", stimuli=DemoStimuli(seed=11, count=8),
                     trials_per_participant=4, repeat_trial=True, display="threshold")
# study_resume and study_vote return these; study_start returns the participant id first
PROGRESS, QUESTION, IMAGE, MAP_A, MAP_B, POSITION, STATUS = range(7)


def resume(client: Client, participant_id: str) -> tuple:
    return client.predict(participant_id, api_name="/study_resume")


class Server:
    def __init__(self, url: str, ctx: AppContext, store, app):
        self.url, self.ctx, self.store, self.app = url, ctx, store, app
        self.runtime = runtime_for(ctx, store, CONFIG)

    def client(self) -> Client:
        # ssl_verify=False: plain http on loopback; spares httpx loading the CA bundle per request
        return Client(self.url, verbose=False, download_files=False, analytics_enabled=False, ssl_verify=False)

    def raw(self, api_name: str, *data: object) -> tuple[str, str]:
        """Call an endpoint over plain HTTP; returns (event, data) exactly as the browser gets it."""
        posted = httpx.post(f"{self.url}gradio_api/call/{api_name}", json={"data": list(data)}, timeout=60)
        event_id = posted.json()["event_id"]
        text = httpx.get(f"{self.url}gradio_api/call/{api_name}/{event_id}", timeout=60).text
        events = re.findall(r"event: (\w+)\ndata: (.*)", text)
        assert events, text
        return events[-1]

    def secrets(self) -> list[str]:
        """Strings that would unblind a trial: model names, titles, checksums, probabilities."""
        found = ["baseline", "cbam", "shown_as_a", "model_a"]
        for role in MODELS:
            entry = self.ctx.pair("demo").entries[role]
            found += [entry["title"].lower(), entry["sha256"], entry["file"].lower()]
            found.append(self.ctx.pair("demo").models[role].info.title.lower())
        for stimulus in self.runtime.cache.stimuli:
            meta = self.runtime.cache.get(stimulus).meta
            for prob in (meta.baseline_prob, meta.cbam_prob):
                found += [repr(prob), f"{prob:.4f}"]
        return found

    def assert_blinded(self, payload: object) -> None:
        text = json.dumps(payload, default=str).lower() if not isinstance(payload, str) else payload.lower()
        for secret in self.secrets():
            assert secret not in text, f"payload reveals {secret!r}: {text[:500]}"


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    import app as app_module

    ctx = AppContext(pairs=["demo"], models_dir=models_dir, device="cpu")
    store = open_store(None, tmp_path_factory.mktemp("data"))
    app = app_module.build_app(ctx, store, CONFIG, PASSWORD)
    port = free_port()
    app_module.launch(app, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    srv = Server(f"http://127.0.0.1:{port}/", ctx, store, app)
    assert srv.runtime.cache.ready.wait(120), "stimulus maps were not rendered"
    try:
        yield srv
    finally:
        app.close()
        store.close()


def file_name(value: dict) -> str:
    return Path(value["path"]).name


def test_study_endpoints(server: Server) -> None:
    named = server.client().view_api(return_format="dict", print_info=False)["named_endpoints"]
    params = {name: [p["parameter_name"] for p in info["parameters"]] for name, info in named.items()}
    assert params["/study_resume"] == ["participant_id"]
    assert params["/study_start"] == ["participant_id", "expertise"]
    assert params["/study_vote"] == ["participant_id", "position", "answer", "response_ms"]
    assert params["/study_results"] == ["password"]
    assert params["/free_vote_show"] == ["image", "pair", "method"]
    assert params["/free_vote"] == ["voter_id", "answer", "response_ms"]


def test_no_payload_identifies_the_models_before_the_vote(server: Server) -> None:
    client = server.client()
    event, data = server.raw("study_start", "", "prefer not to say")
    assert event == "complete"
    server.assert_blinded(data)
    pid = json.loads(data)[0]
    assert len(json.loads(data)) == 8
    trials = server.store.trials(CONFIG.name, pid)
    repeat = next(t for t in trials if t.is_repeat)
    first = next(t for t in trials if t.stimulus_id == repeat.stimulus_id and not t.is_repeat)
    assert first.model_a != repeat.model_a
    by_position: dict[int, list] = {}
    result = resume(client, pid)
    for trial in trials:
        server.assert_blinded(result)
        assert result[POSITION] == trial.position
        by_position[trial.position] = list(result)
        names = [file_name(result[i]) for i in (IMAGE, MAP_A, MAP_B)]
        assert all(re.fullmatch(r"[0-9a-f]{32}\.png", n) for n in names), names
        event, data = server.raw("study_vote", pid, trial.position, "A", 700)
        assert event == "complete"
        server.assert_blinded(data)
        result = client.predict(pid, trial.position, "A", 700, api_name="/study_vote")  # a resubmission
        assert "already been recorded" in result[STATUS]
    # The same image with the sides swapped: the two payloads differ only in the order of the maps,
    # so nothing else in a payload can encode which model is "A".
    one, two = by_position[first.position], by_position[repeat.position]
    assert (file_name(one[MAP_A]), file_name(one[MAP_B])) == (file_name(two[MAP_B]), file_name(two[MAP_A]))
    assert file_name(one[IMAGE]) == file_name(two[IMAGE]) and one[QUESTION] == two[QUESTION]
    assert one[MAP_A]["meta"] == two[MAP_A]["meta"] and one[MAP_A].keys() == two[MAP_A].keys()
    assert result[POSITION] is None and "thank you" in result[STATUS].lower()
    mine = [v for v in server.store.votes(CONFIG.name) if v.participant_id == pid]
    assert sorted(v.position for v in mine) == sorted(t.position for t in trials)


def test_page_config_holds_no_trial(server: Server) -> None:
    """The page itself (its config) carries no assignment, checksum or probability. (The Compare
    tab does name the models: it is the labelled view, not a trial.)"""
    config = httpx.get(f"{server.url}config", timeout=30).text.lower()
    pair = server.ctx.pair("demo")
    for secret in [*(pair.entries[m]["sha256"] for m in MODELS), "model_a", "shown_as_a", *server.secrets()[-4:]]:
        assert secret not in config, secret


@pytest.fixture
def participant(server: Server) -> tuple[Client, str, int]:
    client = server.client()
    result = client.predict("", "prefer not to say", api_name="/study_start")
    return client, result[0], result[1 + POSITION]


BAD = [
    (lambda pid, pos: ("nobody-at-all", pos, "A", 10), "unknown participant"),
    (lambda pid, pos: ("", pos, "A", 10), "start the study first"),
    (lambda pid, pos: (pid, 99, "A", 10), "not assigned"),
    (lambda pid, pos: (pid, pos + 1, "A", 10), "not the current trial"),
    (lambda pid, pos: (pid, pos, "maybe", 10), "not in the list of choices"),
    (lambda pid, pos: (pid, pos, "A", -5), "response time"),
    (lambda pid, pos: (pid, pos + 0.5, "A", 10), "must be an integer"),
]


@pytest.mark.parametrize("make, message", BAD, ids=["unknown-participant", "no-id", "not-assigned", "not-shown-yet",
                                                    "answer-outside-options", "negative-time", "fractional-trial"])
def test_bad_submissions_are_rejected_and_change_nothing(server: Server, participant, make, message) -> None:
    client, pid, pos = participant
    before = server.store.row_counts()
    with pytest.raises(AppError, match=message):
        client.predict(*make(pid, pos), api_name="/study_vote")
    assert server.store.row_counts() == before


def test_replayed_vote_with_another_answer_is_rejected(server: Server, participant) -> None:
    client, pid, pos = participant
    client.predict(pid, pos, "B", 900, api_name="/study_vote")
    before = server.store.row_counts()
    with pytest.raises(AppError, match="refused as a replay"):
        client.predict(pid, pos, "A", 900, api_name="/study_vote")
    assert server.store.row_counts() == before
    mine = [v for v in server.store.votes(CONFIG.name) if v.participant_id == pid]
    assert [(v.position, v.answer) for v in mine] == [(pos, "B")]


def test_response_time_is_recorded(server: Server, participant) -> None:
    client, pid, pos = participant
    result = client.predict(pid, pos, "same", 1234, api_name="/study_vote")
    client.predict(pid, result[POSITION], "neither", None, api_name="/study_vote")  # no browser timing
    mine = {v.position: v for v in server.store.votes(CONFIG.name) if v.participant_id == pid}
    assert mine[pos].response_ms == 1234
    assert mine[result[POSITION]].response_ms is not None and mine[result[POSITION]].response_ms >= 0
    assert mine[pos].method == CONFIG.method and mine[pos].target_class
    assert mine[pos].baseline_checksum == server.ctx.pair("demo").entries[BASELINE]["sha256"]


def test_resume_after_reload_with_the_same_browser_id(server: Server, participant) -> None:
    client, pid, pos = participant
    after_one = client.predict(pid, pos, "A", 500, api_name="/study_vote")
    reloaded = server.client()  # a new page: a new Gradio session, the id comes from BrowserState
    resumed = resume(reloaded, pid)
    assert resumed[POSITION] == after_one[POSITION]
    assert resumed[PROGRESS] == "**Trial 2 of 5**"
    assert [file_name(resumed[i]) for i in (MAP_A, MAP_B)] == [file_name(after_one[i]) for i in (MAP_A, MAP_B)]
    fresh = resume(reloaded, "")
    assert fresh[PROGRESS] == "" and fresh[POSITION] is None  # no id yet: the start screen


def test_results_need_the_password(server: Server, participant) -> None:
    client, pid, pos = participant
    client.predict(pid, pos, "A", 500, api_name="/study_vote")
    for wrong in ("", "nope", PASSWORD.upper()):
        with pytest.raises(AppError, match="Wrong admin password"):
            client.predict(wrong, api_name="/study_results")
    results = server.client().predict(PASSWORD, api_name="/study_results")
    summary, answers, per_image, per_participant, free, files = results
    assert "Prefers CBAM" in summary and "binomial p" in summary and "Position bias" in summary
    assert "Agrees with the objective score" in summary  # demo stimuli have ground truth
    assert per_image["headers"][-2:] == ["energy PG baseline", "energy PG CBAM"]
    assert any(row[0] == pid for row in per_participant["data"])
    names = sorted(Path(f["path"]).name for f in files)
    assert names == ["api-test-upload-votes.csv", "api-test-votes.csv", "api-test-votes.json"]
    exported = httpx.get(next(f["url"] for f in files if f["path"].endswith("votes.json")), timeout=30).json()
    assert {row["chosen_model"] for row in exported} <= {BASELINE, CBAM, "same", "neither"}
    assert all(row["shown_as_a"] in MODELS for row in exported)


def test_without_a_password_there_is_no_results_tab(server: Server) -> None:
    import app as app_module

    app = app_module.build_app(server.ctx, server.store, CONFIG, None)
    config = json.dumps(app.get_config_file(), default=str)
    assert '"Results"' not in config and "study_results" not in config
    assert '"Study"' in config and "study_vote" in config


def test_study_mode_serves_the_labelled_compare_tab_only_when_asked(server: Server) -> None:
    import app as app_module

    app = app_module.build_app(server.ctx, server.store, CONFIG, None, compare=False)
    config = json.dumps(app.get_config_file(), default=str)
    assert '"Compare"' not in config and '"compare"' not in config and "free_vote" not in config
    assert "study_vote" in config
    args = app_module.parse_args(["--study", "s.toml"])
    assert not args.with_compare and app_module.parse_args(["--study", "s.toml", "--with-compare"]).with_compare


def test_free_vote_on_an_upload(server: Server, tmp_path: Path) -> None:
    from cbam_viz.data import render_sample
    from cbam_viz.images import open_image

    path = tmp_path / "upload.png"
    render_sample(99, 4).image.save(path)
    client = server.client()
    question, map_a, map_b, _answer, _status = client.predict(handle_file(str(path)), "demo", "gradcam",
                                                              api_name="/free_vote_show")
    server.assert_blinded([question, map_a, map_b])
    assert question.startswith("### Which map better covers the")
    uploaded = httpx.post(f"{server.url}gradio_api/upload", files={"files": path.open("rb")}, timeout=30).json()[0]
    upload = {"path": uploaded, "meta": {"_type": "gradio.FileData"}}
    event, data = server.raw("free_vote_show", upload, "demo", "gradcam")
    assert event == "complete" and json.loads(data)[0] is None  # the server-side state never leaves the server
    server.assert_blinded(data)
    voter, status = client.predict("", "A", 800, api_name="/free_vote")
    assert "recorded" in status and re.fullmatch(r"[0-9a-f]{32}", voter)
    assert "already" in client.predict(voter, "A", 800, api_name="/free_vote")[1]
    with pytest.raises(AppError, match="replay"):
        client.predict(voter, "B", 800, api_name="/free_vote")
    with pytest.raises(AppError, match="show the blinded maps first"):
        server.client().predict(voter, "A", 800, api_name="/free_vote")
    votes = server.store.free_votes("demo")
    assert len(votes) == 1
    vote = votes[0]
    assert vote.image_sha256 == image_sha256(open_image(path)) and vote.stimulus_id == "upload:" + vote.image_sha256
    assert vote.shown_as_a in MODELS and vote.response_ms == 800 and vote.participant_id == voter


def test_cli_summary_reports_agreement_with_the_pointing_game(server: Server, participant, tmp_path: Path,
                                                               models_dir: Path, capsys) -> None:  # noqa: F811
    from cbam_viz.study.cli import main

    client, pid, pos = participant
    client.predict(pid, pos, "B", 500, api_name="/study_vote")
    config = tmp_path / "study.toml"
    config.write_text(f'name = "{CONFIG.name}"\npair = "demo"\ntrials_per_participant = 4\nrepeat_trial = true\n'
                      'display = "threshold"\n[stimuli]\nseed = 11\ncount = 8\n')
    db = server.store.engine.url.render_as_string(hide_password=False)
    assert main(["study", "summary", "--db", db, "--study", CONFIG.name, "--config", str(config),
                 "--models-dir", str(models_dir)]) == 0
    out = capsys.readouterr().out
    assert "Agrees with the objective score" in out and "Prefers CBAM" in out


def test_upload_images_are_stored_only_when_the_owner_enables_it(models_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    from cbam_viz.data import render_sample
    from cbam_viz.study.free import FreeVotes

    ctx = AppContext(pairs=["demo"], models_dir=models_dir, device="cpu")
    store = open_store(None, tmp_path / "data")
    image = render_sample(77, 3).image
    try:
        hidden = FreeVotes(ctx, store)
        trial = hidden.prepare(image, "demo", "gradcam")
        assert trial.image is None
        hidden.vote(trial, "voter-one", "A", 500)
        kept = FreeVotes(ctx, store, upload_dir=tmp_path / "uploads")
        kept.vote(kept.prepare(image, "demo", "gradcam"), "voter-two", "B", 700)
    finally:
        store.close()
    stored = list((tmp_path / "uploads").iterdir())
    assert [p.name for p in stored] == [f"{image_sha256(image)}.png"]
    assert image_sha256(Image.open(stored[0])) == image_sha256(image)
    assert not any(p.suffix == ".png" for p in (tmp_path / "data").rglob("*"))
