"""The study through the app's real HTTP API (app.build_app served in-process, random-weight demo pair):
blinding of every payload a participant can read, bad submissions, response time, resume after a
reload, the password-protected Results endpoint and the blinded vote on an upload."""
from __future__ import annotations

import base64
import json
import re
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from app_fixtures import free_port, models_dir  # noqa: F401  (fixture)
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from cbam_viz.study import BASELINE, CBAM, MODELS, DemoStimuli, StudyConfig, open_store
from cbam_viz.study.runtime import StudyRuntime, build_runtime
from cbam_viz.study.session import NO_EXPERTISE
from cbam_viz.service import AppContext, image_sha256

PASSWORD = "s3cret-owner"
CONFIG = StudyConfig(name="api-test", pair="demo", stimuli=DemoStimuli(seed=11, count=8),
                     trials_per_participant=4, repeat_trial=True, display="threshold", min_response_ms=2500)
# study_vote returns these; study_resume and study_start return the participant's credential first
PROGRESS, QUESTION, MAPS, POSITION, STATUS = range(5)
DATA_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def pngs(html: str) -> list[bytes]:
    """The inline PNGs of an HTML payload, in order (image, map A, map B)."""
    return [base64.b64decode(m) for m in DATA_URI.findall(html)]


def participant_of(credential: str) -> str:
    return credential.rpartition(".")[0]


def resume(client: Client, credential: str, link: str = "") -> tuple:
    """study_resume's view (after the credential it returns first)."""
    return client.predict(credential, link, api_name="/study_resume")[1:]


class Server:
    def __init__(self, url: str, ctx: AppContext, runtime: StudyRuntime, app):
        self.url, self.ctx, self.runtime, self.app = url, ctx, runtime, app
        self.store = runtime.store

    def client(self, path: str = "") -> Client:
        # ssl_verify=False: plain http on loopback; spares httpx loading the CA bundle per request
        return Client(self.url + path, verbose=False, download_files=False, analytics_enabled=False, ssl_verify=False)

    def results(self) -> Client:
        """A client of the owner's Results page (its own path)."""
        return self.client("results/")

    def raw(self, api_name: str, *data: object, path: str = "", headers: dict | None = None) -> tuple[str, str]:
        """Call an endpoint over plain HTTP; returns (event, data) exactly as the browser gets it."""
        base = f"{self.url}{path}gradio_api/call/{api_name}"
        posted = httpx.post(base, json={"data": list(data)}, headers=headers, timeout=60)
        event_id = posted.json()["event_id"]
        text = httpx.get(f"{base}/{event_id}", headers=headers, timeout=60).text
        events = re.findall(r"event: (\w+)\ndata: (.*)", text)
        assert events, text
        return events[-1]

    def secrets(self) -> list[str]:
        """Strings that would unblind a trial: model names, titles, checksums, probabilities."""
        found = ["baseline", "cbam", "shown_as_a", "model_a", "model_b", "object", "background", "catch", "practice"]
        for role in MODELS:
            entry = self.ctx.model_set("demo").entries[role]
            found += [entry["title"].lower(), entry["sha256"], entry["file"].lower()]
            found.append(self.ctx.model_set("demo").models[role].info.title.lower())
        for stimulus in self.runtime.cache.stimuli:
            meta = self.runtime.cache.get(stimulus).meta
            for prob in (output.prob for output in meta.outputs.values()):
                found += [repr(prob), f"{prob:.4f}"]
        return found

    def assert_blinded(self, payload: object) -> None:
        text = json.dumps(payload, default=str) if not isinstance(payload, str) else payload
        # inline images are checked byte for byte elsewhere; their base64 text can hold any word by chance
        text = DATA_URI.sub("data:image/png;base64,…", text).lower()
        for dir_name in ("/tmp", str(Path.home()).lower(), "gradio_api/file", ".png"):
            assert dir_name not in text, f"payload names a server file: {text[:500]}"
        for secret in self.secrets():
            assert secret not in text, f"payload reveals {secret!r}: {text[:500]}"


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    import app as app_module

    ctx = AppContext(sets=["demo"], models_dir=models_dir, device="cpu")
    store = open_store(None, tmp_path_factory.mktemp("data"))
    runtime = build_runtime(ctx, store, CONFIG)
    app = app_module.build_app(ctx, runtime, PASSWORD)
    port = free_port()
    app_module.launch(app, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    srv = Server(f"http://127.0.0.1:{port}/", ctx, runtime, app)
    assert srv.runtime.cache.ready.wait(120), "stimulus maps were not rendered"
    try:
        yield srv
    finally:
        app.close()
        store.close()


def test_study_endpoints(server: Server) -> None:
    named = server.client().view_api(return_format="dict", print_info=False)["named_endpoints"]
    params = {name: [p["parameter_name"] for p in info["parameters"]] for name, info in named.items()}
    assert params["/study_resume"] == ["credential", "link"]
    assert params["/study_start"] == ["credential", "expertise", "consent", "link"]
    assert params["/study_vote"] == ["credential", "position", "answer", "response_ms"]
    assert "/study_results" not in params  # the owner's page is apart
    results = server.results().view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert [p["parameter_name"] for p in results["/study_results"]["parameters"]] == ["password", "everyone", "target"]
    assert params["/free_vote_show"] == ["image", "pair", "method", "left", "right"]
    assert params["/free_vote"] == ["credential", "answer", "response_ms"]


def test_no_payload_identifies_the_models_before_the_vote(server: Server) -> None:
    client = server.client()
    event, data = server.raw("study_start", "", "prefer not to say", False, "")
    assert event == "complete"
    server.assert_blinded(data)
    credential = json.loads(data)[0]
    pid = participant_of(credential)
    assert len(json.loads(data)) == 9  # the credential, then the view, the cleared answer and the stage
    trials = server.store.trials(CONFIG.name, pid)
    repeat = next(t for t in trials if t.is_repeat)
    first = next(t for t in trials if t.stimulus_id == repeat.stimulus_id and not t.is_repeat)
    assert first.model_a != repeat.model_a
    by_position: dict[int, list] = {}
    result = resume(client, credential)
    for trial in trials:
        server.assert_blinded(result)
        assert result[POSITION] == trial.position
        by_position[trial.position] = list(result)
        image, map_a, map_b = pngs(result[MAPS])
        assert len(map_a) == len(map_b) and map_a != map_b
        event, data = server.raw("study_vote", credential, trial.position, "A", 700)
        assert event == "complete"
        server.assert_blinded(data)
        result = client.predict(credential, trial.position, "A", 700, api_name="/study_vote")  # a resubmission
        assert "already been recorded" in result[STATUS]
    # The same image with the sides swapped: the two payloads differ only in the order of the maps,
    # so nothing else in a payload can encode which model is "A".
    one, two = by_position[first.position], by_position[repeat.position]
    (image_1, a_1, b_1), (image_2, a_2, b_2) = pngs(one[MAPS]), pngs(two[MAPS])
    assert (a_1, b_1) == (b_2, a_2) and image_1 == image_2 and one[QUESTION] == two[QUESTION]
    keys = [re.search(r'data-key="(\d+)"', payload[MAPS]).group(1) for payload in (one, two)]
    assert keys == [str(first.position), str(repeat.position)]  # the response clock's key: the position
    unkeyed = [DATA_URI.sub("", payload[MAPS]).replace(f'data-key="{key}"', "") for payload, key in zip((one, two), keys)]
    assert unkeyed[0] == unkeyed[1]
    assert result[POSITION] is None and "thank you" in result[STATUS].lower()
    mine = [v for v in server.store.votes(CONFIG.name) if v.participant_id == pid]
    assert sorted(v.position for v in mine) == sorted(t.position for t in trials)


def test_page_config_holds_no_trial(server: Server) -> None:
    """The page itself (its config) carries no assignment, checksum or probability. (The Compare
    tab does name the models: it is the labelled view, not a trial.)"""
    config = httpx.get(f"{server.url}config", timeout=30).text.lower()
    pair = server.ctx.model_set("demo")
    for secret in [*(pair.entries[m]["sha256"] for m in MODELS), "model_a", "shown_as_a", *server.secrets()[-4:]]:
        assert secret not in config, secret


@pytest.fixture
def participant(server: Server) -> tuple[Client, str, int]:
    client = server.client()
    result = client.predict("", "prefer not to say", False, "", api_name="/study_start")
    return client, result[0], result[1 + POSITION]  # the credential, the first position


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
    mine = [v for v in server.store.votes(CONFIG.name) if v.participant_id == participant_of(pid)]
    assert [(v.position, v.answer) for v in mine] == [(pos, "B")]


def test_response_times_are_measured_by_the_server_and_a_claimed_time_cannot_hide_a_fast_vote(
        server: Server, participant) -> None:
    """A bot answers each trial the moment it arrives and claims 5000 ms: the claim is stored as the
    client's value, the server's own measure beside it, and "too fast" (minimum 2500 ms, well above what a
    loaded machine takes to render and send a trial) follows the server."""
    client, pid, pos = participant
    position = pos
    for _ in range(3):
        event, data = server.raw("study_vote", pid, position, "same", 5000)
        assert event == "complete"
        position = json.loads(data)[POSITION]
    time.sleep(2.55)  # a person who looks before answering
    server.raw("study_vote", pid, position, "neither", None)  # and a browser that sent no timing
    mine = sorted((v for v in server.store.votes(CONFIG.name) if v.participant_id == participant_of(pid)),
                  key=lambda v: v.position)
    assert [v.response_ms for v in mine] == [5000, 5000, 5000, None]  # the client's values, as sent
    assert all(v.server_ms < 5000 and v.too_fast for v in mine[:3]), [(v.server_ms, v.too_fast) for v in mine]
    assert mine[3].server_ms >= 2550 and not mine[3].too_fast
    assert all(v.shown_at < v.received_at for v in mine)
    assert mine[pos].method == CONFIG.method and mine[pos].target_class
    entries = server.ctx.model_set("demo").entries
    assert (mine[pos].checksum_a, mine[pos].checksum_b) == (entries[mine[pos].shown_as_a]["sha256"],
                                                            entries[mine[pos].shown_as_b]["sha256"])


def test_resume_after_reload_with_the_same_browser_id(server: Server, participant) -> None:
    client, pid, pos = participant
    after_one = client.predict(pid, pos, "A", 500, api_name="/study_vote")
    reloaded = server.client()  # a new page: a new Gradio session, the id comes from BrowserState
    resumed = resume(reloaded, pid)
    assert resumed[POSITION] == after_one[POSITION]
    assert resumed[PROGRESS] == "**Trial 2 of 5**"
    assert pngs(resumed[MAPS]) == pngs(after_one[MAPS])
    fresh = resume(reloaded, "")
    assert fresh[PROGRESS] == "" and fresh[POSITION] is None  # no id yet: the start screen


def _links(html_text: str) -> dict[str, bytes]:
    """The downloads of the Results page's HTML: file name -> content (inline data: URIs)."""
    return {name: base64.b64decode(data) for data, name in
            re.findall(r'href="data:[\w/+-]+;base64,([A-Za-z0-9+/=]+)">([^<]+)</a>', html_text)}


def test_results_need_the_password(server: Server, participant) -> None:
    client, pid, pos = participant
    client.predict(pid, pos, "A", 500, api_name="/study_vote")
    owner = server.results()
    for wrong in ("", "nope", PASSWORD.upper()):
        with pytest.raises(AppError, match="Wrong admin password"):
            owner.predict(wrong, False, api_name="/study_results")
    results = server.results().predict(PASSWORD, False, api_name="/study_results")
    (summary, answers, ranking, pairwise, expertise, plots, per_image, per_participant, participants, free,
     files) = results
    assert "Prefers CBAM" in summary and "binomial p" in summary and "Position bias" in summary
    assert "Agrees with the objective score" in summary  # demo stimuli have ground truth
    assert "Bradley-Terry ranking" in summary and "Power" in summary
    assert per_image["headers"][-2:] == ["energy PG Baseline", "energy PG CBAM"]
    assert any(row[0] == participant_of(pid) for row in per_participant["data"])
    assert any(row[0] == participant_of(pid) for row in participants["data"])
    assert {row[1] for row in pairwise["data"]} == {"Baseline", "CBAM"}
    downloads = _links(files)
    names = sorted(downloads)
    assert [n for n in names if not n.endswith(".png")] == [
        "api-test-conflicts.csv", "api-test-participants.csv", "api-test-platform-review.csv",
        "api-test-upload-votes.csv", "api-test-votes.csv", "api-test-votes.json"]
    captions = set(re.findall(r"<figcaption>([^<]+)</figcaption>", plots))
    assert {"preference", "position-bias", "votes-over-time"} <= captions
    assert all(f"api-test-{c}.png" in names for c in captions)  # every plot is a downloadable PNG
    assert all(downloads[f"api-test-{c}.png"].startswith(b"\x89PNG") for c in captions)
    exported = json.loads(downloads["api-test-votes.json"])
    assert {row["chosen_model"] for row in exported} <= {BASELINE, CBAM, "same", "neither"}
    assert all({row["shown_as_a"], row["shown_as_b"]} == set(MODELS) for row in exported)
    assert all(row["kind"] == "trial" and row["server_ms"] is not None for row in exported)
    assert "To detect a 60% preference" in summary  # the power line's default target
    planned = server.results().predict(PASSWORD, False, 0.75, api_name="/study_results")[0]
    assert "To detect a 75% preference" in planned
    for bad in (0.3, "x"):
        with pytest.raises(AppError, match="preference share to detect must be a number from 0.51 to 0.95"):
            server.results().predict(PASSWORD, False, bad, api_name="/study_results")


def test_results_are_apart_from_the_participants_page_and_no_export_has_a_url(server: Server, participant) -> None:
    """The participants' /config and API hold nothing of the Results page; its exports and plots exist only
    inside the password-checked response."""
    client, pid, pos = participant
    client.predict(pid, pos, "B", 900, api_name="/study_vote")
    page = httpx.get(f"{server.url}config", timeout=30).text
    info = httpx.get(f"{server.url}gradio_api/info", timeout=30).text
    for text in (page, info):
        assert "study_results" not in text and "Results" not in text and CONFIG.name not in text
        assert "results-password" not in text
    assert CONFIG.name not in httpx.get(f"{server.url}results/config", timeout=30).text  # the name after the password
    event, data = server.raw("study_results", PASSWORD, False, 0.6, path="results/")
    assert event == "complete"
    text = re.sub(r"base64,[A-Za-z0-9+/=]+", "base64,", data)  # a payload can hold "/tmp" by chance (CI, 2026-12-07)
    assert "base64,iVBOR" in data and "gradio_api/file" not in text and '"url"' not in text and "/tmp" not in text


def test_study_mode_serves_the_labelled_compare_tab_only_when_asked(server: Server) -> None:
    import app as app_module

    app = app_module.build_app(server.ctx, server.runtime, None, compare=False)
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
    question, maps, _answer, _status = client.predict(handle_file(str(path)), "demo", "gradcam", "cbam", "baseline",
                                                      api_name="/free_vote_show")
    server.assert_blinded([question, maps])
    map_a, map_b = pngs(maps)
    assert len(map_a) == len(map_b) and map_a != map_b
    assert question.startswith("### Which map better covers the")
    uploaded = httpx.post(f"{server.url}gradio_api/upload", files={"files": path.open("rb")}, timeout=30).json()[0]
    upload = {"path": uploaded, "meta": {"_type": "gradio.FileData"}}
    event, data = server.raw("free_vote_show", upload, "demo", "gradcam", None, None)  # no models chosen: the default two
    assert event == "complete" and json.loads(data)[0] is None  # the server-side state never leaves the server
    server.assert_blinded(data)
    voter, status = client.predict("my-own-id", "A", 800, api_name="/free_vote")  # a made-up id is not used
    assert "recorded" in status and re.fullmatch(r"[0-9a-f]{32}\.[0-9a-f]{32}", voter)
    assert "already" in client.predict(voter, "A", 800, api_name="/free_vote")[1]
    with pytest.raises(AppError, match="replay"):
        client.predict(voter, "B", 800, api_name="/free_vote")
    with pytest.raises(AppError, match="show the blinded maps first"):
        server.client().predict(voter, "A", 800, api_name="/free_vote")
    with pytest.raises(AppError, match="se is not in the list of choices"):  # Gradio checks the slider's choices
        client.predict(handle_file(str(path)), "demo", "gradcam", "se", "cbam", api_name="/free_vote_show")
    votes = server.store.free_votes("demo")
    assert len(votes) == 1
    vote = votes[0]
    assert {vote.shown_as_a, vote.shown_as_b} == set(MODELS)
    assert vote.image_sha256 == image_sha256(open_image(path)) and vote.stimulus_id == "upload:" + vote.image_sha256
    assert vote.shown_as_a in MODELS and vote.response_ms == 800 and vote.participant_id == participant_of(voter)


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
                 "--models-dir", str(models_dir), "--target", "0.7"]) == 0
    out = capsys.readouterr().out
    assert "Agrees with the objective score" in out and "Prefers CBAM" in out
    # the Results tab's report, with its tables
    assert "Bradley-Terry ranking" in out and "To detect a 70% preference" in out and "### Per participant" in out
    assert out.count("Position bias") == 1
    with pytest.raises(SystemExit):
        main(["study", "summary", "--db", db, "--study", CONFIG.name, "--target", "0.4"])
    assert "must be a number between 0.5 and 1" in capsys.readouterr().err


def test_upload_images_are_stored_only_when_the_owner_enables_it(models_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    from cbam_viz.data import render_sample
    from cbam_viz.study.credentials import Credentials
    from cbam_viz.study.free import FreeVotes

    ctx = AppContext(sets=["demo"], models_dir=models_dir, device="cpu")
    store = open_store(None, tmp_path / "data")
    image = render_sample(77, 3).image
    credentials = Credentials(lambda: "a secret", "free-vote")
    try:
        hidden = FreeVotes(ctx, store, credentials)
        trial = hidden.prepare(image, "demo", "gradcam")
        assert trial.image is None
        hidden.vote(trial, "voter-one", "A", 500)
        kept = FreeVotes(ctx, store, credentials, upload_dir=tmp_path / "uploads")
        kept.vote(kept.prepare(image, "demo", "gradcam"), "voter-two", "B", 700)
    finally:
        store.close()
    stored = list((tmp_path / "uploads").iterdir())
    assert [p.name for p in stored] == [f"{image_sha256(image)}.png"]
    assert image_sha256(Image.open(stored[0])) == image_sha256(image)
    assert not any(p.suffix == ".png" for p in (tmp_path / "data").rglob("*"))


def test_the_blind_vote_shows_the_two_models_chosen_on_the_slider(tmp_path: Path) -> None:
    """A set of three models: the vote shows (and stores) the two chosen, each map drawn by the model it
    is stored as; without a choice (or the same model twice) the baseline and CBAM."""
    from study_ui_fixtures import write_demo_models

    from cbam_viz.data import render_sample
    from cbam_viz.render import overlay
    from cbam_viz.service import display_image
    from cbam_viz.study.credentials import Credentials
    from cbam_viz.study.free import FreeVotes
    from cbam_viz.study.records import VoteRejected
    from cbam_viz.study.stimuli import display_pixels, encode_png

    models_dir = write_demo_models(tmp_path / "models", roles=("baseline", "se", "cbam"))
    ctx = AppContext(sets=["demo"], models_dir=models_dir, device="cpu")
    store = open_store(None, tmp_path / "data")
    image = render_sample(55, 2).image
    try:
        votes = FreeVotes(ctx, store, Credentials(lambda: "a secret", "free-vote"))
        trial = votes.prepare(image, "demo", "gradcam", ("se", "cbam"))
        assert {trial.shown_as_a, trial.shown_as_b} == {"se", "cbam"}
        loaded = ctx.model_set("demo")
        target = loaded.class_names.index(trial.target_class)
        result = ctx.explain("demo", image, "gradcam", target)
        big = display_pixels(display_image(loaded, image))
        drawn = {m: encode_png(overlay(big, result[m].cam), fixed_size=True) for m in ("baseline", "se", "cbam")}
        assert len(set(drawn.values())) == 3  # three different maps
        assert (trial.map_a, trial.map_b) == (drawn[trial.shown_as_a], drawn[trial.shown_as_b])
        recorded, _ = votes.vote(trial, "", "B", 600)
        stored = store.free_votes("demo")[0]
        assert (stored.shown_as_a, stored.shown_as_b, stored.chosen_model) == (
            trial.shown_as_a, trial.shown_as_b, trial.shown_as_b)
        assert stored.pred_b == loaded.class_names[int(result[trial.shown_as_b].prediction)]
        assert stored.checksum_a == loaded.entries[trial.shown_as_a]["sha256"]
        for chosen in (None, ("se", "se"), ("cbam", None)):
            default = votes.prepare(image, "demo", "gradcam", chosen)
            assert {default.shown_as_a, default.shown_as_b} == {"baseline", "cbam"}
        with pytest.raises(VoteRejected, match="unknown model 'resnet' for the blind vote"):
            votes.prepare(image, "demo", "gradcam", ("resnet", "cbam"))
    finally:
        store.close()


def _png_layout(png: bytes) -> list[tuple[bytes, int]]:
    """The PNG's chunk types and lengths: everything about the file except the pixel bytes."""
    layout, offset = [], 8
    while offset < len(png):
        length, kind = struct.unpack(">I4s", png[offset:offset + 8])
        layout.append((kind, length))
        offset += 12 + length
    return layout


def _map_features(server: Server, ref: object) -> dict[str, object]:
    """What a participant can observe about one map apart from its pixels: for a file URL every
    response header and the URL; for an inline image its length and its PNG chunk layout."""
    if isinstance(ref, dict):  # a file served by URL
        url = ref.get("url") or f"{server.url}gradio_api/file={ref['path']}"
        response = httpx.get(url, timeout=30)
        headers = {k.lower(): v for k, v in response.headers.items() if k.lower() != "date"}
        return {"url": url, **headers, "bytes": len(response.content)}
    return {"bytes": len(ref), "layout": _png_layout(ref)}


def _image_refs(payload: list) -> list[object]:
    """Image, map A and map B of a trial payload, whatever their form: file objects or inline PNGs."""
    refs: list[object] = []
    for value in payload:
        if isinstance(value, dict) and ("url" in value or "path" in value):
            refs.append(value)
        elif isinstance(value, str):
            refs += pngs(value)
    return refs


def test_a_hostile_participant_cannot_tell_the_models_apart(server: Server) -> None:
    """Acts as a participant over raw HTTP only: for every trial of ten participants, collects what
    can be observed about maps A and B other than their pixels (URL, ETag, Last-Modified,
    Content-Length and every other header for files; length and PNG structure for inline images)
    and tries every rule "CBAM is the map whose feature F is larger / smaller". No rule may beat a
    coin (exact binomial test), and in fact no feature may differ at all between A and B."""
    from scipy.stats import binomtest

    observations = []  # (features of A, features of B, model shown as A)
    for _ in range(10):
        event, data = server.raw("study_start", "", "prefer not to say", False, "")
        assert event == "complete"
        payload = json.loads(data)
        credential, view = payload[0], payload[1:]
        trials = {t.position: t for t in server.store.trials(CONFIG.name, participant_of(credential) or credential)}
        while True:
            position = next((v for v in view if isinstance(v, int) and not isinstance(v, bool)), None)
            if position is None:
                break
            _image, ref_a, ref_b = _image_refs(view)
            observations.append((_map_features(server, ref_a), _map_features(server, ref_b),
                                 trials[position].model_a))
            event, data = server.raw("study_vote", credential, position, "A", 600)
            assert event == "complete", data
            view = json.loads(data)
    assert len(observations) >= 40
    keys = sorted({k for a, b, _ in observations for k in (*a, *b)})
    for key in keys:
        for larger in (True, False):
            hits = decided = 0
            for a, b, model_a in observations:
                if a.get(key) == b.get(key):
                    continue  # the rule cannot decide
                a_first = str(a.get(key)) > str(b.get(key)) if not isinstance(a.get(key), int) else a[key] > b[key]
                guess_a_is_cbam = a_first if larger else not a_first
                decided += 1
                hits += guess_a_is_cbam == (model_a == CBAM)
            if decided:
                p = binomtest(hits, decided, 0.5).pvalue
                assert p >= 0.05, f"rule on {key!r} ({'larger' if larger else 'smaller'} = CBAM): {hits}/{decided}, p={p:.2g}"
    differing = sorted({k for a, b, _ in observations for k in keys if a.get(k) != b.get(k)})
    assert differing == [], f"maps A and B differ in {differing}"


def test_an_id_alone_cannot_vote_as_another_participant(server: Server, participant) -> None:
    client, credential, pos = participant
    victim = participant_of(credential)
    before = server.store.row_counts()
    for forged in (victim, f"{victim}.{'0' * 32}", credential[:-1] + ("0" if credential[-1] != "0" else "1")):
        with pytest.raises(AppError, match="unknown participant"):
            client.predict(forged, pos, "A", 10, api_name="/study_vote")
        assert resume(client, forged)[POSITION] is None  # the start screen, not the victim's trial
        started = client.predict(forged, "prefer not to say", api_name="/study_start")
        assert participant_of(started[0]) != victim  # a new participant, never the victim
    assert server.store.row_counts()["votes"] == before["votes"]


def test_the_results_handler_has_exactly_one_endpoint(server: Server) -> None:
    info = httpx.get(f"{server.url}results/gradio_api/info", timeout=30).json()
    assert [n for n in info["named_endpoints"] if "result" in n] == ["/study_results"]
    for base in (server.url, f"{server.url}results/"):
        for name in ("results", "results_1", "study_results_1") + (("study_results",) if base == server.url else ()):
            response = httpx.post(f"{base}gradio_api/call/{name}", json={"data": [PASSWORD, False]}, timeout=30)
            assert response.status_code >= 400 or "error" in httpx.get(
                f"{base}gradio_api/call/{name}/{response.json()['event_id']}", timeout=30).text


def _serve(ctx: AppContext, store, config: StudyConfig, **launch: object):
    """A second app on `store` (its own port), for the limit tests: (app, url)."""
    import app as app_module

    app = app_module.build_app(ctx, build_runtime(ctx, store, config, warm=False), PASSWORD, compare=False,
                               joins_per_hour=3)
    port = free_port()
    app_module.launch(app, "127.0.0.1", port, prevent_thread_lock=True, quiet=True, **launch)
    return app, f"http://127.0.0.1:{port}/"


def _call(url: str, api_name: str, *data: object, forwarded: str | None = None) -> tuple[str, str]:
    headers = {"X-Forwarded-For": forwarded} if forwarded else None
    base = f"{url}gradio_api/call/{api_name}"
    event_id = httpx.post(base, json={"data": list(data)}, headers=headers, timeout=60).json()["event_id"]
    text = httpx.get(f"{base}/{event_id}", headers=headers, timeout=60).text
    return re.findall(r"event: (\w+)\ndata: (.*)", text)[-1]


def test_join_limits_ignore_forwarded_headers_cost_nothing_when_refused_and_survive_a_restart(
        models_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    from cbam_viz.ui.clients import trust_proxies

    ctx = AppContext(sets=["demo"], models_dir=models_dir, device="cpu")
    config = StudyConfig(name="limits", pair="demo", stimuli=DemoStimuli(seed=11, count=8), trials_per_participant=4,
                         consent="You agree.")
    store = open_store(None, tmp_path / "data")
    app, url = _serve(ctx, store, config)
    try:
        for _ in range(10):  # refused joins (no consent) use up nothing
            event, data = _call(url, "study_start", "", NO_EXPERTISE, False, "")
            assert event == "error" and "accept it to take part" in data
        joined = [json.loads(_call(url, "study_start", "", NO_EXPERTISE, True, "")[1])[0] for _ in range(3)]
        assert len(store.participants("limits")) == 3
        for forged in (None, "10.1.2.3", "10.1.2.4, 10.9.9.9"):  # X-Forwarded-For from 127.0.0.1: not trusted
            event, data = _call(url, "study_start", "", NO_EXPERTISE, True, "", forwarded=forged)
            assert event == "error" and "Too many new participants" in data
        assert len(store.participants("limits")) == 3
        assert json.loads(_call(url, "study_start", joined[0], NO_EXPERTISE, True, "")[1])[0] == joined[0]  # a known one
    finally:
        app.close()
    restarted, url = _serve(ctx, store, config)  # a restart (or another process on the same database)
    try:
        event, data = _call(url, "study_start", "", NO_EXPERTISE, True, "")
        assert event == "error" and "Too many new participants" in data
    finally:
        restarted.close()
    trusted, url = _serve(ctx, store, config, trusted_proxies=["127.0.0.1"])  # behind a named proxy
    try:
        event, _ = _call(url, "study_start", "", NO_EXPERTISE, True, "", forwarded="203.0.113.7")
        assert event == "complete"  # another client of the proxy has its own quota
        event, data = _call(url, "study_start", "", NO_EXPERTISE, True, "")
        assert event == "error" and "Too many new participants" in data  # the proxy itself is still 127.0.0.1
    finally:
        trusted.close()
        trust_proxies(())
        store.close()


def test_wrong_passwords_back_off_per_address_and_never_lock_out_another(models_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    import time

    from cbam_viz.ui.clients import trust_proxies

    ctx = AppContext(sets=["demo"], models_dir=models_dir, device="cpu")
    store = open_store(None, tmp_path / "data")
    app, url = _serve(ctx, store, CONFIG)
    results = f"{url}results/"
    try:
        for _ in range(5):
            event, data = _call(results, "study_results", "guess", False, 0.6)
            assert event == "error" and "Wrong admin password" in data and "Try again" not in data
        event, data = _call(results, "study_results", "guess", False, 0.6)  # the 6th: locked for 2 s
        assert event == "error" and "Try again in 2 s" in data
        started = time.perf_counter()
        for password, forged in (("guess", None), (PASSWORD, None), (PASSWORD, "198.51.100.1")):
            event, data = _call(results, "study_results", password, False, 0.6, forwarded=forged)
            assert event == "error" and "Too many wrong passwords" in data  # the forged header changes nothing
        assert time.perf_counter() - started < 30  # refused, not slept on (generous: a loaded machine)
    finally:
        app.close()
    trusted, url = _serve(ctx, store, CONFIG, trusted_proxies=["127.0.0.0/8"])
    results = f"{url}results/"
    try:  # behind a trusted proxy (and after a restart): the locked address stays locked, any other gets in
        failures, until = store.lockout("password:api-test", "127.0.0.1")
        assert failures == 6  # kept in the database
        time.sleep(max(0.0, until - time.time()))
        event, data = _call(results, "study_results", "guess", False, 0.6)  # the 7th: 4 s
        assert event == "error" and "Try again in 4 s" in data
        event, data = _call(results, "study_results", PASSWORD, False, 0.6)
        assert event == "error" and "Too many wrong passwords" in data
        event, data = _call(results, "study_results", PASSWORD, False, 0.6, forwarded="203.0.113.9")
        assert event == "complete" and "Study" in data
        time.sleep(max(0.0, store.lockout("password:api-test", "127.0.0.1")[1] - time.time()))
        assert _call(results, "study_results", PASSWORD, False, 0.6)[0] == "complete"  # clears the address
        assert store.lockout("password:api-test", "127.0.0.1") == (0, 0.0)
    finally:
        trusted.close()
        trust_proxies(())
        store.close()


def test_a_study_without_compare_has_no_upload_route_or_api_footer(models_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    ctx = AppContext(sets=["demo"], models_dir=models_dir, device="cpu")
    store = open_store(None, tmp_path / "data")
    app, url = _serve(ctx, store, CONFIG)
    try:
        assert httpx.get(f"{url}config", timeout=30).json()["footer_links"] == []
        for base in (url, f"{url}results/"):
            assert httpx.post(f"{base}gradio_api/upload", files={"files": ("x.txt", b"x")}, timeout=30).status_code == 404
    finally:
        app.close()
        store.close()


def test_the_study_page_does_not_state_the_hypothesis(server: Server) -> None:
    import app as app_module

    config = json.dumps(app_module.build_app(server.ctx, server.runtime, None, compare=False).get_config_file(),
                        default=str).lower()
    assert "what does cbam" not in config and "cbam twin" not in config and "heat-map study" in config


def test_admin_password_comes_from_a_file_or_the_environment(tmp_path: Path, monkeypatch) -> None:
    import app as app_module

    monkeypatch.delenv("CBAM_VIZ_ADMIN_PASSWORD", raising=False)
    assert app_module.admin_password(app_module.parse_args([])) is None
    monkeypatch.setenv("CBAM_VIZ_ADMIN_PASSWORD", "from-env")
    assert app_module.admin_password(app_module.parse_args([])) == "from-env"
    secret = tmp_path / "pw.txt"
    secret.write_text("from-file\n")
    assert app_module.admin_password(app_module.parse_args(["--admin-password-file", str(secret)])) == "from-file"
    with pytest.raises(SystemExit, match="cannot read"):
        app_module.admin_password(app_module.parse_args(["--admin-password-file", str(tmp_path / "none")]))
    with pytest.raises(SystemExit):  # the password is never a command-line value
        app_module.parse_args(["--admin-password", "x"])


def test_participants_never_see_internal_error_text(server: Server, participant, monkeypatch) -> None:
    client, credential, pos = participant

    def broken(*_args, **_kwargs):
        raise RuntimeError("internal detail /srv/secret/path.db")

    monkeypatch.setattr(server.runtime.session, "vote", broken)
    with pytest.raises(AppError) as caught:
        client.predict(credential, pos, "A", 10, api_name="/study_vote")
    assert "internal detail" not in str(caught.value) and "/srv/secret" not in str(caught.value)
    event, data = server.raw("study_vote", credential, pos, "A", 10)
    assert event == "error" and "internal detail" not in data and "secret" not in data


def test_user_text_in_error_messages_is_escaped(server: Server, participant) -> None:
    client, credential, pos = participant
    event, data = server.raw("study_vote", credential, pos, "<img src=x onerror=alert(1)>", 10)
    assert event == "error" and "<img" not in data
