"""Durable study storage on SQLAlchemy 2.x: a SQLite file by default, PostgreSQL by URL.

Every write is one short transaction that is committed before the method returns. UNIQUE
constraints settle races between threads or processes: the loser's transaction is rolled back
and re-run once, and then finds the winner's row. Tables: `schema`; records handed out: `records`.
"""
from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, delete, event, func, make_url, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .config import DEFAULT_ANSWERS, ConfigError, Stimulus, StudyConfig, load_stimuli
from .records import (
    Conflict,
    NextTrial,
    Participant,
    PlatformIdTaken,
    Progress,
    RecordedVote,
    StudyError,
    VoteMeta,
    VoteRecord,
    VoteRejected,
    unblind,
)
from .scheduler import PRACTICE, TRIAL, Trial, build_trials
from .schema import (
    SHARED_FIELDS,
    AssignmentRow,
    Base,
    ConflictRow,
    FreeVoteRow,
    LockoutRow,
    ParticipantRow,
    QuotaRow,
    StudyRow,
    VoteColumns,
    VoteRow,
    ensure_schema,
)

SQLITE_FILENAME = "study.sqlite3"
UPLOAD_PREFIX = "upload:"
_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
_PLATFORM_VALUE = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
_T = TypeVar("_T")


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
    ensure_schema(engine)
    return Store(engine)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 30000")  # wait for other writers instead of "database is locked"
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = FULL")  # a commit is on disk when it returns
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


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
        """Close every pooled database connection."""
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
            row = s.scalar(select(StudyRow).where(StudyRow.name == config.name))
            if row is None:
                s.add(StudyRow(name=config.name, pair=config.pair, method=config.method,
                             config_json=config_json, stimuli_json=stimuli_json, secret=secrets.token_hex(16)))
                s.flush()
                return
            stored = _config(row).to_dict()  # through from_dict: keys added since then take their defaults
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

    def get_or_create_participant(self, study: str, participant_id: str, expertise: str | None = None, *,
                                  platform_ids: Mapping[str, str] | None = None, consented: bool = False,
                                  catch_ids: Sequence[str] = ()) -> Participant:
        """Find the participant `participant_id` or create them with their trial list and the recruitment
        link's `platform_ids` (attributes, never a key to find someone by). Creating one needs
        `consented` when the study has a consent text, and a platform participant id (the study's
        ``participant_param``) that nobody has joined with: else PlatformIdTaken. `catch_ids` are the
        stimuli catch trials may use (those with ground truth). Expertise is recorded on creation only
        and must be one of the study's options (and the study must collect it)."""
        _check_id("participant id", participant_id, StudyError)
        platform_ids = dict(platform_ids or {})
        for name, value in platform_ids.items():
            if not isinstance(value, str) or not _PLATFORM_VALUE.fullmatch(value):
                raise StudyError(f"the link's {name} must be 1-128 characters of A-Z a-z 0-9 _ . : @ -")

        def op(s: Session) -> Participant:
            study_row = self._study(s, study)
            config = _config(study_row)
            row = s.scalar(select(ParticipantRow).where(ParticipantRow.study_id == study_row.id,
                                                        ParticipantRow.participant_id == participant_id))
            if row is not None:
                return _participant(row, is_new=False)
            if config.consent and not consented:
                raise StudyError("please read the consent text and accept it to take part")
            key = platform_ids.get(config.recruitment.key_param)
            holder = key and s.scalar(select(ParticipantRow.participant_id).where(
                ParticipantRow.study_id == study_row.id, ParticipantRow.platform_key == key))
            if holder:
                raise PlatformIdTaken(holder)
            if expertise is not None and (not config.collect_expertise or expertise not in config.expertise_options):
                raise StudyError(f"expertise {expertise!r} is not an option of study {study!r}")
            stimuli = [Stimulus(id=sid, target_class=target) for sid, target in json.loads(study_row.stimuli_json)]
            catch_stimuli = [st for st in stimuli if st.id in set(catch_ids)]
            if config.catch_trials and not catch_stimuli:
                raise StudyError(f"study {study!r} has catch trials but no stimulus with ground truth")
            trials = build_trials(study, participant_id, stimuli, config.trials_per_participant, config.repeat_trial,
                                  secret=study_row.secret, models=config.models, catch=config.catch_trials,
                                  catch_stimuli=catch_stimuli, practice=config.practice_trials)
            row = ParticipantRow(study=study_row, participant_id=participant_id, expertise=expertise,
                                 platform_key=key or None,
                                 platform_ids=json.dumps(platform_ids) if platform_ids else None,
                                 consented_at=datetime.now(UTC) if consented and config.consent else None,
                                 assignments=[AssignmentRow(**asdict(t)) for t in trials])
            s.add(row)
            s.flush()
            return _participant(row, is_new=True)

        return self._run(op)

    def participant_by_platform_id(self, study: str, key: str) -> str | None:
        """Our id of the participant who joined with the recruitment link's participant id `key` (None
        when nobody has). Only for spotting conflicts: a platform id never gives access to a participant."""
        with self._sessions() as s:
            study_row = self._study(s, study)
            return s.scalar(select(ParticipantRow.participant_id).where(
                ParticipantRow.study_id == study_row.id, ParticipantRow.platform_key == key))

    def participant(self, study: str, participant_id: str) -> Participant:
        """The stored participant (StudyError when unknown)."""
        with self._sessions() as s:
            return _participant(self._participant_row(s, study, participant_id), is_new=False)

    def participants(self, study: str) -> list[Participant]:
        """Every participant of `study`, oldest first."""
        with self._sessions() as s:
            study_row = self._study(s, study)
            rows = s.scalars(select(ParticipantRow).where(ParticipantRow.study_id == study_row.id)
                             .order_by(ParticipantRow.id))
            return [_participant(row, is_new=False) for row in rows]

    def record_conflict(self, study: str, platform_key: str, holder_id: str, other_id: str = "") -> None:
        """Note an arrival with `platform_key` (joined by `holder_id`) without the holder's credential:
        without any (`other_id` "") or as participant `other_id`. Repeats only count up (bounded rows)."""

        def op(s: Session) -> None:
            study_row = self._study(s, study)
            row = s.scalar(select(ConflictRow).where(ConflictRow.study_id == study_row.id,
                                                     ConflictRow.platform_key == platform_key,
                                                     ConflictRow.other_id == other_id))
            if row is None:
                s.add(ConflictRow(study_id=study_row.id, platform_key=platform_key, holder_id=holder_id,
                                  other_id=other_id, arrivals=1))
            else:
                row.arrivals += 1
                row.last_at = datetime.now(UTC)
            s.flush()

        self._run(op)

    def conflicts(self, study: str) -> list[Conflict]:
        """Every recorded conflict of `study`, oldest first."""
        with self._sessions() as s:
            study_row = self._study(s, study)
            rows = s.scalars(select(ConflictRow).where(ConflictRow.study_id == study_row.id).order_by(ConflictRow.id))
            return [Conflict(r.platform_key, r.holder_id, r.other_id, r.arrivals, _utc(r.first_at), _utc(r.last_at))
                    for r in rows]

    def mark_shown(self, study: str, participant_id: str, position: int) -> None:
        """Note that the participant's trial at `position` was sent now (its vote's server time starts here)."""
        who = (select(ParticipantRow.id).join(StudyRow, ParticipantRow.study_id == StudyRow.id)
               .where(StudyRow.name == study, ParticipantRow.participant_id == participant_id)).scalar_subquery()
        with self._sessions.begin() as s:
            s.execute(update(AssignmentRow).where(AssignmentRow.participant_pk == who, AssignmentRow.position == position)
                      .values(shown_at=datetime.now(UTC)))

    # rate limits and lockouts, shared by every process of a deployment

    def take_quota(self, scope: str, key: str, window_start: int, limit: int) -> bool:
        """Count one event for (`scope`, `key`) in the window starting at `window_start` unless it holds
        `limit` already; True when counted. Atomic across processes (a conditional UPDATE, or the INSERT
        of the window's row, which a UNIQUE constraint makes single). Older windows of `scope` are dropped."""

        def op(s: Session) -> bool:
            where = (QuotaRow.scope == scope, QuotaRow.key == key, QuotaRow.window_start == window_start)
            if s.execute(update(QuotaRow).where(*where, QuotaRow.count < limit)
                         .values(count=QuotaRow.count + 1)).rowcount:
                return True
            if s.scalar(select(QuotaRow.id).where(*where)) is not None:
                return False  # the window is full
            s.execute(delete(QuotaRow).where(QuotaRow.scope == scope, QuotaRow.window_start < window_start))
            s.add(QuotaRow(scope=scope, key=key, window_start=window_start, count=1))
            s.flush()
            return True

        return self._run(op)

    def refund_quota(self, scope: str, key: str, window_start: int) -> None:
        """Undo one `take_quota` (an event that turned out not to count)."""
        with self._sessions.begin() as s:
            s.execute(update(QuotaRow).where(QuotaRow.scope == scope, QuotaRow.key == key,
                                             QuotaRow.window_start == window_start, QuotaRow.count > 0)
                      .values(count=QuotaRow.count - 1))

    def lockout(self, scope: str, key: str) -> tuple[int, float]:
        """(consecutive failures, locked until: epoch seconds) of (`scope`, `key`); (0, 0.0) when none."""
        with self._sessions() as s:
            row = s.scalar(select(LockoutRow).where(LockoutRow.scope == scope, LockoutRow.key == key))
            return (0, 0.0) if row is None else (row.failures, row.locked_until)

    def add_failure(self, scope: str, key: str, lock_for: Callable[[int], float], now: float) -> float:
        """Count one more failure of (`scope`, `key`) and lock it until `now` + `lock_for(failures)`;
        returns that time. `clear_failures` resets it."""

        def op(s: Session) -> float:
            row = s.scalar(select(LockoutRow).where(LockoutRow.scope == scope, LockoutRow.key == key))
            if row is None:
                row = LockoutRow(scope=scope, key=key, failures=0, locked_until=0.0)
                s.add(row)
            row.failures += 1
            row.locked_until = now + lock_for(row.failures)
            s.flush()
            return row.locked_until

        return self._run(op)

    def clear_failures(self, scope: str, key: str) -> None:
        """Forget the failures of (`scope`, `key`)."""
        with self._sessions.begin() as s:
            s.execute(delete(LockoutRow).where(LockoutRow.scope == scope, LockoutRow.key == key))

    def time_left(self, study: str, participant_id: str) -> float | None:
        """Seconds the participant has left under the study's max_study_minutes (None: no limit)."""
        with self._sessions() as s:
            row = self._participant_row(s, study, participant_id)
            return _time_left(row, _config(row.study))

    def trials(self, study: str, participant_id: str) -> list[Trial]:
        """The participant's full trial list, in order."""
        return self._trial_state(study, participant_id)[0]

    def progress(self, study: str, participant_id: str) -> Progress:
        """Trials answered (practice included) out of the participant's trials."""
        trials, answered = self._trial_state(study, participant_id)
        return Progress(len(answered), len(trials))

    def answered_positions(self, study: str, participant_id: str) -> set[int]:
        """Positions the participant has answered (one query; for callers that cache `trials`).
        Empty for an unknown participant or study."""
        who = (select(ParticipantRow.id, ParticipantRow.practice_done)
               .join(StudyRow, ParticipantRow.study_id == StudyRow.id)
               .where(StudyRow.name == study, ParticipantRow.participant_id == participant_id))
        with self._sessions() as s:
            found = s.execute(who).first()
            if found is None:
                return set()
            votes = s.scalars(select(VoteRow.position).where(VoteRow.participant_pk == found.id))
            return set(votes) | set(range(found.practice_done))  # practice trials hold the first positions

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
            participant, assignment = self._answered_trial(s, study, participant_id, position, stimulus_id)
            if assignment.kind == PRACTICE:
                raise VoteRejected(f"trial {position} is a practice trial: its answer is not a vote")
            config = _config(participant.study)
            _check_vote(answer, config.answers, response_ms, meta, image_sha256)
            practice = s.scalar(select(func.count()).select_from(AssignmentRow).where(
                AssignmentRow.participant_pk == participant.id, AssignmentRow.kind == PRACTICE))
            if participant.practice_done < practice:
                raise VoteRejected(f"answer practice trial {participant.practice_done} first: the study's "
                                   "trials follow the practice trials")
            existing = s.scalar(select(VoteRow).where(VoteRow.study_id == participant.study_id,
                                                    VoteRow.participant_pk == participant.id,
                                                    VoteRow.position == position))
            if existing is not None:
                return _resubmission(_vote_record(existing), answer, assignment.model_a, assignment.model_b)
            _check_time(participant, config)
            received = datetime.now(UTC)
            shown = None if assignment.shown_at is None else _utc(assignment.shown_at)
            server_ms = None if shown is None else max(0, round((received - shown).total_seconds() * 1000))
            measured = server_ms if server_ms is not None else response_ms
            vote = VoteRow(study_id=participant.study_id, participant=participant, position=position,
                         stimulus_id=assignment.stimulus_id, is_repeat=assignment.is_repeat, kind=assignment.kind,
                         answer=answer, response_ms=response_ms, method=config.method, image_sha256=image_sha256,
                         shown_at=shown, received_at=received, server_ms=server_ms,
                         too_fast=measured is not None and measured < config.min_response_ms,
                         target_class=meta.target_class or assignment.target_class, app_version=meta.app_version,
                         **_shown(meta, assignment.model_a, assignment.model_b))
            s.add(vote)
            s.flush()
            return RecordedVote(_vote_record(vote), duplicate=False)

        return self._run(op)

    def record_practice(self, study: str, participant_id: str, position: int, answer: str) -> bool:
        """Note the answer to a practice trial: nothing but the participant's practice progress is
        stored. Practice trials are answered in order; an answered one again is a no-op (returns
        True, as a duplicate). Raises VoteRejected for anything else."""

        def op(s: Session) -> bool:
            participant, assignment = self._answered_trial(s, study, participant_id, position, None)
            if assignment.kind != PRACTICE:
                raise VoteRejected(f"trial {position} is not a practice trial")
            config = _config(participant.study)
            _check_vote(answer, config.answers, None, VoteMeta(), None)
            done = participant.practice_done  # practice trials hold the first positions
            if position < done:
                return True
            if position > done:
                raise VoteRejected(f"answer practice trial {done} first")
            _check_time(participant, config)
            participant.practice_done = done + 1
            return False

        return self._run(op)

    def record_free_vote(self, session_id: str, image_sha256: str, answer: str, shown_as_a: str, shown_as_b: str, *,
                         pair: str, method: str, response_ms: int | None = None,
                         meta: VoteMeta = VoteMeta()) -> RecordedVote:
        """Store a Compare-page vote on an uploaded image (identified by its SHA-256 only) between the
        models (roles of set `pair`) shown as A and B. One vote per (pair, method, image, session): the
        same choice again (compared unblinded: the sides may have been drawn anew) is a duplicate; a
        different one, or a vote on another two models of the set, is rejected."""
        _check_id("session id", session_id, VoteRejected)
        for side, model in (("A", shown_as_a), ("B", shown_as_b)):
            if not isinstance(model, str) or not _ID_PATTERN.fullmatch(model):
                raise VoteRejected(f"the model shown as {side} must be a role of the set, got {model!r}")
        if shown_as_a == shown_as_b:
            raise VoteRejected(f"a blind vote compares two different models, got {shown_as_a!r} twice")
        if not pair or not method:
            raise VoteRejected("pair and method must not be empty")
        if image_sha256 is None:
            raise VoteRejected("image_sha256 is required for a free vote")
        _check_vote(answer, DEFAULT_ANSWERS, response_ms, meta, image_sha256)

        def op(s: Session) -> RecordedVote:
            existing = s.scalar(select(FreeVoteRow).where(
                FreeVoteRow.pair == pair, FreeVoteRow.method == method,
                FreeVoteRow.image_sha256 == image_sha256, FreeVoteRow.session_id == session_id))
            if existing is not None:
                if {existing.shown_as_a, existing.shown_as_b} != {shown_as_a, shown_as_b}:
                    raise VoteRejected(f"you already voted on this image with this set and method (models "
                                       f"{existing.shown_as_a} and {existing.shown_as_b}); one vote per image")
                return _resubmission(_free_vote_record(existing), answer, shown_as_a, shown_as_b)
            vote = FreeVoteRow(session_id=session_id, pair=pair, method=method, image_sha256=image_sha256,
                             answer=answer, response_ms=response_ms, target_class=meta.target_class,
                             app_version=meta.app_version, **_shown(meta, shown_as_a, shown_as_b))
            s.add(vote)
            s.flush()
            return RecordedVote(_free_vote_record(vote), duplicate=False)

        return self._run(op)

    def votes(self, study: str) -> list[VoteRecord]:
        """All votes of `study`, oldest first."""
        with self._sessions() as s:
            study_row = self._study(s, study)
            rows = s.scalars(select(VoteRow).where(VoteRow.study_id == study_row.id).order_by(VoteRow.id))
            return [_vote_record(v) for v in rows]

    def free_votes(self, pair: str | None = None) -> list[VoteRecord]:
        """All free votes (optionally of one model pair), oldest first."""
        query = select(FreeVoteRow).order_by(FreeVoteRow.id)
        if pair is not None:
            query = query.where(FreeVoteRow.pair == pair)
        with self._sessions() as s:
            return [_free_vote_record(v) for v in s.scalars(query)]

    def row_counts(self) -> dict[str, int]:
        """Number of rows per table."""
        with self._sessions() as s:
            return {t.name: s.scalar(select(func.count()).select_from(t))
                    for t in Base.metadata.sorted_tables}

    # internals

    def _run(self, op: Callable[[Session], _T]) -> _T:
        """Run `op` in one committed transaction; after losing a UNIQUE race, run it once more."""
        try:
            with self._sessions.begin() as s:
                return op(s)
        except IntegrityError:
            with self._sessions.begin() as s:
                return op(s)

    def _study(self, s: Session, name: str) -> StudyRow:
        row = s.scalar(select(StudyRow).where(StudyRow.name == name))
        if row is None:
            raise StudyError(f"unknown study {name!r}")
        return row

    def _answered_trial(self, s: Session, study: str, participant_id: str, position: object,
                        stimulus_id: str | None) -> tuple[ParticipantRow, AssignmentRow]:
        """The participant and the assignment an answer is for; VoteRejected when either is unknown."""
        try:
            participant = self._participant_row(s, study, participant_id)
        except StudyError as exc:
            raise VoteRejected(str(exc)) from None
        return participant, _assignment(s, participant, position, stimulus_id)

    def _participant_row(self, s: Session, study: str, participant_id: str) -> ParticipantRow:
        study_row = self._study(s, study)
        row = s.scalar(select(ParticipantRow).where(ParticipantRow.study_id == study_row.id,
                                                  ParticipantRow.participant_id == participant_id))
        if row is None:
            raise StudyError(f"unknown participant {participant_id!r} in study {study!r}")
        return row

    def _trial_state(self, study: str, participant_id: str) -> tuple[list[Trial], set[int]]:
        with self._sessions() as s:
            row = self._participant_row(s, study, participant_id)
            answered = set(s.scalars(select(VoteRow.position).where(VoteRow.participant_pk == row.id)))
            trials = [Trial(position=a.position, stimulus_id=a.stimulus_id, model_a=a.model_a, model_b=a.model_b,
                            is_repeat=a.is_repeat, target_class=a.target_class, kind=a.kind) for a in row.assignments]
            return trials, answered | set(range(row.practice_done))


def _config(row: StudyRow) -> StudyConfig:
    return StudyConfig.from_dict(json.loads(row.config_json))


def _participant(row: ParticipantRow, is_new: bool) -> Participant:
    return Participant(row.participant_id, row.expertise, _utc(row.created_at), is_new,
                       json.loads(row.platform_ids) if row.platform_ids else {},
                       None if row.consented_at is None else _utc(row.consented_at))


def _assignment(s: Session, participant: ParticipantRow, position: object, stimulus_id: str | None) -> AssignmentRow:
    """The participant's assignment at `position` (matching `stimulus_id` when given), else VoteRejected."""
    assignment = None if not _is_int(position) else s.scalar(select(AssignmentRow).where(
        AssignmentRow.participant_pk == participant.id, AssignmentRow.position == position))
    if assignment is None or stimulus_id not in (None, assignment.stimulus_id):
        raise VoteRejected(f"trial {position} ({stimulus_id or 'any stimulus'}) is not assigned "
                           f"to participant {participant.participant_id!r}")
    return assignment


def _time_left(participant: ParticipantRow, config: StudyConfig) -> float | None:
    if not config.max_study_minutes:
        return None
    deadline = _utc(participant.created_at) + timedelta(minutes=config.max_study_minutes)
    return (deadline - datetime.now(UTC)).total_seconds()


def _check_time(participant: ParticipantRow, config: StudyConfig) -> None:
    left = _time_left(participant, config)
    if left is not None and left < 0:
        raise VoteRejected(f"the time for this study ({config.max_study_minutes:g} minutes) is over; "
                           "your earlier answers are kept")


def _shown(meta: VoteMeta, model_a: str, model_b: str) -> dict[str, Any]:
    """A vote's columns for the two models shown: their names and outputs."""
    a, b = meta.output(model_a), meta.output(model_b)
    return {"shown_as_a": model_a, "shown_as_b": model_b, "pred_a": a.pred, "prob_a": a.prob,
            "checksum_a": a.checksum, "pred_b": b.pred, "prob_b": b.prob, "checksum_b": b.checksum}


def _check_id(what: str, value: str, error: type[StudyError]) -> None:
    if not isinstance(value, str) or not _ID_PATTERN.fullmatch(value):
        raise error(f"{what} must be 1-64 characters of A-Z a-z 0-9 _ . : -, got {value!r}")


def _check_vote(answer: str, answers: Sequence[str], response_ms: int | None, meta: VoteMeta,
                image_sha256: str | None) -> None:
    if answer not in answers:
        raise VoteRejected(f"answer {answer!r} is not one of {list(answers)}")
    if response_ms is not None and (not _is_int(response_ms) or response_ms < 0):
        raise VoteRejected(f"response_ms must be a non-negative integer, got {response_ms!r}")
    for prob in (output.prob for output in meta.outputs.values()):
        if prob is not None and not 0.0 <= prob <= 1.0:
            raise VoteRejected(f"probabilities must lie in [0, 1], got {prob!r}")
    if image_sha256 is not None and not _SHA256_PATTERN.fullmatch(image_sha256):
        raise VoteRejected("image_sha256 must be 64 lowercase hex digits")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _resubmission(stored: VoteRecord, answer: str, shown_as_a: str, shown_as_b: str) -> RecordedVote:
    """The same choice again is a duplicate; another is a replay. Choices are compared unblinded, as
    a free vote shown again may have drawn the other side for A."""
    if unblind(answer, shown_as_a, shown_as_b) != stored.chosen_model:  # never say which answer is stored
        raise VoteRejected("this trial was already answered; a different answer is refused as a replay")
    return RecordedVote(stored, duplicate=True)


def _utc(moment: datetime) -> datetime:
    """SQLite returns naive UTC timestamps, PostgreSQL aware ones: make both aware."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _shared(row: VoteColumns) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in SHARED_FIELDS}
    values["created_at"] = _utc(values["created_at"])
    return values


def _vote_record(row: VoteRow) -> VoteRecord:
    participant = row.participant
    return VoteRecord(vote_id=row.id, study=participant.study.name, pair=participant.study.pair,
                      participant_id=participant.participant_id, expertise=participant.expertise,
                      position=row.position, stimulus_id=row.stimulus_id, is_repeat=row.is_repeat,
                      kind=row.kind, too_fast=row.too_fast, server_ms=row.server_ms,
                      shown_at=None if row.shown_at is None else _utc(row.shown_at),
                      received_at=None if row.received_at is None else _utc(row.received_at), **_shared(row))


def _free_vote_record(row: FreeVoteRow) -> VoteRecord:
    return VoteRecord(vote_id=row.id, study=None, pair=row.pair, participant_id=row.session_id,
                      expertise=None, position=None, stimulus_id=UPLOAD_PREFIX + row.image_sha256,
                      is_repeat=False, kind=TRIAL, too_fast=False, **_shared(row))
