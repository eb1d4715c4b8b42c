"""Unblinded CSV/JSON export and the `study` command line."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cbam_viz.study import BASELINE, CBAM, EXPORT_COLUMNS, DemoStimuli, StudyConfig, open_store, write_votes
from cbam_viz.study.cli import main

ANSWERS = ["A", "B", "same", "neither", "B", "A"]


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite study with one participant who answered six trials."""
    url = f"sqlite:///{tmp_path / 'study.sqlite3'}"
    with open_store(url) as store:
        store.ensure_study(StudyConfig(name="pilot", pair="resnet50", stimuli=DemoStimuli(count=6),
                                       trials_per_participant=6))
        store.get_or_create_participant("pilot", "p1")
        for position, answer in enumerate(ANSWERS):
            store.record_vote("pilot", "p1", position, answer, response_ms=100 * position)
    return url


def expected_choices(url: str) -> list[str]:
    with open_store(url) as store:
        trials = store.trials("pilot", "p1")
    other = {BASELINE: CBAM, CBAM: BASELINE}
    unblind = {"A": lambda t: t.model_a, "B": lambda t: other[t.model_a]}
    return [unblind[a](t) if a in unblind else a for t, a in zip(trials, ANSWERS, strict=True)]


def test_csv_and_json_unblind_the_choice(db: str) -> None:
    with open_store(db) as store:
        votes = store.votes("pilot")
    buffer = io.StringIO()
    assert write_votes(votes, buffer, "csv") == 6
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert [r["chosen_model"] for r in rows] == expected_choices(db)
    assert {r["chosen_model"] for r in rows} >= {"same", "neither"}
    assert [r["response_ms"] for r in rows] == ["0", "100", "200", "300", "400", "500"]
    assert rows[0]["image_sha256"] == ""

    buffer = io.StringIO()
    write_votes(votes, buffer, "json")
    records = json.loads(buffer.getvalue())
    assert [r["chosen_model"] for r in records] == expected_choices(db)
    assert records[0]["created_at"].endswith("+00:00") and records[0]["image_sha256"] is None
    with pytest.raises(ValueError, match="format"):
        write_votes(votes, io.StringIO(), "xlsx")


def test_cli_export_and_summary(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "votes.json"
    assert main(["study", "export", "--db", db, "--study", "pilot", "--format", "json", "--out", str(out)]) == 0
    assert [r["chosen_model"] for r in json.loads(out.read_text())] == expected_choices(db)
    assert main(["study", "summary", "--db", db, "--study", "pilot"]) == 0
    assert "6 votes from 1 participant " in capsys.readouterr().out
    assert main(["study", "summary", "--db", db, "--study", "nope"]) == 2
    assert "unknown study 'nope'" in capsys.readouterr().err


def test_cli_runs_as_a_module(db: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cbam_viz.study.cli", "study", "export", "--db", db, "--study", "pilot", "--out", "-"],
        capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.splitlines()[0] == ",".join(EXPORT_COLUMNS)
    assert len(result.stdout.splitlines()) == 7 and "wrote 6 votes" in result.stderr
