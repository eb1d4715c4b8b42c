"""The study database's tables (SQLAlchemy 2.x ORM) and its schema version.

The version lives in a one-row table ``cbam_viz_schema``. A database written by a newer release is
refused with a clear message; an older one is migrated by the steps in ``MIGRATIONS`` or refused when
no step exists. Databases from before the version table existed hold exactly schema 1 and are stamped.

Schema 2 (studies of 2-4 models, crowdsourcing): votes name both models shown (``shown_as_a``,
``shown_as_b``: roles of the set) and store their outputs as ``pred_a`` ... ``checksum_b`` instead of
the fixed ``baseline_*`` / ``cbam_*`` slots; assignments and votes have a ``kind`` (trial, catch,
practice); votes a ``too_fast`` flag; participants their platform ids, consent time and practice
progress. `_migrate_1_to_2` turns a schema-1 database into that, slots into the study's roles.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    inspect,
    text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.schema import CreateIndex, CreateTable

from .records import StudyError
from .scheduler import KINDS, TRIAL

SCHEMA_VERSION = 3
_SCHEMA_LOCK_KEY = 0x63_62_61_6D  # "cbam": PostgreSQL advisory lock around schema creation


class Base(DeclarativeBase):
    pass


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


class StudyRow(Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    pair: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(100))
    config_json: Mapped[str] = mapped_column(Text)
    stimuli_json: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(64))  # seeds the trial lists; never leaves the server
    created_at: Mapped[datetime] = _created_at()


class ParticipantRow(Base):
    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("study_id", "participant_id"),
                      Index("participants_platform_key", "study_id", "platform_key", unique=True))
    __mapper_args__ = {"eager_defaults": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    participant_id: Mapped[str] = mapped_column(String(64))
    expertise: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created_at()
    platform_key: Mapped[str | None] = mapped_column(String(200))  # the link's participant id, looked up on return
    platform_ids: Mapped[str | None] = mapped_column(Text)  # JSON {param: value} of the recruitment link
    consented_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    practice_done: Mapped[int] = mapped_column(Integer, server_default="0")  # practice trials answered
    study: Mapped[StudyRow] = relationship(lazy="joined")
    assignments: Mapped[list[AssignmentRow]] = relationship(order_by="AssignmentRow.position")


class AssignmentRow(Base):
    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("participant_pk", "position"),
        CheckConstraint("kind IN (" + ", ".join(f"'{k}'" for k in KINDS) + ")", name="assignment_kind"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    participant_pk: Mapped[int] = mapped_column(ForeignKey("participants.id"))
    position: Mapped[int] = mapped_column(Integer)
    stimulus_id: Mapped[str] = mapped_column(String(300))
    target_class: Mapped[str | None] = mapped_column(String(200))
    model_a: Mapped[str] = mapped_column(String(64))
    model_b: Mapped[str] = mapped_column(String(64))
    is_repeat: Mapped[bool] = mapped_column(Boolean)
    kind: Mapped[str] = mapped_column(String(16), server_default=TRIAL)
    shown_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # last sent to the browser


class VoteColumns:
    """Columns shared by study votes and free votes."""

    __mapper_args__ = {"eager_defaults": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    shown_as_a: Mapped[str] = mapped_column(String(64))
    shown_as_b: Mapped[str] = mapped_column(String(64))
    answer: Mapped[str] = mapped_column(String(100))
    response_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created_at()
    method: Mapped[str] = mapped_column(String(100))
    target_class: Mapped[str | None] = mapped_column(String(200))
    pred_a: Mapped[str | None] = mapped_column(String(200))
    prob_a: Mapped[float | None] = mapped_column(Float)
    checksum_a: Mapped[str | None] = mapped_column(String(128))
    pred_b: Mapped[str | None] = mapped_column(String(200))
    prob_b: Mapped[float | None] = mapped_column(Float)
    checksum_b: Mapped[str | None] = mapped_column(String(128))
    app_version: Mapped[str] = mapped_column(String(50))
    image_sha256: Mapped[str | None] = mapped_column(String(64))


class VoteRow(VoteColumns, Base):
    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("study_id", "participant_pk", "position"),)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    participant_pk: Mapped[int] = mapped_column(ForeignKey("participants.id"))
    position: Mapped[int] = mapped_column(Integer)
    stimulus_id: Mapped[str] = mapped_column(String(300))
    is_repeat: Mapped[bool] = mapped_column(Boolean)
    kind: Mapped[str] = mapped_column(String(16), server_default=TRIAL)
    too_fast: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))  # under min_response_ms
    shown_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # the server sent the trial
    received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # the vote arrived
    server_ms: Mapped[int | None] = mapped_column(Integer)  # received_at - shown_at
    participant: Mapped[ParticipantRow] = relationship(lazy="joined")


class FreeVoteRow(VoteColumns, Base):
    __tablename__ = "free_votes"
    __table_args__ = (UniqueConstraint("pair", "method", "image_sha256", "session_id"),)
    session_id: Mapped[str] = mapped_column(String(64))
    pair: Mapped[str] = mapped_column(String(200))


class ConflictRow(Base):
    """Arrivals with a known platform id but without its participant's credential (one row per
    platform id and arriving participant, "" for an arrival without any credential)."""

    __tablename__ = "conflicts"
    __table_args__ = (UniqueConstraint("study_id", "platform_key", "other_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    platform_key: Mapped[str] = mapped_column(String(200))
    holder_id: Mapped[str] = mapped_column(String(64))  # the participant who joined with the platform id
    other_id: Mapped[str] = mapped_column(String(64), server_default="")  # the arrival's own participant, if any
    arrivals: Mapped[int] = mapped_column(Integer, server_default="1")
    first_at: Mapped[datetime] = _created_at()
    last_at: Mapped[datetime] = _created_at()


class QuotaRow(Base):
    """Events per (scope, key) in one fixed time window (rate limits shared by every process)."""

    __tablename__ = "quotas"
    __table_args__ = (UniqueConstraint("scope", "key", "window_start"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200))
    window_start: Mapped[int] = mapped_column(Integer)  # epoch seconds
    count: Mapped[int] = mapped_column(Integer)


class LockoutRow(Base):
    """Consecutive failures per (scope, key) and until when the key is refused (epoch seconds)."""

    __tablename__ = "lockouts"
    __table_args__ = (UniqueConstraint("scope", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200))
    failures: Mapped[int] = mapped_column(Integer)
    locked_until: Mapped[float] = mapped_column(Float)


SHARED_FIELDS = tuple(c.key for c in FreeVoteRow.__table__.columns if hasattr(VoteColumns, c.key) and c.key != "id")


class SchemaVersion(Base):
    __tablename__ = "cbam_viz_schema"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


def ensure_schema(engine: Engine) -> None:
    """Create the tables of a new database, or check (and migrate) the version of an existing one.
    Creation and migration run in one transaction: a migration that fails leaves the database as it
    was (SQLite too: DDL is transactional there once the transaction is opened explicitly). Raises
    StudyError for a database this release cannot use, or whose migration failed."""
    with engine.connect() as conn:
        if _up_to_date(conn):
            return  # nothing to create or migrate: a read-only database or role works too
    with _schema_transaction(engine) as conn:
        if _up_to_date(conn):  # another process got there first
            return
        version = _stored_version(conn)
        while version is not None and version < SCHEMA_VERSION:
            if version not in MIGRATIONS:
                raise StudyError(f"the study database has schema version {version} and no migration to "
                                 f"{SCHEMA_VERSION} exists: export its votes with an older release")
            try:
                MIGRATIONS[version](conn)
            except DBAPIError as exc:
                reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
                raise StudyError(f"migrating the study database from schema version {version} to {version + 1} "
                                 f"failed ({reason}); the database was left unchanged") from None
            version += 1
        for table in Base.metadata.sorted_tables:
            conn.execute(CreateTable(table, if_not_exists=True))
            for index in table.indexes:
                conn.execute(CreateIndex(index, if_not_exists=True))
        conn.execute(text("DELETE FROM cbam_viz_schema"))
        conn.execute(text("INSERT INTO cbam_viz_schema (id, version) VALUES (1, :v)"), {"v": SCHEMA_VERSION})


def _stored_version(conn: Connection) -> int | None:
    """The database's schema version: its version table's, 1 for tables from before that table existed,
    None for an empty database. Raises StudyError for a version newer than this release's."""
    tables = set(inspect(conn).get_table_names())
    if SchemaVersion.__tablename__ in tables:
        version = conn.execute(text("SELECT version FROM cbam_viz_schema WHERE id = 1")).scalar()
    else:
        version = 1 if StudyRow.__tablename__ in tables else None  # unversioned = schema 1
    if version is not None and version > SCHEMA_VERSION:
        raise StudyError(f"the study database has schema version {version}, newer than this cbam-viz "
                         f"understands ({SCHEMA_VERSION}): upgrade cbam-viz or use another database")
    return version


def _up_to_date(conn: Connection) -> bool:
    """Whether the database is stamped with this release's schema version (nothing to do)."""
    return _stored_version(conn) == SCHEMA_VERSION and SchemaVersion.__tablename__ in inspect(conn).get_table_names()


@contextmanager
def _schema_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction for creating or migrating the schema, committed at the end, rolled back on error.
    PostgreSQL: an advisory lock keeps concurrent processes apart (CREATE TABLE IF NOT EXISTS can
    still clash). SQLite: Python's sqlite3 would run each DDL statement on its own (it opens a
    transaction only before INSERT/UPDATE/DELETE), so the transaction is opened explicitly, IMMEDIATE
    to take the write lock first (other processes wait for it, busy_timeout)."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def _migrate_1_to_2(conn: Connection) -> None:
    """Schema 1 -> 2. Slots become roles: "baseline" was the first of the study's ``models`` (default
    baseline vs CBAM), "cbam" the second; free votes compared the set's baseline and cbam models.
    Every row is kept; the new columns take their defaults (kind "trial", not too fast, no platform ids)."""
    sqlite = conn.dialect.name == "sqlite"
    timestamp = "DATETIME" if sqlite else "TIMESTAMP WITH TIME ZONE"
    for column in ("platform_key VARCHAR(200)", "platform_ids TEXT", f"consented_at {timestamp}",
                   "practice_done INTEGER NOT NULL DEFAULT 0"):
        conn.execute(text(f"ALTER TABLE participants ADD COLUMN {column}"))
    new_vote_columns = ["shown_as_b VARCHAR(64)", "pred_a VARCHAR(200)", "prob_a FLOAT", "checksum_a VARCHAR(128)",
                        "pred_b VARCHAR(200)", "prob_b FLOAT", "checksum_b VARCHAR(128)"]
    for table in ("votes", "free_votes"):
        for column in new_vote_columns:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column}"))
        if not sqlite:
            conn.execute(text(f"ALTER TABLE {table} ALTER COLUMN shown_as_a TYPE VARCHAR(64)"))
    conn.execute(text("ALTER TABLE votes ADD COLUMN kind VARCHAR(16) NOT NULL DEFAULT 'trial'"))
    conn.execute(text("ALTER TABLE votes ADD COLUMN too_fast BOOLEAN NOT NULL DEFAULT false"))
    unslot = ("shown_as_b = CASE WHEN shown_as_a = 'baseline' THEN :second ELSE :first END, "
              "shown_as_a = CASE WHEN shown_as_a = 'baseline' THEN :first ELSE :second END, "
              + ", ".join(f"{new}_{side} = CASE WHEN shown_as_a = '{slot}' THEN baseline_{new} ELSE cbam_{new} END"
                          for side, slot in (("a", "baseline"), ("b", "cbam"))
                          for new in ("pred", "prob", "checksum")))
    for study_id, config_json in conn.execute(text("SELECT id, config_json FROM studies")).all():
        first, second = (json.loads(config_json).get("models") or ["baseline", "cbam"])[:2]
        conn.execute(text(f"UPDATE votes SET {unslot} WHERE study_id = :study"),
                     {"first": first, "second": second, "study": study_id})
    conn.execute(text(f"UPDATE free_votes SET {unslot}"), {"first": "baseline", "second": "cbam"})
    for table in ("votes", "free_votes"):
        if not sqlite:
            conn.execute(text(f"ALTER TABLE {table} ALTER COLUMN shown_as_b SET NOT NULL"))
        for slot in ("baseline", "cbam"):
            for old in ("pred", "prob", "checksum"):
                conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {slot}_{old}"))
    _migrate_assignments_1_to_2(conn, sqlite)


def _migrate_assignments_1_to_2(conn: Connection, sqlite: bool) -> None:
    """Assignments: model_a slot -> role, model_b and kind added, the slot CHECK replaced by one on kind
    (SQLite cannot drop a constraint: the table is rebuilt)."""
    role = ("CASE WHEN a.model_a = 'baseline' THEN {first} ELSE {second} END",
            "CASE WHEN a.model_a = 'baseline' THEN {second} ELSE {first} END")
    studies = {sid: (json.loads(cfg).get("models") or ["baseline", "cbam"])[:2]
               for sid, cfg in conn.execute(text("SELECT id, config_json FROM studies")).all()}
    if sqlite:
        conn.execute(text("ALTER TABLE assignments RENAME TO assignments_schema1"))
        conn.execute(CreateTable(AssignmentRow.__table__))
        for study_id, (first, second) in studies.items():
            model_a, model_b = (r.format(first=":first", second=":second") for r in role)
            conn.execute(text(
                "INSERT INTO assignments (id, participant_pk, position, stimulus_id, target_class, model_a, model_b, "
                f"is_repeat, kind) SELECT a.id, a.participant_pk, a.position, a.stimulus_id, a.target_class, {model_a}, "
                f"{model_b}, a.is_repeat, '{TRIAL}' FROM assignments_schema1 a JOIN participants p "
                "ON a.participant_pk = p.id WHERE p.study_id = :study"),
                {"first": first, "second": second, "study": study_id})
        conn.execute(text("DROP TABLE assignments_schema1"))
        return
    conn.execute(text("ALTER TABLE assignments DROP CONSTRAINT assignment_model_a"))
    conn.execute(text("ALTER TABLE assignments ALTER COLUMN model_a TYPE VARCHAR(64)"))
    conn.execute(text("ALTER TABLE assignments ADD COLUMN model_b VARCHAR(64)"))
    conn.execute(text(f"ALTER TABLE assignments ADD COLUMN kind VARCHAR(16) NOT NULL DEFAULT '{TRIAL}'"))
    conn.execute(text("ALTER TABLE assignments ADD CONSTRAINT assignment_kind CHECK (kind IN ("
                      + ", ".join(f"'{k}'" for k in KINDS) + "))"))
    for study_id, (first, second) in studies.items():
        model_a, model_b = (r.format(first=":first", second=":second") for r in role)
        conn.execute(text(f"UPDATE assignments AS a SET model_a = {model_a}, model_b = {model_b} FROM participants p "
                          "WHERE a.participant_pk = p.id AND p.study_id = :study"),
                     {"first": first, "second": second, "study": study_id})
    conn.execute(text("ALTER TABLE assignments ALTER COLUMN model_b SET NOT NULL"))


def _migrate_2_to_3(conn: Connection) -> None:
    """Schema 2 -> 3: server-side response times (when a trial was sent, when its vote arrived); the
    conflicts, quotas and lockouts tables are created by `ensure_schema`."""
    timestamp = "DATETIME" if conn.dialect.name == "sqlite" else "TIMESTAMP WITH TIME ZONE"
    added = {"assignments": [f"shown_at {timestamp}"],
             "votes": [f"shown_at {timestamp}", f"received_at {timestamp}", "server_ms INTEGER"]}
    for table, columns in added.items():
        present = {c["name"] for c in inspect(conn).get_columns(table)}  # a rebuilt table (1 -> 2) has them
        for column in columns:
            if column.split()[0] not in present:
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column}"))


# from-version -> step that brings a database to from-version + 1
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _migrate_1_to_2, 2: _migrate_2_to_3}
