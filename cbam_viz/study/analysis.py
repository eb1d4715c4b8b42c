"""Statistics for studies of two or more models, on plain comparisons (no storage, no UI).

The input is a sequence of :class:`Comparison` (one answered trial: who answered, on which image, which
model was shown first (A, left) and second (B, right), which one was chosen, or ``None`` for "same" /
"neither" / no preference). The caller removes catch and practice trials before calling.

Public functions (stable names):

- :func:`bradley_terry` -> :class:`Ranking`: Bradley-Terry strengths (log-odds, mean 0) with 95% Wald
  intervals, per vote and cluster-robust (participant, image); ties excluded and counted.
- :func:`pairwise_table` -> list of :class:`PairRow`: per ordered pair, wins, ties, the share of decisive
  votes with its per-vote Wilson interval and binomial p (:class:`cbam_viz.study.stats.Proportion`), and
  a cluster-robust interval (participant, image).
- :func:`per_stimulus` -> list of :class:`StimulusRow`: one pair's preference per image (forest plot).
- :func:`rater_agreement` -> :class:`Agreement`: Krippendorff's alpha (nominal) over (image, pair) units.
- :func:`by_expertise` -> list of :class:`ExpertiseGroup`: ranking and pairwise table per expertise.
- :func:`position_bias` -> :class:`PositionBias`: share of decisive votes for the model shown first.
- :func:`participants_needed` -> :class:`PowerPlan`: participants needed to detect a preference.

Clustered intervals: the votes of one participant are correlated (a participant may simply like one
model), and so are the votes on one image. Every clustered interval comes from a logistic model
(statsmodels) with the two-way cluster-robust covariance of Cameron, Gelbach & Miller (2011) -- by
participant + by image - by participant-image cell -- and a t quantile with (fewest clusters - 1)
degrees of freedom; shares are computed on the log-odds scale and mapped back, so they stay inside
(0, 1). With few participants or images the clustered intervals are only approximate. A share whose
votes all agree has no clustered interval (read the Wilson interval then).

The pigeonhole cluster bootstrap (Owen 2007) was tried first and dropped: without any clustering it
counts the vote noise once per factor and came out about 1.7 times wider than Wilson's interval.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import permutations

import numpy as np

from .stats import Proportion

NOT_GIVEN = "not given"


@dataclass(frozen=True)
class Comparison:
    """One answered trial: ``winner`` is the chosen model's name, ``None`` for no preference."""

    participant: str
    stimulus: str            # image / stimulus id (cluster unit)
    first: str               # model name shown as A (left)
    second: str              # model name shown as B (right)
    winner: str | None       # the chosen model's name; None for "same" / "neither" / no preference
    expertise: str | None = None
    at: datetime | None = None
    response_ms: int | None = None

    @property
    def pair(self) -> tuple[str, str]:
        """The two models, sorted by name (the unordered pair)."""
        return (self.first, self.second) if self.first < self.second else (self.second, self.first)


@dataclass(frozen=True)
class Share:
    """A share of decisive votes: per-vote Wilson interval and binomial p vs 0.5 (``per_vote``), and a
    cluster-robust interval by participant and image (None without votes, clusters or disagreement)."""

    per_vote: Proportion
    cluster_low: float | None
    cluster_high: float | None
    participants: int
    stimuli: int

    @property
    def successes(self) -> int:
        return self.per_vote.successes

    @property
    def n(self) -> int:
        return self.per_vote.n

    @property
    def share(self) -> float | None:
        return self.per_vote.share


@dataclass(frozen=True)
class PairRow:
    """``model`` against ``opponent``: votes for each, ties, and ``model``'s share of the decisive votes."""

    model: str
    opponent: str
    wins: int
    losses: int
    ties: int
    preference: Share


@dataclass(frozen=True)
class StimulusRow:
    """One image: ``model``'s share of the decisive votes against ``opponent`` there (Wilson interval)."""

    stimulus: str
    model: str
    opponent: str
    ties: int
    preference: Proportion


@dataclass(frozen=True)
class ModelStrength:
    """A model's Bradley-Terry strength (log-odds scale, mean over the models 0) with 95% intervals:
    ``ci_*`` treats votes as independent, ``cluster_*`` is cluster-robust by participant and image."""

    model: str
    strength: float
    ci_low: float
    ci_high: float
    cluster_low: float | None
    cluster_high: float | None
    wins: int
    losses: int
    ties: int


@dataclass(frozen=True)
class Ranking:
    """Models best first. ``decisive`` votes fitted; ``ties`` (no preference) left out of the fit."""

    strengths: list[ModelStrength]
    decisive: int
    ties: int
    participants: int
    stimuli: int
    clustered_by: tuple[str, ...]

    def probability(self, model: str, opponent: str) -> float:
        """The fitted probability that ``model`` is preferred to ``opponent``."""
        by_name = {s.model: s.strength for s in self.strengths}
        return 1.0 / (1.0 + math.exp(by_name[opponent] - by_name[model]))


@dataclass(frozen=True)
class Agreement:
    """Krippendorff's alpha (nominal) over units = (image, pair of models), values = which of the two
    models was chosen, or no preference; ``percent`` is the share of agreeing pairs of ratings. ``alpha``
    is None when undefined (no unit rated twice, or a single answer throughout)."""

    alpha: float | None
    ci_low: float | None
    ci_high: float | None
    percent: float | None
    units: int
    ratings: int
    raters: int


@dataclass(frozen=True)
class ExpertiseGroup:
    """Everything for one expertise level; ``ranking`` is None when it cannot be fitted (``note`` says why)."""

    expertise: str
    participants: int
    votes: int
    ranking: Ranking | None
    note: str | None
    pairs: list[PairRow]


@dataclass(frozen=True)
class Count:
    """``successes`` out of ``n`` for one ``key`` (e.g. a participant)."""

    key: str
    successes: int
    n: int


@dataclass(frozen=True)
class PositionBias:
    """Share of decisive votes for the model shown first (A, left), overall and per participant."""

    overall: Share
    per_participant: list[Count]


@dataclass(frozen=True)
class PairPower:
    """Sample size for one pair: decisive votes a participant gives it (``votes_per_participant``), the
    intraclass correlation of those votes within participants and the design effect it implies."""

    pair: tuple[str, str]
    participants: int
    votes_per_participant: float
    icc: float
    design_effect: float
    votes_needed: int
    participants_needed: int


@dataclass(frozen=True)
class PowerPlan:
    """Participants needed so that a two-sided test at ``alpha`` detects a ``target`` preference (either
    way) in every pair with probability ``power``; ``more_needed`` beyond the ``participants`` so far."""

    target: float
    power: float
    alpha: float
    participants: int
    pairs: list[PairPower]

    @property
    def participants_needed(self) -> int:
        return max((p.participants_needed for p in self.pairs), default=0)

    @property
    def more_needed(self) -> int:
        return max(0, self.participants_needed - self.participants)

    def text(self, names: Mapping[str, str] | None = None) -> str:
        """One line for the Results tab (``names``: model -> display name)."""
        if not self.pairs:
            return "no decisive votes yet."
        names = names or {}
        worst = max(self.pairs, key=lambda p: p.participants_needed)
        return (f"To detect a {self.target:.0%} preference with {self.power:.0%} power (two-sided α = "
                f"{self.alpha:g}) in every pair: about {self.participants_needed} participants "
                f"({self.more_needed} more than the {self.participants} so far); hardest pair "
                f"{names.get(worst.pair[0], worst.pair[0])} vs {names.get(worst.pair[1], worst.pair[1])}: {worst.votes_needed} independent votes, "
                f"{worst.votes_per_participant:.1f} votes per participant, ICC {worst.icc:.2f}, "
                f"design effect {worst.design_effect:.2f}.")


# --------------------------------------------------------------------------------------- checks


def check_comparisons(comparisons: Iterable[Comparison], models: Sequence[str] | None = None) -> list[Comparison]:
    """The comparisons as a list; ValueError (one line) for a malformed one or a model not in ``models``."""
    if models is not None:
        if len(set(models)) < 2 or len(set(models)) != len(models):
            raise ValueError(f"need two or more distinct models, got {list(models)}")
        known = set(models)
    out = list(comparisons)
    for c in out:
        if c.first == c.second:
            raise ValueError(f"comparison of {c.first!r} with itself (participant {c.participant!r})")
        if c.winner is not None and c.winner not in (c.first, c.second):
            raise ValueError(f"winner {c.winner!r} is neither {c.first!r} nor {c.second!r}")
        if models is not None and not {c.first, c.second} <= known:
            raise ValueError(f"comparison of {c.first!r} vs {c.second!r} names a model not in {list(models)}")
    return out


def _codes(values: Sequence[str]) -> tuple[np.ndarray, int]:
    uniques, inverse = np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)
    return inverse.astype(np.intp), len(uniques)


# ----------------------------------------------------------------------------- shares


def clustered_interval(hits: Sequence[bool], participants: Sequence[str], stimuli: Sequence[str],
                       confidence: float = 0.95) -> tuple[float, float] | None:
    """Interval for the share of true ``hits`` that allows for votes of one participant, and votes on one
    image, being correlated: a logistic model with only an intercept, its two-way cluster-robust variance
    (see :func:`_clustered_cov`) and a t quantile, mapped back to a share. None when there are no votes,
    fewer than two participants and images, or every vote agrees (the estimate is then 0 or 1)."""
    import statsmodels.api as sm

    y = np.asarray(hits, dtype=np.float64)
    if not 0 < y.sum() < y.size:
        return None
    fit = sm.Logit(y, np.ones((y.size, 1))).fit(disp=0, method="newton")
    _, cov, df = _clustered_cov(fit, participants, stimuli)
    if cov is None:
        return None
    half = _t_quantile(confidence, df) * math.sqrt(cov[0, 0])
    centre = float(fit.params[0])
    return _expit(centre - half), _expit(centre + half)


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _t_quantile(confidence: float, df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, df))


def _z_quantile(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def _clustered_cov(fit, participants: Sequence[str], stimuli: Sequence[str]
                   ) -> tuple[tuple[str, ...], np.ndarray | None, int]:
    """Cluster-robust covariance of a fitted statsmodels model whose observations are the votes of
    ``participants`` on ``stimuli``: two-way (Cameron, Gelbach & Miller 2011: by participant + by image
    - by participant-image cell) when both have two or more clusters, one-way on the one that does,
    with statsmodels' small-sample correction. A two-way matrix that is not positive definite is
    replaced by the larger one-way one. Returns the factors used, the matrix (None when no factor has
    two clusters) and the degrees of freedom for t quantiles (fewest clusters - 1)."""
    from statsmodels.stats.sandwich_covariance import cov_cluster, cov_cluster_2groups

    groups = {"participant": _codes(participants), "stimulus": _codes(stimuli)}
    usable = [name for name, (_, n) in groups.items() if n >= 2]
    if not usable:
        return (), None, 0
    if len(usable) == 1:
        cov = cov_cluster(fit, groups[usable[0]][0])
    else:
        cov, *one_way = cov_cluster_2groups(fit, groups["participant"][0], groups["stimulus"][0])
        if np.linalg.eigvalsh(cov).min() <= 0:
            larger = int(np.trace(one_way[1]) > np.trace(one_way[0]))
            usable, cov = [usable[larger]], one_way[larger]
    return tuple(usable), np.asarray(cov), min(groups[name][1] for name in usable) - 1


def share_of(hits: Sequence[bool], participants: Sequence[str], stimuli: Sequence[str]) -> Share:
    """A :class:`Share` of the true values in ``hits`` (one per decisive vote, with its participant and image)."""
    interval = clustered_interval(hits, participants, stimuli)
    return Share(Proportion.of(int(np.sum(hits)), len(hits)), *(interval or (None, None)),
                 participants=len(set(participants)), stimuli=len(set(stimuli)))


def _share_for(decisive: Sequence[Comparison], hit: Callable[[Comparison], bool]) -> Share:
    return share_of([hit(c) for c in decisive], [c.participant for c in decisive], [c.stimulus for c in decisive])


def pairwise_table(comparisons: Iterable[Comparison], models: Sequence[str]) -> list[PairRow]:
    """One row per ordered pair of ``models`` (``model`` vs ``opponent``, in the order of ``models``):
    votes for each, ties, and ``model``'s share of the decisive votes with per-vote and clustered intervals."""
    by_pair: dict[tuple[str, str], list[Comparison]] = defaultdict(list)
    for c in check_comparisons(comparisons, models):
        by_pair[c.pair].append(c)
    rows = []
    for model, opponent in permutations(models, 2):
        votes = by_pair[tuple(sorted((model, opponent)))]
        decisive = [c for c in votes if c.winner is not None]
        wins = sum(c.winner == model for c in decisive)
        rows.append(PairRow(model, opponent, wins, len(decisive) - wins, len(votes) - len(decisive),
                            _share_for(decisive, lambda c: c.winner == model)))
    return rows


def per_stimulus(comparisons: Iterable[Comparison], model: str, opponent: str) -> list[StimulusRow]:
    """``model``'s preference against ``opponent`` on each image that has votes on this pair, by image id."""
    by_image: dict[str, list[Comparison]] = defaultdict(list)
    for c in check_comparisons(comparisons):
        if {c.first, c.second} == {model, opponent}:
            by_image[c.stimulus].append(c)
    rows = []
    for stimulus in sorted(by_image):
        decisive = [c for c in by_image[stimulus] if c.winner is not None]
        rows.append(StimulusRow(stimulus, model, opponent, len(by_image[stimulus]) - len(decisive),
                                Proportion.of(sum(c.winner == model for c in decisive), len(decisive))))
    return rows


def position_bias(comparisons: Iterable[Comparison]) -> PositionBias:
    """Share of decisive votes that chose the model shown first (A, left); 50% means no position bias."""
    decisive = [c for c in check_comparisons(comparisons) if c.winner is not None]
    per: dict[str, list[bool]] = defaultdict(list)
    for c in decisive:
        per[c.participant].append(c.winner == c.first)
    return PositionBias(_share_for(decisive, lambda c: c.winner == c.first),
                        [Count(key, sum(v), len(v)) for key, v in sorted(per.items())])


# ------------------------------------------------------------------------------ Bradley-Terry


def bradley_terry(comparisons: Iterable[Comparison], models: Sequence[str], confidence: float = 0.95) -> Ranking:
    """Bradley-Terry model, P(i preferred to j) = 1 / (1 + exp(s_j - s_i)), fitted by maximum likelihood
    (a logistic model in statsmodels) on the decisive votes. ValueError when the strengths are not
    identifiable yet (some group of models never preferred to the others)."""
    import statsmodels.api as sm  # deferred: statsmodels takes about a second to import

    votes = check_comparisons(comparisons, models)
    decisive = [c for c in votes if c.winner is not None]
    _check_connected(decisive, models)
    index = {m: i for i, m in enumerate(models)}
    k = len(models)
    x = np.zeros((len(decisive), k))
    rows = np.arange(len(decisive))
    x[rows, [index[c.first] for c in decisive]] = 1.0
    x[rows, [index[c.second] for c in decisive]] = -1.0
    y = np.array([c.winner == c.first for c in decisive], dtype=np.float64)
    fit = sm.Logit(y, x[:, 1:]).fit(disp=0, method="newton", maxiter=100)  # first model's strength fixed at 0
    if not fit.mle_retvals.get("converged", False):
        raise ValueError("the Bradley-Terry fit did not converge; collect more votes")
    # centre: s = C @ [0, theta], C removes the mean
    centre = (np.eye(k) - 1.0 / k) @ np.vstack([np.zeros(k - 1), np.eye(k - 1)])
    strength = centre @ fit.params
    half = _z_quantile(confidence) * np.sqrt(np.diag(centre @ fit.cov_params() @ centre.T))
    clustered_by, cov, df = _clustered_cov(fit, [c.participant for c in decisive], [c.stimulus for c in decisive])
    cluster_half = None if cov is None else _t_quantile(confidence, df) * np.sqrt(np.diag(centre @ cov @ centre.T))
    counts = _win_counts(votes, models)
    strengths = [
        ModelStrength(m, float(strength[i]), float(strength[i] - half[i]), float(strength[i] + half[i]),
                      None if cluster_half is None else float(strength[i] - cluster_half[i]),
                      None if cluster_half is None else float(strength[i] + cluster_half[i]),
                      *counts[m])
        for i, m in enumerate(models)
    ]
    strengths.sort(key=lambda s: -s.strength)
    return Ranking(strengths, len(decisive), len(votes) - len(decisive),
                   len({c.participant for c in votes}), len({c.stimulus for c in votes}), clustered_by)


def _check_connected(decisive: Sequence[Comparison], models: Sequence[str]) -> None:
    """Maximum-likelihood strengths exist iff every model can reach every other through a chain of
    "was preferred to" (Zermelo/Ford): the win graph is strongly connected."""
    beat: dict[str, set[str]] = defaultdict(set)
    beaten_by: dict[str, set[str]] = defaultdict(set)
    for c in decisive:
        loser = c.second if c.winner == c.first else c.first
        beat[c.winner].add(loser)
        beaten_by[loser].add(c.winner)
    for edges, beaten in ((beat, True), (beaten_by, False)):
        reached, stack = {models[0]}, [models[0]]
        while stack:
            for other in edges[stack.pop()] - reached:
                reached.add(other)
                stack.append(other)
        missing = ", ".join(m for m in models if m not in reached)
        if missing:
            better, worse = (models[0], missing) if beaten else (missing, models[0])
            raise ValueError(f"cannot rank yet: no vote, directly or through other models, prefers {better} "
                             f"to {worse}; collect more votes")


def _win_counts(votes: Sequence[Comparison], models: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    wins, losses, ties = Counter(), Counter(), Counter()
    for c in votes:
        if c.winner is None:
            ties.update((c.first, c.second))
        else:
            wins[c.winner] += 1
            losses[c.second if c.winner == c.first else c.first] += 1
    return {m: (wins[m], losses[m], ties[m]) for m in models}


# ------------------------------------------------------------------------- agreement, groups


def rater_agreement(comparisons: Iterable[Comparison], include_ties: bool = True, n_boot: int = 1000,
                    seed: int = 0) -> Agreement:
    """Krippendorff's alpha (nominal, the ``krippendorff`` package) between participants who rated the
    same image and pair of models, with a percentile bootstrap interval over units. Each participant
    counts once per unit (their first answer); units with a single rating carry no information."""
    import krippendorff

    votes = check_comparisons(comparisons)
    # values relative to the unit (the pair's first model by name, its second, none), so that chance
    # agreement is computed over the answers a rater actually had
    seen: dict[tuple[str, tuple[str, str]], dict[str, int]] = defaultdict(dict)
    for c in votes:
        if c.winner is None and not include_ties:
            continue
        seen[(c.stimulus, c.pair)].setdefault(c.participant, 2 if c.winner is None else c.pair.index(c.winner))
    units = [u for u in seen.values() if len(u) >= 2]
    categories = sorted({v for u in units for v in u.values()})
    raters = len({p for u in units for p in u})
    counts = np.array([[Counter(u.values())[v] for v in categories] for u in units], dtype=np.float64)
    ratings = int(counts.sum())
    if len(categories) < 2:  # no variation at all: alpha is 0/0
        percent = 1.0 if units else None
        return Agreement(None, None, None, percent, len(units), ratings, raters)

    def alpha(table: np.ndarray) -> float:
        return float(krippendorff.alpha(value_counts=table, level_of_measurement="nominal"))

    rng = np.random.default_rng(seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = np.array([alpha(counts[rng.integers(0, len(units), len(units))]) for _ in range(n_boot)])
    boot = boot[np.isfinite(boot)]
    low, high = np.quantile(boot, [0.025, 0.975]) if boot.size else (None, None)
    per_unit = counts.sum(axis=1)
    percent = float((counts * (counts - 1)).sum() / (per_unit * (per_unit - 1)).sum())
    return Agreement(alpha(counts), None if low is None else float(low), None if high is None else float(high),
                     percent, len(units), ratings, raters)


def by_expertise(comparisons: Iterable[Comparison], models: Sequence[str]) -> list[ExpertiseGroup]:
    """:func:`bradley_terry` and :func:`pairwise_table` per expertise level (``None`` -> "not given")."""
    groups: dict[str, list[Comparison]] = defaultdict(list)
    for c in check_comparisons(comparisons, models):
        groups[c.expertise if c.expertise is not None else NOT_GIVEN].append(c)
    out = []
    for expertise in sorted(groups):
        votes = groups[expertise]
        try:
            ranking, note = bradley_terry(votes, models), None
        except ValueError as error:
            ranking, note = None, str(error)
        out.append(ExpertiseGroup(expertise, len({c.participant for c in votes}), len(votes), ranking, note,
                                  pairwise_table(votes, models)))
    return out


# ------------------------------------------------------------------------------------- power


def participants_needed(comparisons: Iterable[Comparison], target: float = 0.60, power: float = 0.80,
                        alpha: float = 0.05) -> PowerPlan:
    """How many participants a study needs to detect a ``target`` preference (or 1 - target) in every
    pair with a two-sided test at ``alpha`` and the given ``power``, from the data so far.

    Per pair: the independent votes a one-sample test of a proportion needs (normal approximation with
    Cohen's h, statsmodels), times the design effect 1 + (m - 1) ICC of ``m`` decisive votes per
    participant whose answers correlate by ICC (one-way ANOVA estimate within participants, at least 0),
    divided by ``m``. The images are taken as fixed."""
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    if not 0.5 < target < 1:
        raise ValueError(f"target must be between 0.5 and 1 (a preference share), got {target}")
    if not 0 < power < 1 or not 0 < alpha < 1:
        raise ValueError(f"power and alpha must be between 0 and 1, got {power} and {alpha}")
    votes = check_comparisons(comparisons)
    by_pair: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for c in votes:
        if c.winner is not None:
            by_pair[c.pair][c.participant].append(float(c.winner == c.pair[0]))
    independent = NormalIndPower().solve_power(effect_size=proportion_effectsize(target, 0.5), alpha=alpha,
                                               power=power, ratio=0, alternative="two-sided")
    pairs = []
    for pair in sorted(by_pair):
        clusters = list(by_pair[pair].values())
        m = float(np.mean([len(v) for v in clusters]))
        icc = anova_icc(clusters)
        deff = 1 + (m - 1) * icc
        pairs.append(PairPower(pair, len(clusters), m, icc, deff, math.ceil(independent),
                               math.ceil(independent * deff / m)))
    return PowerPlan(target, power, alpha, len({c.participant for c in votes}), pairs)


def anova_icc(clusters: Sequence[Sequence[float]]) -> float:
    """One-way ANOVA estimate of the intraclass correlation of values grouped in ``clusters`` (unequal
    sizes allowed), clipped at 0; 0 when it cannot be estimated (fewer than 2 clusters, or no
    within-cluster replication or variation at all)."""
    sizes = np.array([len(c) for c in clusters], dtype=np.float64)
    k, total = len(clusters), sizes.sum()
    if k < 2 or total <= k:
        return 0.0
    means = np.array([np.mean(c) for c in clusters])
    grand = np.concatenate([np.asarray(c, dtype=np.float64) for c in clusters]).mean()
    between = float((sizes * (means - grand) ** 2).sum() / (k - 1))
    within = float(sum(((np.asarray(c) - mu) ** 2).sum() for c, mu in zip(clusters, means)) / (total - k))
    n0 = (total - (sizes ** 2).sum() / total) / (k - 1)
    denominator = between + (n0 - 1) * within
    return max(0.0, (between - within) / denominator) if denominator > 0 else 0.0
