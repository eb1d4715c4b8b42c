"""The Study tab (blinded A/B trials for participants) and the blinded vote in the Compare tab.

Public API endpoints (all that a participant's browser can call for the study):

- ``study_resume(credential, link)``: the participant's current trial, or the start screen;
  run on page load with the credential kept in the browser (``gr.BrowserState``) and the page
  URL's query (``link``: a recruitment link's platform ids, stored with a new participant). A link
  whose platform id belongs to a participant other than the credential's gets only a message
  (continue in the first browser or contact the researcher), and the conflict is recorded.
- ``study_start(credential, expertise, consent, link)``: join (a new participant must accept the
  consent text when the study has one); returns the credential the server issued (or continues the
  participant of a valid credential); nothing for a refused join.
- ``study_vote(credential, position, answer, response_ms)``: answer the trial at
  ``position``; the server knows which model was "A". Returns the next trial.
- ``free_vote_show(image, pair, method, left, right)`` / ``free_vote(credential, answer, response_ms)``:
  the blinded vote on one's own upload between two models of the set (``left``/``right``: the
  Compare tab's slider models), the sides held in server-side session state.

(Credentials: server-issued ids with a signature, see `cbam_viz.study.credentials`.)
Every trial payload holds the image and the two maps inline, as ``data:`` URIs of PNGs whose
lengths depend only on the image size, plus the target class, the question and the progress (and the
position again as the maps' ``data-key``, for the response clock):
no file, URL, header or timestamp exists per map, and nothing says which model drew which map.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from ..images import ImageError, open_image
from ..models.sets import SetUnavailable
from ..service import AppContext
from ..study.config import DEFAULT_ANSWERS
from ..study.credentials import Credentials
from ..study.free import FreeTrial, FreeVotes
from ..study.limits import Quota
from ..study.runtime import StudyRuntime
from ..study.session import NO_EXPERTISE, StudyView, answer_choices
from ..study.records import StudyError, VoteRejected
from .clients import client_address
from .fairness import COMPUTE, register_cost

# Response time is measured in the browser, from the frame that first paints a trial's maps to the click:
# one clock per container, restarted when content with a new `data-key` (see `figures`) becomes visible
# (seen by a MutationObserver: hidden content starts no clock), then set once its images are decoded, in the
# next animation frame. So neither a page still busy before that frame nor a late step after the response
# (as before 2026-12-07, when the layout step restarted it) shifts it. A key is forgotten when its content
# goes (the end screen), so the next participant in the same window starts a clock of their own.
CLOCKED = ("study-maps", "free-vote-maps")
CLOCK_JS = """() => {
  if (window.__cbamVizClock) return;
  const clock = window.__cbamVizClock = {shown: {}, keys: {}};
  const visible = (node) => node.checkVisibility ? node.checkVisibility() : node.getClientRects().length > 0;
  const painted = (id, key, node) => {
    clock.shown[id] = performance.now();  // until the frame that paints it
    const decoded = [...node.querySelectorAll("img")].map((img) => img.decode().catch(() => null));
    Promise.all(decoded).then(() => requestAnimationFrame(() => {
      if (clock.keys[id] === key) clock.shown[id] = performance.now();
    }));
  };
  const look = () => {
    for (const id of IDS) {
      const node = document.querySelector(`#${id} [data-key]`);
      if (!node) { delete clock.keys[id]; continue; }
      if (node.dataset.key === clock.keys[id] || !visible(node)) continue;
      clock.keys[id] = node.dataset.key;
      painted(id, node.dataset.key, node);
    }
  };
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                     attributeFilter: ["class", "style", "hidden", "open", "data-key"]});
  look();
}""".replace("IDS", json.dumps(list(CLOCKED)))
# After each study response: the start screen, the trial or the end screen by the view's stage; the
# platform's completion URL after a few seconds when the vote that finished the study says so (only
# then: reopening the page later shows the end screen, no redirect).
_LAYOUT = """(stage, redirect) => {
  if (redirect) setTimeout(() => { window.location.href = redirect; }, REDIRECT_MS);
  return [{"__type__": "update", "visible": stage === "start"},
          {"__type__": "update", "visible": stage === "trial"},
          {"__type__": "update", "visible": stage === "done"}];
}"""
REDIRECT_MS = 3000
# The page URL's query (a recruitment link's platform ids) into argument {i}. On page load the browser's
# credential is restored from localStorage after this event's first run: while it is pending, the link
# is held back (an arrival without the credential would be recorded as a conflict).
_WITH_LINK = """(...args) => {
  const pending = !args[0] && localStorage.getItem("STORAGE_KEY") !== null;
  args[{i}] = pending ? "" : window.location.search;
  return args;
}"""
# "Start over as a new participant" (the end screen; for the owner's pilots): forget the credential and
# the link, so the next start joins as a new participant without platform ids.
_RESTART = """() => {
  window.history.replaceState(null, "", window.location.pathname);
  return "";
}"""
_WITH_RT = """(...args) => {
  const t = window.__cbamVizClock?.shown["{id}"];
  args[{i}] = (typeof t === "number") ? Math.round(performance.now() - t) : null;
  return args.slice(0, {n});
}"""
# Keyboard answers on the Study tab: A, B, S (same), N (neither) pick an answer, Enter submits.
_KEYS = """() => {
  if (window.__cbamVizKeys) return;
  window.__cbamVizKeys = true;
  const values = {a: "A", b: "B", s: "same", n: "neither"};
  document.addEventListener("keydown", (event) => {
    const trial = document.querySelector("#study-trial");
    if (!trial || trial.offsetParent === null || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target && (target.tagName === "TEXTAREA" || (target.tagName === "INPUT" && target.type !== "radio"))) return;
    if (event.key === "Enter") {
      document.querySelector("#study-submit")?.click();
      event.preventDefault();
      return;
    }
    const value = values[(event.key || "").toLowerCase()];
    const radio = value && document.querySelector(`#study-answer input[type=radio][value="${value}"]`);
    if (radio) { radio.click(); event.preventDefault(); }
  });
}"""
STUDY_CONCURRENCY = 16  # study handlers only touch the database and in-memory maps
JOINS_PER_HOUR = 60  # new participants per client address and hour


def with_rt(index: int, n_inputs: int, clocked: str) -> str:
    """JS that puts the response time of container ``clocked`` into argument ``index`` (None before
    its first content was shown) and passes the first ``n_inputs`` arguments on."""
    if clocked not in CLOCKED:
        raise ValueError(f"no response clock for {clocked!r}")
    return _WITH_RT.replace("{i}", str(index)).replace("{n}", str(n_inputs)).replace("{id}", clocked)


DEFAULT_INSTRUCTIONS = (
    "### Which heat map covers the object better?\n"
    "Each trial shows an image and two heat maps, **A** and **B**, made by two different models "
    "for the named object. Which model made which map is hidden and changes from trial to trial. "
    "Answer with your first impression; there is no right answer. Your answers are stored with an "
    "anonymous id kept in this browser, so you can close the page and continue later.")
KEYS_HELP = "Keys: **A**, **B**, **S** (about the same), **N** (neither), then **Enter** to submit."


def end_markdown(view: StudyView) -> str:
    """The end screen's text: the message, then the completion code and the link back to the platform."""
    lines = [html.escape(view.message)]
    done = view.completion
    if done is not None and done.code:
        lines.append(f"Your completion code: **{html.escape(done.code)}**")
    if done is not None and done.url:
        lines.append(f"[Return to the study platform](<{done.url}>)"
                     + (" (you will be taken there in a few seconds)" if done.redirect else ""))
    return "\n\n".join(lines)


def _secret(*parts: str) -> str:
    """A stable BrowserState secret, so ids survive server restarts and are shared by the
    processes of one deployment (the id it protects is the participant's own)."""
    return hashlib.sha256("\x00".join(("cbam-viz", *parts)).encode()).hexdigest()[:32]


def _storage_key(*parts: str) -> str:
    return "cbam_viz_" + hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def figures(*items: tuple[str, str, bytes], key: str) -> str:
    """HTML for side-by-side PNGs given as (element id, caption, bytes), inline as data: URIs. A new
    ``key`` (``data-key``: one per trial, saying nothing about the models) restarts the response clock
    (`CLOCK_JS`)."""
    cells = "".join(
        f'<figure id="{html.escape(elem_id)}" style="flex:1 1 220px;margin:0;text-align:center">'
        f'<img alt="{html.escape(caption)}" style="width:100%;max-width:360px;image-rendering:auto" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f'<figcaption style="font-weight:600">{html.escape(caption)}</figcaption></figure>'
        for elem_id, caption, png in items)
    return f'<div data-key="{html.escape(key)}" style="display:flex;gap:12px;flex-wrap:wrap;align-items:flex-start">{cells}</div>'


def tab(label: str, tab_id: str) -> gr.Tab:
    """The tab a study page lives in (with a stable element id for browser tests)."""
    return gr.Tab(label, id=tab_id, elem_id=f"{tab_id}-tab")


def _with_link(index: int, storage_key: str) -> str:
    return _WITH_LINK.replace("{i}", str(index)).replace("STORAGE_KEY", storage_key)


class StudyTab:
    """Handles to the Study tab's components (for tests and for app.py, if it needs them)."""

    def __init__(self, runtime: StudyRuntime, **components: Any):
        self.runtime = runtime
        self.__dict__.update(components)


def build_study_tab(runtime: StudyRuntime, joins_per_hour: int = JOINS_PER_HOUR) -> StudyTab:
    """Create the "Study" tab of a running study inside the current gr.Blocks. New participants are
    limited to ``joins_per_hour`` per client address (kept in the study database; a refused join
    costs nothing)."""
    config, session = runtime.config, runtime.session
    joins = Quota(runtime.store, "join:" + config.name, joins_per_hour, 3600.0)
    storage_key = _storage_key("study", config.name)
    root = gr.context.Context.root_block
    if root is None:
        raise RuntimeError("build_study_tab must be called inside a gr.Blocks context")

    with tab("Study", "study"):
        participant = gr.BrowserState("", storage_key=storage_key,
                                      secret=_secret("study", config.name))
        gr.Markdown(f"{config.instructions or DEFAULT_INSTRUCTIONS}\n\n{KEYS_HELP}", elem_id="study-instructions")
        with gr.Column(visible=True, elem_id="study-start") as start_box:
            if config.consent:
                gr.Markdown(config.consent, elem_id="study-consent")
            consent = gr.Checkbox(False, label="I have read the above and agree to take part",
                                  visible=bool(config.consent), elem_id="study-consent-accept")
            expertise = gr.Dropdown([NO_EXPERTISE, *config.expertise_options], value=NO_EXPERTISE,
                                    label="Your experience with computer vision (optional)",
                                    visible=config.collect_expertise, elem_id="study-expertise")
            start = gr.Button("Start the study", variant="primary", elem_id="study-start-button")
        with gr.Column(visible=False, elem_id="study-trial") as trial_box:
            progress = gr.Markdown(elem_id="study-progress")
            question = gr.Markdown(elem_id="study-question")
            shown = gr.HTML(elem_id="study-maps")
            answer = gr.Radio(answer_choices(config.answers), value=None, label="Your answer",
                              elem_id="study-answer")
            submit = gr.Button("Submit vote", variant="primary", elem_id="study-submit")
        status = gr.Markdown(elem_id="study-status")
        with gr.Column(visible=False, elem_id="study-done") as done_box:
            restart = gr.Button("Start over as a new participant (for piloting the study)", size="sm",
                                elem_id="study-restart")
        position = gr.Number(value=None, visible="hidden", label="trial position",
                             elem_id="study-position")
        response_ms = gr.Number(value=None, visible="hidden", label="response time (ms)",
                                elem_id="study-response-ms")
        link = gr.Textbox("", visible="hidden", label="study link", elem_id="study-link")
        redirect = gr.Textbox("", visible="hidden", label="completion URL", elem_id="study-redirect")
        stage = gr.Textbox("start", visible="hidden", label="stage", elem_id="study-stage")

    # Every study response is these plain values, no layout updates (Gradio rebuilds a component per
    # update, per request): the layout follows in the browser, from the progress and position.
    # The answer is cleared in the same response that shows the next trial (a later layout step would
    # wipe an answer picked in between).
    view_outputs = [progress, question, shown, position, status, redirect, answer, stage]

    def render(view: StudyView, answer_value: Any = None, redirect_now: bool = False) -> tuple:
        """``view_outputs`` for ``view``; the answer is cleared unless ``answer_value`` says otherwise;
        ``redirect_now``: send a finished participant to the platform (the vote that finished only)."""
        trial = view.trial
        progress_md = f"**{view.progress_text}**" if view.started else ""
        if view.blocked:
            return "**This study link is already in use**", "", "", None, html.escape(view.message), "", \
                answer_value, view.stage
        if trial is None:
            done = view.completion
            go = redirect_now and view.done and done is not None and done.redirect
            return (progress_md, "", "", None, end_markdown(view) if view.done else "", done.url if go else "",
                    answer_value, view.stage)
        maps = figures(("study-image", "Image", trial.image), ("study-map-a", "Map A", trial.map_a),
                       ("study-map-b", "Map B", trial.map_b), key=str(trial.position))
        return progress_md, f"### {trial.question}", maps, trial.position, view.message, "", answer_value, view.stage

    def resume(credential: str | None, link: str | None):
        # the credential never changes here: the browser's copy is the source of truth (this event may
        # run before the BrowserState has restored it, and must not overwrite it); the answer stays: this
        # runs twice on a page load (load, then the restored id), and an answer picked in between must survive
        return gr.skip(), *render(session.resume(credential, link), gr.skip())

    def join(credential: str | None, expertise: str | None, consent: bool, link: str | None, request: gr.Request):
        address = client_address(request)
        window = None
        if session.credentials.verify(credential) is None:
            window = joins.take(address)
            if window is None:
                raise gr.Error("Too many new participants from your network address; please try again later.")
        try:
            view = session.join(credential, expertise, bool(consent), link)
        except StudyError as exc:
            if window is not None:
                joins.refund(address, window)  # a refused join costs no quota
            raise gr.Error(html.escape(str(exc))) from None
        if window is not None and not view.joined:
            joins.refund(address, window)
        return (view.credential if not view.blocked else gr.skip()), *render(view)

    def vote(credential: str | None, position: Any, answer: str | None, response_ms: Any):
        if answer is None:
            raise gr.Error("Choose an answer first.")
        try:
            view, duplicate = session.vote(credential, position, answer, response_ms)
        except StudyError as exc:  # VoteRejected included: nothing was stored
            raise gr.Error(html.escape(f"Vote not recorded: {exc}")) from None
        return render(view, redirect_now=not duplicate)

    common = dict(concurrency_limit=STUDY_CONCURRENCY, concurrency_id="cbam_viz_study", show_progress="hidden")
    layout = dict(fn=None, inputs=[stage, redirect], outputs=[start_box, trial_box, done_box],
                  js=_LAYOUT.replace("REDIRECT_MS", str(REDIRECT_MS)))
    # The id is restored from localStorage when the BrowserState mounts (with the tab, after the page
    # load event), which fires its change event; "always_last" runs the latest trigger last.
    gr.on([root.load, participant.change], resume, inputs=[participant, link], outputs=[participant, *view_outputs],
          js=_with_link(1, storage_key), api_name="study_resume", trigger_mode="always_last",
          **common).success(**layout)
    root.load(None, js=_KEYS)
    root.load(None, js=CLOCK_JS)
    start.click(join, inputs=[participant, expertise, consent, link], outputs=[participant, *view_outputs],
                js=_with_link(3, storage_key), api_name="study_start", **common).success(**layout)
    restart.click(None, outputs=[participant], js=_RESTART)
    vote_inputs = [participant, position, answer, response_ms]
    submit.click(vote, inputs=vote_inputs, outputs=view_outputs, js=with_rt(3, len(vote_inputs), "study-maps"),
                 api_name="study_vote", **common).success(**layout)
    return StudyTab(runtime, participant=participant, start_box=start_box, trial_box=trial_box, done_box=done_box,
                    restart=restart, stage=stage,
                    expertise=expertise, consent=consent, link=link, redirect=redirect, start=start, progress=progress, question=question, shown=shown,
                    answer=answer, submit=submit, status=status, position=position, response_ms=response_ms)


def build_free_vote(ctx: AppContext, study: StudyRuntime, image: gr.components.Component,
                    pair: gr.components.Component, method: gr.components.Component,
                    models: Sequence[gr.components.Component] = (), upload_dir: Path | None = None,
                    voters_per_hour: int = JOINS_PER_HOUR) -> dict[str, Any]:
    """A blinded A/B vote on the Compare tab's current image, model set and method (inside the
    Compare tab), between the two models chosen in the `models` components (the slider's left and
    right model; else the baseline and CBAM, see `study.free.blind_pair`). The side is drawn per vote
    and kept in server-side session state; the vote, naming both models, is
    stored in the study's database with the image's SHA-256, and the image itself only when
    ``upload_dir`` is given. Voter credentials are signed with the study's secret; new voters are
    limited to ``voters_per_hour`` per client address."""
    store = study.store
    credentials = Credentials(lambda: store.study_secret(study.config.name), "free-vote")
    votes = FreeVotes(ctx, store, credentials, upload_dir=upload_dir)
    new_voters = Quota(store, "free-vote", voters_per_hour, 3600.0)
    with gr.Accordion("Blind vote: which map covers the object better?", open=False, elem_id="free-vote"):
        gr.Markdown(
            "Shows the maps of the two models chosen for the slider as **A** and **B** in random order, "
            "without saying which model made which, and records your choice for the study owner ("
            + ("the image is stored with your vote" if upload_dir else "only the image's SHA-256 digest is stored, never the image")
            + "). For an unbiased vote, decide before looking at the labelled maps.")
        show = gr.Button("Show the two maps blinded", elem_id="free-vote-show")
        pending = gr.State(None)
        voter = gr.BrowserState("", storage_key=_storage_key("free-vote"), secret=_secret("free-vote"))
        question = gr.Markdown(elem_id="free-vote-question")
        shown = gr.HTML(elem_id="free-vote-maps")
        answer = gr.Radio(answer_choices(DEFAULT_ANSWERS), value=None, label="Your answer", elem_id="free-vote-answer")
        cast = gr.Button("Cast vote", elem_id="free-vote-cast")
        status = gr.Markdown(elem_id="free-vote-status")
        response_ms = gr.Number(value=None, visible="hidden", label="response time (ms)")

    def prepare(image: Any, pair: str | None, method: str | None, left: str | None = None, right: str | None = None):
        try:
            trial = votes.prepare(_as_pil(image), pair, method, (left, right))
        except (VoteRejected, ImageError, SetUnavailable) as exc:  # user errors: their message; others stay in the log
            raise gr.Error(html.escape(str(exc))) from None
        maps = figures(("free-vote-a", "Map A", trial.map_a), ("free-vote-b", "Map B", trial.map_b),
                       key=secrets.token_hex(8))
        return trial, f"### {trial.question}", maps, gr.Radio(value=None), ""

    def cast_vote(trial: FreeTrial | None, credential: str | None, answer: str | None, response_ms: Any,
                  request: gr.Request):
        if answer is None:
            raise gr.Error("Choose an answer first.")
        address, window = client_address(request), None
        if credentials.verify(credential) is None:
            window = new_voters.take(address)
            if window is None:
                raise gr.Error("Too many new voters from your network address; please try again later.")
        try:
            recorded, credential = votes.vote(trial, credential, answer, response_ms)
        except StudyError as exc:
            if window is not None:
                new_voters.refund(address, window)
            raise gr.Error(html.escape(f"Vote not recorded: {exc}")) from None
        note = "This vote had already been recorded." if recorded.duplicate else "Vote recorded, thank you."
        return credential, note

    show.click(prepare, inputs=[image, pair, method, *models], outputs=[pending, question, shown, answer, status],
               api_name="free_vote_show", show_progress="minimal", concurrency_id=COMPUTE)
    gr.context.Context.root_block.load(None, js=CLOCK_JS)
    register_cost(gr.context.Context.root_block, prepare, lambda data: ctx.estimate(data[1], data[2]) or 0.0)
    vote_inputs = [voter, answer, response_ms]
    cast.click(cast_vote, inputs=[pending, *vote_inputs], outputs=[voter, status],
               js=with_rt(3, len(vote_inputs) + 1, "free-vote-maps"), api_name="free_vote",
               concurrency_limit=STUDY_CONCURRENCY, concurrency_id="cbam_viz_study", show_progress="hidden")
    return {"show": show, "cast": cast, "pending": pending, "voter": voter, "shown": shown,
            "answer": answer, "status": status, "question": question}


def _as_pil(img: Any) -> Image.Image | None:
    """The Compare tab's image (a file path: its gr.Image has type="filepath") as PIL; None without one."""
    if img is None:
        return None
    if not isinstance(img, str):
        raise VoteRejected("upload an image first")
    return open_image(img)
