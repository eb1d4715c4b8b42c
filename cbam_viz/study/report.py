"""The owner's results view, free of Gradio: statistics, tables, attention checks and export files.

Stored votes become `analysis.Comparison`s here: study trials only (catch trials are attention checks,
practice trials are never stored), first showings only (a repeat trial feeds the consistency check).
Participants who failed an attention check are left out by default, of every figure and table;
``everyone=True`` counts them in, everywhere.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..fileio import atomic_write, atomic_write_text
from .analysis import (
    Agreement,
    Comparison,
    ExpertiseGroup,
    PairRow,
    PositionBias,
    PowerPlan,
    Ranking,
    Share,
    bradley_terry,
    by_expertise,
    pairwise_table,
    participants_needed,
    per_stimulus,
    position_bias,
    rater_agreement,
)
from .config import StudyConfig
from .export import write_votes
from .records import Conflict, Participant, VoteRecord
from .scheduler import CATCH, OBJECT, TRIAL
from .stats import GroupRow, StudyStats, compute_stats, plural, share_title, summary_markdown
from .storage import Store

Table = tuple[list[str], list[list[object]]]
PASSED, EVERYONE = "passed the attention checks", "everyone"


@dataclass(frozen=True)
class CatchResult:
    """A participant's catch trials: how many answered with the map on the object, how many not."""

    passed: int
    failed: int


@dataclass(frozen=True)
class Analysis:
    """The N-model statistics (`analysis`) of one group of participants (``who``)."""

    who: str
    comparisons: list[Comparison]
    ranking: Ranking | None
    ranking_note: str | None
    pairs: list[PairRow]
    agreement: Agreement
    expertise: list[ExpertiseGroup]
    position: PositionBias
    power: PowerPlan


@dataclass(frozen=True)
class ResultsReport:
    """Everything the Results tab shows: ``markdown`` (headline figures, attention checks, ranking,
    agreement, position bias, power; the tables are separate), ``text`` (the same with the Markdown
    tables, for the command line), tables as (headers, rows), the votes and the analyses."""

    config: StudyConfig
    names: dict[str, str]
    stats: StudyStats
    markdown: str
    text: str
    answers: Table
    ranking: Table
    pairwise: Table
    expertise: Table
    per_image: Table
    per_participant: Table
    participants: Table
    free_markdown: str
    votes: list[VoteRecord]
    free_votes: list[VoteRecord]
    catch: dict[str, CatchResult]
    analyses: list[Analysis]
    conflicts: list[Conflict] = field(default_factory=list)
    review: Table = ([], [])

    @property
    def failed(self) -> list[str]:
        """Participants who failed at least one attention check."""
        return sorted(pid for pid, result in self.catch.items() if result.failed)


def to_comparisons(votes: Sequence[VoteRecord], models: Sequence[str], exclude: set[str] = frozenset()) -> list[Comparison]:
    """The study trials of `votes` (first showings, participants not in `exclude`) as comparisons;
    the winner is None for answers that choose no model ("same", "neither")."""
    return [Comparison(participant=v.participant_id, stimulus=v.stimulus_id, first=v.shown_as_a, second=v.shown_as_b,
                       winner=v.chosen_model if v.chosen_model in models else None, expertise=v.expertise,
                       at=v.created_at, response_ms=v.response_ms)
            for v in votes if v.kind == TRIAL and not v.is_repeat and v.participant_id not in exclude]


def catch_results(votes: Sequence[VoteRecord]) -> dict[str, CatchResult]:
    """Per participant with catch trials: passed (chose the map on the object) and failed counts."""
    counts: dict[str, list[int]] = {}
    for vote in votes:
        if vote.kind == CATCH:
            counts.setdefault(vote.participant_id, [0, 0])[vote.chosen_model != OBJECT] += 1
    return {pid: CatchResult(*c) for pid, c in counts.items()}


def analyse(comparisons: list[Comparison], models: Sequence[str], who: str, target: float = 0.60) -> Analysis:
    """Every N-model statistic of `comparisons` (the ranking is None, with a note, until it can be fitted)."""
    try:
        ranking, note = bradley_terry(comparisons, models), None
    except ValueError as exc:
        ranking, note = None, str(exc)
    return Analysis(who, comparisons, ranking, note, pairwise_table(comparisons, models),
                    rater_agreement(comparisons), by_expertise(comparisons, models), position_bias(comparisons),
                    participants_needed(comparisons, target=target))


def build_report(store: Store, study: str, objective: Mapping[str, Mapping[str, float]] | None = None,
                 everyone: bool = False, target: float = 0.60, titles: Mapping[str, str] | None = None) -> ResultsReport:
    """Statistics of `study` without the participants who failed an attention check (`everyone`: with them,
    in every figure and table), agreement with `objective` where given, the power line for a `target` preference, and
    the free votes cast on the same set from the Compare tab. ``titles``: the models' titles in the set
    (role -> title; `StudyRuntime.titles`), named once at the top and used for roles without a title."""
    config = store.study_config(study)
    models, names = config.models, config.names(titles)
    votes = store.votes(study)
    catch = catch_results(votes)
    failed = {pid for pid, result in catch.items() if result.failed}
    checked = bool(config.catch_trials or catch)  # "passed the attention checks" only where there were checks
    who, exclude = (PASSED, failed) if checked and not everyone else (EVERYONE, set())
    kept = [v for v in votes if v.participant_id not in exclude]
    stats = compute_stats(kept, config.answers, objective or None, models)
    analyses = [analyse(to_comparisons(votes, models, exclude), models, who, target)]
    label = lambda m: names.get(m, m)  # noqa: E731
    answers = (["answer (unblinded)", "votes"], [[label(k), v] for k, v in stats.chosen_counts.items()])
    share = share_title(models, names)

    def table(rows: Sequence[GroupRow], with_objective: bool) -> Table:
        columns = list(stats.chosen_counts)
        headers = ["id", "votes", *(label(c) for c in columns), *([share] if share else [])]
        if with_objective:
            headers += [f"energy PG {label(m)}" for m in models]
        out = []
        for row in rows:
            line = [row.key, row.votes, *(row.chosen.get(c, 0) for c in columns)]
            if share:
                line.append(None if row.share is None else round(row.share, 3))
            if with_objective:
                scores = (objective or {}).get(row.key)
                line += [round(scores[m], 3) if scores else None for m in models]
            out.append(line)
        return headers, out

    free_votes = store.free_votes(config.pair)
    free_md = _free_markdown(config, free_votes, names)
    models_line = _models_markdown(models, names, titles)
    people, conflicts = store.participants(study), store.conflicts(study)
    left_out = [v for v in votes if v.participant_id in exclude and v.kind == TRIAL and not v.is_repeat]
    excluded_line = (f"Left out: {plural(len(left_out), 'vote')} from {plural(len(exclude), 'participant')} who failed an "
                     "attention check (the switch counts them in, everywhere)." if exclude else
                     f"Counted in: {plural(len(failed), 'participant')} who failed an attention check." if failed else "")
    full = summary_markdown(stats, title=f"Study {study!r}", names=names, position_bias=False,
                            notes=[line for line in (excluded_line, models_line) if line])
    extra = "\n".join(filter(None, [_checks_markdown(config, votes, catch, people), _conflicts_markdown(conflicts),
                                    *(_analysis_markdown(a, names) for a in analyses)]))
    head, tables, tail = full.partition("\n### Per image")
    return ResultsReport(
        config=config, names=names, stats=stats, markdown=_without_tables(full) + "\n" + extra,
        text=head.rstrip("\n") + "\n" + extra + "\n" + tables + tail, answers=answers,
        ranking=_ranking_table(analyses, label), pairwise=_pairwise_table(analyses, label),
        expertise=_expertise_table(analyses[0], label),
        per_image=table(stats.per_image, bool(objective)), per_participant=table(stats.per_participant, False),
        participants=_participants_table(config, people, votes, catch, conflicts),
        free_markdown=free_md, votes=votes, free_votes=free_votes, catch=catch, analyses=analyses,
        conflicts=conflicts, review=_review_table(config, people, votes, catch, conflicts))


def export_stem(study: str) -> str:
    """The study name as the start of an export file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", study) or "study"


def figures(report: ResultsReport, thumbnails: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Results tab's charts (matplotlib Figures), by name: the ranking, the pairwise preferences and,
    per pair, a forest plot over images (with `thumbnails`: stimulus id -> image) for the participants
    who count (`build_report`'s ``everyone``); position bias; votes over time; catch-trial pass rate.
    Models are labelled with ``report.names``."""
    from ..render import study_plots as sp

    a = report.analyses[0]
    names, models = report.names, report.config.models
    out = {}
    if a.ranking is not None:
        out["ranking"] = sp.ranking_figure(a.ranking, names=names)
    if a.comparisons:
        out["preference"] = sp.preference_figure(a.pairs, names=names)
        for row in a.pairs:
            if models.index(row.model) < models.index(row.opponent):
                rows = per_stimulus(a.comparisons, row.model, row.opponent)
                name = export_stem(f"images-{row.model}-vs-{row.opponent}")
                out[name] = sp.forest_figure(rows, thumbnails, overall=row.preference, names=names)
        out["position-bias"] = sp.position_bias_figure(a.position)
    if a.comparisons:
        out["votes-over-time"] = sp.votes_over_time_figure(a.comparisons)
    if report.catch:
        counts = {pid: (r.passed, r.passed + r.failed) for pid, r in report.catch.items()}
        out["catch-trials"] = sp.catch_trial_figure(counts, excluded=report.failed)
    return out


def plots(report: ResultsReport, thumbnails: Mapping[str, Any] | None = None) -> dict[str, bytes]:
    """`figures` as PNG bytes."""
    from ..render.study_plots import figure_png

    return {name: figure_png(fig) for name, fig in figures(report, thumbnails).items()}


def write_plots(report: ResultsReport, folder: str | Path, thumbnails: Mapping[str, Any] | None = None) -> list[Path]:
    """`plots` as PNG files named <study>-<plot>.png in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, png in plots(report, thumbnails).items():
        paths.append(atomic_write(folder / f"{export_stem(report.config.name)}-{name}.png", lambda f, png=png: f.write(png)))
    return paths


def write_exports(report: ResultsReport, study: str, folder: str | Path) -> list[Path]:
    """CSV and JSON of every study vote (catch trials included, unblinded), CSVs of the participants
    (platform ids, attention checks, conflicts), of the platform review (one row per platform id: ok, or
    why to check it), of the platform id conflicts, and of the upload votes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = export_stem(study)
    paths = []
    for fmt in ("csv", "json"):
        paths.append(atomic_write_text(folder / f"{stem}-votes.{fmt}", lambda fh, fmt=fmt: write_votes(report.votes, fh, fmt)))
    conflicts = [[c.platform_key, c.participant_id, c.other_id, c.arrivals, c.first_at.isoformat(timespec="seconds"),
                  c.last_at.isoformat(timespec="seconds")] for c in report.conflicts]
    for name, header, rows in (("participants", *report.participants), ("platform-review", *report.review),
                               ("conflicts", ["platform id", "participant", "arrived as participant", "arrivals", "first",
                                              "last"], conflicts)):
        paths.append(atomic_write_text(folder / f"{stem}-{name}.csv",
                                       lambda fh, rows=[header, *rows]: csv.writer(fh, lineterminator="\n").writerows(rows)))
    paths.append(atomic_write_text(folder / f"{stem}-upload-votes.csv", lambda fh: write_votes(report.free_votes, fh, "csv")))
    return paths


# --- tables and text ------------------------------------------------------------------------


def _interval(low: float | None, high: float | None, digits: int = 2, percent: bool = False) -> str | None:
    if low is None or high is None:
        return None
    return f"{low:.1%} to {high:.1%}" if percent else f"{low:+.{digits}f} to {high:+.{digits}f}"


def _share_cells(share: Share) -> list[object]:
    p = share.per_vote
    return [None if p.share is None else round(p.share, 3), _interval(p.ci_low, p.ci_high, percent=True),
            _interval(share.cluster_low, share.cluster_high, percent=True),
            None if p.p_value is None else float(f"{p.p_value:.3g}")]


def _ranking_table(analyses: Sequence[Analysis], label) -> Table:
    headers = ["participants", "rank", "model", "strength (log-odds)", "95% CI per vote", "95% CI clustered",
               "wins", "losses", "ties"]
    rows = []
    for a in analyses:
        if a.ranking is None:
            rows.append([a.who, None, a.ranking_note, None, None, None, None, None, None])
            continue
        for rank, s in enumerate(a.ranking.strengths, start=1):
            rows.append([a.who, rank, label(s.model), round(s.strength, 3), _interval(s.ci_low, s.ci_high),
                         _interval(s.cluster_low, s.cluster_high), s.wins, s.losses, s.ties])
    return headers, rows


def _pairwise_table(analyses: Sequence[Analysis], label) -> Table:
    headers = ["participants", "model", "vs", "wins", "losses", "ties", "share", "95% CI per vote (Wilson)",
               "95% CI clustered (participant, image)", "binomial p"]
    rows = [[a.who, label(r.model), label(r.opponent), r.wins, r.losses, r.ties, *_share_cells(r.preference)]
            for a in analyses for r in a.pairs]
    return headers, rows


def _expertise_table(analysis: Analysis, label) -> Table:
    headers = ["expertise", "participants", "votes", "model", "vs", "share", "95% CI per vote (Wilson)",
               "95% CI clustered (participant, image)", "binomial p"]
    rows = [[g.expertise, g.participants, g.votes, label(r.model), label(r.opponent), *_share_cells(r.preference)]
            for g in analysis.expertise for r in g.pairs]
    return headers, rows


def conflict_notes(conflicts: Sequence[Conflict]) -> dict[str, str]:
    """Per participant involved in a conflict, what happened, in words (for the tables and exports)."""
    notes: dict[str, list[str]] = {}
    for c in conflicts:
        notes.setdefault(c.participant_id, []).append(
            f"{c.arrivals} arrival(s) with this platform id {'without a credential' if not c.other_id else 'as ' + c.other_id}")
        if c.other_id:
            notes.setdefault(c.other_id, []).append(f"arrived with the platform id of {c.participant_id}")
    return {pid: "; ".join(lines) for pid, lines in notes.items()}


def _participants_table(config: StudyConfig, participants: Sequence[Participant], votes: Sequence[VoteRecord],
                        catch: Mapping[str, CatchResult], conflicts: Sequence[Conflict] = ()) -> Table:
    params = list(config.recruitment.params)
    notes = conflict_notes(conflicts)
    headers = ["participant", *params, "expertise", "joined", "consented", "votes (study trials)", "catch passed",
               "catch failed", "too fast (study trials)", "excluded", "platform id conflict"]
    rows = []
    for p in participants:
        mine = [v for v in votes if v.participant_id == p.participant_id and v.kind == TRIAL]  # as the headline counts
        result = catch.get(p.participant_id, CatchResult(0, 0))
        rows.append([p.participant_id, *(p.platform_ids.get(name) for name in params), p.expertise,
                     p.created_at.isoformat(timespec="seconds"),
                     None if p.consented_at is None else p.consented_at.isoformat(timespec="seconds"),
                     len(mine), result.passed, result.failed, sum(v.too_fast for v in mine),
                     "failed an attention check" if result.failed else "", notes.get(p.participant_id, "")])
    return headers, rows


def _review_table(config: StudyConfig, participants: Sequence[Participant], votes: Sequence[VoteRecord],
                  catch: Mapping[str, CatchResult], conflicts: Sequence[Conflict]) -> Table:
    """One row per participant with a platform id: what a platform needs to approve or reject a submission
    ("ok", or the reasons to check it: a failed attention check, a platform id conflict, most votes too fast)."""
    key = config.recruitment.key_param
    notes = conflict_notes(conflicts)
    headers = [key or "platform id", "participant", "votes (study trials)", "catch failed", "too fast (study trials)",
               "review"]
    rows = []
    for p in participants:
        if not p.platform_ids.get(key):
            continue
        mine = [v for v in votes if v.participant_id == p.participant_id and v.kind == TRIAL]
        failed = catch.get(p.participant_id, CatchResult(0, 0)).failed
        fast = sum(v.too_fast for v in mine)
        reasons = (["failed an attention check"] if failed else []) + (
            ["platform id conflict: " + notes[p.participant_id]] if p.participant_id in notes else []) + (
            [f"{fast} of {len(mine)} votes too fast"] if mine and 2 * fast > len(mine) else [])
        rows.append([p.platform_ids[key], p.participant_id, len(mine), failed, fast, "; ".join(reasons) or "ok"])
    return headers, rows


def _conflicts_markdown(conflicts: Sequence[Conflict]) -> str:
    if not conflicts:
        return ""
    keys = sorted({c.platform_key for c in conflicts})
    return (f"- **Platform id conflicts**: {sum(c.arrivals for c in conflicts)} arrival(s) with the platform id of a "
            f"participant but without their credential (platform ids: {', '.join(keys)}); they got no trial and "
            "no code. Check these submissions on the platform (the conflicts and platform-review CSVs list them).")


def _checks_markdown(config: StudyConfig, votes: Sequence[VoteRecord], catch: Mapping[str, CatchResult],
                     participants: Sequence[Participant] = ()) -> str:
    """Attention checks and too-fast votes; who failed by platform id where the study has one (what a
    platform needs to reject a submission), else by our id."""
    key = config.recruitment.key_param
    platform = {p.participant_id: p.platform_ids.get(key) for p in participants if key and p.platform_ids.get(key)}
    lines = []
    if catch:
        failed = sorted(platform.get(pid, pid) for pid, r in catch.items() if r.failed)
        answered = sum(r.passed + r.failed for r in catch.values())
        passed = sum(r.passed for r in catch.values())
        lines.append(f"- **Attention checks**: {passed} of {answered} catch trials passed; {len(failed)} of "
                     f"{len(catch)} participants failed at least one and are left out of the statistics above "
                     "and below" + (f" ({', '.join(failed)})" if failed else "") + ".")
    if config.min_response_ms:
        fast = sum(v.too_fast for v in votes if v.kind == TRIAL)
        lines.append(f"- **Too fast** (under {config.min_response_ms} ms): {fast} of "
                     f"{sum(v.kind == TRIAL for v in votes)} votes (flagged in the export, still counted).")
    return "\n".join(lines)


def _analysis_markdown(a: Analysis, names: Mapping[str, str]) -> str:
    label = lambda m: names.get(m, m)  # noqa: E731
    lines = [f"\n### Ranking and agreement ({a.who}: {len({c.participant for c in a.comparisons})} participants)", ""]
    if a.ranking is None:
        lines.append(f"- **Bradley-Terry ranking**: not yet ({a.ranking_note}).")
    else:
        order = " > ".join(label(s.model) for s in a.ranking.strengths)
        lines.append(f"- **Bradley-Terry ranking**: {order} ({a.ranking.decisive} decisive votes, "
                     f"{a.ranking.ties} ties left out; " + _clustered_text(a.ranking.clustered_by) + ").")
    ag = a.agreement
    if ag.alpha is None:
        lines.append(f"- **Agreement between raters**: not measurable yet ({ag.units} images rated twice or more).")
    else:
        ci = _interval(ag.ci_low, ag.ci_high)
        lines.append(f"- **Agreement between raters** (Krippendorff's alpha, nominal): {ag.alpha:.2f}"
                     + (f" (95% CI {ci})" if ci else "") + f" over {ag.units} image-pairs, {ag.raters} raters; "
                     f"{ag.percent:.0%} of pairs of ratings agree.")
    lines.append(f"- **Position bias** (chose the map shown as A, of decisive votes; 50% = none): "
                 f"{_share_text(a.position.overall)}")
    lines.append(f"- **Power**: {a.power.text(names)}")
    return "\n".join(lines)


def _clustered_text(factors: Sequence[str]) -> str:
    """How the ranking's clustered intervals were computed, in words."""
    if not factors:
        return "no clustered intervals yet (one participant, one image)"
    return "intervals clustered by " + " and ".join("image" if f == "stimulus" else f for f in factors)


def _share_text(share: Share) -> str:
    """A share with its per-vote (Wilson) and, where it exists, clustered interval and binomial p."""
    p = share.per_vote
    if p.n == 0:
        return "no decisive votes yet."
    clustered = _interval(share.cluster_low, share.cluster_high, percent=True)
    return (f"{p.successes}/{p.n} = {p.share:.1%} (95% CI {_interval(p.ci_low, p.ci_high, percent=True)} with votes "
            f"independent (Wilson)" + (f", {clustered} clustered by participant and image" if clustered else "")
            + f"; binomial p = {p.p_value:.3g}).")


def _models_markdown(models: Sequence[str], names: Mapping[str, str], titles: Mapping[str, str] | None) -> str:
    """One line naming each compared model's title in the set (empty without titles)."""
    if not titles:
        return ""
    return "Models compared: " + "; ".join(
        f"{names.get(m, m)} = {titles[m]}" if titles.get(m) and titles[m] != names.get(m, m) else names.get(m, m)
        for m in models) + "."


def _free_markdown(config: StudyConfig, free_votes: Sequence[VoteRecord], names: Mapping[str, str]) -> str:
    """The headline figures of the blind votes on uploads (Compare tab) for the study's set, over the
    models they showed (the study's first, in its order)."""
    if not free_votes:
        return f"No votes on uploads for set {config.pair!r} yet."
    from ..models.sets import role_title

    shown = {m for v in free_votes for m in (v.shown_as_a, v.shown_as_b)}
    models = [m for m in config.models if m in shown] + sorted(shown - set(config.models))
    free_names = {m: names.get(m) or role_title(m) for m in models}
    stats = compute_stats(free_votes, models=models)
    return _without_tables(summary_markdown(stats, title=f"Votes on uploads (Compare tab, set {config.pair!r})",
                                            names=free_names))  # the tables add nothing: uploads are known by digest only


def _without_tables(markdown: str) -> str:
    """The headline lines of a summary: the UI shows the tables as data frames."""
    head = markdown.split("\n### Per image")[0]
    return "\n".join(line for line in head.splitlines() if not line.startswith("|")).replace("\n\n\n", "\n\n")
