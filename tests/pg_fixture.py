"""Database fixtures for the study tests.

`pg_url`: a fresh, empty PostgreSQL schema per test, on the server named by
$CBAM_VIZ_TEST_PG_URL or else on a throwaway cluster started from Debian's binaries
(/usr/lib/postgresql/*/bin) for the test session. Without either, the tests FAIL.
`db_url`: the same store tests on SQLite and on PostgreSQL (marked `postgres`).
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

PG_URL_ENV = "CBAM_VIZ_TEST_PG_URL"
_OS_USER = "postgres"  # PostgreSQL refuses to run as root


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    if os.environ.get(PG_URL_ENV):
        yield os.environ[PG_URL_ENV]
        return
    bindir = _pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="cbam-viz-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, _OS_USER)
    port = _free_port()
    log = root / "server.log"
    try:
        _as_owner([bindir / "initdb", "-D", root / "data", "-U", "postgres", "-A", "trust", "-E", "UTF8",
                   "--no-sync", "--no-instructions"])
        _as_owner([bindir / "pg_ctl", "-D", root / "data", "-l", log, "-w", "-t", "30",
                   "-o", f"-h 127.0.0.1 -p {port} -k {root}", "start"])
    except subprocess.CalledProcessError as exc:
        details = log.read_text(errors="replace") if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start a PostgreSQL test cluster: {exc}\n{exc.stdout}\n{details}", pytrace=False)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        _as_owner([bindir / "pg_ctl", "-D", root / "data", "-m", "immediate", "-w", "stop"])  # thrown away
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A URL whose connections use a new empty schema (dropped afterwards)."""
    schema = f"cbam_test_{uuid.uuid4().hex[:12]}"
    _admin(pg_server_url, f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in pg_server_url else "?"
    try:
        yield f"{pg_server_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        _admin(pg_server_url, f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.sqlite3'}"
    return request.getfixturevalue("pg_url")


def _admin(url: str, statement: str) -> None:
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(statement)
    conn.close()


def _pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    pg_ctl = found[-1] if found else shutil.which("pg_ctl")
    if not pg_ctl or not (Path(pg_ctl).parent / "initdb").exists():
        pytest.fail(f"PostgreSQL tests need a server: set {PG_URL_ENV}=postgresql://... or install the "
                    "binaries (apt-get install postgresql); deselect them with -m 'not postgres'",
                    pytrace=False)
    return Path(pg_ctl).parent


def _as_owner(command: list[object]) -> None:
    args = [str(part) for part in command]
    if os.geteuid() == 0:
        args = ["runuser", "-u", _OS_USER, "--", *args]
    subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
