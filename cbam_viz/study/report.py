"""The owner's results view, free of Gradio: statistics, tables and export files."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .export import write_votes
from .scheduler import BASELINE, CBAM
from .stats import StudyStats, compute_stats, summary_markdown
from .records import VoteRecord
from .storage import Store

Table = tuple[list[str], list[list[object]]]


@dataclass(frozen=True)
class ResultsReport:
    stats: StudyStats
    markdown: str
    answers: Table
    per_image: Table
    per_participant: Table
    free_markdown: str
    votes: list[VoteRecord]
    free_votes: list[VoteRecord]


def build_report(store: Store, study: str, objective: Mapping[str, Mapping[str, float]] | None = None) -> ResultsReport:
    """Statistics of `study` (agreement with `objective` where given) and of the free votes
    cast on the same pair from the Compare tab."""
    config = store.study_config(study)
    votes = store.votes(study)
    stats = compute_stats(votes, config.answers, objective or None)
    names = config.names()
    answers = (["answer (unblinded)", "votes"], [[names.get(k, k), v] for k, v in stats.chosen_counts.items()])
    chosen_columns = list(stats.chosen_counts)

    def table(rows, with_objective: bool) -> Table:
        headers = ["id", "votes", *(names.get(c, c) for c in chosen_columns), f"{names[CBAM]} share"]
        if with_objective:
            headers += [f"energy PG {names[BASELINE]}", f"energy PG {names[CBAM]}"]
        out = []
        for row in rows:
            line = [row.key, row.votes, *(row.chosen.get(c, 0) for c in chosen_columns),
                    None if row.cbam_share is None else round(row.cbam_share, 3)]
            if with_objective:
                scores = (objective or {}).get(row.key)
                line += [round(scores[BASELINE], 3), round(scores[CBAM], 3)] if scores else [None, None]
            out.append(line)
        return headers, out

    free_votes = store.free_votes(config.pair)
    if free_votes:
        free_stats = compute_stats(free_votes)
        free_md = summary_markdown(free_stats, title=f"Votes on uploads (Compare tab, pair {config.pair!r})")
        free_md = _without_tables(free_md)  # the tables add nothing: uploads are known by digest only
    else:
        free_md = f"No votes on uploads for pair {config.pair!r} yet."
    return ResultsReport(
        stats=stats,
        markdown=_without_tables(summary_markdown(stats, title=f"Study {study!r}", names=names)),
        answers=answers,
        per_image=table(stats.per_image, bool(objective)),
        per_participant=table(stats.per_participant, False),
        free_markdown=free_md,
        votes=votes,
        free_votes=free_votes,
    )


def write_exports(report: ResultsReport, study: str, folder: str | Path) -> list[Path]:
    """CSV and JSON of every study vote (and a CSV of the upload votes), unblinded."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", study) or "study"
    paths = []
    for fmt in ("csv", "json"):
        path = folder / f"{stem}-votes.{fmt}"
        with path.open("w", newline="", encoding="utf-8") as fh:
            write_votes(report.votes, fh, fmt)
        paths.append(path)
    path = folder / f"{stem}-upload-votes.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        write_votes(report.free_votes, fh, "csv")
    paths.append(path)
    return paths


def _without_tables(markdown: str) -> str:
    """The headline lines of a summary: the UI shows the tables as data frames."""
    head = markdown.split("\n### Per image")[0]
    return "\n".join(line for line in head.splitlines() if not line.startswith("|")).replace("\n\n\n", "\n\n")
