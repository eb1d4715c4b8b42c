"""``weights fetch``: download, verify, register; every failure leaves nothing behind. Loopback only.

A threaded HTTP server on 127.0.0.1 serves generated files packaged like the real ones (a
torchvision-style ``.pth`` named with its SHA-256 prefix; a pytorchcv-style ``.pth.zip`` holding
``{name}-{error}-{sha1[:8]}.pth``), with per-file faults: wrong bytes, connection closed mid-body,
HTTP errors. The fetcher reaches it through its mirror option (``MIRROR/<file name>``).
"""
import fnmatch
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch

from cbam_viz import cli
from cbam_viz.models import fetch, sets
from cbam_viz.models.fetch import FetchError, Source, fetch_set
from published_files import library_model, pytorchcv_pth_bytes, release_zip, sha1, sha256, torchvision_v1_bytes

ROOT = Path(__file__).resolve().parents[1]


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        srv = self.server
        name = urlsplit(self.path).path.rsplit("/", 1)[1]  # works for proxy requests (absolute URLs) too
        srv.requests.append((self.path, self.headers.get("Range")))
        fault = srv.faults.get(name, [None]).pop(0) if srv.faults.get(name) else None
        body = srv.files.get(name)
        if fault == "503" or body is None:
            self.send_error(404 if body is None else 503)
            return
        if fault == "wrong":
            body = bytes(b ^ 0xFF for b in body)
        start = int(self.headers["Range"][6:-1]) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if fault == "cut":  # half the promised body, then the connection closes
            srv.final_existed_mid_transfer |= any(p.name == name.removesuffix(".zip") for p in srv.watch.glob("*"))
            self.wfile.write(body[start:start + (len(body) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str | None]] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.watch = Path("/nonexistent")
        self.final_existed_mid_transfer = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/mirror"


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """A fresh weights folder, no proxies from the environment, no backoff sleeps."""
    monkeypatch.setenv("CBAM_VIZ_WEIGHTS", str(tmp_path / "weights"))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY", fetch.MIRROR_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(urllib.request, "_opener", None)  # rebuilt from this environment
    monkeypatch.setattr(fetch.time, "sleep", lambda s: None)


def _state_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    gen = torch.Generator().manual_seed(seed)
    torch.save({"conv1.weight": torch.randn(8, 3, 3, 3, generator=gen), "fc.weight": torch.randn(10, 8, generator=gen)}, buf)
    return buf.getvalue()


@pytest.fixture
def tiny(tmp_path, server):
    """A test set definition (manifest + sources with checksums) and its files on the server."""
    tv_bytes, cv_bytes = _state_bytes(0), _state_bytes(1)
    tv_name = f"tinynet-{hashlib.sha256(tv_bytes).hexdigest()[:8]}.pth"
    sha1 = hashlib.sha1(cv_bytes).hexdigest()
    cv_name = f"tinycbam-0505-{sha1[:8]}.pth"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(cv_name, cv_bytes)
    server.files = {tv_name: tv_bytes, f"{cv_name}.zip": archive.getvalue()}
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    entry = {"kind": "external", "architecture": {"depth": 50, "attention": None}, "path": None, "torch_hub_cache": False}
    manifest = {
        "models": {
            "t-base": {**entry, "title": "tiny base", "env": "CBAM_VIZ_TEST_BASE", "files": ["tinynet-*.pth"], "how_to_get": "fetch it"},
            "t-cbam": {**entry, "title": "tiny cbam", "env": "CBAM_VIZ_TEST_CBAM", "files": ["tinycbam-*.pth"], "how_to_get": "fetch it"},
        },
        "sets": {"tiny": {"models": {"baseline": "t-base", "cbam": "t-cbam"}, "description": "test"}},
    }
    (models_dir / "manifest.json").write_text(json.dumps(manifest))
    sources = {
        "t-base": Source("t-base", f"https://download.invalid/models/{tv_name}", tv_name, sha256_prefix=tv_name[8:16]),
        "t-cbam": Source("t-cbam", f"https://github.invalid/osmr/imgclsmob/releases/download/v0/{cv_name}.zip", cv_name,
                         sha1=sha1, zipped=True),
    }
    return {"models_dir": models_dir, "sources": sources, "manifest": manifest, "bytes": {tv_name: tv_bytes, cv_name: cv_bytes}}


def _fetch(tiny, dest: Path, mirror: str, **kw) -> list[str]:
    lines: list[str] = []
    fetch_set("tiny", dest, mirror, models_dir=tiny["models_dir"], sources=tiny["sources"], progress=False,
              report=lines.append, **kw)
    return lines


def test_success_lands_in_dir_registers_it_and_the_set_lookup_finds_it(tiny, server, tmp_path):
    dest = tmp_path / "elsewhere"
    lines = _fetch(tiny, dest, server.url)
    assert sorted(p.name for p in dest.iterdir()) == sorted(tiny["bytes"])  # nothing else: no zip, no partial file
    for name, data in tiny["bytes"].items():
        assert (dest / name).read_bytes() == data
    assert [path for path, _ in server.requests] == [f"/mirror/{name}" for name in server.files]  # MIRROR/<file name>
    registry = json.loads((tmp_path / "weights" / fetch.LOCATIONS_FILE).read_text())
    assert registry == {"dirs": [str(dest.resolve())]}
    for model_id, name in zip(("t-base", "t-cbam"), tiny["bytes"]):
        assert sets.external_path(tiny["manifest"]["models"][model_id], tiny["models_dir"]) == dest.resolve() / name
    assert any("downloaded" in line for line in lines) and any("registered" in line for line in lines)

    again = _fetch(tiny, dest, server.url)  # verified in place: no request, registry unchanged
    assert len(server.requests) == 2 and sum("already present" in line for line in again) == 2
    assert json.loads((tmp_path / "weights" / fetch.LOCATIONS_FILE).read_text()) == registry


def test_default_dir_is_the_weights_folder_without_registry(tiny, server, tmp_path):
    _fetch(tiny, None, server.url)
    weights = tmp_path / "weights"
    assert sorted(p.name for p in weights.iterdir()) == sorted(tiny["bytes"])
    assert sets.external_path(tiny["manifest"]["models"]["t-cbam"], tiny["models_dir"]).parent == weights


def test_interrupted_transfer_resumes_with_range_and_never_shows_a_partial_file(tiny, server, tmp_path):
    dest = tmp_path / "w"
    zip_name = next(n for n in server.files if n.endswith(".zip"))
    server.faults = {zip_name: ["cut", "cut"]}
    server.watch = dest
    _fetch(tiny, dest, server.url)
    ranges = [rng for path, rng in server.requests if path.endswith(zip_name)]
    size = len(server.files[zip_name])
    assert ranges[0] is None and ranges[1] == f"bytes={size // 2}-" and len(ranges) == 3  # two cuts, resumed each time
    assert not server.final_existed_mid_transfer
    assert sorted(p.name for p in dest.iterdir()) == sorted(tiny["bytes"])


def test_server_error_is_retried(tiny, server, tmp_path):
    name = next(n for n in server.files if n.startswith("tinynet"))
    server.faults = {name: ["503"]}
    _fetch(tiny, tmp_path / "w", server.url)
    assert [p for p, _ in server.requests].count(f"/mirror/{name}") == 2


def test_interrupted_every_time_gives_up_and_leaves_nothing(tiny, server, tmp_path):
    dest = tmp_path / "w"
    name = next(n for n in server.files if n.startswith("tinynet"))
    server.faults = {name: ["cut"] * 5}
    with pytest.raises(FetchError, match="interrupted after .* bytes .*gave up after 2 attempts") as e:
        _fetch(tiny, dest, server.url, attempts=2)
    assert f"{server.url}/{name}" in str(e.value) and "\n" not in str(e.value)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "weights" / fetch.LOCATIONS_FILE).exists()


@pytest.mark.parametrize("which", ["tinynet", "tinycbam"])
def test_checksum_mismatch_deletes_the_download(tiny, server, tmp_path, which):
    dest = tmp_path / "w"
    name = next(n for n in server.files if n.startswith(which))
    if which == "tinycbam":  # a well-formed archive whose .pth has other bytes
        member = name.removesuffix(".zip")
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr(member, _state_bytes(7))
        server.files[name] = archive.getvalue()
    else:
        server.faults = {name: ["wrong"]}
    with pytest.raises(FetchError, match="checksum mismatch .*deleted") as e:
        _fetch(tiny, dest, server.url)
    assert ("SHA-256" if which == "tinynet" else "SHA-1") in str(e.value)
    assert [p.name for p in dest.iterdir()] == ([] if which == "tinynet" else [n for n in tiny["bytes"] if n.startswith("tinynet")])
    assert len([p for p, _ in server.requests if p.endswith(name)]) == 1  # a mismatch is not retried


def test_corrupt_archive_is_deleted(tiny, server, tmp_path):
    dest = tmp_path / "w"
    name = next(n for n in server.files if n.endswith(".zip"))
    server.files[name] = b"not a zip at all"
    with pytest.raises(FetchError, match="not a zip archive .* deleted"):
        _fetch(tiny, dest, server.url)
    assert not any(p.name.startswith("tinycbam") or p.name.startswith(".") for p in dest.iterdir())


def test_http_404_is_one_request_and_names_the_manual_alternative(tiny, server, tmp_path):
    server.files.pop(next(n for n in server.files if n.startswith("tinynet")))
    with pytest.raises(FetchError, match="HTTP 404") as e:
        _fetch(tiny, tmp_path / "w", server.url)
    assert len(server.requests) == 1
    assert "Manual alternative: download https://download.invalid/models/tinynet-" in str(e.value)
    assert "CBAM_VIZ_TEST_BASE=/path/to/tinynet-" in str(e.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _by_hand_block(stderr: str, dest: Path, headline: str) -> list[str]:
    """The offline block for the real set: every file, its publisher's URL and where to put it."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 8, stderr  # the reason, two lines per file, how to check: not one line per retry
    assert lines[0].startswith("error: cannot download 3 files of set 'imagenet': " + headline), lines[0]
    for (source, entry), (url, place) in zip(fetch.set_sources("imagenet").values(), zip(lines[1:7:2], lines[2:7:2])):
        assert url.split() == [url.split()[0], source.url]
        assert f"-> {dest / source.file_name}  (or set {entry['env']}=/path/to/{source.file_name})" in place
        assert ("unzip it, then ->" in place) == source.zipped
    return lines


def test_cli_connection_refused_names_every_file_exits_2_fast(tmp_path):
    """The real ``imagenet`` set, mirrored to a closed loopback port, in a subprocess like a user runs it."""
    mirror = f"http://127.0.0.1:{_closed_port()}/m"
    dest = tmp_path / "dest"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "cbam_viz", "weights", "fetch", "imagenet", "--dir", str(dest), "--mirror", mirror],
                            cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "CBAM_VIZ_WEIGHTS": str(tmp_path / "weights")})
    assert time.monotonic() - started < 60
    assert result.returncode == 2
    lines = _by_hand_block(result.stderr, dest, "the connection was refused (127.0.0.1: ")
    assert lines[-1] == f"  then run `bash run.sh cli weights fetch imagenet --dir {dest}` again: it checks their checksums and downloads nothing already there"
    assert list(dest.iterdir()) == []


def test_unreachable_hosts_say_so_in_words_and_are_tried_once(tiny, tmp_path):
    """No mirror: the test set's own hosts (``.invalid``, which no resolver knows) fail at name resolution;
    each host is tried once, and one block names every file, its URL and where it goes."""
    dest = tmp_path / "w"
    started = time.monotonic()
    with pytest.raises(FetchError) as e:
        _fetch(tiny, dest, None)
    assert time.monotonic() - started < 30
    message = str(e.value)
    assert message.splitlines()[0].startswith("cannot download 2 files of set 'tiny': the network is unreachable "
                                              "(download.invalid, github.invalid: the host name could not be resolved). ")
    assert "Errno" not in message and len(message.splitlines()) == 6
    for source in tiny["sources"].values():
        assert source.url in message and str(dest / source.file_name) in message
    assert list(dest.iterdir()) == [] and not (tmp_path / "weights" / fetch.LOCATIONS_FILE).exists()


def test_offline_after_some_files_names_only_the_missing_ones(tiny, server, tmp_path):
    """One file already fetched (verified in place, no request); the other's host is down: only it is listed."""
    dest = tmp_path / "w"
    base = next(n for n in tiny["bytes"] if n.startswith("tinynet"))
    dest.mkdir()
    (dest / base).write_bytes(tiny["bytes"][base])
    port = _closed_port()
    sources = {**tiny["sources"], "t-cbam": replace(tiny["sources"]["t-cbam"], url=f"http://127.0.0.1:{port}/x/{tiny['sources']['t-cbam'].file_name}.zip")}
    with pytest.raises(FetchError) as e:
        fetch_set("tiny", dest, None, models_dir=tiny["models_dir"], sources=sources, progress=False, report=lambda line: None)
    assert str(e.value).startswith("cannot download 1 file of set 'tiny': the connection was refused (127.0.0.1: ")
    assert base not in str(e.value) and sources["t-cbam"].url in str(e.value)
    assert sorted(p.name for p in dest.iterdir()) == [base]


def test_cli_real_set_mirror_paths_and_checksum_mismatch(tmp_path, server, capsys):
    """The real set's files (names from the libraries' metadata) served with wrong bytes: refused and deleted."""
    server.files = {"resnet50-0676ba61.pth": b"x" * 1000}
    dest = tmp_path / "dest"
    started = time.monotonic()
    assert cli.main(["weights", "fetch", "imagenet", "--dir", str(dest), "--mirror", server.url + "/"]) == 2
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: checksum mismatch for {server.url}/resnet50-0676ba61.pth: SHA-256 ")
    assert "does not start with 0676ba61; the downloaded file was deleted" in err[0]
    assert server.requests == [("/mirror/resnet50-0676ba61.pth", None)]
    assert list(dest.iterdir()) == []


def test_mirror_from_environment_and_proxy_from_environment(tiny, server, tmp_path, monkeypatch):
    """``CBAM_VIZ_MIRROR`` sets the mirror; urllib's standard ``HTTP_PROXY`` carries the request."""
    monkeypatch.setenv(fetch.MIRROR_ENV, "http://weights-mirror.invalid/base")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{server.server_port}")
    _fetch(tiny, tmp_path / "w", None)
    assert [p for p, _ in server.requests] == [f"http://weights-mirror.invalid/base/{n}" for n in server.files]


def test_file_mirror(tiny, server, tmp_path):
    """A folder on disk works as a mirror too (``file://`` URL), e.g. for machines with no network at all."""
    folder = tmp_path / "usb"
    folder.mkdir()
    for name, data in server.files.items():
        (folder / name).write_bytes(data)
    _fetch(tiny, tmp_path / "w", folder.as_uri())
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == sorted(tiny["bytes"])
    assert server.requests == []


def test_library_sources_follow_the_libraries_and_the_manifest(monkeypatch, tmp_path):
    """URLs, names and checksums come from torchvision and pytorchcv; the set lookup finds the files they give."""
    from pytorchcv.models.common import model_store
    from torchvision.models import ResNet50_Weights

    planned = fetch.set_sources("imagenet")
    baseline, se, cbam = (planned[role][0] for role in ("baseline", "se", "cbam"))
    assert baseline.url == ResNet50_Weights.IMAGENET1K_V1.url and baseline.sha256_prefix == "0676ba61"
    assert "top-1 76.13%" in baseline.accuracy
    for source, name in ((se, "seresnet50b"), (cbam, "cbam_resnet50")):
        requested = []

        def capture(url, path, **kw):
            requested.append(url)
            raise ConnectionAbortedError

        monkeypatch.setattr(model_store, "_download", capture)
        with pytest.raises(ConnectionAbortedError):
            model_store.get_model_file(name, str(tmp_path / "store"))
        assert requested == [source.url] and source.zipped
        assert source.sha1 == model_store.get_model_name_suffix_data(name)[1]
    assert "top-1 79.21%, top-5 94.61%" in se.accuracy and "top-1 79.83%, top-5 94.95%" in cbam.accuracy
    for source, entry in planned.values():
        assert any(fnmatch.fnmatch(source.file_name, pattern) for pattern in entry["files"]), source.file_name


def test_readme_states_the_published_accuracies():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Real ImageNet models", 1)[1].split("\n## ", 1)[0]
    for source, _ in fetch.set_sources("imagenet").values():
        assert source.file_name in section
        assert source.accuracy.split(" (")[0] in section


def test_nothing_downloads_when_the_app_loads_a_missing_set(tiny, tmp_path, monkeypatch):
    """Start-up path: a missing set is unavailable with a message naming the file and the fetch command."""
    def no_network(*args, **kwargs):
        raise AssertionError("network access")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("CBAM_VIZ_RESNET50", "CBAM_VIZ_SERESNET50", "CBAM_VIZ_RESNET50_CBAM"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(sets.SetUnavailable) as e:
        sets.load_set("imagenet", device="cpu")
    message = str(e.value)
    assert "run `bash run.sh cli weights fetch imagenet`" in message and "python -m" not in message
    assert "resnet50-0676ba61.pth" in message and "seresnet50b-" in message and "RESNET50_CBAM_new_name_wrap.pth" in message
    with pytest.raises(sets.SetUnavailable, match="missing tiny base weights: fetch it"):
        sets.load_set("tiny", models_dir=tiny["models_dir"], device="cpu")


def test_fetch_from_a_loopback_mirror_serving_the_published_shapes_then_explain_a_photo(server, tmp_path, monkeypatch, capsys):
    """The real set's file names and packaging, with random weights in the publishers' shapes (torchvision's V1:
    legacy serialization, no BN counters; pytorchcv's: the .pth inside NAME.pth.zip, checked by its SHA-1).
    The sources are the libraries' own, less the checksums (of these files, not of the real ones)."""
    from matplotlib import cbook

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("CBAM_VIZ_RESNET50", "CBAM_VIZ_SERESNET50", "CBAM_VIZ_RESNET50_CBAM"):
        monkeypatch.delenv(var, raising=False)
    files = {"baseline": torchvision_v1_bytes(library_model("torchvision-v1")),
             "se": pytorchcv_pth_bytes(library_model("seresnet50b")), "cbam": pytorchcv_pth_bytes(library_model("cbam_resnet50"))}
    sources = {}
    for role, (source, _) in fetch.set_sources("imagenet").items():
        data = files[role]
        if source.zipped:
            server.files[f"{source.file_name}.zip"] = release_zip(source.file_name, data)
            sources[source.model_id] = replace(source, sha1=sha1(data))
        else:
            server.files[source.file_name] = data
            sources[source.model_id] = replace(source, sha256_prefix=sha256(data)[:8])
    lines: list[str] = []
    fetch_set("imagenet", None, server.url, sources=sources, progress=False, report=lines.append)
    assert lines[-1] == "set 'imagenet' is ready: bash run.sh cli explain IMAGE --set imagenet --out OUT"
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == sorted(s.file_name for s in sources.values())

    photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    out = tmp_path / "out"
    assert cli.main(["explain", str(photo), "--set", "imagenet", "--out", str(out)]) == 0
    arrays = np.load(out / "grace_hopper_gradcam.npz")
    assert sorted(k for k in arrays if k.endswith("/cam")) == ["baseline/cam", "cbam/cam", "se/cam"]
    for role in ("baseline", "se", "cbam"):
        cam = arrays[f"{role}/cam"]
        assert cam.shape == (224, 224) and np.isfinite(cam).all() and cam.max() > cam.min()
    assert (out / "grace_hopper_gradcam.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "ResNet-50 (torchvision) IMAGENET1K_V1" in printed and printed.count(" pred ") == 3


def test_every_suggested_command_is_one_the_readme_user_can_paste(tiny, tmp_path, monkeypatch):
    """Hints (missing set, `weights list`, offline fetch, a finished fetch) say `bash run.sh cli ...`
    (run.sh's entry point into the project's environment) and parse as the CLI's own commands."""
    import re
    import shlex

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("CBAM_VIZ_RESNET50", "CBAM_VIZ_SERESNET50", "CBAM_VIZ_RESNET50_CBAM"):
        monkeypatch.delenv(var, raising=False)
    texts = [fetch.describe("imagenet")]
    with pytest.raises(sets.SetUnavailable) as e:
        sets.load_set("imagenet", device="cpu")
    texts.append(str(e.value))
    with pytest.raises(FetchError) as e:
        _fetch(tiny, tmp_path / "my weights", None)
    texts.append(str(e.value))
    for name, data in tiny["bytes"].items():
        (tmp_path / "my weights" / name).write_bytes(data)  # placed by hand, as the block says
    texts += _fetch(tiny, tmp_path / "my weights", None)
    commands = [shlex.split(c) for text in texts for c in re.findall(r"bash run\.sh cli ([^`)\n]+)", text)]
    assert len(commands) >= 5 and all("python -m" not in text for text in texts)
    assert ["weights", "fetch", "tiny", "--dir", str(tmp_path / "my weights")] in commands
    parser = cli.build_parser()
    for command in commands:
        parser.parse_args(command)  # exits (fails) on a command or option the CLI lacks
    assert (ROOT / "run.sh").read_text().count('cli) ensure_venv requirements.txt; shift; exec .venv/bin/python -m cbam_viz "$@"') == 1
