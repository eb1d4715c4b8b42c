"""What the study store hands out and accepts: vote and participant records, errors, metadata.
Plain dataclasses, free of SQLAlchemy."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from .. import __version__
from .scheduler import Trial, other_model


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
