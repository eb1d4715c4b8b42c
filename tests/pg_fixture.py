"""Database fixtures for the study tests.

`pg_url`: a fresh, empty PostgreSQL schema per test, on the server named by
$CBAM_VIZ_TEST_PG_URL or else on a throwaway cluster started from Debian's binaries
(/usr/lib/postgresql/*/bin, see pg_cluster.py) for the test session. Without either, the tests FAIL.
`db_url`: the same store tests on SQLite and on PostgreSQL (marked `postgres`).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_cluster import ClusterError, fresh_schema, throwaway_cluster

PG_URL_ENV = "CBAM_VIZ_TEST_PG_URL"


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    if os.environ.get(PG_URL_ENV):
        yield os.environ[PG_URL_ENV]
        return
    try:
        with throwaway_cluster() as url:
            yield url
    except ClusterError as e:
        pytest.fail(f"PostgreSQL tests need a server: set {PG_URL_ENV}=postgresql://... or install the "
                    f"binaries (apt-get install postgresql); deselect them with -m 'not postgres'. {e}", pytrace=False)


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A URL whose connections use a new empty schema (dropped afterwards)."""
    with fresh_schema(pg_server_url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.sqlite3'}"
    return request.getfixturevalue("pg_url")
