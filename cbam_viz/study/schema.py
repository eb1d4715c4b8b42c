"""The study database's tables (SQLAlchemy 2.x ORM) and its schema version.

The version lives in a one-row table ``cbam_viz_schema``. A database written by a newer release is
refused with a clear message; an older one is migrated by the steps in ``MIGRATIONS`` or refused when
no step exists. Databases from before the version table existed hold exactly schema 1 and are stamped.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    inspect,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.schema import CreateTable

from .records import StudyError
from .scheduler import BASELINE, CBAM

SCHEMA_VERSION = 1
_SCHEMA_LOCK_KEY = 0x63_62_61_6D  # "cbam": PostgreSQL advisory lock around schema creation
# from-version -> step that brings a database to from-version + 1 (none yet: schema 1 is the first)
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}


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
    __table_args__ = (UniqueConstraint("study_id", "participant_id"),)
    __mapper_args__ = {"eager_defaults": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    participant_id: Mapped[str] = mapped_column(String(64))
    expertise: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created_at()
    study: Mapped[StudyRow] = relationship(lazy="joined")
    assignments: Mapped[list[AssignmentRow]] = relationship(order_by="AssignmentRow.position")


class AssignmentRow(Base):
    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("participant_pk", "position"),
        CheckConstraint(f"model_a IN ('{BASELINE}', '{CBAM}')", name="assignment_model_a"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    participant_pk: Mapped[int] = mapped_column(ForeignKey("participants.id"))
    position: Mapped[int] = mapped_column(Integer)
    stimulus_id: Mapped[str] = mapped_column(String(300))
    target_class: Mapped[str | None] = mapped_column(String(200))
    model_a: Mapped[str] = mapped_column(String(16))
    is_repeat: Mapped[bool] = mapped_column(Boolean)


class VoteColumns:
    """Columns shared by study votes and free votes."""

    __mapper_args__ = {"eager_defaults": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    shown_as_a: Mapped[str] = mapped_column(String(16))
    answer: Mapped[str] = mapped_column(String(100))
    response_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created_at()
    method: Mapped[str] = mapped_column(String(100))
    target_class: Mapped[str | None] = mapped_column(String(200))
    baseline_pred: Mapped[str | None] = mapped_column(String(200))
    baseline_prob: Mapped[float | None] = mapped_column(Float)
    cbam_pred: Mapped[str | None] = mapped_column(String(200))
    cbam_prob: Mapped[float | None] = mapped_column(Float)
    app_version: Mapped[str] = mapped_column(String(50))
    baseline_checksum: Mapped[str | None] = mapped_column(String(128))
    cbam_checksum: Mapped[str | None] = mapped_column(String(128))
    image_sha256: Mapped[str | None] = mapped_column(String(64))


class VoteRow(VoteColumns, Base):
    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("study_id", "participant_pk", "position"),)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    participant_pk: Mapped[int] = mapped_column(ForeignKey("participants.id"))
    position: Mapped[int] = mapped_column(Integer)
    stimulus_id: Mapped[str] = mapped_column(String(300))
    is_repeat: Mapped[bool] = mapped_column(Boolean)
    participant: Mapped[ParticipantRow] = relationship(lazy="joined")


class FreeVoteRow(VoteColumns, Base):
    __tablename__ = "free_votes"
    __table_args__ = (UniqueConstraint("pair", "method", "image_sha256", "session_id"),)
    session_id: Mapped[str] = mapped_column(String(64))
    pair: Mapped[str] = mapped_column(String(200))


SHARED_FIELDS = tuple(c.key for c in FreeVoteRow.__table__.columns if hasattr(VoteColumns, c.key) and c.key != "id")


class SchemaVersion(Base):
    __tablename__ = "cbam_viz_schema"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


def ensure_schema(engine: Engine) -> None:
    """Create the tables of a new database, or check (and migrate) the version of an existing one.
    Raises StudyError for a database this release cannot use."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # concurrent CREATE TABLE IF NOT EXISTS can still clash
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        tables = set(inspect(conn).get_table_names())
        if SchemaVersion.__tablename__ in tables:
            version = conn.execute(text("SELECT version FROM cbam_viz_schema WHERE id = 1")).scalar()
        else:
            version = 1 if StudyRow.__tablename__ in tables else None  # unversioned = schema 1
        if version is not None and version > SCHEMA_VERSION:
            raise StudyError(f"the study database has schema version {version}, newer than this cbam-viz "
                             f"understands ({SCHEMA_VERSION}): upgrade cbam-viz or use another database")
        if version == SCHEMA_VERSION and SchemaVersion.__tablename__ in tables:
            return  # nothing to create or migrate: a read-only database or role works too
        while version is not None and version < SCHEMA_VERSION:
            if version not in MIGRATIONS:
                raise StudyError(f"the study database has schema version {version} and no migration to "
                                 f"{SCHEMA_VERSION} exists: export its votes with an older release")
            MIGRATIONS[version](conn)
            version += 1
        for table in Base.metadata.sorted_tables:
            conn.execute(CreateTable(table, if_not_exists=True))
        conn.execute(text("DELETE FROM cbam_viz_schema"))
        conn.execute(text("INSERT INTO cbam_viz_schema (id, version) VALUES (1, :v)"), {"v": SCHEMA_VERSION})
