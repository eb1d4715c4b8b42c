"""Figures for the Results tab of a user study, from the results of :mod:`cbam_viz.study.analysis`.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global state, safe
across threads); :func:`figure_png` turns one into PNG bytes. The analysis results are read by attribute
only, so this module does not import the study package.

- :func:`ranking_figure` (a ``Ranking``): Bradley-Terry strengths, best first, with both intervals.
- :func:`preference_figure` (``PairRow`` list): each pair's preference share with both intervals.
- :func:`forest_figure` (``StimulusRow`` list, thumbnails, optional overall ``Share``): one pair per image.
- :func:`position_bias_figure` (a ``PositionBias``): share choosing the left model, per participant.
- :func:`votes_over_time_figure` (``Comparison`` list): cumulative votes and participants.
- :func:`catch_trial_figure` (per-participant counts): how many catch trials each participant passed.
"""
from __future__ import annotations

import io
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from matplotlib.ticker import MaxNLocator, PercentFormatter
from PIL import Image

from ..data.metrics import wilson_interval

PER_VOTE = "#9a9a9a"     # per-vote intervals (Wilson, Wald)
CLUSTERED = "#1f5fa8"    # intervals clustered by participant and image
ROW_INCHES = 0.42        # height of one row in the row-per-item charts
THUMB_PX = 38            # forest-plot thumbnails fit in a square of this many pixels at DPI
DPI = 100
TIME_UNITS = ((86400, "days"), (3600, "hours"), (60, "minutes"), (1, "seconds"))  # votes-over-time axis, largest first


def figure_png(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _empty(fig: Figure, ax: Any, message: str) -> Figure:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def _interval_legend(fig: Figure, per_vote: str, clustered: str) -> None:
    fig.legend(handles=[Line2D([], [], color=PER_VOTE, lw=1.5, label=per_vote),
                        Line2D([], [], color=CLUSTERED, lw=4, alpha=0.6, label=clustered)],
               loc="outside lower center", ncol=2, fontsize=8, frameon=False)


def _rows(ax: Any, y: np.ndarray, value: Sequence[float], per_vote: Sequence[tuple[float, float]],
          clustered: Sequence[tuple[float, float] | None]) -> None:
    """Point estimates at ``y`` with a thin grey per-vote interval above a thick clustered one."""
    for yi, (low, high) in zip(y, per_vote):
        ax.plot([low, high], [yi - 0.12, yi - 0.12], color=PER_VOTE, lw=1.5, solid_capstyle="butt")
    for yi, interval in zip(y, clustered):
        if interval is not None:
            ax.plot(list(interval), [yi, yi], color=CLUSTERED, lw=5, alpha=0.6, solid_capstyle="butt")
    ax.plot(value, y, "o", color="black", ms=5, zorder=3, linestyle="none")


def ranking_figure(ranking: Any, names: Mapping[str, str] | None = None) -> Figure:
    """Bradley-Terry strengths (log-odds, mean 0), best model on top, with the per-vote and the clustered
    95% intervals; the right labels give each model's decisive votes won. ``names``: model -> display name."""
    names = names or {}
    strengths = ranking.strengths
    fig = _figure(6.4, 1.6 + ROW_INCHES * len(strengths))
    ax = fig.add_subplot()
    y = np.arange(len(strengths))[::-1].astype(float)
    _rows(ax, y, [s.strength for s in strengths], [(s.ci_low, s.ci_high) for s in strengths],
          [None if s.cluster_low is None else (s.cluster_low, s.cluster_high) for s in strengths])
    ax.axvline(0, color="black", lw=0.8, ls=":")
    ax.set_yticks(y, [names.get(s.model, s.model) for s in strengths])
    right = ax.secondary_yaxis("right")
    right.set_yticks(y, [f"{s.wins}/{s.wins + s.losses} won" for s in strengths])
    right.tick_params(labelsize=8, length=0)
    ax.set_ylim(-0.6, len(strengths) - 0.4)
    ax.set_xlabel("Bradley-Terry strength (log-odds; 0 = average model)")
    ax.set_title(f"Ranking from {_count(ranking.decisive, 'decisive vote')} ({ranking.ties} without preference), "
                 f"{_count(ranking.participants, 'participant')}", fontsize=9)
    clustered = " and ".join("image" if c == "stimulus" else c for c in ranking.clustered_by)
    _interval_legend(fig, "95% CI, votes independent",
                     f"95% CI, clustered by {clustered}" if clustered else "no clustered CI (one participant, one image)")
    return fig


def preference_figure(pairs: Sequence[Any], names: Mapping[str, str] | None = None) -> Figure:
    """One row per pair of models: the share of decisive votes for the pair's more chosen model, with the
    Wilson interval (votes independent) and the clustered interval; pairs without votes are left out.
    ``names``: model -> display name."""
    names = names or {}
    shown: dict[frozenset[str], Any] = {}
    for row in pairs:
        key = frozenset((row.model, row.opponent))
        if row.preference.n and (key not in shown or row.wins > shown[key].wins):
            shown[key] = row
    rows = list(shown.values())
    fig = _figure(6.4, 1.6 + ROW_INCHES * max(len(rows), 1))
    ax = fig.add_subplot()
    if not rows:
        return _empty(fig, ax, "no decisive votes yet")
    y = np.arange(len(rows))[::-1].astype(float)
    _rows(ax, y, [r.preference.share for r in rows],
          [(r.preference.per_vote.ci_low, r.preference.per_vote.ci_high) for r in rows],
          [None if r.preference.cluster_low is None else (r.preference.cluster_low, r.preference.cluster_high)
           for r in rows])
    ax.axvline(0.5, color="black", lw=0.8, ls=":")
    ax.set_yticks(y, [f"{names.get(r.model, r.model)}\nover {names.get(r.opponent, r.opponent)}" for r in rows],
                  fontsize=8)
    right = ax.secondary_yaxis("right")
    right.set_yticks(y, [f"{r.wins}/{r.preference.n}" + (f" ({r.ties} no pref.)" if r.ties else "")
                         for r in rows])
    right.tick_params(labelsize=8, length=0)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("share of decisive votes")
    ax.set_title("Preference in each pair of models", fontsize=9)
    _interval_legend(fig, "95% Wilson CI, votes independent", "95% CI, clustered by participant and image")
    return fig


def _thumbnail(picture: Any) -> np.ndarray:
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(_as_uint8(np.asarray(picture)))
    image = image.convert("RGB")
    image.thumbnail((THUMB_PX, THUMB_PX))
    return np.asarray(image)


def _as_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    return (np.clip(array, 0, 1) * 255).round().astype(np.uint8)


def forest_figure(rows: Sequence[Any], thumbnails: Mapping[str, Any] | None = None,
                  overall: Any | None = None, names: Mapping[str, str] | None = None) -> Figure:
    """Per-image forest plot of one pair: each image's share of decisive votes for ``rows[0].model`` with
    its Wilson interval (marker area grows with the votes), sorted by share, the image's thumbnail at the
    left (``thumbnails``: stimulus id -> HxW[x3] array or PIL image; missing ones are left blank), and the
    ``overall`` share (an analysis ``Share``) as a diamond with both intervals at the bottom.
    ``names``: model -> display name."""
    decided = sorted((r for r in rows if r.preference.n), key=lambda r: (-r.preference.share, r.stimulus))
    if not decided:
        fig = _figure(6.4, 2.0)
        return _empty(fig, fig.add_subplot(), "no decisive votes on this pair yet")
    names, thumbnails = names or {}, thumbnails or {}
    model, opponent = (names.get(m, m) for m in (decided[0].model, decided[0].opponent))
    count = len(decided) + (overall is not None)
    fig = _figure(7.0, 1.5 + ROW_INCHES * count)
    thumbs_ax, ax = _forest_axes(fig)
    y = np.arange(count)[::-1].astype(float)
    for yi, row in zip(y, decided):
        p = row.preference
        ax.plot([p.ci_low, p.ci_high], [yi, yi], color=PER_VOTE, lw=1.5)
        ax.plot([p.share], [yi], "s", color="black", ms=3 + 6 * np.sqrt(p.n / max(r.preference.n for r in decided)))
        if row.stimulus in thumbnails:
            thumbs_ax.add_artist(AnnotationBbox(OffsetImage(_thumbnail(thumbnails[row.stimulus]), dpi_cor=False), (0.5, yi),
                                                frameon=False, pad=0))
    labels = [f"{r.stimulus}  {r.preference.successes}/{r.preference.n}" for r in decided]
    if overall is not None:
        _rows(ax, y[-1:], [overall.share], [(overall.per_vote.ci_low, overall.per_vote.ci_high)],
              [None if overall.cluster_low is None else (overall.cluster_low, overall.cluster_high)])
        ax.plot([overall.share], y[-1:], "D", color=CLUSTERED, ms=8, zorder=4)
        ax.axhline(y[-1] + 0.5, color="black", lw=0.6)
        labels.append(f"all images  {overall.successes}/{overall.n}")
        _interval_legend(fig, "95% Wilson CI, votes independent", "all images: 95% CI, clustered by participant and image")
    ax.axvline(0.5, color="black", lw=0.8, ls=":")
    thumbs_ax.set_yticks(y, labels, fontsize=8)
    thumbs_ax.tick_params(axis="y", length=0)
    thumbs_ax.set_xticks([])
    thumbs_ax.set_xlim(0, 1)
    thumbs_ax.set_ylim(-0.6, count - 0.4)
    for side in thumbs_ax.spines.values():
        side.set_visible(False)
    ax.tick_params(axis="y", left=False, labelleft=False)
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel(f"share of decisive votes choosing {model} over {opponent}")
    fig.suptitle(f"{model} vs {opponent}, per image (95% Wilson CI; marker size: votes)", fontsize=9)
    return fig


def _forest_axes(fig: Figure) -> tuple[Any, Any]:
    """A narrow thumbnail column and the plot, sharing rows; the column is ~THUMB_PX wide plus margin."""
    width = fig.get_figwidth()
    thumb = (THUMB_PX + 8) / DPI
    return tuple(fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [thumb, width - thumb]}))


def position_bias_figure(bias: Any) -> Figure:
    """Share of each participant's decisive votes that chose the model shown first (left), participants
    sorted by it (marker area grows with their votes), with the overall share and its clustered interval."""
    people = sorted((c for c in bias.per_participant if c.n), key=lambda c: (c.successes / c.n, c.key))
    fig = _figure(6.4, 3.4)
    ax = fig.add_subplot()
    overall = bias.overall
    if not people:
        return _empty(fig, ax, "no decisive votes yet")
    most = max(c.n for c in people)
    ax.scatter(np.arange(1, len(people) + 1), [c.successes / c.n for c in people],
               s=[8 + 40 * c.n / most for c in people], color="black", alpha=0.7, zorder=3)
    if overall.cluster_low is not None:
        ax.axhspan(overall.cluster_low, overall.cluster_high, color=CLUSTERED, alpha=0.2,
                   label=f"overall 95% CI, clustered ({overall.cluster_low:.0%}–{overall.cluster_high:.0%})")
    ax.axhline(overall.share, color=CLUSTERED, lw=1.5, label=f"overall {overall.successes}/{overall.n} = "
                                                             f"{overall.share:.0%}")
    ax.axhline(0.5, color="black", lw=0.8, ls=":", label="no bias (50%)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlim(0.3, len(people) + 0.7)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("chose the left model (A)")
    ax.set_xlabel(f"participants, sorted ({len(people)})")
    ax.set_title("Position bias", fontsize=9)
    fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _utc(at: datetime) -> datetime:
    """``at`` in UTC; naive times are taken as UTC (SQLite's ``CURRENT_TIMESTAMP``)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def votes_over_time_figure(comparisons: Sequence[Any]) -> Figure:
    """Cumulative votes (left axis) and participants (right axis) against the time since the first vote,
    in the largest of seconds, minutes, hours or days that the span fills twice; comparisons without a
    time stamp (``at`` is None) are left out."""
    timed = sorted((c for c in comparisons if c.at is not None), key=lambda c: _utc(c.at))
    fig = _figure(6.4, 3.2)
    ax = fig.add_subplot()
    if not timed:
        return _empty(fig, ax, "no time-stamped votes yet")
    first = _utc(timed[0].at)
    elapsed = np.array([(_utc(c.at) - first).total_seconds() for c in timed])
    seconds, unit = next(((s, u) for s, u in TIME_UNITS if elapsed[-1] >= 2 * s), TIME_UNITS[-1])
    x = elapsed / seconds
    seen: set[str] = set()
    participants = []
    for c in timed:
        seen.add(c.participant)
        participants.append(len(seen))
    end = 1.04 * max(x[-1], 1.0)  # a margin, so that the last vote's step shows (a lone vote's too)
    x = np.append(x, end)
    ax.step(x, [*range(1, len(timed) + 1), len(timed)], where="post", color="black", label="votes")
    ax.set_ylabel("votes")
    people = ax.twinx()
    people.step(x, [*participants, participants[-1]], where="post", color=CLUSTERED, label="participants")
    people.set_ylabel("participants", color=CLUSTERED)
    people.tick_params(axis="y", colors=CLUSTERED)
    for axis in (ax, people):
        axis.set_ylim(0, None)
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0, end)
    ax.set_xlabel(f"{unit} since the first vote ({first:%Y-%m-%d %H:%M} UTC)", fontsize=8)
    ax.set_title(f"Votes over time: {_count(len(timed), 'vote')} from {_count(len(seen), 'participant')}", fontsize=9)
    return fig


def catch_trial_figure(results: Mapping[str, tuple[int, int]], excluded: Collection[str] = ()) -> Figure:
    """Participants by catch trials passed (``results``: participant -> (passed, shown)); the participants
    in ``excluded`` are stacked in a second colour. The title gives the pass rate over all catch trials
    with its Wilson interval."""
    for key, (passed, shown) in results.items():
        if not 0 <= passed <= shown:
            raise ValueError(f"participant {key!r}: passed {passed} of {shown} catch trials is impossible")
    groups = Counter((passed, shown) for passed, shown in results.values() if shown)
    dropped = Counter(results[key] for key in excluded if key in results and results[key][1])
    order = sorted(groups, key=lambda g: (g[0] / g[1], g[1]))
    fig = _figure(6.4, 3.2)
    ax = fig.add_subplot()
    if not order:
        return _empty(fig, ax, "no catch trials answered yet")
    x = np.arange(len(order))
    kept = [groups[g] - dropped[g] for g in order]
    ax.bar(x, kept, color=CLUSTERED, label="included")
    ax.bar(x, [dropped[g] for g in order], bottom=kept, color="#d0553c", label="excluded")
    ax.set_xticks(x, [f"{p}/{n}" for p, n in order])
    ax.set_ylim(0, max(groups.values()) * 1.12)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("catch trials passed")
    ax.set_ylabel("participants")
    passed = sum(p for p, _ in results.values())
    shown = sum(n for _, n in results.values())
    low, high = wilson_interval(passed, shown)
    ax.set_title(f"Catch trials: {passed}/{shown} passed = {passed / shown:.0%} (95% CI {low:.0%}–{high:.0%}), "
                 f"{sum(dropped.values())} of {len(results)} participants excluded", fontsize=9)
    fig.legend(loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    return fig
