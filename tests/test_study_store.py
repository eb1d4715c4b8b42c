"""Store behaviour on SQLite and PostgreSQL: resume, validation, idempotency, durability, concurrency."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from pg_fixture import db_url, pg_server_url, pg_url  # noqa: F401  (fixtures)

from cbam_viz.study import (
    CBAM,
    DemoStimuli,
    ModelOutput,
    StudyConfig,
    StudyError,
    VoteMeta,
    VoteRejected,
    build_trials,
    load_stimuli,
    open_store,
)

SHA = "ab" * 32


def make_config(**overrides: object) -> StudyConfig:
    values = dict(name="pilot", pair="resnet50", stimuli=DemoStimuli(seed=3, count=30), trials_per_participant=20)
    return StudyConfig(**{**values, **overrides})


@pytest.fixture
def store(db_url: str):
    with open_store(db_url) as store:
        store.ensure_study(make_config(repeat_trial=True))
        yield store


def test_assignment_is_stored_and_resumed_after_reload(store, db_url: str) -> None:
    created = store.get_or_create_participant("pilot", "p1")
    assert created.is_new
    expected = store.trials("pilot", "p1")
    assert len(expected) == 21 and sorted(t.position for t in expected) == list(range(21))
    # seeded with the study's server-side secret: not reproducible from the public name and id
    assert expected != build_trials("pilot", "p1", load_stimuli(make_config()), 20, repeat=True)
    for position in range(3):
        store.record_vote("pilot", "p1", position, "A")

    with open_store(db_url) as reloaded:  # a page reload or server restart: same id, fresh engine
        again = reloaded.get_or_create_participant("pilot", "p1")
        assert not again.is_new and again.created_at == created.created_at
        nxt = reloaded.next_trial("pilot", "p1")
        assert nxt.trial == expected[3]
        assert (nxt.progress.answered, nxt.progress.total) == (3, 21)
        for trial in expected[3:]:
            reloaded.record_vote("pilot", "p1", trial.position, "same", stimulus_id=trial.stimulus_id)
        assert reloaded.next_trial("pilot", "p1") is None
        assert reloaded.progress("pilot", "p1").done


def test_next_trial_skips_answers_given_out_of_order(store) -> None:
    store.get_or_create_participant("pilot", "p1")
    store.record_vote("pilot", "p1", 0, "B")
    store.record_vote("pilot", "p1", 2, "B")
    assert store.next_trial("pilot", "p1").trial.position == 1
    store.record_vote("pilot", "p1", 1, "B")
    assert store.next_trial("pilot", "p1").trial.position == 3


@pytest.mark.parametrize(
    "study, participant, position, answer, kwargs, message",
    [
        ("nope", "p1", 0, "A", {}, "unknown study"),
        ("pilot", "ghost", 0, "A", {}, "unknown participant"),
        ("pilot", "p1", 99, "A", {}, "not assigned"),
        ("pilot", "p1", -1, "A", {}, "not assigned"),
        ("pilot", "p1", "0", "A", {}, "not assigned"),
        ("pilot", "p1", 0, "A", {"stimulus_id": "demo:3:999"}, "not assigned"),
        ("pilot", "p2", 0, "A", {"stimulus_id": "wrong"}, "not assigned"),
        ("pilot", "p1", 0, "C", {}, "not one of"),
        ("pilot", "p1", 0, "a", {}, "not one of"),
        ("pilot", "p1", 0, "A", {"response_ms": -5}, "response_ms"),
        ("pilot", "p1", 0, "A", {"meta": VoteMeta(outputs={"cbam": ModelOutput(prob=1.5)})}, "probabilities"),
        ("pilot", "p1", 0, "A", {"image_sha256": "xyz"}, "image_sha256"),
        ("pilot", "p1", 1, "B", {}, "replay"),
    ],
)
def test_bad_submissions_are_rejected_and_change_nothing(store, study, participant, position, answer, kwargs,
                                                         message) -> None:
    store.get_or_create_participant("pilot", "p1")
    store.get_or_create_participant("pilot", "p2")
    store.record_vote("pilot", "p1", 1, "A")
    before = store.row_counts()
    with pytest.raises(VoteRejected, match=message):
        store.record_vote(study, participant, position, answer, **kwargs)
    assert store.row_counts() == before
    assert [v.answer for v in store.votes("pilot")] == ["A"]


def test_identical_resubmission_returns_the_stored_vote(store) -> None:
    store.get_or_create_participant("pilot", "p1")
    first = store.record_vote("pilot", "p1", 0, "neither", response_ms=900, meta=VoteMeta(target_class="cat"))
    counts = store.row_counts()
    again = store.record_vote("pilot", "p1", 0, "neither", response_ms=1400)
    assert not first.duplicate and again.duplicate
    assert again.vote == first.vote and again.vote.response_ms == 900
    assert store.row_counts() == counts


def test_vote_carries_assignment_and_metadata(store) -> None:
    store.get_or_create_participant("pilot", "p1")
    trial = store.next_trial("pilot", "p1").trial
    meta = VoteMeta(target_class="tabby", app_version="9.9",
                    outputs={"baseline": ModelOutput("tabby", 0.7, "b0"), "cbam": ModelOutput("tiger cat", 0.4, "c0")})
    vote = store.record_vote("pilot", "p1", trial.position, "A", response_ms=1234, meta=meta, image_sha256=SHA).vote
    assert (vote.shown_as_a, vote.shown_as_b) == (trial.model_a, trial.model_b)
    assert (vote.chosen_model, vote.stimulus_id, vote.kind) == (trial.model_a, trial.stimulus_id, "trial")
    assert (vote.method, vote.pair, vote.response_ms, vote.image_sha256) == ("gradcam", "resnet50", 1234, SHA)
    shown_b = meta.outputs[trial.model_b]
    assert (vote.pred_b, vote.prob_b, vote.app_version, vote.checksum_b) == (shown_b.pred, shown_b.prob, "9.9",
                                                                               shown_b.checksum)
    assert vote.created_at.tzinfo is not None


def test_vote_is_durable_across_engines(store, db_url: str) -> None:
    store.get_or_create_participant("pilot", "p1")
    recorded = store.record_vote("pilot", "p1", 0, "B").vote
    with open_store(db_url) as other:  # the first store stays open: no close/flush needed
        assert other.votes("pilot") == [recorded]


def test_sqlite_default_file_wal_and_full_sync(tmp_path: Path) -> None:
    with open_store(None, tmp_path / "data") as store:
        assert (tmp_path / "data" / "study.sqlite3").is_file()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_study_registration_is_idempotent_and_guards_changes(store) -> None:
    store.ensure_study(make_config(repeat_trial=True))
    assert store.study_config("pilot") == make_config(repeat_trial=True)
    with pytest.raises(StudyError, match="trials_per_participant"):
        store.ensure_study(make_config(repeat_trial=True, trials_per_participant=10))
    with pytest.raises(StudyError, match="unknown study"):
        store.next_trial("other", "p1")


def test_expertise_must_be_an_option_of_a_collecting_study(store) -> None:
    with pytest.raises(StudyError, match="expertise"):
        store.get_or_create_participant("pilot", "p1", expertise="layperson")  # study does not collect it
    store.ensure_study(make_config(name="experts", collect_expertise=True, expertise_options=("novice", "pro")))
    with pytest.raises(StudyError, match="expertise"):
        store.get_or_create_participant("experts", "p1", expertise="guru")
    with pytest.raises(StudyError, match="participant id"):
        store.get_or_create_participant("experts", "bad id with spaces")
    assert store.get_or_create_participant("experts", "p1", expertise="pro").expertise == "pro"
    store.record_vote("experts", "p1", 0, "A")
    assert store.votes("experts")[0].expertise == "pro"


def test_free_votes(store) -> None:
    vote = lambda session, answer, a, b, **kw: store.record_free_vote(  # noqa: E731
        session, kw.pop("image_sha256", SHA), answer, a, b, pair="resnet50", method="gradcam", **kw)
    first = vote("session1", "B", "baseline", "cbam")
    assert first.vote.stimulus_id == f"upload:{SHA}" and first.vote.chosen_model == CBAM
    assert (first.vote.shown_as_a, first.vote.shown_as_b) == ("baseline", "cbam")
    assert vote("session1", "B", "baseline", "cbam").duplicate
    with pytest.raises(VoteRejected, match="replay"):
        vote("session1", "A", "baseline", "cbam")
    # shown again with the sides drawn the other way: "A" is now the CBAM map, the same choice
    assert vote("session1", "A", "cbam", "baseline").duplicate
    with pytest.raises(VoteRejected, match="replay"):
        vote("session1", "B", "cbam", "baseline")
    with pytest.raises(VoteRejected, match="already voted on this image .*baseline and cbam"):
        vote("session1", "A", "se", "cbam")  # one vote per image, set and method, whichever two models
    for bad in ({"image_sha256": "ABC"}, {"a": "left side"}, {"a": "cbam"}, {"a": ""}, {"answer": "maybe"},
                {"session": ""}):
        args = {"session": "session2", "answer": "A", "a": "se", "b": "cbam"} | bad
        with pytest.raises(VoteRejected):
            vote(**args)
    three = vote("session2", "A", "se", "cbam")
    assert (three.vote.shown_as_a, three.vote.shown_as_b, three.vote.chosen_model) == ("se", "cbam", "se")
    assert [v.participant_id for v in store.free_votes("resnet50")] == ["session1", "session2"]
    assert store.free_votes("other") == [] and store.votes("pilot") == []


def test_concurrent_threads_store_each_vote_exactly_once(store) -> None:
    participants = [f"t{i}" for i in range(8)]
    for pid in participants + ["shared"]:
        store.get_or_create_participant("pilot", pid)
    duplicates: list[bool] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(participants))

    def vote(pid: str) -> None:
        try:
            start.wait()
            for position in range(20):  # own trials, interleaved with everyone racing on "shared"
                store.record_vote("pilot", pid, position, "A")
                duplicates.append(store.record_vote("pilot", "shared", position, "B").duplicate)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=vote, args=(pid,)) for pid in participants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.row_counts()["votes"] == 8 * 20 + 20
    assert sorted(duplicates).count(False) == 20  # each shared vote stored once, acknowledged 7 more times
    shared = [v for v in store.votes("pilot") if v.participant_id == "shared"]
    assert sorted(v.position for v in shared) == list(range(20))


_WORKER = textwrap.dedent("""
    import sys
    from cbam_viz.study import open_store
    url, me = sys.argv[1], sys.argv[2]
    stored_shared = 0
    with open_store(url) as store:
        for pid in (me, "shared"):
            store.get_or_create_participant("pilot", pid)
        for position in range(20):
            store.record_vote("pilot", me, position, "A")
            stored_shared += not store.record_vote("pilot", "shared", position, "A").duplicate
    print(stored_shared)
""")


@pytest.mark.postgres
def test_two_processes_share_one_postgresql(pg_url: str) -> None:
    with open_store(pg_url) as store:
        store.ensure_study(make_config())
    workers = [subprocess.Popen([sys.executable, "-c", _WORKER, pg_url, name], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for name in ("w1", "w2")]
    results = [w.communicate(timeout=60) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], results
    assert sum(int(out) for out, _ in results) == 20  # each shared vote stored by exactly one process
    with open_store(pg_url) as store:
        votes = store.votes("pilot")
        assert store.row_counts()["participants"] == 3
    assert len(votes) == 60
    expected = {(pid, position) for pid in ("w1", "w2", "shared") for position in range(20)}
    assert {(v.participant_id, v.position) for v in votes} == expected


def _set_version(url: str, version: int | None) -> None:
    """Rewrite the stored schema version (None: drop the version table, as before it existed)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    with engine.begin() as conn:
        if version is None:
            conn.execute(text("DROP TABLE cbam_viz_schema"))
        else:
            conn.execute(text("UPDATE cbam_viz_schema SET version = :v"), {"v": version})
    engine.dispose()


def _version(store) -> int:
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return conn.execute(text("SELECT version FROM cbam_viz_schema")).scalar_one()


def test_schema_version_is_recorded_and_a_newer_database_is_refused(store, db_url: str) -> None:
    from cbam_viz.study.schema import SCHEMA_VERSION

    store.get_or_create_participant("pilot", "p1")
    store.record_vote("pilot", "p1", 0, "A")
    assert _version(store) == SCHEMA_VERSION
    _set_version(db_url, SCHEMA_VERSION + 1)
    with pytest.raises(StudyError, match=f"schema version {SCHEMA_VERSION + 1}, newer than"):
        open_store(db_url)
    _set_version(db_url, SCHEMA_VERSION)
    with open_store(db_url) as again:
        assert len(again.votes("pilot")) == 1


DATA = Path(__file__).parent / "data"


def _schema1_database(db_url: str, tmp_path: Path) -> str:
    """A schema-1 database written by the code of commit b259a9d (tests/data/make_study_schema1.py):
    the SQLite file it wrote, or its tables and rows replayed into a fresh PostgreSQL schema."""
    import shutil

    import psycopg2

    if db_url.startswith("sqlite"):
        path = tmp_path / "schema1.sqlite3"
        shutil.copy(DATA / "study-schema1.sqlite3", path)
        return f"sqlite:///{path}"
    conn = psycopg2.connect(db_url)
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute((DATA / "study-schema1-postgresql.sql").read_text())
    finally:
        conn.close()
    return db_url


@pytest.mark.parametrize("unversioned", [False, True], ids=["versioned", "before-versioning"])
def test_a_schema_1_database_is_migrated_and_keeps_every_vote(db_url: str, tmp_path: Path, unversioned: bool) -> None:
    """Slots become roles: in study "se-cbam" (models = ["se", "cbam"]) the schema-1 slot "baseline"
    held SE; the migrated votes name SE and CBAM, and every choice, answer and output is kept."""
    import json

    url = _schema1_database(db_url, tmp_path)
    if unversioned:
        _set_version(url, None)  # written before the version table existed: schema 1
    old = json.loads((DATA / "study-schema1-votes.json").read_text())
    with open_store(url) as store:
        assert _version(store) == 3
        migrated = store.votes("plain") + store.votes("se-cbam") + store.free_votes()
        trials = store.trials("se-cbam", "se-cbam-p0")
        # the migrated studies keep working: a new vote, a resubmission, a new participant
        config = store.study_config("plain")
        assert store.record_vote("plain", "plain-p0", 0, old[0]["answer"]).duplicate
        store.get_or_create_participant("plain", "new-one", "layperson")
        assert store.record_vote("plain", "new-one", 0, "A").vote.shown_as_a in config.models
    assert {t.model_a for t in trials} | {t.model_b for t in trials} == {"se", "cbam"}
    assert all(t.model_a != t.model_b and t.kind == "trial" for t in trials)
    assert len(migrated) == len(old) == 18
    for before, after in zip(old, migrated, strict=True):
        assert (after.vote_id, after.participant_id, after.position, after.answer, after.response_ms) == (
            before["vote_id"], before["participant_id"], before["position"], before["answer"], before["response_ms"])
        assert after.chosen_model == before["chosen_role"] and after.shown_as_a == before["shown_as_a_role"]
        assert {after.shown_as_a, after.shown_as_b} == ({"se", "cbam"} if after.study == "se-cbam" else {"baseline", "cbam"})
        a_slot = "baseline" if before["shown_as_a"] == "baseline" else "cbam"
        b_slot = "cbam" if a_slot == "baseline" else "baseline"
        assert (after.pred_a, after.prob_a, after.checksum_a) == tuple(before[f"{a_slot}_{k}"] for k in ("pred", "prob", "checksum"))
        assert (after.pred_b, after.prob_b, after.checksum_b) == tuple(before[f"{b_slot}_{k}"] for k in ("pred", "prob", "checksum"))
        assert (after.kind, after.too_fast, after.is_repeat, after.expertise) == (
            "trial", False, before["is_repeat"], before["expertise"])
        assert after.created_at.isoformat() == before["created_at"]


def _snapshot(url: str) -> dict[str, object]:
    """Every table's columns (with types and nullability), indexes and rows, to compare two states of a database."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        with engine.connect() as conn:
            inspector = inspect(conn)
            out: dict[str, object] = {}
            for table in sorted(inspector.get_table_names()):
                columns = [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)]
                indexes = sorted((i["name"] or "", tuple(i["column_names"])) for i in inspector.get_indexes(table))
                rows = sorted(map(repr, conn.execute(text(f"SELECT * FROM {table}")).all()))
                out[table] = (columns, indexes, rows)
            return out
    finally:
        engine.dispose()


def test_a_failing_migration_leaves_the_schema_1_database_as_it_was(db_url: str, tmp_path: Path, monkeypatch) -> None:
    """The whole schema 1 -> 2 migration runs, then a statement fails: nothing of it may remain
    (SQLite included, where each DDL statement would otherwise commit on its own)."""
    from sqlalchemy import text

    from cbam_viz.study import schema

    url = _schema1_database(db_url, tmp_path)
    before = _snapshot(url)
    assert "shown_as_b" not in str(before["votes"]) and "cbam_viz_schema" in before

    def migrate_then_fail(conn) -> None:
        schema._migrate_1_to_2(conn)
        conn.execute(text("UPDATE votes SET no_such_column = 1"))

    monkeypatch.setitem(schema.MIGRATIONS, 1, migrate_then_fail)
    with pytest.raises(StudyError, match=r"from schema version 1 to 2 failed \(.*no_such_column.*\); the database "
                                         r"was left unchanged") as error:
        open_store(url)
    assert "\n" not in str(error.value)
    assert _snapshot(url) == before
    monkeypatch.undo()
    with open_store(url) as store:  # the real migration still works on it
        assert _version(store) == 3 and len(store.votes("plain")) > 0


def test_an_older_database_is_migrated_step_by_step_or_refused(tmp_path: Path, monkeypatch) -> None:
    from sqlalchemy import text

    from cbam_viz.study import schema

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    open_store(url).close()  # the current schema
    current = schema.SCHEMA_VERSION
    monkeypatch.setattr(schema, "SCHEMA_VERSION", current + 1)
    with pytest.raises(StudyError, match=f"schema version {current} and no migration to {current + 1}"):
        open_store(url)
    steps = []

    def step(conn) -> None:
        steps.append(1)
        conn.execute(text("ALTER TABLE votes ADD COLUMN note VARCHAR(10)"))

    monkeypatch.setitem(schema.MIGRATIONS, current, step)
    with open_store(url) as migrated:
        assert steps == [1] and _version(migrated) == current + 1
    with open_store(url):  # already at the new version: no step runs again
        assert steps == [1]


def test_a_study_stored_before_a_config_key_existed_is_still_the_same_study(store, db_url: str) -> None:
    """Keys added later (e.g. `models`) take their defaults when an older stored config is compared."""
    import json

    from sqlalchemy import create_engine, text

    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    with engine.begin() as conn:
        stored = json.loads(conn.execute(text("SELECT config_json FROM studies WHERE name = 'pilot'")).scalar_one())
        del stored["models"]
        conn.execute(text("UPDATE studies SET config_json = :c WHERE name = 'pilot'"), {"c": json.dumps(stored)})
    engine.dispose()
    store.ensure_study(make_config(repeat_trial=True))  # no "already exists with different models"
    with pytest.raises(StudyError, match="different models"):
        store.ensure_study(make_config(repeat_trial=True, models=("se", "cbam")))
