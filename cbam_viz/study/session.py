"""The participant-facing study logic, free of Gradio: join/resume, blinded trial views, votes.

A `TrialView` is everything the participant's browser receives for one trial: the PNG bytes of
the image and of maps A and B (equal lengths, see `stimuli.encode_png`), the target class, the
question and the progress, and nothing that says which model is "A": the sides live in the store's
assignment (server-side) and are applied here when the view is built. Practice trials look the same
(their answers are not stored as votes); so do catch trials (their answers are).

Participants never choose their id: the server issues it on joining, with a credential
(`credentials.Credentials`) that the browser keeps and sends with every call; the credential alone
identifies a participant. A recruitment link's platform ids (`recruitment`) are stored with the
participant as attributes: an arrival with a known platform id but without its participant's
credential gets no credential, trial, answer or completion code, only `CONFLICT_MESSAGE`, and the
store records the conflict for the owner. A study with a consent text creates a participant only once
it is accepted (the store enforces it). The server notes when it sends each trial (`Store.mark_shown`):
votes carry the server's response time next to the browser's.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .config import DEFAULT_ANSWERS, StudyConfig
from .credentials import Credentials
from .records import PlatformIdTaken, StudyError, VoteRejected, new_participant_id
from .recruitment import Completion, completion, platform_ids
from .scheduler import PRACTICE, Trial
from .stimuli import StimulusCache
from .storage import Store

ANSWER_LABELS = {"A": "A", "B": "B", "same": "about the same", "neither": "neither"}
MAX_RESPONSE_MS = 24 * 3600 * 1000  # anything longer is not a response time
NO_EXPERTISE = "prefer not to say"
DONE_MESSAGE = "All trials done: thank you for taking part!"
CONFLICT_MESSAGE = ("This study link has already been used to start the study in another browser. Please continue "
                    "in the browser where you started. If you cannot, contact the researcher: this arrival was noted.")


@dataclass(frozen=True)
class TrialView:
    """One trial as the participant sees it. ``number``/``total`` count practice trials among
    themselves and the study's trials (catch trials included) among themselves."""

    position: int
    image: bytes
    map_a: bytes
    map_b: bytes
    target_class: str
    question: str
    number: int
    total: int
    practice: bool = False

    @property
    def progress_text(self) -> str:
        """"Trial 3 of 20", or "Practice trial 1 of 2 (not recorded)"."""
        if self.practice:
            return f"Practice trial {self.number} of {self.total} (not recorded)"
        return f"Trial {self.number} of {self.total}"


@dataclass(frozen=True)
class StudyView:
    """The state of the Study tab for one participant: the next trial, or done, or not started.
    `credential` is what the participant's browser keeps ("" when not started); `completion` the end
    screen's code and URL once every trial is answered; `expired` when the study's time ran out;
    `blocked` for an arrival with another participant's platform id (nothing else is given);
    `joined` when this call created the participant."""

    participant_id: str
    trial: TrialView | None
    answered: int = 0
    total: int = 0
    message: str = ""
    credential: str = ""
    completion: Completion | None = None
    expired: bool = False
    blocked: bool = False
    joined: bool = False

    @property
    def started(self) -> bool:
        """Whether the participant has joined (and has trials)."""
        return bool(self.participant_id) and self.total > 0

    @property
    def done(self) -> bool:
        """Whether every trial is answered."""
        return self.started and self.trial is None

    @property
    def stage(self) -> str:
        """What the page shows: "start", "trial", "done" or "blocked"."""
        if self.blocked:
            return "blocked"
        return "trial" if self.trial is not None else "done" if self.started else "start"

    @property
    def progress_text(self) -> str:
        """The current trial's progress, "7 of 20 done" without one, "" before the start."""
        if self.trial is not None:
            return self.trial.progress_text
        return f"{self.answered} of {self.total} done" if self.started else ""


def answer_choices(answers: Sequence[str]) -> list[tuple[str, str]]:
    """(label, value) pairs for the answer buttons: "same" reads "about the same"."""
    return [(ANSWER_LABELS.get(a, a), a) for a in answers]


class StudySession:
    """Join, resume and vote for one study; thread-safe, shared by every participant."""

    def __init__(self, store: Store, config: StudyConfig, cache: StimulusCache) -> None:
        self.store = store
        self.config = config
        self.cache = cache
        self._lock = threading.Lock()
        self._trial_cache: OrderedDict[str, list[Trial]] = OrderedDict()
        self.credentials = Credentials(lambda: store.study_secret(config.name), "participant")

    # participant actions

    def resume(self, credential: str | None, link: str | None = None) -> StudyView:
        """The state of the participant of a valid `credential`; "not started" (no error) without one.
        A recruitment `link` (the page URL's query) whose platform participant id belongs to another
        participant than the credential's (or to anyone, without a credential) is a conflict: recorded,
        and answered with a blocked view only."""
        participant_id = self.credentials.verify(credential)
        blocked = self._conflict(participant_id, link)
        if blocked is not None:
            return blocked
        if participant_id is None:
            return StudyView("", None)
        try:
            trials = self._trials(participant_id)
        except StudyError:
            return StudyView("", None)
        return self._view(participant_id, trials, self.store.answered_positions(self.config.name, participant_id))

    def join(self, credential: str | None, expertise: str | None = None, consent: bool = False,
             link: str | None = None) -> StudyView:
        """Continue as the participant of a valid `credential`; otherwise join under a fresh id issued
        here (an id the client made up is never used), with the link's platform ids. A link whose
        platform participant id is taken (by someone else than the credential's participant) gets the
        blocked view, and the conflict is recorded. A new participant must give `consent` when the study
        has a consent text. Raises StudyError."""
        ids = platform_ids(link, self.config.recruitment)
        known = self.credentials.verify(credential)
        blocked = self._conflict(known, link)
        if blocked is not None:
            return blocked
        if expertise in (None, "", NO_EXPERTISE) or not self.config.collect_expertise:
            expertise = None
        try:
            participant = self.store.get_or_create_participant(
                self.config.name, known or new_participant_id(), expertise, platform_ids=ids,
                consented=bool(consent), catch_ids=self.cache.catch_ids())
        except PlatformIdTaken as exc:  # joined in between, from another browser
            return self._blocked(ids[self.config.recruitment.key_param], exc.holder, known)
        participant_id = participant.participant_id
        trials = self._trials(participant_id)
        view = self._view(participant_id, trials, self.store.answered_positions(self.config.name, participant_id))
        return replace(view, joined=participant.is_new)

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
        response_ms = response_time(response_ms)
        try:
            trials = self._trials(participant_id)
        except StudyError as exc:
            raise VoteRejected(str(exc)) from None
        answered = self.store.answered_positions(self.config.name, participant_id)
        pending = next((t for t in trials if t.position not in answered), None)
        meta = stimulus_id = None
        trial = next((t for t in trials if t.position == position), None)
        if trial is None:
            raise VoteRejected(f"trial {position} is not assigned to participant {participant_id!r} "
                               f"(trials 0-{len(trials) - 1})")
        if pending is not None and position > pending.position:
            raise VoteRejected(f"trial {position} is not the current trial of this participant "
                               f"(answer trial {pending.position} first)")
        if trial.kind == PRACTICE:
            duplicate = self.store.record_practice(self.config.name, participant_id, position, answer)
            answered.add(position)
            return self._view(participant_id, trials, answered, "Practice answer noted (not recorded)."), duplicate
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
            with self._lock:
                self._trial_cache[participant_id] = trials
                while len(self._trial_cache) > 100_000:
                    self._trial_cache.popitem(last=False)
        return trials

    def _view(self, participant_id: str, trials: Sequence[Trial], answered: set[int], message: str = "") -> StudyView:
        practice = [t for t in trials if t.kind == PRACTICE]
        main = [t for t in trials if t.kind != PRACTICE]
        total, done = len(main), sum(t.position in answered for t in main)
        trial = next((t for t in trials if t.position not in answered), None)
        credential = self.credentials.issue(participant_id)
        left = self.store.time_left(self.config.name, participant_id) if self.config.max_study_minutes else None
        if trial is not None and left is not None and left < 0:
            return StudyView(participant_id, None, done, total, "The time for this study is over; thank you. "
                             "Your answers so far are kept.", credential, expired=True)
        if trial is None:
            ids = self.store.participant(self.config.name, participant_id).platform_ids
            return StudyView(participant_id, None, done, total, " ".join(filter(None, [message, DONE_MESSAGE])),
                             credential, completion(self.config.recruitment, ids))
        rendered = self.cache.get(trial.stimulus_id)
        if trial.model_a not in rendered.maps or trial.model_b not in rendered.maps:
            raise StudyError(f"corrupt assignment: models {trial.model_a!r}, {trial.model_b!r}")
        is_practice = trial.kind == PRACTICE
        number = (sum(t.position in answered for t in practice) if is_practice else done) + 1
        view = TrialView(position=trial.position, image=rendered.image,
                         map_a=rendered.maps[trial.model_a], map_b=rendered.maps[trial.model_b],
                         target_class=rendered.target_class,
                         question=self.config.question_for(rendered.target_class),
                         number=number, total=len(practice) if is_practice else total, practice=is_practice)
        self.store.mark_shown(self.config.name, participant_id, trial.position)
        return StudyView(participant_id, view, done, total, message, credential)

    def _conflict(self, participant_id: str | None, link: str | None) -> StudyView | None:
        """The blocked view when `link` names a platform participant id joined by someone other than
        `participant_id` (recorded as a conflict); None otherwise (also for a malformed link)."""
        try:
            key = platform_ids(link, self.config.recruitment).get(self.config.recruitment.key_param)
        except StudyError:
            return None
        holder = key and self.store.participant_by_platform_id(self.config.name, key)
        if not holder or holder == participant_id:
            return None
        return self._blocked(key, holder, participant_id)

    def _blocked(self, key: str, holder: str, other: str | None) -> StudyView:
        self.store.record_conflict(self.config.name, key, holder, other or "")
        return StudyView("", None, message=CONFLICT_MESSAGE, blocked=True)


def response_time(given: object) -> int | None:
    """The browser's response time to store next to the server's (validated; None when not sent).
    Raises VoteRejected for a value that is not a plausible time."""
    if given is None or given == "":
        return None
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
