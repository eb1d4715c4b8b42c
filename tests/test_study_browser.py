"""A short study in a real browser: a participant completes it (with a reload half-way, which must
resume), then the owner reads the results. Playwright's Python package driving Debian's Chromium;
never `playwright install`: without the `chromium` binary on PATH the test FAILS."""
from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from app_fixtures import free_port, models_dir  # noqa: F401  (fixture)
from browser_support import chromium_page
from playwright.sync_api import Page, expect
from study_ui_fixtures import serve_study

from cbam_viz.study import DemoStimuli, StudyConfig, open_store
from cbam_viz.study.runtime import build_runtime
from cbam_viz.service import AppContext
from cbam_viz.ui.study import CLOCK_JS, figures, with_rt

pytestmark = pytest.mark.browser
TIMEOUT_MS = 30_000  # a shared 2-core machine can be slow
PASSWORD = "owner-pw"
CONFIG = StudyConfig(name="browser-study", pair="demo", stimuli=DemoStimuli(seed=21, count=6),
                     trials_per_participant=3, collect_expertise=True)


@pytest.fixture(scope="module")
def served(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object]]:  # noqa: F811
    with serve_study(models_dir, tmp_path_factory.mktemp("data"), CONFIG, PASSWORD) as served_study:
        yield served_study


@pytest.fixture(scope="module")
def page(served) -> Iterator[Page]:
    with chromium_page(1300, 1000, TIMEOUT_MS) as page:
        yield page


def open_tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def expect_trial(page: Page, number: int) -> None:
    expect(page.locator("#study-progress")).to_contain_text(f"Trial {number} of 3")
    for selector in ("#study-image", "#study-map-a", "#study-map-b"):
        expect(page.locator(f"{selector} img").first).to_be_visible()
        page.wait_for_function("s => document.querySelector(s)?.naturalWidth > 0", arg=f"{selector} img")


LOOK_MS = 1000
# The clock starts in the frame after the trial's images are decoded, which on a loaded machine can come a little
# after the test already sees them (their size is known before they are decoded): a pause is measured at least
# this much short.
FRAME_SLACK_MS = 250


def answer(page: Page, label: str) -> None:
    page.locator("#study-answer").get_by_text(label, exact=True).click()
    page.wait_for_timeout(LOOK_MS)  # a participant looks before clicking: a measurable response time
    page.locator("#study-submit").click()


def test_participant_completes_a_study_then_the_owner_reads_the_results(page: Page, served) -> None:
    url, store = served
    page.goto(url)
    open_tab(page, "Study")
    expect(page.locator("#study-trial")).to_be_hidden()
    page.get_by_role("combobox", name="Your experience with computer vision (optional)").click()
    page.get_by_role("option", name="some ML experience", exact=True).click()
    page.locator("#study-start-button").click()
    expect_trial(page, 1)
    expect(page.locator("#study-question")).to_contain_text("Which map better covers the")
    answer(page, "A")
    expect_trial(page, 2)

    page.reload()  # the id lives in the browser: the study resumes where it was left
    open_tab(page, "Study")
    expect_trial(page, 2)
    expect(page.locator("#study-start")).to_be_hidden()
    answer(page, "about the same")
    expect_trial(page, 3)
    page.keyboard.press("b")  # keyboard answers: B, then Enter submits
    expect(page.locator("#study-answer input[value='B']")).to_be_checked()
    page.wait_for_timeout(300)
    page.keyboard.press("Enter")
    expect(page.locator("#study-status")).to_contain_text("All trials done")
    expect(page.locator("#study-trial")).to_be_hidden()

    votes = store.votes(CONFIG.name)
    assert [v.answer for v in votes] == ["A", "same", "B"]
    assert len({v.participant_id for v in votes}) == 1 and votes[0].expertise == "some ML experience"
    times = [v.response_ms for v in votes]  # measured in the browser: includes the pause before each submit
    assert all(t is not None and 300 - FRAME_SLACK_MS <= t < 60_000 for t in times), times  # 300 ms before the keyboard's

    expect(page.get_by_role("tab", name="Results")).to_have_count(0)  # the owner's page is elsewhere
    read_results(page, url, "3 votes from 1 participant ")


def read_results(page: Page, url: str, votes: str) -> None:
    """The owner opens /results, types a wrong password, then the right one, and reads the summary."""
    page.goto(url + "results")
    page.locator("#results-password input").fill("wrong")
    page.locator("#results-show").click()
    expect(page.get_by_text("Wrong admin password.").first).to_be_visible()
    expect(page.locator("#results-summary")).not_to_contain_text("votes from")
    page.locator("#results-password input").fill(PASSWORD)
    page.locator("#results-show").click()
    summary = page.locator("#results-summary")
    expect(summary).to_contain_text(votes, timeout=TIMEOUT_MS)  # statistics and plots take seconds
    expect(summary).to_contain_text("Prefers CBAM")
    expect(page.locator("#results-plots img").first).to_be_visible()
    expect(page.get_by_role("link", name=re.compile(r"\w-votes\.csv$")).first).to_be_visible()


LINK = "?PROLIFIC_PID=5f1a2b3c4d5e&STUDY_ID=s-42&SESSION_ID=sess-7"


@pytest.fixture(scope="module")
def crowd(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object, StudyConfig]]:  # noqa: F811
    """A crowdsourcing study: consent, one practice trial, one catch trial, a completion URL on this server."""
    import app as app_module

    from cbam_viz.study import Recruitment

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    config = StudyConfig(
        name="crowd-browser", pair="demo", stimuli=DemoStimuli(seed=22, count=8), trials_per_participant=3,
        consent="### Consent\nYour answers are stored with your platform id.", practice_trials=1, catch_trials=1,
        recruitment=Recruitment(params=("PROLIFIC_PID", "STUDY_ID", "SESSION_ID"), completion_code="CODE-7Q2",
                                completion_url=url + "?done={code}", redirect=True))
    ctx = AppContext(sets=["demo"], models_dir=models_dir, device="cpu")
    store = open_store(None, tmp_path_factory.mktemp("crowd-data"))
    runtime = build_runtime(ctx, store, config)
    app = app_module.build_app(ctx, runtime, PASSWORD, compare=False)
    app_module.launch(app, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    assert runtime.cache.ready.wait(120)
    try:
        yield url, store, config
    finally:
        app.close()
        store.close()


def new_page(browser_page: Page) -> Page:
    """A page in a fresh context (no storage) of the module's browser (one Playwright per thread)."""
    page = browser_page.context.browser.new_context(viewport={"width": 1300, "height": 1000}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


def test_a_platform_link_walks_consent_practice_trials_and_ends_with_the_completion_code(page: Page, crowd) -> None:
    url, store, config = crowd
    first = new_page(page)
    first.goto(url + LINK)
    expect(first.locator("#study-consent")).to_contain_text("Your answers are stored with your platform id")
    first.locator("#study-start-button").click()  # without accepting: refused by the server
    expect(first.get_by_text("accept it to take part").first).to_be_visible()
    assert store.participants(config.name) == []
    first.get_by_label("I have read the above and agree to take part").check()
    first.locator("#study-start-button").click()
    expect(first.locator("#study-progress")).to_contain_text("Practice trial 1 of 1 (not recorded)")
    answer(first, "A")
    expect(first.locator("#study-progress")).to_contain_text("Trial 1 of 4")  # 3 trials + 1 catch trial
    answer(first, "B")
    expect(first.locator("#study-progress")).to_contain_text("Trial 2 of 4")
    (joined,) = store.participants(config.name)
    assert joined.platform_ids == {"PROLIFIC_PID": "5f1a2b3c4d5e", "STUDY_ID": "s-42", "SESSION_ID": "sess-7"}

    # the same link in a fresh browser (nothing in its storage): a message only, no trial, no code
    fresh = new_page(page)
    fresh.goto(url + LINK)
    expect(fresh.locator("#study-status")).to_contain_text("already been used to start the study in another browser")
    expect(fresh.locator("#study-start")).to_be_hidden()
    expect(fresh.locator("#study-trial")).to_be_hidden()
    fresh.close()
    first.reload()  # the first browser goes on where it was
    for trial in (2, 3, 4):  # each answer once its trial is shown (an earlier click would race the previous vote)
        expect(first.locator("#study-progress")).to_contain_text(f"Trial {trial} of 4", timeout=TIMEOUT_MS)
        answer(first, "A")
    status = first.locator("#study-status")
    expect(status).to_contain_text("All trials done", timeout=TIMEOUT_MS)
    expect(status).to_contain_text("Your completion code: CODE-7Q2")
    expect(first.get_by_role("link", name="Return to the study platform")).to_have_attribute(
        "href", url + "?done=CODE-7Q2")
    first.wait_for_url(re.compile(r"\?done=CODE-7Q2$"))  # redirected after a few seconds
    votes = store.votes(config.name)
    assert len(store.participants(config.name)) == 1
    assert sorted(v.kind for v in votes) == ["catch", "trial", "trial", "trial"]  # the practice answer is no vote
    assert all(v.response_ms is not None and v.response_ms >= LOOK_MS - FRAME_SLACK_MS for v in votes)
    assert all(v.server_ms is not None and v.server_ms >= 250 for v in votes)
    (conflict,) = store.conflicts(config.name)  # the fresh browser, on record (each of its requests counted)
    assert conflict.participant_id == joined.participant_id and conflict.other_id == "" and conflict.arrivals >= 1
    first.close()


def test_the_owner_pilots_the_study_then_opens_results_in_the_same_browser(page: Page, crowd) -> None:
    """Piloting ends with the redirect (once), reopening the page shows the end screen without redirecting,
    "start over" begins a new participant, and /results is reachable from the same browser throughout."""
    url, store, config = crowd
    owner = new_page(page)
    owner.goto(url)
    owner.get_by_label("I have read the above and agree to take part").check()
    owner.locator("#study-start-button").click()
    expect(owner.locator("#study-progress")).to_contain_text("Practice trial 1 of 1")
    answer(owner, "A")
    for trial in (1, 2, 3, 4):
        expect(owner.locator("#study-progress")).to_contain_text(f"Trial {trial} of 4", timeout=TIMEOUT_MS)
        answer(owner, "B")
    expect(owner.locator("#study-status")).to_contain_text("Your completion code: CODE-7Q2", timeout=TIMEOUT_MS)
    owner.wait_for_url(re.compile(r"\?done=CODE-7Q2$"))  # the pilot's finishing vote redirects, like a participant's
    owner.goto(url)  # back to the study: the end screen, and no second redirect
    expect(owner.locator("#study-status")).to_contain_text("All trials done")
    owner.wait_for_timeout(4000)  # longer than the redirect delay
    assert owner.url == url
    owner.locator("#study-restart").click()  # a new pilot participant
    expect(owner.locator("#study-start")).to_be_visible()
    expect(owner.locator("#study-status")).not_to_contain_text("All trials done")
    read_results(owner, url, "votes from")  # the owner's page, same browser
    assert len(store.participants(config.name)) >= 2


def test_the_api_enforces_consent_and_practice(crowd) -> None:
    """Not only the page: the HTTP API refuses to start without consent and to take a study vote
    before the practice trial, and the practice answer is never stored as a vote."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    url, store, config = crowd
    client = Client(url, verbose=False, download_files=False, ssl_verify=False)
    before = store.row_counts()
    with pytest.raises(AppError, match="accept it to take part"):
        client.predict("", "prefer not to say", False, "?PROLIFIC_PID=other1", api_name="/study_start")
    assert store.row_counts() == before
    with pytest.raises(AppError, match="start the study first"):
        client.predict("", 0, "A", 900, api_name="/study_vote")
    started = client.predict("", "prefer not to say", True, "?PROLIFIC_PID=other1", api_name="/study_start")
    credential, progress, position = started[0], started[1], started[4]
    assert "Practice trial 1 of 1" in progress and position == 0
    pid = credential.rpartition(".")[0]
    assert store.participant(config.name, pid).platform_ids == {"PROLIFIC_PID": "other1"}
    assert "CODE-7Q2" not in json.dumps(started)  # the code only at the end
    with pytest.raises(AppError, match="not the current trial"):
        client.predict(credential, 1, "A", 900, api_name="/study_vote")  # skipping the practice trial
    after_practice = client.predict(credential, 0, "B", 900, api_name="/study_vote")
    assert "Trial 1 of 4" in after_practice[0] and after_practice[3] == 1
    assert [v for v in store.votes(config.name) if v.participant_id == pid] == []  # practice is no vote
    client.predict(credential, 1, "A", 900, api_name="/study_vote")
    assert [v.position for v in store.votes(config.name) if v.participant_id == pid] == [1]


# A slow browser: on each new trial in `container`, the main thread is held for STALL_MS, either in the DOM
# step that shows it ("before": nothing new is painted meanwhile) or once its images are decoded and painted
# ("after": the participant already sees the trial); window.__stall chooses.
STALL_MS = 2000
_STALL = """container => {
  const key = () => document.querySelector(container + " [data-key]")?.dataset.key;
  const hold = () => { const t = performance.now(); while (performance.now() - t < STALL_MS) {} };
  const frame = () => new Promise((done) => requestAnimationFrame(done));
  let seen = key();
  new MutationObserver(() => {
    const now = key();
    if (!now || now === seen) return;
    seen = now;
    if (window.__stall === "before") hold();
    if (window.__stall === "after") {
      const images = [...document.querySelectorAll(container + " img")].map((img) => img.decode().catch(() => null));
      Promise.all(images).then(frame).then(frame).then(() => setTimeout(hold, 0));
    }
  }).observe(document.body, {subtree: true, childList: true, attributes: true});
}""".replace("STALL_MS", str(STALL_MS))


def test_the_response_clock_counts_the_time_a_trial_is_on_screen_and_no_more(page: Page, served) -> None:
    """A page busy before it paints a trial does not count as looking time; a page busy once the trial
    is painted does (the participant sees it), whenever the step after the response runs."""
    url, store = served
    before = {v.participant_id for v in store.votes(CONFIG.name)}
    slow = new_page(page)
    slow.goto(url)
    open_tab(slow, "Study")
    slow.locator("#study-start-button").click()
    expect_trial(slow, 1)
    slow.evaluate(_STALL, "#study-maps")
    slow.evaluate("() => { window.__stall = 'before'; }")
    answer(slow, "A")
    expect_trial(slow, 2)
    slow.evaluate("() => { window.__stall = 'after'; }")
    answer(slow, "B")
    expect_trial(slow, 3)
    answer(slow, "A")
    expect(slow.locator("#study-status")).to_contain_text("All trials done")
    mine = sorted((v for v in store.votes(CONFIG.name) if v.participant_id not in before), key=lambda v: v.position)
    first, held_before_paint, held_after_paint = (v.response_ms for v in mine)
    look = LOOK_MS - FRAME_SLACK_MS
    assert first >= look and look <= held_before_paint < LOOK_MS + STALL_MS, (first, held_before_paint)
    assert held_after_paint >= LOOK_MS + STALL_MS - 50, held_after_paint
    slow.close()


def test_a_blind_vote_on_the_compare_tab_is_timed_from_when_its_maps_are_painted(page: Page, served) -> None:
    url, store = served
    slow = new_page(page)
    slow.goto(url)
    slow.get_by_text("demo: circle", exact=True).click()  # an example from the gallery
    expect(slow.locator("#summary")).to_contain_text("for the ground truth, circle")
    slow.get_by_text("Blind vote: which map covers the object better?").click()
    slow.evaluate(_STALL, "#free-vote-maps")
    slow.evaluate("() => { window.__stall = 'after'; }")
    slow.locator("#free-vote-show").click()
    for selector in ("#free-vote-a", "#free-vote-b"):
        expect(slow.locator(f"{selector} img")).to_be_visible()
    slow.locator("#free-vote-answer").get_by_text("A", exact=True).click()
    slow.wait_for_timeout(LOOK_MS)
    slow.locator("#free-vote-cast").click()
    expect(slow.locator("#free-vote-status")).to_contain_text("Vote recorded")
    (vote,) = store.free_votes("demo")
    assert vote.answer == "A" and vote.response_ms >= STALL_MS + LOOK_MS - 50, vote.response_ms
    slow.close()


def rt(page: Page, clocked: str) -> int | None:
    return page.evaluate(f"({with_rt(0, 1, clocked)})(null)")[0]


def test_a_response_clock_starts_when_new_content_is_visible(page: Page) -> None:
    """Per container: hidden content starts no clock; showing it does (in the frame that paints it); the same
    content again does not restart it; new content does."""
    p = new_page(page)
    p.set_content('<div id="box" style="display:none"><div id="study-maps"></div></div><div id="free-vote-maps"></div>')
    p.evaluate(CLOCK_JS)
    put = "([id, html]) => { document.getElementById(id).innerHTML = html; }"
    painted = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG")
    png = buffer.getvalue()
    first = figures(("a", "Map A", png), key="1")
    assert 'data-key="1"' in first
    p.evaluate(put, ["study-maps", first])
    p.evaluate(put, ["free-vote-maps", first])
    p.evaluate(painted)
    p.wait_for_timeout(300)
    assert rt(p, "study-maps") is None and rt(p, "free-vote-maps") >= 300
    p.evaluate("() => { document.getElementById('box').style.display = 'block'; }")
    p.evaluate(painted)
    p.wait_for_timeout(400)
    assert 400 <= rt(p, "study-maps") < rt(p, "free-vote-maps")
    p.evaluate(put, ["free-vote-maps", first])  # the same maps again: still the same trial
    assert rt(p, "free-vote-maps") >= 700
    p.evaluate(put, ["free-vote-maps", figures(("a", "Map A", png), key="2")])  # a new trial: a new clock
    assert rt(p, "free-vote-maps") < 700
    p.evaluate(put, ["study-maps", ""])  # the end screen: the next participant's first trial has a clock of its own
    p.wait_for_timeout(300)
    p.evaluate(put, ["study-maps", first])
    assert rt(p, "study-maps") < 300
    p.close()
