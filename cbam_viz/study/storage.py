"""Durable study storage on SQLAlchemy 2.x: a SQLite file by default, PostgreSQL by URL.

Every write is one short transaction that is committed before the method returns. UNIQUE
constraints settle races between threads or processes: the loser's transaction is rolled back
and re-run once, and then finds the winner's row.
"""
from __future__ import annotations

import json
import secrets
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    make_url,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker
from sqlalchemy.schema import CreateTable

from .. import __version__
from .config import DEFAULT_ANSWERS, ConfigError, Stimulus, StudyConfig, load_stimuli
from .scheduler import BASELINE, CBAM, MODELS, Trial, build_trials, other_model

SQLITE_FILENAME = "study.sqlite3"
UPLOAD_PREFIX = "upload:"
_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
_SCHEMA_LOCK_KEY = 0x63_62_61_6D  # "cbam": PostgreSQL advisory lock around schema creation
_T = TypeVar("_T")


class StudyError(ValueError):
    """Unknown study or participant, or a study name reused with a different configuration."""


class VoteRejected(StudyError):
    """A vote submission was refused; nothing was stored."""


@dataclass(frozen=True)
class VoteMeta:
    """What the server knew when it showed the trial (both models' outputs, provenance)."""

    target_class: str | None = None
    baseline_pred: str | None = None
    baseline_prob: float | None = None
    cbam_pred: str | None = None
    cbam_prob: float | None = None
    app_version: str = __version__
    baseline_checksum: str | None = None
    cbam_checksum: str | None = None


@dataclass(frozen=True)
class VoteRecord:
    """One stored vote, unblinded. Free votes have study=None, position=None and
    stimulus_id "upload:<sha256>"; their participant_id is the submitting session's id."""

    vote_id: int
    study: str | None
    pair: str
    participant_id: str
    expertise: str | None
    position: int | None
    stimulus_id: str
    is_repeat: bool
    shown_as_a: str
    answer: str
    response_ms: int | None
    created_at: datetime
    method: str
    target_class: str | None
    baseline_pred: str | None
    baseline_prob: float | None
    cbam_pred: str | None
    cbam_prob: float | None
    app_version: str
    baseline_checksum: str | None
    cbam_checksum: str | None
    image_sha256: str | None

    @property
    def chosen_model(self) -> str:
        """The unblinded choice: "baseline" or "cbam" for A/B, otherwise the answer ("same", ...)."""
        return unblind(self.answer, self.shown_as_a)


def unblind(answer: str, shown_as_a: str) -> str:
    """The model an A/B answer picks when ``shown_as_a`` was shown as A; other answers as they are."""
    if answer == "A":
        return shown_as_a
    if answer == "B":
        return other_model(shown_as_a)
    return answer


@dataclass(frozen=True)
class RecordedVote:
    """Result of a submission: the stored vote, and whether it had been stored before."""

    vote: VoteRecord
    duplicate: bool


@dataclass(frozen=True)
class Participant:
    participant_id: str
    expertise: str | None
    created_at: datetime
    is_new: bool


@dataclass(frozen=True)
class Progress:
    answered: int
    total: int

    @property
    def done(self) -> bool:
        return self.answered >= self.total


@dataclass(frozen=True)
class NextTrial:
    trial: Trial
    progress: Progress


def new_participant_id() -> str:
    """A fresh anonymous participant id (the UI keeps it, e.g. in the browser, to resume)."""
    return uuid.uuid4().hex


# --- schema -------------------------------------------------------------------------------


class _Base(DeclarativeBase):
    pass


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


class _Study(_Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    pair: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(100))
    config_json: Mapped[str] = mapped_column(Text)
    stimuli_json: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(64))  # seeds the trial lists; never leaves the server
    created_at: Mapped[datetime] = _created_at()


class _Participant(_Base):
    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("study_id", "participant_id"),)
    __mapper_args__ = {"eager_defaults": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    participant_id: Mapped[str] = mapped_column(String(64))
    expertise: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created_at()
    study: Mapped[_Study] = relationship(lazy="joined")
    assignments: Mapped[list[_Assignment]] = relationship(order_by="_Assignment.position")


class _Assignment(_Base):
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


class _VoteColumns:
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


class _Vote(_VoteColumns, _Base):
    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("study_id", "participant_pk", "position"),)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    participant_pk: Mapped[int] = mapped_column(ForeignKey("participants.id"))
    position: Mapped[int] = mapped_column(Integer)
    stimulus_id: Mapped[str] = mapped_column(String(300))
    is_repeat: Mapped[bool] = mapped_column(Boolean)
    participant: Mapped[_Participant] = relationship(lazy="joined")


class _FreeVote(_VoteColumns, _Base):
    __tablename__ = "free_votes"
    __table_args__ = (UniqueConstraint("pair", "method", "image_sha256", "session_id"),)
    session_id: Mapped[str] = mapped_column(String(64))
    pair: Mapped[str] = mapped_column(String(200))


_SHARED_FIELDS = tuple(c.key for c in _FreeVote.__table__.columns if hasattr(_VoteColumns, c.key) and c.key != "id")


# --- store --------------------------------------------------------------------------------


def open_store(url: str | None = None, data_dir: str | Path = "data") -> Store:
    """Open (and create on first use) the study database: `url` is any SQLAlchemy URL, e.g.
    "postgresql://user:pw@host/db" (psycopg2); None means the SQLite file <data_dir>/study.sqlite3."""
    if url is None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{Path(data_dir) / SQLITE_FILENAME}"
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):  # SQLAlchemy 2.1 would pick psycopg 3
        parsed = parsed.set(drivername="postgresql+psycopg2")
    engine = create_engine(parsed, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    _create_schema(engine)
    return Store(engine)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 30000")  # wait for other writers instead of "database is locked"
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = FULL")  # a commit is on disk when it returns
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _create_schema(engine: Engine) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # concurrent CREATE TABLE IF NOT EXISTS can still clash
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        for table in _Base.metadata.sorted_tables:
            conn.execute(CreateTable(table, if_not_exists=True))


class Store:
    """The study database. Thread-safe; several processes may share one PostgreSQL database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    # studies

    def ensure_study(self, config: StudyConfig, stimuli: Sequence[Stimulus] | None = None) -> None:
        """Register `config` (stimuli default to `load_stimuli(config)`); a no-op when the same
        study exists, a StudyError when the name exists with another configuration."""
        stimuli = list(stimuli) if stimuli is not None else load_stimuli(config)
        if config.trials_per_participant > len(stimuli):
            raise ConfigError(f"trials_per_participant ({config.trials_per_participant}) exceeds "
                              f"the {len(stimuli)} stimuli")
        config_json = json.dumps(config.to_dict(), sort_keys=True)
        stimuli_json = json.dumps([[s.id, s.target_class] for s in stimuli])

        def op(s: Session) -> None:
            row = s.scalar(select(_Study).where(_Study.name == config.name))
            if row is None:
                s.add(_Study(name=config.name, pair=config.pair, method=config.method,
                             config_json=config_json, stimuli_json=stimuli_json, secret=secrets.token_hex(16)))
                s.flush()
                return
            stored = json.loads(row.config_json)
            changed = sorted(k for k, v in config.to_dict().items() if stored.get(k) != v)
            if row.stimuli_json != stimuli_json:
                changed.append("stimulus list")
            if changed:
                raise StudyError(f"study {config.name!r} already exists with different {', '.join(changed)}; "
                                 "use a new study name")

        self._run(op)

    def study_secret(self, study: str) -> str:
        """The study's random server-side secret (it seeds trial lists and signs participant
        credentials); never send it to a client."""
        with self._sessions() as s:
            return self._study(s, study).secret

    def study_config(self, study: str) -> StudyConfig:
        """The stored configuration of `study`."""
        with self._sessions() as s:
            return _config(self._study(s, study))

    # participants and trials

    def get_or_create_participant(self, study: str, participant_id: str,
                                  expertise: str | None = None) -> Participant:
        """Find the participant or create them with their trial list. Expertise is recorded on
        creation only and must be one of the study's options (and the study must collect it)."""
        _check_id("participant id", participant_id, StudyError)

        def op(s: Session) -> Participant:
            study_row = self._study(s, study)
            row = s.scalar(select(_Participant).where(_Participant.study_id == study_row.id,
                                                      _Participant.participant_id == participant_id))
            if row is not None:
                return _participant(row, is_new=False)
            config = _config(study_row)
            if expertise is not None and (not config.collect_expertise or expertise not in config.expertise_options):
                raise StudyError(f"expertise {expertise!r} is not an option of study {study!r}")
            stimuli = [Stimulus(id=sid, target_class=target) for sid, target in json.loads(study_row.stimuli_json)]
            trials = build_trials(study, participant_id, stimuli, config.trials_per_participant, config.repeat_trial,
                                  secret=study_row.secret)
            row = _Participant(study=study_row, participant_id=participant_id, expertise=expertise,
                               assignments=[_Assignment(**asdict(t)) for t in trials])
            s.add(row)
            s.flush()
            return _participant(row, is_new=True)

        return self._run(op)

    def trials(self, study: str, participant_id: str) -> list[Trial]:
        """The participant's full trial list, in order."""
        return self._trial_state(study, participant_id)[0]

    def progress(self, study: str, participant_id: str) -> Progress:
        trials, answered = self._trial_state(study, participant_id)
        return Progress(len(answered), len(trials))

    def answered_positions(self, study: str, participant_id: str) -> set[int]:
        """Positions the participant has answered (one query; for callers that cache `trials`).
        Empty for an unknown participant or study."""
        query = (select(_Vote.position).join(_Participant, _Vote.participant_pk == _Participant.id)
                 .join(_Study, _Participant.study_id == _Study.id)
                 .where(_Study.name == study, _Participant.participant_id == participant_id))
        with self._sessions() as s:
            return set(s.scalars(query))

    def next_trial(self, study: str, participant_id: str) -> NextTrial | None:
        """The first unanswered trial with progress, or None when all are answered. Resuming
        after a reload is calling this again with the same participant id."""
        trials, answered = self._trial_state(study, participant_id)
        pending = [t for t in trials if t.position not in answered]
        return NextTrial(pending[0], Progress(len(answered), len(trials))) if pending else None

    # votes

    def record_vote(self, study: str, participant_id: str, position: int, answer: str, *,
                    stimulus_id: str | None = None, response_ms: int | None = None,
                    meta: VoteMeta = VoteMeta(), image_sha256: str | None = None) -> RecordedVote:
        """Store the answer to the participant's trial at `position` (`stimulus_id`, when given,
        must match it). Resubmitting the same answer returns the stored vote (duplicate=True);
        anything invalid, or a different answer to an answered trial, raises VoteRejected."""

        def op(s: Session) -> RecordedVote:
            try:
                participant = self._participant_row(s, study, participant_id)
            except StudyError as exc:
                raise VoteRejected(str(exc)) from None
            assignment = None if not _is_int(position) else s.scalar(select(_Assignment).where(
                _Assignment.participant_pk == participant.id, _Assignment.position == position))
            if assignment is None or stimulus_id not in (None, assignment.stimulus_id):
                raise VoteRejected(f"trial {position} ({stimulus_id or 'any stimulus'}) is not assigned "
                                   f"to participant {participant_id!r}")
            config = _config(participant.study)
            _check_vote(answer, config.answers, response_ms, meta, image_sha256)
            existing = s.scalar(select(_Vote).where(_Vote.study_id == participant.study_id,
                                                    _Vote.participant_pk == participant.id,
                                                    _Vote.position == position))
            if existing is not None:
                return _resubmission(_vote_record(existing), answer, assignment.model_a)
            vote = _Vote(study_id=participant.study_id, participant=participant, position=position,
                         stimulus_id=assignment.stimulus_id, is_repeat=assignment.is_repeat,
                         shown_as_a=assignment.model_a, answer=answer, response_ms=response_ms,
                         method=config.method, image_sha256=image_sha256,
                         **{**asdict(meta), "target_class": meta.target_class or assignment.target_class})
            s.add(vote)
            s.flush()
            return RecordedVote(_vote_record(vote), duplicate=False)

        return self._run(op)

    def record_free_vote(self, session_id: str, image_sha256: str, answer: str, shown_as_a: str, *,
                         pair: str, method: str, response_ms: int | None = None,
                         meta: VoteMeta = VoteMeta()) -> RecordedVote:
        """Store a Compare-page vote on an uploaded image (identified by its SHA-256 only).
        One vote per (pair, method, image, session): the same choice again (compared unblinded:
        the sides may have been drawn anew) is a duplicate, a different one is rejected."""
        _check_id("session id", session_id, VoteRejected)
        if shown_as_a not in MODELS:
            raise VoteRejected(f"shown_as_a must be one of {list(MODELS)}, got {shown_as_a!r}")
        if not pair or not method:
            raise VoteRejected("pair and method must not be empty")
        if image_sha256 is None:
            raise VoteRejected("image_sha256 is required for a free vote")
        _check_vote(answer, DEFAULT_ANSWERS, response_ms, meta, image_sha256)

        def op(s: Session) -> RecordedVote:
            existing = s.scalar(select(_FreeVote).where(
                _FreeVote.pair == pair, _FreeVote.method == method,
                _FreeVote.image_sha256 == image_sha256, _FreeVote.session_id == session_id))
            if existing is not None:
                return _resubmission(_free_vote_record(existing), answer, shown_as_a)
            vote = _FreeVote(session_id=session_id, pair=pair, method=method, image_sha256=image_sha256,
                             shown_as_a=shown_as_a, answer=answer, response_ms=response_ms, **asdict(meta))
            s.add(vote)
            s.flush()
            return RecordedVote(_free_vote_record(vote), duplicate=False)

        return self._run(op)

    def votes(self, study: str) -> list[VoteRecord]:
        """All votes of `study`, oldest first."""
        with self._sessions() as s:
            study_row = self._study(s, study)
            rows = s.scalars(select(_Vote).where(_Vote.study_id == study_row.id).order_by(_Vote.id))
            return [_vote_record(v) for v in rows]

    def free_votes(self, pair: str | None = None) -> list[VoteRecord]:
        """All free votes (optionally of one model pair), oldest first."""
        query = select(_FreeVote).order_by(_FreeVote.id)
        if pair is not None:
            query = query.where(_FreeVote.pair == pair)
        with self._sessions() as s:
            return [_free_vote_record(v) for v in s.scalars(query)]

    def row_counts(self) -> dict[str, int]:
        """Number of rows per table."""
        with self._sessions() as s:
            return {t.name: s.scalar(select(func.count()).select_from(t))
                    for t in _Base.metadata.sorted_tables}

    # internals

    def _run(self, op: Callable[[Session], _T]) -> _T:
        """Run `op` in one committed transaction; after losing a UNIQUE race, run it once more."""
        try:
            with self._sessions.begin() as s:
                return op(s)
        except IntegrityError:
            with self._sessions.begin() as s:
                return op(s)

    def _study(self, s: Session, name: str) -> _Study:
        row = s.scalar(select(_Study).where(_Study.name == name))
        if row is None:
            raise StudyError(f"unknown study {name!r}")
        return row

    def _participant_row(self, s: Session, study: str, participant_id: str) -> _Participant:
        study_row = self._study(s, study)
        row = s.scalar(select(_Participant).where(_Participant.study_id == study_row.id,
                                                  _Participant.participant_id == participant_id))
        if row is None:
            raise StudyError(f"unknown participant {participant_id!r} in study {study!r}")
        return row

    def _trial_state(self, study: str, participant_id: str) -> tuple[list[Trial], set[int]]:
        with self._sessions() as s:
            row = self._participant_row(s, study, participant_id)
            answered = set(s.scalars(select(_Vote.position).where(_Vote.participant_pk == row.id)))
            trials = [Trial(position=a.position, stimulus_id=a.stimulus_id, model_a=a.model_a,
                            is_repeat=a.is_repeat, target_class=a.target_class) for a in row.assignments]
            return trials, answered


def _config(row: _Study) -> StudyConfig:
    return StudyConfig.from_dict(json.loads(row.config_json))


def _participant(row: _Participant, is_new: bool) -> Participant:
    return Participant(row.participant_id, row.expertise, _utc(row.created_at), is_new)


def _check_id(what: str, value: str, error: type[StudyError]) -> None:
    if not isinstance(value, str) or not _ID_PATTERN.fullmatch(value):
        raise error(f"{what} must be 1-64 characters of A-Z a-z 0-9 _ . : -, got {value!r}")


def _check_vote(answer: str, answers: Sequence[str], response_ms: int | None, meta: VoteMeta,
                image_sha256: str | None) -> None:
    if answer not in answers:
        raise VoteRejected(f"answer {answer!r} is not one of {list(answers)}")
    if response_ms is not None and (not _is_int(response_ms) or response_ms < 0):
        raise VoteRejected(f"response_ms must be a non-negative integer, got {response_ms!r}")
    for prob in (meta.baseline_prob, meta.cbam_prob):
        if prob is not None and not 0.0 <= prob <= 1.0:
            raise VoteRejected(f"probabilities must lie in [0, 1], got {prob!r}")
    if image_sha256 is not None and not _SHA256_PATTERN.fullmatch(image_sha256):
        raise VoteRejected("image_sha256 must be 64 lowercase hex digits")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _resubmission(stored: VoteRecord, answer: str, shown_as_a: str) -> RecordedVote:
    """The same choice again is a duplicate; another is a replay. Choices are compared unblinded, as
    a free vote shown again may have drawn the other side for A."""
    if unblind(answer, shown_as_a) != stored.chosen_model:
        raise VoteRejected(f"this trial was already answered {stored.answer!r}; "
                           f"a different answer ({answer!r}) is refused as a replay")
    return RecordedVote(stored, duplicate=True)


def _utc(moment: datetime) -> datetime:
    """SQLite returns naive UTC timestamps, PostgreSQL aware ones: make both aware."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _shared(row: _VoteColumns) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in _SHARED_FIELDS}
    values["created_at"] = _utc(values["created_at"])
    return values


def _vote_record(row: _Vote) -> VoteRecord:
    participant = row.participant
    return VoteRecord(vote_id=row.id, study=participant.study.name, pair=participant.study.pair,
                      participant_id=participant.participant_id, expertise=participant.expertise,
                      position=row.position, stimulus_id=row.stimulus_id, is_repeat=row.is_repeat,
                      **_shared(row))


def _free_vote_record(row: _FreeVote) -> VoteRecord:
    return VoteRecord(vote_id=row.id, study=None, pair=row.pair, participant_id=row.session_id,
                      expertise=None, position=None, stimulus_id=UPLOAD_PREFIX + row.image_sha256,
                      is_repeat=False, **_shared(row))
