"""What the study store hands out and accepts: vote and participant records, errors, metadata.
Plain dataclasses, free of SQLAlchemy."""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from .. import __version__
from .scheduler import Trial


class StudyError(ValueError):
    """Unknown study or participant, or a study name reused with a different configuration."""


class VoteRejected(StudyError):
    """A vote submission was refused; nothing was stored."""


class PlatformIdTaken(StudyError):
    """A new participant's platform id belongs to participant ``holder`` already; nothing was stored."""

    def __init__(self, holder: str) -> None:
        super().__init__("this study link has already been used to join")
        self.holder = holder


@dataclass(frozen=True)
class ModelOutput:
    """One model's top-1 class and probability on a stimulus, and its model file's checksum."""

    pred: str | None = None
    prob: float | None = None
    checksum: str | None = None


@dataclass(frozen=True)
class VoteMeta:
    """What the server knew when it showed the trial: every model's output (by role), provenance.
    A vote stores the outputs of the two models it showed (as A and B)."""

    target_class: str | None = None
    outputs: Mapping[str, ModelOutput] = field(default_factory=dict)
    app_version: str = __version__

    def output(self, model: str) -> ModelOutput:
        """The output of ``model`` (empty when unknown, e.g. a catch trial's synthetic map)."""
        return self.outputs.get(model, ModelOutput())


@dataclass(frozen=True)
class VoteRecord:
    """One stored vote, unblinded. ``shown_as_a`` / ``shown_as_b`` name the models (roles of the set,
    e.g. "se"; "object" / "background" on catch trials) shown as A and B. Free votes have study=None,
    position=None and stimulus_id "upload:<sha256>"; their participant_id is the submitting session's id.
    ``kind`` is "trial" or "catch". ``response_ms`` is what the browser measured (the client's claim);
    ``shown_at`` / ``received_at`` are when the server sent the trial and received the vote, ``server_ms``
    the time between them (an upper bound of the true response time, which a client cannot shorten);
    ``too_fast`` flags a server time (else, for votes without one, a client time) under the study's minimum."""

    vote_id: int
    study: str | None
    pair: str
    participant_id: str
    expertise: str | None
    position: int | None
    stimulus_id: str
    is_repeat: bool
    kind: str
    shown_as_a: str
    shown_as_b: str
    answer: str
    response_ms: int | None
    too_fast: bool
    created_at: datetime
    method: str
    target_class: str | None
    pred_a: str | None
    prob_a: float | None
    checksum_a: str | None
    pred_b: str | None
    prob_b: float | None
    checksum_b: str | None
    app_version: str
    image_sha256: str | None
    server_ms: int | None = None
    shown_at: datetime | None = None
    received_at: datetime | None = None

    @property
    def chosen_model(self) -> str:
        """The unblinded choice: the model shown as A or B for those answers, otherwise the answer ("same", ...)."""
        return unblind(self.answer, self.shown_as_a, self.shown_as_b)


def unblind(answer: str, shown_as_a: str, shown_as_b: str) -> str:
    """The model an A/B answer picks; other answers as they are."""
    return {"A": shown_as_a, "B": shown_as_b}.get(answer, answer)


@dataclass(frozen=True)
class RecordedVote:
    """Result of a submission: the stored vote, and whether it had been stored before."""

    vote: VoteRecord
    duplicate: bool


@dataclass(frozen=True)
class Participant:
    """A participant as stored: ``platform_ids`` are the recruitment link's ids (e.g. PROLIFIC_PID),
    ``consented_at`` when they accepted the consent text (None: not asked or not accepted)."""

    participant_id: str
    expertise: str | None
    created_at: datetime
    is_new: bool
    platform_ids: Mapping[str, str] = field(default_factory=dict)
    consented_at: datetime | None = None


@dataclass(frozen=True)
class Conflict:
    """Someone arrived with the platform id ``platform_key`` of participant ``participant_id`` but
    without that participant's credential: without any (``other_id`` "") or as participant ``other_id``.
    ``arrivals`` counts such arrivals between ``first_at`` and ``last_at``."""

    platform_key: str
    participant_id: str
    other_id: str
    arrivals: int
    first_at: datetime
    last_at: datetime


@dataclass(frozen=True)
class Progress:
    """Trials answered out of a participant's trials."""

    answered: int
    total: int

    @property
    def done(self) -> bool:
        """Whether every trial is answered."""
        return self.answered >= self.total


@dataclass(frozen=True)
class NextTrial:
    """A participant's first unanswered trial and their progress."""

    trial: Trial
    progress: Progress


def new_participant_id() -> str:
    """A fresh anonymous participant id (the UI keeps it, e.g. in the browser, to resume)."""
    return uuid.uuid4().hex
