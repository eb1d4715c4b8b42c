"""The Results tab: the study owner's statistics and unblinded exports, behind a password.

The tab exists only when an admin password is set. Its one endpoint, ``study_results(password, both,
target)``, returns nothing but an error unless the password matches, so the unblinded data never
reaches a participant's browser or API client. ``both``: the statistics also with the participants
who failed an attention check (left out by default); ``target``: the preference share the power line
plans for (default 60%).
"""
from __future__ import annotations

import hmac
from typing import Any

import gradio as gr

from ..study.limits import Throttle
from ..study.report import build_report, export_stem, write_exports, write_plots
from ..study.runtime import StudyRuntime
from .serving import BoundedFolder, work_dir
from .clients import client_address
from .study import tab

EXPORT_BYTES, EXPORT_TTL = 100 * 2**20, 3600  # unblinded exports: at most this many bytes, this long
FREE_WRONG_PASSWORDS = 5  # per client address; then each wrong one locks that address out, 2 s doubling to 1 h
DEFAULT_TARGET, MIN_TARGET, MAX_TARGET = 0.60, 0.51, 0.95  # the power line's preference share


def check_password(given: Any, expected: str) -> bool:
    """Constant-time comparison of the typed password with the configured one."""
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


def build_results_tab(runtime: StudyRuntime, admin_password: str | None):
    """Create the "Results" tab of a running study inside the current gr.Blocks; no tab at all
    (returns None) without a password."""
    if not admin_password:
        return None
    config, store = runtime.config, runtime.store
    exports = BoundedFolder(work_dir(runtime, "cbam-viz-results-"), EXPORT_BYTES, EXPORT_TTL)
    failures = Throttle(store, "password:" + config.name, free=FREE_WRONG_PASSWORDS)

    with tab("Results", "results"):
        gr.Markdown(f"### Results of study `{config.name}` (pair `{config.pair}`, method `{config.method}`)\n"
                    "For the study owner. Everything below is **unblinded**: do not show it to participants.")
        with gr.Row():
            password = gr.Textbox(label="Admin password", type="password", elem_id="results-password", scale=3)
            show = gr.Button("Show results", variant="primary", elem_id="results-show", scale=1)
        with gr.Row():
            show_both = gr.Checkbox(False, label="Also show every figure with the participants who failed an "
                                    "attention check", elem_id="results-both", scale=2)
            power_target = gr.Slider(MIN_TARGET, MAX_TARGET, value=DEFAULT_TARGET, step=0.01, elem_id="results-target",
                               label="Power line: preference share to detect (80% power)", scale=1)
        summary = gr.Markdown(elem_id="results-summary")
        answers = gr.Dataframe(label="Votes per option (unblinded)", interactive=False, elem_id="results-answers")
        ranking = gr.Dataframe(label="Ranking (Bradley-Terry strengths, log-odds; higher is preferred)",
                               interactive=False, elem_id="results-ranking")
        pairwise = gr.Dataframe(label="Pairwise preference (share of decisive votes for the model over the other)",
                                interactive=False, elem_id="results-pairwise")
        expertise = gr.Dataframe(label="By self-reported expertise", interactive=False, elem_id="results-expertise")
        plots = gr.Gallery(label="Plots (each downloadable as PNG)", columns=2, height="auto", interactive=False,
                           elem_id="results-plots")
        per_image = gr.Dataframe(label="Per image (energy pointing game where ground truth exists)",
                                 interactive=False, elem_id="results-per-image")
        per_participant = gr.Dataframe(label="Per participant", interactive=False, elem_id="results-per-participant")
        participants = gr.Dataframe(label="Participants: platform ids, attention checks, too-fast votes",
                                    interactive=False, elem_id="results-participants")
        free = gr.Markdown(elem_id="results-free")
        files = gr.File(label="Export: every vote, unblinded (CSV, JSON), participants, upload votes; plots (PNG)",
                        file_count="multiple", interactive=False, elem_id="results-files")

    def results(password: Any, both: Any, target: Any, request: gr.Request):
        address = client_address(request)
        wait = failures.wait(address)
        if wait > 0:
            raise gr.Error(f"Too many wrong passwords from your address: try again in {wait:.0f} s.")
        if not check_password(password, admin_password):
            wait = failures.failed(address)
            raise gr.Error("Wrong admin password." + (f" Try again in {wait:.0f} s." if wait else ""))
        failures.succeeded(address)
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not MIN_TARGET <= target <= MAX_TARGET:
            raise gr.Error(f"The preference share to detect must be a number from {MIN_TARGET} to {MAX_TARGET}.")
        report = build_report(store, config.name, runtime.objective(), both=both is True, target=float(target),
                              titles=runtime.titles)
        folder = exports.new()
        paths = write_exports(report, config.name, folder) + write_plots(report, folder, runtime.thumbnails())
        pngs = [(str(p), p.stem.removeprefix(export_stem(config.name) + "-")) for p in paths if p.suffix == ".png"]
        table = lambda t: {"headers": t[0], "data": t[1] or [[None] * len(t[0])]}  # noqa: E731
        return (report.markdown, table(report.answers), table(report.ranking), table(report.pairwise),
                table(report.expertise), pngs, table(report.per_image), table(report.per_participant),
                table(report.participants), report.free_markdown, [str(p) for p in paths])

    outputs = [summary, answers, ranking, pairwise, expertise, plots, per_image, per_participant, participants, free,
               files]
    # One event for both triggers: one endpoint (a second listener would be a second, "private" but
    # still callable, endpoint). preprocess=False: the handler checks the raw values itself, so that a
    # bad one gets its own message instead of Gradio's generic error.
    gr.on([show.click, password.submit], results, inputs=[password, show_both, power_target], outputs=outputs,
          api_name="study_results", concurrency_limit=2, preprocess=False)
    return {"password": password, "show": show, "summary": summary, "files": files, "plots": plots}
