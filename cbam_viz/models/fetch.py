"""Download published ImageNet weights: ``bash run.sh cli weights fetch SET``. Nothing else downloads.

Where each file comes from is the libraries' metadata (:mod:`.published`): torchvision's weights API
(URL, the SHA-256 prefix in the file name that ``torch.hub`` checks) and pytorchcv's model store (the
archive ``{name}-{error}-{sha1[:8]}.pth.zip`` on the imgclsmob GitHub releases, the SHA-1 of the
``.pth`` inside). Neither library's downloader fits as is (pytorchcv's writes in place, with no timeout;
``torch.hub.download_url_to_file`` has no timeout and accepts a body cut short), so the transfer is a
small urllib loop: a bounded socket timeout, a temporary file next to the destination, HTTP Range
resume on retry, a Content-Length check, the publisher's checksum, then an atomic rename.

A mirror base URL replaces everything up to the file name: ``MIRROR/<file name of the original URL>``.
A host that cannot be reached (no network, refused connection, no answer) is not tried again for the
set's other files; the error then names every missing file with its URL and where to put it by hand.
"""
from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import re
import shlex
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from tqdm import tqdm

from .. import CLI
from .locate import LOCATIONS_FILE, MODELS_DIR, external_path, read_manifest, registered_dirs, weights_dir
from .published import LIBRARY_SOURCES, Source, source_of

TIMEOUT_S = 15.0
ATTEMPTS = 3
MIRROR_ENV = "CBAM_VIZ_MIRROR"
_CHUNK = 1 << 16


class FetchError(RuntimeError):
    """A failed fetch; the message is one line (the URL, what went wrong, the manual alternative)."""


class Unreachable(FetchError):
    """No answer from the host at all (name resolution, refused connection, unreachable network, connect timeout)."""

    def __init__(self, headline: str, host: str, detail: str):
        super().__init__(f"{headline} ({host}: {detail})")
        self.headline, self.host, self.detail = headline, host, detail


class _Retryable(Exception):
    """The server answered but the transfer broke: worth another attempt (resuming what arrived)."""


def set_sources(name: str, models_dir: Path = MODELS_DIR,
                sources: Mapping[str, Source] | None = None) -> dict[str, tuple[Source, dict[str, Any]]]:
    """Role -> (source, manifest entry) for every model of a set; ``sources`` replaces the libraries' (tests)."""
    manifest = read_manifest(models_dir)
    sources = LIBRARY_SOURCES if sources is None else sources
    fetchable = [s for s, spec in manifest["sets"].items() if set(spec["models"].values()) <= set(sources)]
    if name not in manifest["sets"] or name not in fetchable:
        raise FetchError(f"no downloadable model set {name!r}; sets with published weights: {', '.join(fetchable) or 'none'}")
    return {role: (sources[model_id], manifest["models"][model_id]) for role, model_id in manifest["sets"][name]["models"].items()}


def mirrored(url: str, mirror: str | None) -> str:
    """``MIRROR/<file name>`` for a mirror base URL, else the URL itself."""
    return f"{mirror.rstrip('/')}/{url.rsplit('/', 1)[1]}" if mirror else url


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
        raise _unreachable(e.reason, url, timeout) from None
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


def _unreachable(reason: object, url: str, timeout: float) -> Unreachable:
    """Why a host gave no answer, in words: ``the network is unreachable`` when no network path to it exists."""
    host = urlsplit(url).hostname or url
    if isinstance(reason, socket.gaierror):
        return Unreachable("the network is unreachable", host, "the host name could not be resolved")
    if isinstance(reason, TimeoutError):
        return Unreachable("the network is unreachable", host, f"no answer within {timeout:g} s")
    if isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return Unreachable("the network is unreachable", host, reason.strerror)
    if isinstance(reason, ConnectionRefusedError):
        return Unreachable("the connection was refused", host, "nothing answers on that port")
    return Unreachable("the server cannot be reached", host, str(reason))


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
        except Unreachable:
            raise
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


def _by_hand(name: str, missing: list[tuple[str, Source, dict[str, Any]]], dest: Path, down: list[Unreachable]) -> str:
    """One block: why, then every missing file with its URL and where to put it, then how to check them."""
    hosts: dict[tuple[str, str], list[str]] = {}
    for e in down:
        hosts.setdefault((e.headline, e.detail), []).append(e.host)
    why = "; ".join(f"{headline} ({', '.join(names)}: {detail})" for (headline, detail), names in hosts.items())
    lines = [f"cannot download {len(missing)} file{'s' * (len(missing) > 1)} of set {name!r}: {why}. "
             "No partial file was left. Run this again when online, or download each file yourself and put it where shown:"]
    for role, source, entry in missing:
        unzip = "unzip it, then " if source.zipped else ""
        lines += [f"  {role:8s} {source.url}",
                  f"  {'':8s} {unzip}-> {dest / source.file_name}  (or set {entry['env']}=/path/to/{source.file_name})"]
    again = f"{CLI} weights fetch {name}" + ("" if dest.resolve() == weights_dir().resolve() else f" --dir {shlex.quote(str(dest))}")
    return "\n".join(lines + [f"  then run `{again}` again: it checks their checksums and downloads nothing already there"])


def fetch_set(name: str, dest: Path | None = None, mirror: str | None = None, *, models_dir: Path = MODELS_DIR,
              sources: Mapping[str, Source] | None = None, progress: bool = True, attempts: int = ATTEMPTS,
              timeout: float = TIMEOUT_S, report: Callable[[str], None] = print) -> list[Path]:
    """Fetch every model of a set into ``dest`` (default ``weights_dir()``), registering ``dest`` when it is elsewhere.

    ``mirror`` defaults to ``$CBAM_VIZ_MIRROR``. A failed transfer or checksum stops at once
    (:class:`FetchError`, one line); a host that cannot be reached is skipped for the other files, then
    one :class:`FetchError` names every file still missing, its URL and where to put it by hand.
    """
    dest = Path(dest or weights_dir()).expanduser()
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    planned = set_sources(name, models_dir, sources)
    dest.mkdir(parents=True, exist_ok=True)
    paths, missing, down = [], [], {}  # down: host -> why it gave no answer (not tried again)
    for role, (source, entry) in planned.items():
        host = urlsplit(mirrored(source.url, mirror)).netloc
        try:
            if host in down:
                raise down[host]
            path, downloaded = fetch_source(source, entry, dest, mirror, progress=progress, attempts=attempts, timeout=timeout)
        except Unreachable as e:
            down.setdefault(host, e)
            missing.append((role, source, entry))
            continue
        paths.append(path)
        check = f"SHA-256 {source.sha256_prefix}..." if source.sha256_prefix else f"SHA-1 {source.sha1}"
        state = "downloaded" if downloaded else "already present"
        report(f"{role:8s} {path} ({state}, {path.stat().st_size / 2**20:.1f} MiB, {check} checked)")
        registry = register_dir(dest)
        if registry:
            report(f"registered {dest.resolve()} in {registry}")
    if missing:
        raise FetchError(_by_hand(name, missing, dest, list(down.values())))
    report(f"set {name!r} is ready: {CLI} explain IMAGE --set {name} --out OUT")
    return paths


def describe(name: str, models_dir: Path = MODELS_DIR) -> str:
    """Where each model of a set comes from, its published accuracy, and the file the app would load now
    (described as itself when it is another published file than the one ``weights fetch`` downloads)."""
    lines = []
    for role, (source, entry) in set_sources(name, models_dir).items():
        found = external_path(entry, models_dir)
        loaded = source_of(found, source.model_id) if found else source
        if loaded:
            lines += [f"{role}: {entry['title']} — {loaded.origin}", f"  accuracy: {loaded.accuracy}",
                      f"  preprocessing: {loaded.preprocessing}"] + ([f"  note: {loaded.note}"] if loaded.note else [])
        else:
            lines += [f"{role}: {entry['title']} — {found.name}: not one of the libraries' published files (the CBAM "
                      "authors' checkpoint, or a renamed file), so its source and accuracy are not shown"]
        lines += [f"  fetch downloads: {source.file_name} from {source.url}",
                  f"  now: {found or f'missing (run: {CLI} weights fetch {name})'}"]
    return "\n".join(lines)
