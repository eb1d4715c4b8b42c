"""The Compare tab: every model of a set (baseline, SE, CBAM, ...) on one image, their CAMs and every
attention map (SE: channel; CBAM: channel and spatial).

Handlers only validate input, call the library and hand numpy panels to Gradio; every user error
(bad image, unavailable set, unknown option, argument of the wrong type) becomes a ``gr.Error`` with a
one-line message, and a file payload names a file only if this app received or served it (serving.Uploads).
"""
from __future__ import annotations

import html
import logging
import os
import re
import shutil
from functools import lru_cache
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import gradio as gr
import numpy as np
from gradio.context import Context
from matplotlib import cbook
from PIL import Image

from .. import CLI
from ..data import DIFFICULTIES, Sample, render_sample
from ..data.domain import out_of_domain
from ..explain import METHOD_NAMES, METHODS, Cancelled, Explanation, default_target_layer, target_layers, to_arrays
from ..images import ImageError, open_image
from ..models import cbam_blocks, crop_for_display, display_crop
from ..models.published import Source
from ..models.sets import ModelSet, SetUnavailable, role_title
from ..render import comparison_figure, panels
from ..service import AppContext, Timing, display_image, image_sha256
from ..fileio import atomic_write
from .fairness import COMPUTE, Limits, current_limits, register_cost, stop_check
from .serving import BoundedFolder, Refused, Uploads, work_dir

log = logging.getLogger(__name__)

OWN = "each model's own prediction"
TRUTH = "the ground truth where known, else each model's prediction"  # the default target
METHOD_LABELS = {**METHOD_NAMES, "scorecam": f"{METHOD_NAMES['scorecam']} (slow: one forward pass per channel)"}
HINT = "Upload an image, paste one or pick an example."
UNAVAILABLE = "*This model set is unavailable (see under “Model set”): choose another to explain the image.*"
VIEW = 256  # CAM views are drawn at least this large
EXAMPLE_SEED = 9001  # a dataset seed that training (1), validation (2), evaluation (3) and the study (0) do not use
MAX_TEXT = 200  # longest accepted option value (set, method, layer, class, block, model)
# An export's files stay at most this long and the folder within this size (Gradio serves them from there).
EXPORT_TTL = 3600
EXPORT_BYTES = 200 * 2**20
# Where `bash run.sh cli evaluate --layers ...` writes <set>_sweep.html by default (the project's results/).
RESULTS_DIR = Path(os.environ.get("CBAM_VIZ_RESULTS") or Path(__file__).resolve().parents[2] / "results")
_served_pages: set[Path] = set()


def sweep_link(set_name: str, results: Path | None = None) -> str | None:
    """A Markdown link to the set's layer and seed sweep page (``<set>_sweep.html`` in ``results``,
    default :data:`RESULTS_DIR`), served by Gradio as a static file; None when the set has none."""
    if Path(set_name).name != set_name:  # a set name from a models file that is a path: no page
        return None
    page = ((results or RESULTS_DIR) / f"{set_name}_sweep.html").resolve()
    if not page.is_file():
        return None
    if page not in _served_pages:
        gr.set_static_paths([page])  # this one file, not the folder
        _served_pages.add(page)
    return f"[the layer and seed sweep of `{set_name}`](/gradio_api/file={quote(str(page))})"


class BadRequest(ValueError):
    """An option of the wrong type or value; the message says which."""


@dataclass(frozen=True)
class Example:
    path: Path
    caption: str
    sample: Sample | None = None  # ground truth of generated demo images


def write_examples(folder: Path, count: int = 12, generator: str = "hard") -> list[Example]:
    """One generated demo image per class (with ground truth) of the ``generator`` difficulty, then
    grace_hopper.jpg."""
    folder.mkdir(parents=True, exist_ok=True)
    examples = []
    for index in range(count):
        sample = render_sample(EXAMPLE_SEED, index, difficulty=DIFFICULTIES[generator])
        path = folder / f"demo-{index:02d}-{sample.class_name}.png"
        sample.image.save(path)
        examples.append(Example(path, f"demo: {sample.class_name}", sample))
    hopper = folder / "grace_hopper.jpg"
    shutil.copyfile(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), hopper)
    return [*examples, Example(hopper, "photo (ImageNet set): Grace Hopper")]


@contextmanager
def user_errors() -> Iterator[None]:
    """Bad input, unavailable sets and invalid options become a one-line ``gr.Error`` (HTML-escaped: Gradio
    renders it as HTML, and it may quote a file or option name); any other error a generic line, its details
    only in the server log."""
    try:
        yield
    except (SetUnavailable, ImageError, BadRequest, Refused) as e:
        raise gr.Error(html.escape(str(e), quote=False), print_exception=False) from None
    except MemoryError:
        raise gr.Error("not enough memory to explain this image: try a smaller one", print_exception=False) from None
    except Cancelled:  # nobody reads it: the page that asked has gone
        raise gr.Error("cancelled: the page that asked for this explanation has closed", print_exception=False) from None
    except Exception:
        log.exception("Compare tab: request failed")
        raise gr.Error("internal error while explaining this image (details in the server log)",
                       print_exception=False) from None


def _text(what: str, value: Any) -> str:
    """``value`` if it is a string of at most :data:`MAX_TEXT` characters, else :class:`BadRequest`."""
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise BadRequest(f"invalid {what}: expected a name of at most {MAX_TEXT} characters")
    return value


def _choices(model_set: ModelSet) -> dict[str, Any]:
    """The set's target layers, class choices, roles and attention blocks, with their defaults."""
    reference = model_set.models[model_set.roles[0]]
    attentive = [m for m in model_set.models.values() if cbam_blocks(m)]
    blocks = [name for name, _ in cbam_blocks(attentive[-1])] if attentive else []
    roles = [(f"{role_title(r)} · {m.info.title}", r) for r, m in model_set.models.items()]
    return {"layers": target_layers(reference), "layer": default_target_layer(reference),
            "classes": [TRUTH, OWN, *panels.unique_names(model_set.class_names)], "blocks": blocks,
            "block": blocks[-1] if blocks else None, "roles": roles, "left": model_set.roles[0],
            "right": model_set.roles[-1]}


def _random_weights(model_set: ModelSet) -> bool:
    """Whether a model of the set has random weights (``app.py --random-imagenet``, for benchmarks)."""
    return any("random weights" in m.info.title for m in model_set.models.values())


def _set_label(ctx: AppContext, name: str) -> str:
    if name not in ctx.sets:
        return f"{name} (unavailable)"
    return f"{name} (random weights)" if _random_weights(ctx.sets[name]) else name


def _set_info(ctx: AppContext, name: str) -> str:
    if name not in ctx.sets:
        return (f"**Model set “{name}” is unavailable.** {ctx.unavailable.get(name, 'Unknown model set.')}"
                + _fetch_sources(name))
    model_set = ctx.sets[name]
    info = model_set.info
    titles = " vs ".join(m.info.title for m in model_set.models.values())
    return (f"{model_set.description}  \n{titles} · {info.input_size} px · {len(model_set.class_names)} classes · "
            f"{ctx.device}" + ("" if "random weights" in titles else _loaded_sources(model_set)))


def _source_line(role: str, source: Source) -> str:
    note = f"  \n**{source.note}**" if source.note else ""
    return f"  \n*{role_title(role)}:* {source.origin}; {source.accuracy}; {source.preprocessing}{note}"


@lru_cache(maxsize=16)
def _fetch_sources(name: str) -> str:
    """What `weights fetch` would download for a set, with the published accuracy ("" for other sets)."""
    from ..models.fetch import FetchError, set_sources

    try:
        sources = set_sources(name)
    except FetchError:
        return ""
    return "".join(_source_line(role, source) for role, (source, _) in sources.items())


def _loaded_sources(model_set: ModelSet) -> str:
    """Where each loaded external file comes from: the published file it is, or that it is none of them."""
    return "".join(_source_line(role, model_set.sources[role]) if role in model_set.sources else
                   f"  \n*{role_title(role)}:* {model_set.models[role].info.title} from a file that is not in torchvision's "
                   "or pytorchcv's metadata (the CBAM authors' checkpoint, or a renamed file): source and accuracy not shown"
                   for role, entry in model_set.entries.items() if entry.get("kind") == "external")


@dataclass
class _Request:
    """One validated request and its explanation, with what every panel needs."""

    model_set: ModelSet
    image: Image.Image
    digest: str  # image_sha256 of ``image``
    results: dict[str, Explanation]
    timing: Timing
    names: list[str]  # unique class names
    titles: dict[str, str]  # role -> "Baseline · ResNet-18"
    display: np.ndarray  # the same part of the uploaded image at its own resolution: what overlays are drawn on
    mask: np.ndarray | None  # ground-truth mask on the image as the models see it, for generated demo images
    truth: int | None  # ground-truth class, when it is one of the set's classes


class CompareTab:
    """The tab's handlers; ``truth`` maps an image digest to the generated sample it is; only files of
    ``uploads`` are ever opened."""

    def __init__(self, ctx: AppContext, examples: list[Example], exports: BoundedFolder, uploads: Uploads):
        self.ctx = ctx
        self.truth = {image_sha256(e.sample.image): e.sample for e in examples if e.sample}
        self.exports = exports
        self.uploads = uploads

    def _run(self, image: Any, model_set: Any, method: Any, layer: Any, target: Any) -> _Request:
        if not image:
            raise BadRequest("upload an image, paste one or pick an example first")
        loaded = self.ctx.model_set(_text("model set", model_set))
        if _text("CAM method", method) not in METHODS:
            raise BadRequest(f"unknown CAM method {method!r}; choose from {', '.join(METHODS)}")
        layers = target_layers(loaded.models[loaded.roles[0]])
        if _text("target layer", layer) not in layers:
            raise BadRequest(f"unknown target layer {layer!r} for set {model_set}; choose from {layers[0]} … {layers[-1]}")
        names = panels.unique_names(loaded.class_names)
        if _text("target class", target) not in (TRUTH, OWN, *names):
            raise BadRequest(f"unknown target class {target!r} for set {model_set}")
        self._check_cost(model_set, method, layer)
        path = self.uploads.path(image)
        name = image.get("orig_name")
        picture = open_image(path, name=name if isinstance(name, str) and name else path.name)
        digest = image_sha256(picture)
        info = loaded.info
        sample = self.truth.get(digest)
        truth = loaded.class_names.index(sample.class_name) if sample and sample.class_name in loaded.class_names else None
        index = names.index(target) if target in names else truth if target == TRUTH else None
        results, timing = self.ctx.explain_timed(model_set, picture, method, index, layer, digest,
                                                 should_stop=stop_check())
        mask = None
        if sample is not None:
            mask = np.asarray(crop_for_display(Image.fromarray(sample.mask.astype(np.uint8) * 255), info))[..., 0] >= 128
        titles = {role: f"{role_title(role)} · {m.info.title}" for role, m in loaded.models.items()}
        return _Request(loaded, picture, digest, results, timing, names, titles, np.asarray(display_crop(picture, info)),
                        mask if mask is not None and mask.any() else None, truth)

    def _check_cost(self, model_set: str, method: str, layer: str) -> None:
        """BadRequest when the request's estimated cost is above the server's limit (before anything is computed)."""
        limits, cost = current_limits(), self.ctx.estimate(model_set, method, layer)
        if limits is not None and cost is not None and cost > limits.max_request_seconds:
            raise BadRequest(f"{METHOD_NAMES[method]} of {layer} on set {model_set} would take about {duration(cost)} on "
                             f"this server, above its limit of {duration(limits.max_request_seconds)}: choose a faster "
                             "method or an earlier layer")

    def estimate(self, model_set: Any, method: Any, layer: Any) -> str:
        """A note on what a slow request will cost, shown before it runs ("" for fast ones)."""
        cost, limits = self.ctx.estimate(model_set, method, layer), current_limits() or Limits()
        if cost is None or cost <= limits.slow_seconds:
            return ""
        note = f"Estimated time: about {duration(cost)} on {self.ctx.device}"
        if cost > limits.max_request_seconds:
            return f"{note}, above this server's limit of {duration(limits.max_request_seconds)}: it will be refused."
        return f"{note}; at most {limits.slow_slots} such request{'s' if limits.slow_slots > 1 else ''} run at once."

    def compare(self, image: Any, model_set: Any, method: Any, layer: Any, target: Any, shared: Any, block: Any,
                left: Any, right: Any, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
        """Everything the tab shows for one image; blank panels and a hint when there is no image."""
        if not image:
            return (HINT, *[None] * 7)
        with user_errors():
            if not isinstance(shared, bool):
                raise BadRequest("invalid shared colour scale: expected true or false")
            cost = self.ctx.estimate(model_set, method, layer)
            slow = cost is not None and cost > (current_limits() or Limits()).slow_seconds
            progress(0, desc="explaining with every model of the set" + (f" (about {duration(cost)})" if slow else ""))
            r = self._run(image, model_set, method, layer, target)
            for side, role in (("left", left), ("right", right)):
                if _text(f"slider {side} model", role) not in r.results:
                    raise BadRequest(f"unknown model {role!r} for the slider; choose from {', '.join(r.results)}")
            blocks = next((x.blocks for x in reversed(r.results.values()) if x.blocks), [])
            if block is not None and _text("attention block", block) not in blocks:
                raise BadRequest(f"unknown attention block {block!r}; choose from {', '.join(blocks) or 'none'}")
            return self._panels(r, method, layer, target, shared, block, left, right)

    def after_set(self, image: Any, model_set: Any, method: Any, layer: Any, target: Any, shared: Any, block: Any,
                  left: Any, right: Any, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
        """Once a set is chosen: the image explained by it; for an unavailable set, blank panels (what is
        missing shows once, in the set's description above, not as an error on every panel)."""
        if isinstance(model_set, str) and model_set in self.ctx.unavailable:
            return (UNAVAILABLE, *[None] * 7)
        return self.compare(image, model_set, method, layer, target, shared, block, left, right, progress)

    def _panels(self, r: _Request, method: str, layer: str, target: str, shared: bool, block: str | None,
                left: str, right: str) -> tuple:
        """The summary and every panel of one explained request."""
        view = panels.upscale(r.display, VIEW)
        scale = panels.shared_scale(r.results) if shared else None
        views = {role: panels.cam_view(view, result, scale, r.mask) for role, result in r.results.items()}
        explained = (f"class {target}" if target not in (OWN, TRUTH) else OWN if target == OWN or r.truth is None
                     else f"the ground truth, {r.names[r.truth]}")
        t = r.timing
        if t.cached:
            spent = "cached result" + (f", ready after {t.waited:.2f} s" if t.waited else "")
        else:
            spent = f"computed in {t.computed:.2f} s on {self.ctx.device}" + (
                f", sharing it with {t.alongside} other request{'s' if t.alongside > 1 else ''}" if t.alongside else "")
        timing = f"{METHOD_LABELS.get(method, method)} of {layer} for {explained}: {spent}"
        summary = [panels.agreement(r.results, r.names, r.titles, r.truth, out_of_domain=self._out_of_domain(r)),
                   f"\n*{timing}.*"]
        width, height = r.image.size
        size = r.model_set.info.input_size
        if min(width, height) < size:
            summary.append(f"*The image ({width}×{height}) is smaller than the model input ({size} px); it was enlarged.*")
        if r.mask is not None:
            summary += [f"\n**Localization against the ground-truth mask** (target layer {layer})\n",
                        panels.localization(r.results, r.titles, r.mask, r.names, r.truth),
                        "\n*Pointing, AUC and rank hit depend only on where a map's values rank; energy also rises with a "
                        "sharper map (concentration: share of pixels at or above half the maximum). A map of another "
                        "class than the ground truth is not scored.*"]
            link = sweep_link(r.model_set.name)
            summary.append(f"\n*These scores are for one image at one layer.* Every layer, on held-out images and "
                           f"for each training seed: {link}" if link else
                           f"\n*These scores are for one image at one layer; `{CLI} evaluate --layers all` "
                           "scores every layer on held-out images.*")
        spatial = [(f"{r.titles[role]}: spatial attention",
                    panels.attention_grid(view, x.blocks, x.spatial_attention, r.mask, shared))
                   for role, x in r.results.items() if x.spatial_attention]
        channel = [(f"{r.titles[role]}: channel attention", panels.channel_heatmap(x.blocks, x.channel_attention))
                   for role, x in r.results.items() if x.channel_attention]
        slider = (panels.labelled(views[left], role_title(left), "left"),  # short: each fits in its half
                  panels.labelled(views[right], role_title(right), "right"))
        top_channels = {r.titles[role]: x.channel_attention[x.blocks.index(block)]
                        for role, x in r.results.items() if block in x.blocks}
        captions = {role: panels.cam_caption(r.titles[role], x, r.names) for role, x in r.results.items()}
        return ("\n".join(summary), [(views[role], captions[role]) for role in r.results], slider,
                panels.top_k_table(r.results, r.names, r.titles), panels.legend(shared, scale, len(r.results)),
                panels.titled(spatial), panels.titled(channel), panels.top_channels_table(top_channels, block))

    def _out_of_domain(self, r: _Request) -> str | None:
        """A warning that replaces the verdict: random weights (never trained), or demo models (they know only
        generated shapes) on anything else."""
        if _random_weights(r.model_set):
            return ("**Random weights: these models were never trained**, so their predictions, whether they agree, "
                    "and their maps mean nothing; this set shows the layout of the panels only.")
        note = out_of_domain(r.model_set.class_names, generated=r.digest in self.truth)
        return note and f"**{note}** For real photos: `{CLI} weights fetch imagenet`, then pick the `imagenet` set."

    def export(self, image: Any, model_set: Any, method: Any, layer: Any, target: Any) -> list[str]:
        """The comparison figure (PNG) and every array (``.npz``) of the current explanation, named after the
        request, in a folder of their own and each written atomically (concurrent exports never share a file)."""
        with user_errors():
            r = self._run(image, model_set, method, layer, target)
            folder = self.exports.new()
            parts = ("cbam-viz", model_set, method, layer, {OWN: "own", TRUTH: "truth"}.get(target, target), r.digest[:10])
            stem = "_".join(re.sub(r"[^\w.+-]+", "-", part) for part in parts)
            figure = comparison_figure(r.display, r.results, r.model_set.class_names, r.titles,
                                       out_of_domain(r.model_set.class_names, generated=r.digest in self.truth))
            seen = display_image(r.model_set, r.image)  # as the models see it (resized/cropped): what the CAMs cover
            extra = {"image": seen} if r.mask is None else {"image": seen, "mask": r.mask}
            png = atomic_write(folder / f"{stem}.png", lambda f: figure.save(f, "PNG"))
            npz = atomic_write(folder / f"{stem}.npz", lambda f: np.savez_compressed(f, **to_arrays(r.results), **extra))
        return [str(png), str(npz)]

    def select_set(self, model_set: Any) -> tuple:
        """The set's description and its layers, classes, attention blocks and slider models as dropdown choices."""
        with user_errors():
            if _text("model set", model_set) not in (*self.ctx.sets, *self.ctx.unavailable):
                raise BadRequest(f"unknown model set {model_set!r}")
        if model_set not in self.ctx.sets:
            return _set_info(self.ctx, model_set), *[gr.Dropdown()] * 5
        c = _choices(self.ctx.sets[model_set])
        return (_set_info(self.ctx, model_set), gr.Dropdown(choices=c["layers"], value=c["layer"]),
                gr.Dropdown(choices=c["classes"], value=TRUTH), gr.Dropdown(choices=c["blocks"], value=c["block"]),
                gr.Dropdown(choices=c["roles"], value=c["left"]), gr.Dropdown(choices=c["roles"], value=c["right"]))


def duration(seconds: float) -> str:
    """``seconds`` in words: "0.4 s", "12 s", "3 min", "2.1 h"."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def default_set(ctx: AppContext) -> str | None:
    """"demo" when loaded, else the first loaded set, else the first unavailable one."""
    names = [*ctx.sets, *ctx.unavailable]
    return "demo" if "demo" in ctx.sets else next(iter(ctx.sets), names[0] if names else None)


def build_compare_tab(ctx: AppContext) -> dict[str, gr.components.Component]:
    """The Compare tab's components, wired to :class:`CompareTab`; call inside ``gr.Blocks``."""
    if Context.root_block is None:
        raise RuntimeError("build_compare_tab must be called inside gr.Blocks")
    blocks = Context.root_block
    work = work_dir(blocks)
    name = default_set(ctx)
    examples = write_examples(work / "examples", generator=ctx.sets["demo"].generator if "demo" in ctx.sets else "hard")
    c = (_choices(ctx.sets[name]) if name in ctx.sets else
         {"layers": [], "layer": None, "classes": [TRUTH, OWN], "blocks": [], "block": None, "roles": [], "left": None,
          "right": None})
    set_labels = [(_set_label(ctx, p), p) for p in [*ctx.sets, *ctx.unavailable]]

    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            image = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"], label="Image", height=280,
                             elem_id="image")
            model_set = gr.Dropdown(set_labels, value=name, label="Model set", elem_id="model-set")
            set_info = gr.Markdown(_set_info(ctx, name) if name else "No model set in the manifest.", elem_classes="note",
                                   elem_id="set-info")
            method = gr.Dropdown([(METHOD_LABELS.get(k, k), k) for k in METHODS], value="gradcam", label="CAM method",
                                 elem_id="method")
            estimate = gr.Markdown("", elem_classes="note", elem_id="estimate")
            layer = gr.Dropdown(c["layers"], value=c["layer"], label="Target layer", info="default: last block of layer4",
                                elem_id="layer")
            target = gr.Dropdown(c["classes"], value=TRUTH, label="Target class", filterable=True, elem_id="target",
                                 info="type to search; one class explains every model")
            shared = gr.Checkbox(label="Raw values on one shared colour scale",
                                 info="CAMs of all models, and the attention maps")
            run = gr.Button("Explain", variant="primary")
            gr.Examples([[str(e.path)] for e in examples], inputs=image, example_labels=[e.caption for e in examples],
                        label="Examples: generated demo images (with ground truth) and a photo", examples_per_page=13)
            served = set(image.temp_files)  # Gradio's copies of the examples, the paths a click hands back
            export = gr.Button("Prepare downloads: figure (PNG) + arrays (.npz)", size="md")
            files = gr.File(label="Downloads", file_count="multiple", interactive=False, visible=False,
                            elem_id="downloads")
        with gr.Column(scale=2, min_width=520):
            summary = gr.Markdown(HINT, label="Summary", elem_id="summary")
            views = gr.Gallery(label="CAM of every model", columns=3, object_fit="contain", height="auto",
                               format="jpeg", interactive=False, buttons=["download"], elem_id="views")
            legend = gr.Markdown(panels.legend(False), label="Legend", elem_classes="note", elem_id="legend")
            top5 = gr.Markdown(elem_id="top5")
            with gr.Row():
                left = gr.Dropdown(c["roles"], value=c["left"], label="Slider: left model", elem_id="slider-left")
                right = gr.Dropdown(c["roles"], value=c["right"], label="Slider: right model", elem_id="slider-right")
            slider = gr.ImageSlider(label="Before / after: the two chosen models", format="jpeg", interactive=False,
                                    max_height=420, elem_id="slider")
    gr.Markdown("### Attention in every block (SE: channel; CBAM: channel and spatial)")
    with gr.Row(equal_height=False):
        spatial = gr.Image(label="Spatial attention of every block, grouped by stage (CBAM models)", format="jpeg",
                           interactive=False, scale=3, elem_id="spatial")
        with gr.Column(scale=2):
            channels = gr.Image(label="Channel attention: blocks × channels (sorted), every attentive model",
                                format="jpeg", interactive=False, elem_id="channels")
            block = gr.Dropdown(c["blocks"], value=c["block"], label="Attention block", elem_id="block")
            top_channels = gr.Markdown(elem_id="top-channels")

    ctx.measure_speed()  # the cost of a request, estimated before it runs (lanes, limit, the note above)
    exports = BoundedFolder(work / "exports", EXPORT_BYTES, EXPORT_TTL)
    gr.set_static_paths([exports.root])  # served from there: no second copy in Gradio's cache, outside the cap
    tab = CompareTab(ctx, examples, exports, Uploads(blocks, served))
    inputs = [image, model_set, method, layer, target, shared, block, left, right]
    outputs = [summary, views, slider, top5, legend, spatial, channels, top_channels]
    # preprocess=False: handlers get the file payload unopened (Uploads checks it, open_image reads it and words
    # any error) and the raw option values, which _run validates against the chosen set (not the session's
    # dropdown choices). Gradio checks a payload with "meta" only; without, it reaches the handler unchecked.
    # Every listener that explains shares one budget (COMPUTE, see fairness.FairQueue); the estimate picks its lane.
    compute = dict(concurrency_id=COMPUTE, preprocess=False)
    gr.on([image.change, run.click, method.input, layer.input, target.input, shared.input, block.input, left.input,
           right.input], tab.compare, inputs, outputs, api_name="compare", trigger_mode="always_last", **compute)
    model_set.input(tab.select_set, model_set, [set_info, layer, target, block, left, right], api_name="select_set",
                    preprocess=False).then(tab.after_set, inputs, outputs, api_visibility="private", **compute)
    export.click(tab.export, inputs[:5], files, api_name="export", **compute).success(
        lambda: gr.File(visible=True), None, files, api_visibility="private", queue=False)
    gr.on([model_set.change, method.change, layer.change], tab.estimate, [model_set, method, layer], estimate,
          api_visibility="private", queue=False, preprocess=False, show_progress="hidden")
    for fn in (tab.compare, tab.after_set, tab.export):
        register_cost(blocks, fn, lambda data: ctx.estimate(*data[1:4]) or 0.0)
    return {"image": image, "model_set": model_set, "method": method, "layer": layer, "target": target,
            "shared": shared, "block": block, "summary": summary, "views": views, "slider": slider,
            "spatial": spatial, "channels": channels, "files": files, "left": left, "right": right}
