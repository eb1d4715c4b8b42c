"""A crowdsourced study attacked over raw HTTP (/gradio_api/call, as any script can): a platform id alone
(e.g. a Prolific ID, which others may know) must never give access to a participant. The participant is the
server-issued credential; an arrival with a known platform id but without its credential gets a message
only, and the conflict is on record for the owner (Results tables and exports)."""
from __future__ import annotations

import base64
import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from app_fixtures import models_dir  # noqa: F401  (fixture)
from study_ui_fixtures import serve_study

from cbam_viz.study import DemoStimuli, Recruitment, StudyConfig
from cbam_viz.study.session import CONFLICT_MESSAGE, NO_EXPERTISE

PASSWORD = "owner-pw-42"
CODE = "CODE-Z9Q"
VICTIM = "?PROLIFIC_PID=5f0victim0001&STUDY_ID=s1&SESSION_ID=v1"
CONFIG = StudyConfig(
    name="identity", pair="demo", stimuli=DemoStimuli(seed=31, count=8), trials_per_participant=3,
    consent="### Consent\nYou agree.", practice_trials=1, catch_trials=1,
    recruitment=Recruitment(params=("PROLIFIC_PID", "STUDY_ID", "SESSION_ID"), completion_code=CODE,
                            completion_url="https://example.org/done?cc={code}", redirect=True))
# study_start / study_resume return the credential, then the view: progress, question, maps, position, status
CREDENTIAL, PROGRESS, QUESTION, MAPS, POSITION, STATUS = range(6)


@pytest.fixture(scope="module")
def served(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object]]:  # noqa: F811
    with serve_study(models_dir, tmp_path_factory.mktemp("data"), CONFIG, PASSWORD, compare=False) as served_study:
        yield served_study


def call(url: str, api_name: str, *data: object) -> tuple[str, str]:
    """(event, data) of one raw call, exactly as any client gets it."""
    base = f"{url}gradio_api/call/{api_name}"
    event_id = httpx.post(base, json={"data": list(data)}, timeout=60).json()["event_id"]
    return re.findall(r"event: (\w+)\ndata: (.*)", httpx.get(f"{base}/{event_id}", timeout=60).text)[-1]


def start(url: str, link: str, consent: bool = True, credential: str = "") -> list:
    event, data = call(url, "study_start", credential, NO_EXPERTISE, consent, link)
    assert event == "complete", data
    return json.loads(data)


def answer(url: str, credential: str, view: list, store, count: int) -> list:
    """Answer `count` trials from `view` (catch trials on the object), returning the next view."""
    pid = credential.rpartition(".")[0]
    trials = {t.position: t for t in store.trials(CONFIG.name, pid)}
    for _ in range(count):
        trial = trials[view[POSITION]]
        choice = ("A" if trial.model_a == "object" else "B") if trial.kind == "catch" else "A"
        event, data = call(url, "study_vote", credential, trial.position, choice, 900)
        assert event == "complete", data
        view = [credential, *json.loads(data)]
    return view


def assert_nothing_given(data: str, credential: str) -> None:
    payload = json.loads(data)
    assert credential not in data and credential.rpartition(".")[0] not in data
    assert payload[POSITION] is None and payload[MAPS] == "" and CODE not in data and "example.org" not in data
    assert CONFLICT_MESSAGE.split(".")[0] in data


def test_a_platform_id_alone_never_takes_over_a_participant(served) -> None:
    url, store = served
    first = start(url, VICTIM)
    victim = first[CREDENTIAL]
    view = answer(url, victim, first, store, 3)  # the practice trial and two trials
    answered = {v.position: v.answer for v in store.votes(CONFIG.name)}
    assert len(answered) == 2
    before = store.row_counts()
    stranger = "?PROLIFIC_PID=5f0victim0001"
    # resume and start with the victim's platform id: no credential, trial, answers or code; consent or not
    event, data = call(url, "study_resume", "", stranger)
    assert event == "complete"
    assert_nothing_given(data, victim)
    for consent in (False, True):
        event, data = call(url, "study_start", "", NO_EXPERTISE, consent, stranger)
        assert event == "complete"
        assert_nothing_given(data, victim)
    # a stranger with a credential of their own (another participant) gets the same
    own = start(url, "?PROLIFIC_PID=5f0stranger02")[CREDENTIAL]
    event, data = call(url, "study_resume", own, stranger)
    assert_nothing_given(data, victim)
    assert store.row_counts()["votes"] == before["votes"]
    # the victim's own browser goes on; a different answer to an answered trial never reveals the stored one
    assert json.loads(call(url, "study_resume", victim, VICTIM)[1])[POSITION] == view[POSITION]
    answered_position = next(iter(answered))
    others = [a for a in ("A", "B", "same", "neither") if a != answered[answered_position]]  # a catch trial may hold "B"
    assert len(others) == 3
    for other in others:
        event, data = call(url, "study_vote", victim, answered_position, other, 900)
        assert event == "error" and "refused as a replay" in data
        assert f"'{answered[answered_position]}'" not in data and f"\"{answered[answered_position]}\"" not in data
    done = answer(url, victim, view, store, 2)
    assert CODE in done[STATUS] and done[POSITION] is None
    # the owner sees the conflict: both arrivals, by platform id, in the tables and the exports
    conflicts = {(c.platform_key, c.other_id): c.arrivals for c in store.conflicts(CONFIG.name)}
    own_pid = own.rpartition(".")[0]
    assert conflicts == {("5f0victim0001", ""): 3, ("5f0victim0001", own_pid): 1}
    results = call(f"{url}results/", "study_results", PASSWORD, False, 0.6)
    assert results[0] == "complete"
    summary, *_, participants, _free, files = json.loads(results[1])
    assert "Platform id conflicts" in summary and "5f0victim0001" in summary
    flagged = {row[1]: row[-1] for row in participants["data"]}  # PROLIFIC_PID -> conflict column
    assert "3 arrival(s) with this platform id without a credential" in flagged["5f0victim0001"]
    assert "arrived with the platform id of" in flagged["5f0stranger02"]
    downloads = {name: base64.b64decode(data) for data, name in
                 re.findall(r'href="data:[\w/+-]+;base64,([A-Za-z0-9+/=]+)">([^<]+)</a>', files)}
    review = {row["PROLIFIC_PID"]: row for row in csv.DictReader(io.StringIO(downloads["identity-platform-review.csv"].decode()))}
    assert review["5f0victim0001"]["review"].startswith("platform id conflict")
    assert review["5f0stranger02"]["review"].startswith("platform id conflict")
    conflict_rows = list(csv.DictReader(io.StringIO(downloads["identity-conflicts.csv"].decode())))
    assert {(r["platform id"], r["arrivals"]) for r in conflict_rows} == {("5f0victim0001", "3"), ("5f0victim0001", "1")}


def test_joining_first_under_someone_elses_id_captures_no_one(served) -> None:
    url, store = served
    target = "?PROLIFIC_PID=5f0target0003&STUDY_ID=s1&SESSION_ID=t1"
    squatter = start(url, target)[CREDENTIAL]  # someone who knows the target's id joins first
    event, data = call(url, "study_resume", "", target)  # the real owner of the id arrives
    assert_nothing_given(data, squatter)
    event, data = call(url, "study_start", "", NO_EXPERTISE, True, target)
    assert_nothing_given(data, squatter)
    assert len([p for p in store.participants(CONFIG.name) if p.platform_ids.get("PROLIFIC_PID") == "5f0target0003"]) == 1
    assert {c.participant_id for c in store.conflicts(CONFIG.name) if c.platform_key == "5f0target0003"} == {
        squatter.rpartition(".")[0]}  # the squatter's participant is flagged for the owner to review


def test_a_refused_join_gives_no_credential(served) -> None:
    url, store = served
    before = store.row_counts()
    event, data = call(url, "study_start", "", NO_EXPERTISE, False, "?PROLIFIC_PID=5f0newcomer04")
    assert event == "error" and "accept it to take part" in data and re.search(r"[0-9a-f]{32}\.[0-9a-f]{32}", data) is None
    assert store.row_counts() == before
