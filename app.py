"""cbam-viz web app: compare a set of models (baseline, SE, CBAM ResNets) on any image; optionally run a user study.

    .venv/bin/python app.py [--host 127.0.0.1] [--port 7860] [--sets demo imagenet] [--random-imagenet]
                            [--study study.toml [--db URL] [--data-dir data] [--admin-password-file FILE]]
                            [--trusted-proxy ADDR ...] [--slots N] [--max-request-seconds S] (README "Server limits")
"""
from __future__ import annotations

import os
import time

STARTED = time.perf_counter()  # before the heavy imports: "ready in" counts them too

# Never reach the network: set before Gradio and huggingface_hub are imported.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from cbam_viz.allocator import tune_allocator  # noqa: E402

tune_allocator()  # before the heavy imports: large buffers are given back to the system when freed

import argparse  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

import gradio as gr  # noqa: E402

from cbam_viz.ui.compare import build_compare_tab  # noqa: E402
from cbam_viz.service import AppContext, random_imagenet_set  # noqa: E402

if TYPE_CHECKING:
    from cbam_viz.study.runtime import StudyRuntime
from starlette.middleware import Middleware  # noqa: E402

from cbam_viz.ui.clients import client_address  # noqa: E402
from cbam_viz.ui.fairness import Limits, install, machine_limits  # noqa: E402
from cbam_viz.ui.serving import Blocks, UploadGate, UploadLimits, remove_served_files, remove_work_dirs, work_dir  # noqa: E402

TITLE = "cbam-viz · what attention changes"
STUDY_TITLE = "Heat-map study"  # participants must not read the hypothesis
# Complete system fonts: Gradio's bundled semibold is a small subset, so bold text fell back glyph by glyph ("CʙᴀM").
FONTS = ["Segoe UI", "Roboto", "Helvetica Neue", "Arial", "Noto Sans", "Liberation Sans", "DejaVu Sans", "sans-serif"]
MONO = ["SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "DejaVu Sans Mono", "monospace"]
THEME = gr.themes.Default(primary_hue="indigo", secondary_hue="slate", font=FONTS, font_mono=MONO)
CSS = """
.gradio-container { max-width: 1400px !important; }
.note { font-size: 0.92em; opacity: 0.9; }
#summary { min-height: 5em; }
/* CAM gallery: as tall as its images, each model's full name under its CAM (not cut, not over the image) */
#views .grid-wrap.fixed-height { min-height: 0; max-height: none; overflow-y: visible; }
#views .thumbnail-item { aspect-ratio: auto; height: auto; display: flex; flex-direction: column; }
#views .thumbnail-item > img { aspect-ratio: 1 / 1; height: auto; }
#views .caption-label { position: static; max-width: none; white-space: normal; overflow: visible; text-overflow: clip;
                        border: 0; border-top: 1px solid var(--border-color-primary); border-radius: 0; text-align: center; }
/* long model and class names wrap inside their table cells */
#summary td, #summary th, #top5 td, #top5 th, #top-channels td, #top-channels th { overflow-wrap: anywhere; }
"""
# Dropdowns: typing in a search field replaces its text (the current choice is selected on focus), and Tab
# closes the open menu (as Escape does; Gradio would take Tab for typing and reopen it) as focus moves on.
JS = """
() => {
  const combobox = (e) => e.target instanceof HTMLInputElement && e.target.getAttribute("role") === "combobox";
  document.addEventListener("focusin", (e) => { if (combobox(e)) requestAnimationFrame(() => e.target.select()); });
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Tab" || !combobox(e)) return;
    e.stopPropagation();
    e.target.dispatchEvent(new KeyboardEvent("keydown", {key: "Escape", bubbles: true}));
  }, true);
}
"""


def build_app(ctx: AppContext, study: StudyRuntime | None = None, admin_password: str | None = None,
              upload_dir: Path | None = None, compare: bool = True, joins_per_hour: int | None = None) -> gr.Blocks:
    """The whole UI: the Compare tab (unless ``compare`` is False), plus the Study tab for a running
    ``study`` (`cbam_viz.study.build_runtime`); ``joins_per_hour`` limits new participants and new blind
    voters per client address. The Compare tab shows labelled maps, so a participant could
    upload a study image there and unblind it: a study serves it only when the owner asks (--with-compare).
    With an ``admin_password`` the owner's Results page is built too, as ``app.results_page``: `launch`
    serves it at /results, apart from the participants' page."""
    with Blocks(title=TITLE if study is None else STUDY_TITLE, delete_cache=(3600, 3600)) as app:
        if study is None:
            gr.Markdown("## cbam-viz: what does CBAM attention change?\n"
                        "Grad-CAM and friends for a baseline ResNet and its SE and CBAM twins, side by side, "
                        "with the channel and spatial attention of every block.")
        else:  # participants must not read the hypothesis above the trials
            gr.Markdown(f"## {STUDY_TITLE}")
        if compare:
            with gr.Tab("Compare", id="compare", elem_id="compare-tab"):
                parts = build_compare_tab(ctx)
                if study is not None:
                    from cbam_viz.ui.study import build_free_vote

                    build_free_vote(ctx, study, parts["image"], parts["model_set"], parts["method"],
                                    (parts["left"], parts["right"]), upload_dir,
                                    **({"voters_per_hour": joins_per_hour} if joins_per_hour else {}))
        if study is not None:
            from cbam_viz.ui.study import build_study_tab

            build_study_tab(study, **({"joins_per_hour": joins_per_hour} if joins_per_hour else {}))
    app.study_mode = study is not None
    app.results_page = None
    if study is not None and admin_password:
        from cbam_viz.ui.results import build_results_page

        app.results_page = build_results_page(study, admin_password, blocks=Blocks)
    return app


def launch(app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, max_file_size: str | int = "20mb",
           trusted_proxies: Sequence[str] = (), with_api: bool = False, limits: Limits | None = None,
           uploads: UploadLimits | None = None, **kwargs: Any) -> Any:
    """Serve ``app``: user errors (``gr.Error``) are shown, any other exception only as a generic
    error (its details go to the server log); uploads above ``max_file_size`` or beyond ``uploads`` are refused.
    Forwarded client addresses count only from ``trusted_proxies`` (in uvicorn too). Explanations run within
    ``limits`` (slots, lanes, per-client limits, queue; see cbam_viz.ui.fairness). A study (``app.study_mode``)
    shows no API footer and has no upload route unless it serves the Compare tab, or ``with_api``;
    its Results page (``app.results_page``) is served at /results."""
    from cbam_viz.ui import clients
    from cbam_viz.ui.pages import study_lifespan

    clients.trust_proxies(trusted_proxies)
    os.environ["FORWARDED_ALLOW_IPS"] = clients.forwarded_allow_ips()  # read by uvicorn.Config
    study_mode = getattr(app, "study_mode", False)
    footer = ["api"] if with_api or not study_mode else []
    if study_mode:
        uploads_route = with_api or "free_vote_show" in {fn.api_name for fn in app.fns.values()}
        results = getattr(app, "results_page", None)
        if results is not None:
            results.queue(default_concurrency_limit=2)
        lifespan = study_lifespan(results, uploads_route, footer_links=footer, show_error=False, theme=THEME, css=CSS,
                                  max_file_size=max_file_size)
        kwargs["app_kwargs"] = {**kwargs.get("app_kwargs", {}), "lifespan": lifespan}
    limits = limits or Limits()
    # Gradio's max_size bounds every waiting event (study votes too); FairQueue bounds waiting explanations.
    app.queue(max_size=8 * limits.queue_size, default_concurrency_limit=4)  # 4: the cheap listeners (set, study)
    middleware = [install(app, limits),
                  Middleware(UploadGate, blocks=app, limits=uploads or UploadLimits(), address=client_address)]
    kwargs["app_kwargs"] = {**kwargs.get("app_kwargs", {}), "middleware": middleware}
    return app.launch(server_name=host, server_port=port, max_file_size=max_file_size, show_error=False, theme=THEME,
                      css=CSS, js=JS, footer_links=footer, **kwargs)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--sets", nargs="+", help="model sets to load (default: every set of models/manifest.json "
                                            "and of --models)")
    p.add_argument("--models", metavar="MODELS.toml", type=Path,
                   help="your own models and sets (checkpoints trained on your data); see README 'Your own models'")
    p.add_argument("--random-imagenet", action="store_true",
                   help="load the ImageNet-shaped set (ResNet-50, SE-ResNet-50, ResNet-50 + CBAM) with RANDOM weights, for benchmarks")
    p.add_argument("--study", metavar="CONFIG.toml", help="run the user study described by this file")
    p.add_argument("--db", metavar="URL", help="study database (SQLAlchemy URL; default: SQLite in --data-dir)")
    p.add_argument("--data-dir", default="data", help="folder for the study's SQLite file (default: ./data)")
    p.add_argument("--admin-password-file", metavar="FILE",
                   help="enables the study's Results tab with the password in FILE (first line); or set "
                        "$CBAM_VIZ_ADMIN_PASSWORD (never on the command line, where `ps` shows it)")
    p.add_argument("--joins-per-hour", type=int, default=None,
                   help="new study participants allowed per client address and hour (default: 60; behind a "
                        "reverse proxy not named with --trusted-proxy every participant has the proxy's address)")
    p.add_argument("--trusted-proxy", nargs="+", default=[], metavar="ADDR",
                   help="reverse proxies (IP addresses or networks) whose X-Forwarded-For names the client; "
                        "from anyone else the header is ignored (default: no one)")
    p.add_argument("--with-api", action="store_true",
                   help="with --study, also show the 'Use via API' footer and keep the upload route")
    p.add_argument("--with-compare", action="store_true",
                   help="with --study, also serve the Compare tab and its blind vote on uploads (participants could "
                        "then upload a study image there and see the labelled maps)")
    p.add_argument("--store-uploads", action="store_true",
                   help="keep the images of blind votes on uploads in DATA_DIR/uploads (default: only their SHA-256)")
    p.add_argument("--max-file-size", default="20mb", help="largest accepted upload, e.g. 20mb (default)")
    limits = p.add_argument_group("server limits (README 'Server limits'; defaults sized from this machine)")
    limits.add_argument("--slots", type=int, help="explanations computing at once, all users together "
                                                   "(default: half the CPU cores, 2 to 8; 4 on a GPU)")
    limits.add_argument("--slow-slots", type=int, help="of which slow ones, e.g. Score-CAM (default: a third, at least 1)")
    limits.add_argument("--per-client", type=int, help="requests of one browser tab waiting or running (default 3)")
    limits.add_argument("--per-address", type=int, help="requests of one client address waiting or running (default 6)")
    limits.add_argument("--per-address-running", type=int, dest="address_running",
                        help="requests of one client address computing at once (default 1; more behind a shared NAT)")
    limits.add_argument("--queue-size", type=int, help="explanations waiting, all users together (default 64; "
                                                        "all requests waiting: 8 times as many)")
    limits.add_argument("--upload-files", type=int, default=UploadLimits.files,
                        help=f"files per upload request (default {UploadLimits.files})")
    limits.add_argument("--upload-mb-per-hour", type=int, default=UploadLimits.client_bytes // 2**20,
                        help=f"upload megabytes per client address and hour (default {UploadLimits.client_bytes // 2**20})")
    limits.add_argument("--max-request-seconds", type=float,
                        help="refuse requests estimated to compute longer than this (default 600)")
    return p.parse_args(argv)


def admin_password(args: argparse.Namespace) -> str | None:
    """The Results tab's password: the first line of --admin-password-file, else $CBAM_VIZ_ADMIN_PASSWORD."""
    if args.admin_password_file:
        try:
            lines = Path(args.admin_password_file).read_text().splitlines()
        except OSError as exc:
            raise SystemExit(f"cannot read the admin password file {args.admin_password_file}: {exc.strerror}") from None
        if not lines or not lines[0].strip():
            raise SystemExit(f"the admin password file {args.admin_password_file} is empty")
        return lines[0].strip()
    return os.environ.get("CBAM_VIZ_ADMIN_PASSWORD") or None


def _stop(signum: int, frame: object) -> None:
    """SIGTERM (docker stop, systemd): leave through main's clean-up, with status 0."""
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _stop)  # before loading anything: the temp folders go at exit at the latest
    args = parse_args(argv)
    if "GRADIO_TEMP_DIR" not in os.environ:  # Gradio's uploads and copies in a folder of this server's own
        os.environ["GRADIO_TEMP_DIR"] = str(work_dir(sys.modules[__name__], "cbam-viz-gradio-"))
    from cbam_viz.models.config import ModelsConfigError
    from cbam_viz.ui.clients import trust_proxies

    try:
        trust_proxies(args.trusted_proxy)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None

    try:
        ctx = AppContext(sets=args.sets, user_models=args.models)
    except ModelsConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.random_imagenet:
        ctx.add(random_imagenet_set(ctx.device))
    for name, reason in ctx.unavailable.items():
        print(f"model set {name!r} unavailable: {reason}")
    study = None
    if args.study:
        from cbam_viz.study import ConfigError, StudyError, build_runtime, load_config, open_store

        try:
            study = build_runtime(ctx, open_store(args.db, args.data_dir), load_config(args.study))
        except (ConfigError, StudyError) as exc:
            raise SystemExit(f"cannot run the study: {exc}") from None
    upload_dir = Path(args.data_dir) / "uploads" if args.store_uploads else None
    app = build_app(ctx, study, admin_password(args), upload_dir, compare=not args.study or args.with_compare,
                    joins_per_hour=args.joins_per_hour)
    try:
        limits = machine_limits(ctx.device, slots=args.slots, slow_slots=args.slow_slots, per_client=args.per_client,
                                per_address=args.per_address, address_running=args.address_running,
                                queue_size=args.queue_size, max_request_seconds=args.max_request_seconds)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    uploads = UploadLimits(files=args.upload_files, client_bytes=args.upload_mb_per_hour * 2**20)
    launch(app, args.host, args.port, args.max_file_size, prevent_thread_lock=True, trusted_proxies=args.trusted_proxy,
           with_api=args.with_api, limits=limits, uploads=uploads)
    print(f"ready in {time.perf_counter() - STARTED:.1f} s: model sets {', '.join(ctx.sets) or 'none'} on {ctx.device}", flush=True)
    if app.results_page is not None:
        print(f"study results (owner, password): http://{args.host}:{args.port}/results", flush=True)
    try:
        app.block_thread()
    finally:
        app.close()
        remove_served_files(app)  # what it received and created, partial uploads too
        remove_work_dirs()


if __name__ == "__main__":
    main()
