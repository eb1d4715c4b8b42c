"""Download published ImageNet weights: ``python -m cbam_viz weights fetch SET``. Nothing else downloads.

Where each file comes from is read from the libraries: torchvision's weights API (URL, the SHA-256
prefix in the file name that ``torch.hub`` checks, ImageNet metrics) and pytorchcv's model store
(release tag, SHA-1 and error value from ``model_metainfos.csv``, the archive
``{name}-{error}-{sha1[:8]}.pth.zip`` on the imgclsmob GitHub releases, top-1/top-5 errors from its
README table). Neither library's downloader fits as is (pytorchcv's writes in place, with no timeout;
``torch.hub.download_url_to_file`` has no timeout and accepts a body cut short), so the transfer is a
small urllib loop: a bounded socket timeout, a temporary file next to the destination, HTTP Range
resume on retry, a Content-Length check, the publisher's checksum, then an atomic rename.

A mirror base URL replaces everything up to the file name: ``MIRROR/<file name of the original URL>``.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
import uuid
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from tqdm import tqdm

from .sets import MODELS_DIR, external_path, read_manifest, weights_dir

TIMEOUT_S = 15.0
ATTEMPTS = 3
MIRROR_ENV = "CBAM_VIZ_MIRROR"
LOCATIONS_FILE = "locations.json"
_CHUNK = 1 << 16


class FetchError(RuntimeError):
    """A failed fetch; the message is one line (the URL, what went wrong, the manual alternative)."""


class _Retryable(Exception):
    """The server answered but the transfer broke: worth another attempt (resuming what arrived)."""


@dataclass(frozen=True)
class Source:
    """One published weight file: where it is, how it is packaged and checked, and what it scores."""

    model_id: str  # the manifest entry it provides
    url: str
    file_name: str  # the file placed in the weights folder
    sha256_prefix: str | None = None
    sha1: str | None = None
    zipped: bool = False  # the URL is a zip archive holding file_name
    origin: str = ""
    accuracy: str = ""


def torchvision_source(model_id: str, weights: str) -> Source:
    """A torchvision weights enum member, e.g. ``ResNet50_Weights.IMAGENET1K_V1``."""
    import torchvision.models
    from torch.hub import HASH_REGEX

    enum_name, member = weights.split(".")
    w = getattr(getattr(torchvision.models, enum_name), member)
    file_name = w.url.rsplit("/", 1)[1]
    match = HASH_REGEX.search(file_name)
    if not match:
        raise FetchError(f"{w.url}: no SHA-256 prefix in the file name, so the download could not be checked")
    metrics = w.meta["_metrics"]["ImageNet-1K"]
    return Source(model_id, w.url, file_name, sha256_prefix=match.group(1),
                  origin=f"torchvision {weights} ({w.meta['num_params']:,} parameters)",
                  accuracy=f"top-1 {metrics['acc@1']}%, top-5 {metrics['acc@5']}% (ImageNet-1K val, torchvision's metadata)")


def pytorchcv_source(model_id: str, name: str) -> Source:
    """A pytorchcv model-store entry, e.g. ``seresnet50b``, named and located as ``model_store.get_model_file`` does."""
    try:
        from pytorchcv.models.common import model_store
    except ImportError:
        raise FetchError(f"reading pytorchcv's model store needs pytorchcv: pip install pytorchcv (for {name})") from None
    error, sha1, tag = model_store.get_model_name_suffix_data(name)
    rows = model_store.load_csv(model_store.get_model_metainfos_file_path())
    row = dict(zip(rows[0], next(r for r in rows[1:] if r[0] == name)))
    file_name = f"{name}-{error}-{sha1[:8]}.pth"
    top1_err = _pytorchcv_top1_error(file_name)
    top5_err = int(error) / 100
    top1 = f"top-1 {100 - top1_err:.2f}%, " if top1_err is not None else ""
    published = f"top-1/top-5 error {top1_err:.2f}% / {top5_err:.2f}%" if top1_err is not None else f"top-5 error {top5_err:.2f}%"
    return Source(model_id, f"{model_store.imgclsmob_repo_url}/releases/download/{tag}/{file_name}.zip", file_name,
                  sha1=sha1, zipped=True,
                  origin=f"pytorchcv {name} = {row['model_caption']} ({int(row['net_weights']):,} parameters, release {tag})",
                  accuracy=f"{top1}top-5 {100 - top5_err:.2f}% (ImageNet-1K val, 1 crop; pytorchcv's published {published})")


def _pytorchcv_top1_error(file_name: str) -> float | None:
    """The Top1 column of pytorchcv's README table (its package description), found by the file's log link."""
    from importlib.metadata import metadata

    text = metadata("pytorchcv").get_payload() or ""
    row = next((line for line in text.splitlines() if line.startswith("|") and f"/{file_name}.log)" in line), None)
    cells = [c.strip() for c in row.strip().strip("|").split("|")] if row else []
    return float(cells[1]) if len(cells) > 2 and re.fullmatch(r"\d+\.\d+", cells[1]) else None


LIBRARY_SOURCES: dict[str, Callable[[], Source]] = {
    "imagenet-resnet50": lambda: torchvision_source("imagenet-resnet50", "ResNet50_Weights.IMAGENET1K_V1"),
    "imagenet-seresnet50b": lambda: pytorchcv_source("imagenet-seresnet50b", "seresnet50b"),
    "imagenet-resnet50-cbam": lambda: pytorchcv_source("imagenet-resnet50-cbam", "cbam_resnet50"),
}


def set_sources(name: str, models_dir: Path = MODELS_DIR,
                sources: Mapping[str, Source] | None = None) -> dict[str, tuple[Source, dict[str, Any]]]:
    """Role -> (source, manifest entry) for every model of a set; ``sources`` replaces the libraries' (tests)."""
    manifest = read_manifest(models_dir)
    known = set(sources) if sources is not None else set(LIBRARY_SOURCES)
    fetchable = [s for s, spec in manifest["sets"].items() if set(spec["models"].values()) <= known]
    if name not in manifest["sets"] or name not in fetchable:
        raise FetchError(f"no downloadable model set {name!r}; sets with published weights: {', '.join(fetchable) or 'none'}")
    return {role: (sources[model_id] if sources is not None else LIBRARY_SOURCES[model_id](), manifest["models"][model_id])
            for role, model_id in manifest["sets"][name]["models"].items()}


def mirrored(url: str, mirror: str | None) -> str:
    """``MIRROR/<file name>`` for a mirror base URL, else the URL itself."""
    return f"{mirror.rstrip('/')}/{url.rsplit('/', 1)[1]}" if mirror else url


def registered_dirs() -> list[Path]:
    """Folders that ``weights fetch --dir`` registered in ``weights_dir()/locations.json``."""
    path = weights_dir() / LOCATIONS_FILE
    try:
        return [Path(d) for d in json.loads(path.read_text())["dirs"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as e:
        warnings.warn(f"ignoring {path}: {e}", stacklevel=2)
        return []


def register_dir(folder: Path) -> Path | None:
    """Record a weights folder other than ``weights_dir()`` so that model sets are found there; returns the registry."""
    folder = folder.resolve()
    if folder == weights_dir().resolve() or folder in registered_dirs():
        return None
    path = weights_dir() / LOCATIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    tmp.write_text(json.dumps({"dirs": [str(d) for d in registered_dirs() + [folder]]}, indent=2))
    os.replace(tmp, path)
    return path


def _mismatch(source: Source, path: Path) -> str | None:
    """None when the file carries the publisher's checksum, else what was found."""
    with open(path, "rb") as f:
        if source.sha256_prefix:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
            ok = digest.startswith(source.sha256_prefix)
            return None if ok else f"SHA-256 {digest} does not start with {source.sha256_prefix}"
        if source.sha1:
            digest = hashlib.file_digest(f, "sha1").hexdigest()
            return None if digest == source.sha1 else f"SHA-1 {digest} is not {source.sha1}"
    return "the source names no checksum"


def _transfer(url: str, tmp: Path, progress: bool, timeout: float) -> None:
    """One attempt: stream ``url`` into ``tmp``, continuing a previous attempt's bytes with HTTP Range."""
    have = tmp.stat().st_size if tmp.exists() else 0
    headers = {"User-Agent": "cbam-viz"} | ({"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code >= 500:
            raise _Retryable(f"HTTP {e.code} {e.reason}") from None
        raise FetchError(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:  # name resolution, connection refused, connect timeout: not retried
        raise FetchError(str(e.reason)) from None
    except (OSError, http.client.HTTPException) as e:
        raise _Retryable(str(e) or type(e).__name__) from None
    with response:
        resumed = bool(have and response.status == 206 and re.match(rf"bytes {have}-", response.headers.get("Content-Range", "")))
        have = have if resumed else 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length else None
        try:
            with open(tmp, "ab" if resumed else "wb") as f, tqdm(
                    total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=url.rsplit("/", 1)[1],
                    file=sys.stderr, disable=None if progress else True, leave=False) as bar:
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as e:
            raise _Retryable(f"transfer broken after {tmp.stat().st_size:,} bytes ({str(e) or type(e).__name__})") from None
    if total is not None and tmp.stat().st_size != total:
        raise _Retryable(f"transfer interrupted after {tmp.stat().st_size:,} of {total:,} bytes")


def _download(url: str, tmp: Path, progress: bool, attempts: int, timeout: float) -> None:
    for attempt in range(1, attempts + 1):
        try:
            _transfer(url, tmp, progress, timeout)
            return
        except _Retryable as e:
            if attempt == attempts:
                raise FetchError(f"{e} (gave up after {attempts} attempts)") from None
            print(f"{url}: {e}; retrying", file=sys.stderr)
            time.sleep(min(2.0 ** (attempt - 1), 4.0))


def manual_alternative(source: Source, entry: dict[str, Any], dest: Path) -> str:
    get = f"download {source.url}" + (", unzip it," if source.zipped else "")
    return f"{get} and place {source.file_name} in {dest} (or models/), or set {entry['env']}=/path/to/{source.file_name}"


def fetch_source(source: Source, entry: dict[str, Any], dest: Path, mirror: str | None = None, *,
                 progress: bool = True, attempts: int = ATTEMPTS, timeout: float = TIMEOUT_S) -> tuple[Path, bool]:
    """Place a verified ``source.file_name`` in ``dest``; (path, whether it was downloaded now).

    Failure raises :class:`FetchError` and leaves no partial file; a checksum mismatch deletes the download.
    """
    final = dest / source.file_name
    if final.is_file() and _mismatch(source, final) is None:
        return final, False
    url = mirrored(source.url, mirror)
    token = uuid.uuid4().hex[:8]
    download = dest / f".{url.rsplit('/', 1)[1]}.{token}.partial"
    unpacked = dest / f".{source.file_name}.{token}.unpacked.partial"
    manual = manual_alternative(source, entry, dest)
    try:
        try:
            _download(url, download, progress, attempts, timeout)
        except FetchError as e:
            raise FetchError(f"cannot download {url}: {e}. Manual alternative: {manual}") from None
        checked = download
        if source.zipped:
            try:
                with zipfile.ZipFile(download) as zf, zf.open(source.file_name) as member, open(unpacked, "wb") as out:
                    shutil.copyfileobj(member, out)
            except (zipfile.BadZipFile, KeyError) as e:
                raise FetchError(f"{url} is not a zip archive holding {source.file_name} ({e}); it was deleted. "
                                 f"Manual alternative: {manual}") from None
            checked = unpacked
        problem = _mismatch(source, checked)
        if problem:
            raise FetchError(f"checksum mismatch for {url}: {problem}; the downloaded file was deleted. "
                             f"Manual alternative: {manual}")
        with open(checked, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(checked, final)
    finally:
        download.unlink(missing_ok=True)
        unpacked.unlink(missing_ok=True)
    return final, True


def fetch_set(name: str, dest: Path | None = None, mirror: str | None = None, *, models_dir: Path = MODELS_DIR,
              sources: Mapping[str, Source] | None = None, progress: bool = True, attempts: int = ATTEMPTS,
              timeout: float = TIMEOUT_S, report: Callable[[str], None] = print) -> list[Path]:
    """Fetch every model of a set into ``dest`` (default ``weights_dir()``), registering ``dest`` when it is elsewhere.

    ``mirror`` defaults to ``$CBAM_VIZ_MIRROR``. Stops at the first failure (:class:`FetchError`).
    """
    dest = Path(dest or weights_dir()).expanduser()
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    planned = set_sources(name, models_dir, sources)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for role, (source, entry) in planned.items():
        path, downloaded = fetch_source(source, entry, dest, mirror, progress=progress, attempts=attempts, timeout=timeout)
        paths.append(path)
        check = f"SHA-256 {source.sha256_prefix}..." if source.sha256_prefix else f"SHA-1 {source.sha1}"
        state = "downloaded" if downloaded else "already present"
        report(f"{role:8s} {path} ({state}, {path.stat().st_size / 2**20:.1f} MiB, {check} checked)")
        registry = register_dir(dest)
        if registry:
            report(f"registered {dest.resolve()} in {registry}")
    report(f"set {name!r} is ready: python -m cbam_viz explain IMAGE --set {name} --out OUT")
    return paths


def describe(name: str, models_dir: Path = MODELS_DIR) -> str:
    """Where each model of a set comes from, its published accuracy, and the file the app would load now."""
    lines = []
    for role, (source, entry) in set_sources(name, models_dir).items():
        found = external_path(entry, models_dir)
        lines += [f"{role}: {entry['title']} — {source.origin}", f"  accuracy: {source.accuracy}",
                  f"  file: {source.file_name} from {source.url}",
                  f"  now: {found or f'missing (python -m cbam_viz weights fetch {name})'}"]
    return "\n".join(lines)
