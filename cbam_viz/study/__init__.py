"""User-study backend: configuration, blinded trial scheduling, durable votes, statistics, export."""
from .config import (
    DEFAULT_ANSWERS,
    ConfigError,
    DemoStimuli,
    FolderStimuli,
    Recruitment,
    Stimulus,
    StudyConfig,
    load_config,
    load_stimuli,
)
from .export import EXPORT_COLUMNS, vote_rows, write_votes
from .scheduler import BASELINE, CATCH, CBAM, MODELS, PRACTICE, TRIAL, Trial, build_trials
from .stats import (
    Consistency,
    GroupRow,
    PairPreference,
    Proportion,
    StudyStats,
    compute_stats,
    summary_markdown,
    wilson_interval,
)
from .records import (
    ModelOutput,
    NextTrial,
    Participant,
    Progress,
    RecordedVote,
    StudyError,
    VoteMeta,
    VoteRecord,
    VoteRejected,
    new_participant_id,
)
from .runtime import StudyRuntime, build_runtime
from .storage import Store, open_store

__all__ = [
    "BASELINE", "CATCH", "CBAM", "DEFAULT_ANSWERS", "EXPORT_COLUMNS", "MODELS", "PRACTICE", "TRIAL", "ConfigError",
    "Consistency", "DemoStimuli", "FolderStimuli", "GroupRow", "ModelOutput", "NextTrial", "PairPreference",
    "Participant", "Progress", "Proportion", "RecordedVote", "Recruitment", "Stimulus", "Store", "StudyConfig", "StudyError", "StudyRuntime", "StudyStats", "Trial", "VoteMeta",
    "VoteRecord", "VoteRejected", "build_runtime", "build_trials", "compute_stats", "load_config", "load_stimuli",
    "new_participant_id", "open_store", "summary_markdown", "vote_rows", "wilson_interval", "write_votes",
]
