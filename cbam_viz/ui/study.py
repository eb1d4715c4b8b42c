"""The Study tab (blinded A/B trials for participants) and the blinded vote in the Compare tab.

Public API endpoints (all that a participant's browser can call for the study):

- ``study_resume(participant_id)``: the participant's current trial, or the start screen;
  run on page load with the id kept in the browser (``gr.BrowserState``).
- ``study_start(participant_id, expertise)``: join (a new anonymous id when empty).
- ``study_vote(participant_id, position, answer, response_ms)``: answer the trial at
  ``position``; the server knows which model was "A". Returns the next trial.
- ``free_vote_show(image, pair, method)`` / ``free_vote(voter_id, answer, response_ms)``:
  the blinded vote on one's own upload, the side held in server-side session state.

Every trial payload holds three content-named PNG files, the target class, the question and the
progress; nothing in it says which model drew which map.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import gradio as gr

from ..study.config import DEFAULT_ANSWERS, StudyConfig
from ..study.free import FreeTrial, FreeVotes
from ..study.runtime import StudyRuntime, runtime_for
from ..study.session import NO_EXPERTISE, StudyView, answer_choices
from ..study.storage import Store, StudyError, VoteRejected

log = logging.getLogger(__name__)

# Response time is measured in the browser from the moment the trial arrived to the click.
_MARK_SHOWN = "() => { window.__cbamVizShown = performance.now(); }"
# After each study response: start screen while not started, the trial while one is pending, neither
# when done; a fresh (empty) answer; the response-time clock restarted.
_LAYOUT = """(progress, position) => {
  window.__cbamVizShown = performance.now();
  const trial = position !== null && position !== undefined && position !== "";
  return [{"__type__": "update", "visible": !progress},
          {"__type__": "update", "visible": trial},
          null];
}"""
_WITH_RT = """(...args) => {
  const t = window.__cbamVizShown;
  args[{i}] = (typeof t === "number") ? Math.round(performance.now() - t) : null;
  return args.slice(0, {n});
}"""
STUDY_CONCURRENCY = 16  # study handlers only touch the database and cached files


def _with_rt(index: int, n_inputs: int) -> str:
    return _WITH_RT.replace("{i}", str(index)).replace("{n}", str(n_inputs))


def _secret(*parts: str) -> str:
    """A stable BrowserState secret, so ids survive server restarts and are shared by the
    processes of one deployment (the id it protects is the participant's own)."""
    return hashlib.sha256("\x00".join(("cbam-viz", *parts)).encode()).hexdigest()[:32]


def _storage_key(*parts: str) -> str:
    return "cbam_viz_" + hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def tab(label: str, tab_id: str) -> gr.Tab:
    """The tab a study page lives in (with a stable element id for browser tests)."""
    return gr.Tab(label, id=tab_id, elem_id=f"{tab_id}-tab")


class StudyTab:
    """Handles to the Study tab's components (for tests and for app.py, if it needs them)."""

    def __init__(self, runtime: StudyRuntime, **components: Any):
        self.runtime = runtime
        self.__dict__.update(components)


def build_study_tab(ctx: Any, store: Store, config: StudyConfig) -> StudyTab:
    """Create the "Study" tab inside the current gr.Blocks. Raises ConfigError when the study
    cannot run (unknown pair or method, a target class the pair does not know)."""
    runtime = runtime_for(ctx, store, config)
    session = runtime.session
    root = gr.context.Context.root_block
    if root is None:
        raise RuntimeError("build_study_tab must be called inside a gr.Blocks context")

    # Served in place, not hashed and copied into Gradio's cache on every response (the folder holds
    # nothing but the stimulus PNGs, named by content).
    gr.set_static_paths([runtime.files])

    with tab("Study", "study"):
        participant = gr.BrowserState("", storage_key=_storage_key("study", config.name),
                                      secret=_secret("study", config.name))
        gr.Markdown(
            "### Which heat map covers the object better?\n"
            "Each trial shows an image and two heat maps, **A** and **B**, made by two different models "
            "for the named object. Which model made which map is hidden and changes from trial to trial. "
            "Answer with your first impression; there is no right answer. Your answers are stored with an "
            "anonymous id kept in this browser, so you can close the page and continue later.")
        with gr.Column(visible=True, elem_id="study-start") as start_box:
            expertise = gr.Dropdown([NO_EXPERTISE, *config.expertise_options], value=NO_EXPERTISE,
                                    label="Your experience with computer vision (optional)",
                                    visible=config.collect_expertise, elem_id="study-expertise")
            start = gr.Button("Start the study", variant="primary", elem_id="study-start-button")
        with gr.Column(visible=False, elem_id="study-trial") as trial_box:
            progress = gr.Markdown(elem_id="study-progress")
            question = gr.Markdown(elem_id="study-question")
            with gr.Row(equal_height=True):
                image = gr.Image(label="Image", type="filepath", interactive=False, elem_id="study-image",
                                 buttons=[])
                map_a = gr.Image(label="Map A", type="filepath", interactive=False, elem_id="study-map-a",
                                 buttons=[])
                map_b = gr.Image(label="Map B", type="filepath", interactive=False, elem_id="study-map-b",
                                 buttons=[])
            answer = gr.Radio(answer_choices(config.answers), value=None, label="Your answer",
                              elem_id="study-answer")
            submit = gr.Button("Submit vote", variant="primary", elem_id="study-submit")
        status = gr.Markdown(elem_id="study-status")
        position = gr.Number(value=None, visible="hidden", label="trial position",
                             elem_id="study-position")
        response_ms = gr.Number(value=None, visible="hidden", label="response time (ms)",
                                elem_id="study-response-ms")

    # Every study response is these plain values, no layout updates (Gradio rebuilds a component per
    # update, per request): the layout follows in the browser, from the progress and position.
    view_outputs = [progress, question, image, map_a, map_b, position, status]

    def render(view: StudyView) -> tuple:
        trial = view.trial
        progress_md = f"**{view.progress_text}**" if view.started else ""
        if trial is None:
            return progress_md, "", None, None, None, None, view.message if view.done else ""
        return (progress_md, f"### {trial.question}", str(trial.image), str(trial.map_a), str(trial.map_b),
                trial.position, view.message)

    def resume(participant_id: str | None):
        # never writes the id back: the browser's copy is the source of truth here
        return render(session.resume(participant_id if isinstance(participant_id, str) else None))

    def join(participant_id: str | None, expertise: str | None):
        try:
            view = session.join(participant_id if isinstance(participant_id, str) else None, expertise)
        except StudyError as exc:
            raise gr.Error(str(exc)) from None
        return view.participant_id, *render(view)

    def vote(participant_id: str | None, position: Any, answer: str | None, response_ms: Any):
        if answer is None:
            raise gr.Error("Choose an answer first.")
        try:
            view, _duplicate = session.vote(participant_id, position, answer, response_ms)
        except StudyError as exc:  # VoteRejected included: nothing was stored
            raise gr.Error(f"Vote not recorded: {exc}") from None
        return render(view)

    common = dict(concurrency_limit=STUDY_CONCURRENCY, concurrency_id="cbam_viz_study", show_progress="hidden")
    layout = dict(fn=None, inputs=[progress, position], outputs=[start_box, trial_box, answer], js=_LAYOUT)
    # The id is restored from localStorage when the BrowserState mounts (with the tab, after the page
    # load event), which fires its change event; "always_last" runs the latest trigger last.
    gr.on([root.load, participant.change], resume, inputs=[participant], outputs=view_outputs,
          api_name="study_resume", trigger_mode="always_last", **common).success(**layout)
    start.click(join, inputs=[participant, expertise], outputs=[participant, *view_outputs], api_name="study_start",
                **common).success(**layout)
    vote_inputs = [participant, position, answer, response_ms]
    submit.click(vote, inputs=vote_inputs, outputs=view_outputs, js=_with_rt(3, len(vote_inputs)),
                 api_name="study_vote", **common).success(**layout)
    return StudyTab(runtime, participant=participant, start_box=start_box, trial_box=trial_box,
                    expertise=expertise, start=start, progress=progress, question=question, image=image,
                    map_a=map_a, map_b=map_b, answer=answer, submit=submit, status=status,
                    position=position, response_ms=response_ms)


def build_free_vote(ctx: Any, store: Store, image: gr.components.Component, pair: gr.components.Component,
                    method: gr.components.Component, upload_dir: Path | None = None) -> dict[str, Any]:
    """A blinded A/B vote on the Compare tab's current image, pair and method (inside the
    Compare tab). The side is drawn per vote and kept in server-side session state; the vote is
    stored with the image's SHA-256, and the image itself only when ``upload_dir`` is given."""
    votes = FreeVotes(ctx, store, upload_dir=upload_dir)
    with gr.Accordion("Blind vote: which map covers the object better?", open=False, elem_id="free-vote"):
        gr.Markdown(
            "Shows this image's two maps as **A** and **B** in random order, without saying which model "
            "made which, and records your choice for the study owner ("
            + ("the image is stored with your vote" if upload_dir else "only the image's SHA-256 digest is stored, never the image")
            + "). For an unbiased vote, decide before looking at the labelled maps.")
        show = gr.Button("Show the two maps blinded", elem_id="free-vote-show")
        pending = gr.State(None)
        voter = gr.BrowserState("", storage_key=_storage_key("free-vote"), secret=_secret("free-vote"))
        question = gr.Markdown(elem_id="free-vote-question")
        with gr.Row():
            map_a = gr.Image(label="Map A", type="filepath", interactive=False, elem_id="free-vote-a", buttons=[])
            map_b = gr.Image(label="Map B", type="filepath", interactive=False, elem_id="free-vote-b", buttons=[])
        answer = gr.Radio(answer_choices(DEFAULT_ANSWERS), value=None, label="Your answer", elem_id="free-vote-answer")
        cast = gr.Button("Cast vote", elem_id="free-vote-cast")
        status = gr.Markdown(elem_id="free-vote-status")
        response_ms = gr.Number(value=None, visible="hidden", label="response time (ms)")

    def prepare(image: Any, pair: str | None, method: str | None):
        try:
            trial = votes.prepare(_as_pil(image), pair, method)
        except (VoteRejected, ValueError, RuntimeError) as exc:  # incl. PairUnavailable, ImageError
            raise gr.Error(str(exc)) from None
        return trial, f"### {trial.question}", trial.map_a, trial.map_b, gr.Radio(value=None), ""

    def cast_vote(trial: FreeTrial | None, voter_id: str | None, answer: str | None, response_ms: Any):
        if answer is None:
            raise gr.Error("Choose an answer first.")
        try:
            recorded, voter_id = votes.vote(trial, voter_id if isinstance(voter_id, str) else None, answer,
                                            response_ms)
        except StudyError as exc:
            raise gr.Error(f"Vote not recorded: {exc}") from None
        note = "This vote had already been recorded." if recorded.duplicate else "Vote recorded, thank you."
        return voter_id, note

    show.click(prepare, inputs=[image, pair, method], outputs=[pending, question, map_a, map_b, answer, status],
               api_name="free_vote_show", show_progress="minimal").success(None, js=_MARK_SHOWN)
    vote_inputs = [voter, answer, response_ms]
    cast.click(cast_vote, inputs=[pending, *vote_inputs], outputs=[voter, status],
               js=_with_rt(3, len(vote_inputs) + 1), api_name="free_vote",
               concurrency_limit=STUDY_CONCURRENCY, concurrency_id="cbam_viz_study", show_progress="hidden")
    return {"show": show, "cast": cast, "pending": pending, "voter": voter, "map_a": map_a, "map_b": map_b,
            "answer": answer, "status": status, "question": question}


def _as_pil(img: Any):
    """The Compare tab's image as PIL (it may hand over a PIL image, a path or an array)."""
    if img is None:
        return None
    from PIL import Image

    if isinstance(img, Image.Image):
        return img.convert("RGB")
    if isinstance(img, str):
        from ..images import open_image

        return open_image(img)
    import numpy as np

    return Image.fromarray(np.asarray(img).astype("uint8")).convert("RGB")
