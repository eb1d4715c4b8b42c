"""The participant-facing study logic, free of Gradio: join/resume, blinded trial views, votes.

A `TrialView` is everything the participant's browser receives for one trial: the PNG bytes of
the image and of maps A and B (equal lengths, see `stimuli.encode_png`), the target class, the
question and the progress, and nothing that says which model is "A": the side lives in the store's
assignment (server-side) and is applied here when the view is built.

Participants never choose their id: the server issues it on joining, with a credential
(`credentials.Credentials`) that the browser keeps and sends with every call. Knowing another
participant's id is not enough to act as them.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from .config import DEFAULT_ANSWERS, StudyConfig
from .credentials import Credentials
from .scheduler import MODELS, Trial, other_model
from .stimuli import StimulusCache
from .records import StudyError, VoteRejected, new_participant_id
from .storage import Store

ANSWER_LABELS = {"A": "A", "B": "B", "same": "about the same", "neither": "neither"}
MAX_RESPONSE_MS = 24 * 3600 * 1000  # anything longer is not a response time
NO_EXPERTISE = "prefer not to say"


@dataclass(frozen=True)
class TrialView:
    """One trial as the participant sees it."""

    position: int
    image: bytes
    map_a: bytes
    map_b: bytes
    target_class: str
    question: str
    answered: int
    total: int

    @property
    def progress_text(self) -> str:
        return f"Trial {self.answered + 1} of {self.total}"


@dataclass(frozen=True)
class StudyView:
    """The state of the Study tab for one participant: the next trial, or done, or not started.
    `credential` is what the participant's browser keeps ("" when not started)."""

    participant_id: str
    trial: TrialView | None
    answered: int = 0
    total: int = 0
    message: str = ""
    credential: str = ""

    @property
    def started(self) -> bool:
        return bool(self.participant_id) and self.total > 0

    @property
    def done(self) -> bool:
        return self.started and self.trial is None

    @property
    def progress_text(self) -> str:
        if self.trial is not None:
            return self.trial.progress_text
        return f"{self.answered} of {self.total} done" if self.started else ""


def answer_choices(answers: Sequence[str]) -> list[tuple[str, str]]:
    """(label, value) pairs for the answer buttons: "same" reads "about the same"."""
    return [(ANSWER_LABELS.get(a, a), a) for a in answers]


class StudySession:
    """Join, resume and vote for one study; thread-safe, shared by every participant."""

    def __init__(self, store: Store, config: StudyConfig, cache: StimulusCache, clock=time.monotonic):
        self.store = store
        self.config = config
        self.cache = cache
        self._clock = clock
        self._shown: OrderedDict[tuple[str, int], float] = OrderedDict()  # (participant, position) -> shown at
        self._shown_lock = threading.Lock()
        self._trial_cache: OrderedDict[str, list[Trial]] = OrderedDict()
        self.credentials = Credentials(lambda: store.study_secret(config.name), "participant")

    # participant actions

    def resume(self, credential: str | None) -> StudyView:
        """The participant's current state; an empty or invalid credential is "not started" (no error)."""
        participant_id = self.credentials.verify(credential)
        if participant_id is None:
            return StudyView("", None)
        try:
            trials = self._trials(participant_id)
        except StudyError:
            return StudyView("", None)
        return self._view(participant_id, trials, self.store.answered_positions(self.config.name, participant_id))

    def join(self, credential: str | None, expertise: str | None = None) -> StudyView:
        """Continue as the participant of a valid `credential`; otherwise join under a fresh id
        issued here (an id the client made up is never used)."""
        participant_id = self.credentials.verify(credential) or new_participant_id()
        if expertise in (None, "", NO_EXPERTISE) or not self.config.collect_expertise:
            expertise = None
        self.store.get_or_create_participant(self.config.name, participant_id, expertise)
        trials = self._trials(participant_id)
        return self._view(participant_id, trials, self.store.answered_positions(self.config.name, participant_id))

    def vote(self, credential: str | None, position: object, answer: str,
             response_ms: object = None) -> tuple[StudyView, bool]:
        """Record the answer to trial `position` and return the next view and whether the vote
        had been stored before (an identical resubmission). Raises VoteRejected, storing nothing,
        for an invalid credential, a trial not assigned to the participant or later than their
        current one, an answer outside the options, a bad response time, or a different answer to
        an answered trial."""
        if not isinstance(credential, str) or not credential:
            raise VoteRejected("no participant id: start the study first")
        participant_id = self.credentials.verify(credential)
        if participant_id is None:
            raise VoteRejected("unknown participant: start the study first")
        position = _as_int("trial position", position)
        if answer not in self.config.answers:
            raise VoteRejected(f"answer {answer!r} is not one of {list(self.config.answers)}")
        response_ms = response_time(response_ms, self._shown_ms(participant_id, position))
        try:
            trials = self._trials(participant_id)
        except StudyError as exc:
            raise VoteRejected(str(exc)) from None
        answered = self.store.answered_positions(self.config.name, participant_id)
        pending = next((t for t in trials if t.position not in answered), None)
        meta = stimulus_id = None
        if not any(t.position == position for t in trials):
            raise VoteRejected(f"trial {position} is not assigned to participant {participant_id!r} "
                               f"(trials 0-{len(trials) - 1})")
        if pending is not None and position > pending.position:
            raise VoteRejected(f"trial {position} is not the current trial of this participant "
                               f"(answer trial {pending.position} first)")
        if pending is not None and position == pending.position:
            stimulus_id = pending.stimulus_id
            meta = self.cache.get(stimulus_id).meta
        recorded = self.store.record_vote(
            self.config.name, participant_id, position, answer, stimulus_id=stimulus_id,
            response_ms=response_ms, **({"meta": meta} if meta is not None else {}))
        answered.add(position)
        message = "This vote had already been recorded." if recorded.duplicate else "Vote recorded."
        return self._view(participant_id, trials, answered, message), recorded.duplicate

    # internals

    def _trials(self, participant_id: str) -> list[Trial]:
        """The participant's trial list (immutable once created: cached after the first read)."""
        trials = self._trial_cache.get(participant_id)
        if trials is None:
            trials = self.store.trials(self.config.name, participant_id)  # StudyError if unknown
            with self._shown_lock:
                self._trial_cache[participant_id] = trials
                while len(self._trial_cache) > 100_000:
                    self._trial_cache.popitem(last=False)
        return trials

    def _view(self, participant_id: str, trials: Sequence[Trial], answered: set[int], message: str = "") -> StudyView:
        total, done = len(trials), sum(t.position in answered for t in trials)
        trial = next((t for t in trials if t.position not in answered), None)
        credential = self.credentials.issue(participant_id)
        if trial is None:
            return StudyView(participant_id, None, done, total,
                             " ".join(filter(None, [message, "All trials done: thank you for taking part!"])), credential)
        rendered = self.cache.get(trial.stimulus_id)
        if trial.model_a not in MODELS:
            raise StudyError(f"corrupt assignment: model_a={trial.model_a!r}")
        view = TrialView(position=trial.position, image=rendered.image,
                         map_a=rendered.maps[trial.model_a], map_b=rendered.maps[other_model(trial.model_a)],
                         target_class=rendered.target_class,
                         question=self.config.question_for(rendered.target_class),
                         answered=done, total=total)
        self._mark_shown(participant_id, trial.position)
        return StudyView(participant_id, view, done, total, message, credential)

    def _mark_shown(self, participant_id: str, position: int) -> None:
        with self._shown_lock:
            key = (participant_id, position)
            self._shown.pop(key, None)
            self._shown[key] = self._clock()
            while len(self._shown) > 100_000:
                self._shown.popitem(last=False)

    def _shown_ms(self, participant_id: str, position: int) -> int | None:
        with self._shown_lock:
            shown = self._shown.get((participant_id, position))
        return None if shown is None else int(round((self._clock() - shown) * 1000))


def response_time(given: object, measured: int | None) -> int | None:
    """The response time to store: the browser's ``given`` milliseconds when sent (validated), else the
    server's ``measured`` ones. Raises VoteRejected for a value that is not a plausible time."""
    if given is None or given == "":
        return measured
    value = _as_int("response time", given, rounding=True)
    if not 0 <= value <= MAX_RESPONSE_MS:
        raise VoteRejected(f"response time must be between 0 and {MAX_RESPONSE_MS} ms, got {value}")
    return value


def _as_int(what: str, value: object, rounding: bool = False) -> int:
    """Integers from JSON/Gradio numbers (3, 3.0, "3"); bools and fractions are refused."""
    if isinstance(value, bool):
        raise VoteRejected(f"{what} must be an integer, got {value!r}")
    try:
        number = float(value) if isinstance(value, str) else value
        if isinstance(number, float):
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError
            if not rounding and not number.is_integer():
                raise ValueError
            number = int(round(number))
        if not isinstance(number, int):
            raise ValueError
    except (TypeError, ValueError):
        raise VoteRejected(f"{what} must be an integer, got {value!r}") from None
    return number


__all__ = ["ANSWER_LABELS", "DEFAULT_ANSWERS", "NO_EXPERTISE", "StudySession", "StudyView", "TrialView",
           "answer_choices"]
