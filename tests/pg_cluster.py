"""A throwaway PostgreSQL cluster from Debian's binaries (/usr/lib/postgresql/*/bin), without
pytest: for the study load benchmark and the UI tests (tests/pg_fixture.py has the pytest fixtures).

    with throwaway_cluster() as url:   # "postgresql://postgres@127.0.0.1:PORT/postgres"
        ...
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

_OS_USER = "postgres"  # PostgreSQL refuses to run as root


class ClusterError(RuntimeError):
    """No PostgreSQL binaries, or the cluster would not start; the message says why."""


def pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    pg_ctl = found[-1] if found else shutil.which("pg_ctl")
    if not pg_ctl or not (Path(pg_ctl).parent / "initdb").exists():
        raise ClusterError("no PostgreSQL server binaries: apt-get install postgresql")
    return Path(pg_ctl).parent


@contextlib.contextmanager
def throwaway_cluster(max_connections: int = 200) -> Iterator[str]:
    """Start a private cluster on a free port (trust auth, fsync on) and remove it afterwards."""
    bindir = pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="cbam-viz-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, _OS_USER)
    port = free_port()
    log = root / "server.log"
    try:
        _as_owner([bindir / "initdb", "-D", root / "data", "-U", "postgres", "-A", "trust", "-E", "UTF8",
                   "--no-sync", "--no-instructions"])
        _as_owner([bindir / "pg_ctl", "-D", root / "data", "-l", log, "-w", "-t", "30",
                   "-o", f"-h 127.0.0.1 -p {port} -k {root} -c max_connections={max_connections}", "start"])
    except subprocess.CalledProcessError as exc:
        details = log.read_text(errors="replace") if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise ClusterError(f"could not start a PostgreSQL cluster: {exc}\n{exc.stdout}\n{details}") from None
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _as_owner([bindir / "pg_ctl", "-D", root / "data", "-m", "immediate", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def fresh_schema(server_url: str) -> Iterator[str]:
    """A URL whose connections use a new, empty schema (dropped afterwards)."""
    import psycopg2

    schema = f"cbam_test_{uuid.uuid4().hex[:12]}"

    def admin(statement: str) -> None:
        conn = psycopg2.connect(server_url)
        try:
            with conn, conn.cursor() as cursor:
                cursor.execute(statement)
        finally:
            conn.close()

    admin(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in server_url else "?"
    try:
        yield f"{server_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        admin(f'DROP SCHEMA "{schema}" CASCADE')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_owner(command: list[object]) -> None:
    args = [str(part) for part in command]
    if os.geteuid() == 0:
        args = ["runuser", "-u", _OS_USER, "--", *args]
    subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
