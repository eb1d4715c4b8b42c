"""User-study backend: configuration, blinded trial scheduling, durable votes, statistics, export.

Names load on first use (:mod:`cbam_viz.lazy`): the command line builds its parser without SQLAlchemy."""
from ..lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["DEFAULT_ANSWERS", "ConfigError", "DemoStimuli", "FolderStimuli", "Recruitment", "Stimulus",
                     "StudyConfig", "load_config", "load_stimuli"], "config"),
    **dict.fromkeys(["EXPORT_COLUMNS", "vote_rows", "write_votes"], "export"),
    **dict.fromkeys(["BASELINE", "CATCH", "CBAM", "MODELS", "PRACTICE", "TRIAL", "Trial", "build_trials"], "scheduler"),
    **dict.fromkeys(["Consistency", "GroupRow", "PairPreference", "Proportion", "StudyStats", "compute_stats",
                     "summary_markdown", "wilson_interval"], "stats"),
    **dict.fromkeys(["ModelOutput", "NextTrial", "Participant", "Progress", "RecordedVote", "StudyError", "VoteMeta",
                     "VoteRecord", "VoteRejected", "new_participant_id"], "records"),
    **dict.fromkeys(["StudyRuntime", "build_runtime"], "runtime"),
    **dict.fromkeys(["Store", "open_store"], "storage"),
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
