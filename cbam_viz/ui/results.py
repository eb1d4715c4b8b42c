"""The owner's Results page: the study's statistics and unblinded exports, behind a password.

A Blocks of its own (app.py serves it at ``/results``), so nothing of it is in the participants' page,
its config or its API. Its one endpoint, ``study_results(password, everyone, target)``, returns nothing but
an error unless the password matches; wrong passwords lock out the address that sent them (back-off,
`cbam_viz.study.limits.Throttle`), never another. Plots and export files travel inside that response
(inline ``data:`` URIs): no file of them is served at a URL. ``everyone``: count the participants who
failed an attention check in, in every figure and table (left out by default); ``target``: the preference share the power line plans for (default 60%).
"""
from __future__ import annotations

import base64
import hmac
import html
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gradio as gr

from ..study.limits import Throttle
from ..study.report import build_report, export_stem, plots, write_exports
from ..study.runtime import StudyRuntime
from .clients import client_address

FREE_WRONG_PASSWORDS = 5  # per client address; then each wrong one locks that address out, 2 s doubling to 1 h
DEFAULT_TARGET, MIN_TARGET, MAX_TARGET = 0.60, 0.51, 0.95  # the power line's preference share
RESULTS_TITLE = "Study results (owner only)"
_MIME = {".csv": "text/csv", ".json": "application/json", ".png": "image/png"}


def check_password(given: Any, expected: str) -> bool:
    """Constant-time comparison of the typed password with the configured one."""
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def downloads_html(files: Mapping[str, bytes]) -> str:
    """Download links for `files` (name -> bytes) as inline data: URIs (no server file, no URL)."""
    items = "".join(
        f'<li><a download="{html.escape(name)}" href="{_data_uri(_MIME.get(Path(name).suffix, "application/octet-stream"), data)}">'
        f"{html.escape(name)}</a> ({len(data) / 1024:.1f} KB)</li>" for name, data in files.items())
    return f'<ul id="results-downloads">{items}</ul>'


def plots_html(pngs: Mapping[str, bytes]) -> str:
    """Every plot at full width, captioned, each its own PNG download."""
    return "".join(
        f'<figure style="margin:0 0 18px 0"><img alt="{html.escape(name)}" style="max-width:100%;height:auto" '
        f'src="{_data_uri("image/png", png)}"><figcaption>{html.escape(name)}</figcaption></figure>'
        for name, png in pngs.items())


def build_results_page(runtime: StudyRuntime, admin_password: str | None, title: str = RESULTS_TITLE,
                       blocks: type[gr.Blocks] = gr.Blocks) -> gr.Blocks | None:
    """The Results page of a running study (its own `blocks`); None without a password."""
    if not admin_password:
        return None
    config, store = runtime.config, runtime.store
    failures = Throttle(store, "password:" + config.name, free=FREE_WRONG_PASSWORDS)

    with blocks(title=title) as page:
        # the study's name (it may state the hypothesis) only after the password
        gr.Markdown(f"## {title}\nEverything shown after the password is **unblinded**: do not show it to participants.")
        with gr.Row():
            password = gr.Textbox(label="Admin password", type="password", elem_id="results-password", scale=3)
            show = gr.Button("Show results", variant="primary", elem_id="results-show", scale=1)
        with gr.Row():
            show_both = gr.Checkbox(False, label="Count the participants who failed an attention check in "
                                    "(every figure, table and plot)", elem_id="results-both", scale=2)
            power_target = gr.Slider(MIN_TARGET, MAX_TARGET, value=DEFAULT_TARGET, step=0.01, elem_id="results-target",
                                     label="Power line: preference share to detect (80% power)", scale=1)
        summary = gr.Markdown(elem_id="results-summary")
        answers = gr.Dataframe(label="Votes per option (unblinded)", interactive=False, elem_id="results-answers")
        ranking = gr.Dataframe(label="Ranking (Bradley-Terry strengths, log-odds; higher is preferred)",
                               interactive=False, elem_id="results-ranking")
        pairwise = gr.Dataframe(label="Pairwise preference (share of decisive votes for the model over the other)",
                                interactive=False, elem_id="results-pairwise")
        expertise = gr.Dataframe(label="By self-reported expertise", interactive=False, elem_id="results-expertise")
        figures = gr.HTML(elem_id="results-plots")
        per_image = gr.Dataframe(label="Per image (energy pointing game where ground truth exists)",
                                 interactive=False, elem_id="results-per-image")
        per_participant = gr.Dataframe(label="Per participant", interactive=False, elem_id="results-per-participant")
        participants = gr.Dataframe(label="Participants: platform ids, attention checks, too-fast votes, conflicts",
                                    interactive=False, elem_id="results-participants")
        free = gr.Markdown(elem_id="results-free")
        gr.Markdown("### Downloads: every vote unblinded (CSV, JSON), participants, the platform's review list, "
                    "conflicts, upload votes, plots (PNG)")
        files = gr.HTML(elem_id="results-files")

    def results(password: Any, everyone: Any, target: Any, request: gr.Request):
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
        report = build_report(store, config.name, runtime.objective(), everyone=everyone is True, target=float(target),
                              titles=runtime.titles)
        pngs = plots(report, runtime.thumbnails())
        stem = export_stem(config.name)
        with tempfile.TemporaryDirectory(prefix="cbam-viz-results-") as folder:
            exported = {p.name: p.read_bytes() for p in write_exports(report, config.name, folder)}
        exported |= {f"{stem}-{name}.png": png for name, png in pngs.items()}
        table = lambda t: {"headers": t[0], "data": t[1] or [[None] * len(t[0])]}  # noqa: E731
        return (report.markdown, table(report.answers), table(report.ranking), table(report.pairwise),
                table(report.expertise), plots_html(pngs), table(report.per_image), table(report.per_participant),
                table(report.participants), report.free_markdown, downloads_html(exported))

    outputs = [summary, answers, ranking, pairwise, expertise, figures, per_image, per_participant, participants, free,
               files]
    with page:
        # One event for both triggers: one endpoint (a second listener would be a second, "private" but
        # still callable, endpoint). preprocess=False: the handler checks the raw values itself, so that a
        # bad one gets its own message instead of Gradio's generic error.
        gr.on([show.click, password.submit], results, inputs=[password, show_both, power_target], outputs=outputs,
              api_name="study_results", concurrency_limit=2, preprocess=False)
    return page
