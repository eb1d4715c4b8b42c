"""run.sh's install: stamps (the test install covers the runtime one, a changed requirements file does not),
a clear error before a venv or an install that cannot succeed."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _project(tmp_path: Path) -> Path:
    """A copy of run.sh and the requirement files, with a fake .venv whose pip only logs its calls."""
    for name in ("run.sh", "requirements.txt", "requirements-test.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "python"
    fake.write_text('#!/bin/sh\nif [ "$2" = pip ]; then echo "pip $*" >> "$(dirname "$0")/../pip.log"; fi\n'
                    'if [ "$1" = "-m" ] && [ "$2" = cbam_viz ]; then echo cli-ran; fi\nexit 0\n')
    fake.chmod(0o755)
    return tmp_path


def _cli(project: Path) -> str:
    env = {**os.environ, "CBAM_VIZ_INSTALL_NEEDS_MB": "0"}  # the fake pip writes nothing: a small /tmp is fine
    return subprocess.run(["bash", "run.sh", "cli"], cwd=project, capture_output=True, text=True, check=True, env=env).stdout


def _free_mb(path: Path) -> int:
    return shutil.disk_usage(path).free // 2**20


def test_the_test_install_covers_the_runtime_requirements(tmp_path: Path) -> None:
    project = _project(tmp_path)
    log = project / ".venv" / "pip.log"
    want = subprocess.run("cat requirements*.txt | sha256sum | cut -c1-16", shell=True, cwd=project,
                          capture_output=True, text=True, check=True).stdout.strip()
    (project / ".venv" / ".installed-requirements-test.txt").write_text(want + "\n")
    assert "cli-ran" in _cli(project) and not log.exists()  # nothing reinstalled
    (project / "requirements.txt").write_text((project / "requirements.txt").read_text() + "tqdm\n")
    assert "cli-ran" in _cli(project)  # a changed requirement: installed again
    assert "-r requirements.txt" in log.read_text()
    assert "cli-ran" in _cli(project) and log.read_text().count("pip install") == 1  # and stamped


def test_a_python_without_venv_gets_a_clear_error_and_no_half_made_venv(tmp_path: Path) -> None:
    project = _project(tmp_path)
    shutil.rmtree(project / ".venv")
    fake = tmp_path / "python-without-venv"  # Debian's python3.11 without python3.11-venv: a bare .venv, then failure
    fake.write_text('#!/bin/sh\nmkdir -p .venv/bin && ln -sf /bin/true .venv/bin/python\n'
                    'echo "ensurepip is not available" >&2\nexit 1\n')
    fake.chmod(0o755)
    done = subprocess.run(["bash", "run.sh", "cli"], cwd=project, capture_output=True, text=True, env={"PYTHON": str(fake), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1 and "apt-get install python3.11-venv" in done.stderr
    assert not (project / ".venv").exists()


def test_too_little_disk_space_is_said_before_pip_starts(tmp_path: Path) -> None:
    project = _project(tmp_path)
    need = _free_mb(project) + 10**6  # more than this disk has: what a nearly full disk looks like to run.sh
    done = subprocess.run(["bash", "run.sh", "cli"], cwd=project, capture_output=True, text=True,
                          env={"CBAM_VIZ_INSTALL_NEEDS_MB": str(need), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1 and "not enough disk space to install" in done.stderr
    assert f"about {need} MB needed" in done.stderr and "cli-ran" not in done.stdout
    assert not (project / ".venv" / "pip.log").exists()  # pip never started
    assert not list((project / ".venv").glob(".installed-*"))  # and nothing was stamped as installed


def test_enough_disk_space_installs_as_before(tmp_path: Path) -> None:
    project = _project(tmp_path)
    done = subprocess.run(["bash", "run.sh", "cli"], cwd=project, capture_output=True, text=True,
                          env={"CBAM_VIZ_INSTALL_NEEDS_MB": str(max(_free_mb(project) - 100, 0)), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and "cli-ran" in done.stdout and "-r requirements.txt" in (project / ".venv" / "pip.log").read_text()
