"""Refit a cascade on audited traffic and validate it against the cascade in service.

Pure CPU and no I/O except :func:`write_candidate_artefact`; the gateway runs it in a worker thread,
``thrifty simulate`` inline on its replay clock — the same functions, so offline replays predict
what the gateway does.

The audited rows are a routing table (one row per audited request, one column per tier: the judged
quality and cost of every tier's answer) plus a *good-enough* matrix ``G`` (1 where that tier's
answer was judged at least as good as the reference's).

:func:`fit_candidate` fits the offline lab's cascade (:class:`~thrifty.offline.cascade_policy.CascadeOffline`:
answer-scoring heads, model order and thresholds by nested cross-validation) on those rows, then
picks one point of its training front for the profile's goal:

- ``budget`` (mean USD per request) set: the lab's own pick for that budget;
- else ``target`` (share of answers at least as good as the reference): the cheapest front point
  whose share on the audits — its Wilson lower bound at ``share_z`` (:func:`share_bound`), not the
  point estimate — reaches the target (the highest share when none does), its threshold into the
  last tier then lowered along the distinct out-of-fold scores while that bound still reaches the
  target (:func:`_refine`: the lab's 16-quantile grid alone overshoots it);
- neither: the lab's pick at the best single tier's mean cost.

:func:`validate` is K-fold cross-validation on the audits: on each fold the candidate is fitted on
the other folds and replayed on this one, beside the policy in service (with its guardrail offset);
per-request cost, quality and good-enough flags are pooled over the folds, paired. The decision
(:func:`decide`):

- with a budget: a policy *meets the goal* when its mean cost ≤ budget·1.05; the candidate is
  swapped in when it meets it and the one in service does not, or both do and its quality is
  higher by more than both ``min_gain``·(quality in service) and one standard error of the paired
  difference (a refit on a few dozen audits otherwise swaps on noise), or neither does and it is
  cheaper;
- with a target only: a policy meets the goal when its good-enough share ≥ target; the candidate is
  swapped in when it meets it and the one in service does not, or both do and it is cheaper by more
  than ``min_gain`` (relative), or neither does and its share is higher (by > 0.005);
- otherwise it is refused. The evidence (both policies' CV cost, quality, share with its Wilson
  interval, n, folds, the rule that decided) goes into the history either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np

from thrifty.calibration.audit_sampling import weighted_share
from thrifty.calibration.audit_types import AuditOutcome
from thrifty.calibration.guardrail import wilson
from thrifty.calibration.refit_artefact import write_candidate_artefact
from thrifty.data.table import RoutingTable
from thrifty.offline.cascade_policy import CascadeOffline, lookup_requests, replay_policy
from thrifty.offline.optimise import CascadeSpec, replay_arrays
from thrifty.policy.cascade import CascadePolicy
from thrifty.scoring.heads import inner_folds, single_threaded
from thrifty.types import ChatRequest

__all__ = [
    "ServingPolicy",
    "RefitSettings",
    "RefitResult",
    "audits_table",
    "good_matrix",
    "fit_candidate",
    "replay",
    "validate",
    "decide",
    "refit",
    "write_candidate_artefact",
]

#: cheap settings of the lab's cascade for refits on a few hundred audits (the nested CV still
#: chooses tiers and smoothing); the significance gate is fixed at one standard error: on a few
#: dozen audits a multi-tier pick must beat the best single tier within the budget clearly
FIT_OPTIONS: dict[str, Any] = {
    "max_tiers": 2,
    "max_candidates": None,
    "embed": "none",
    "grids": (16,),
    "smooths": (0, 1),
    "inner_folds": 3,
    "gates": (1.0,),
}


@dataclass(frozen=True)
class ServingPolicy:
    """A cascade in service: tiers, base thresholds (the guardrail adds its offset) and scorer."""

    version: int
    tiers: tuple[str, ...]
    thresholds: tuple[float, ...]
    scorer: Any  # live scorer: score(request, completion, model) -> float
    select: str = "last"
    source: str = "default"  # "default" (configured thresholds), "refit", "artefact:<path>"
    fitted: Any = None  # the FittedCascade of a refit (scores a whole table at once)

    def policy(self, offset: float = 0.0) -> CascadePolicy:
        thr = tuple(t + offset for t in self.thresholds)
        return CascadePolicy(self.tiers, thr, self.scorer if len(self.tiers) > 1 else None, select=self.select)

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "tiers": list(self.tiers),
            "thresholds": [round(float(t), 6) for t in self.thresholds],
            "select": self.select,
            "source": self.source,
        }


@dataclass(frozen=True)
class RefitSettings:
    """The profile's goal and the validation knobs."""

    target: float | None = 0.95
    budget: float | None = None  # mean USD per request
    folds: int = 3
    min_gain: float = 0.01
    share_z: float = 1.0  # one-sided z of the lower bound a target-mode pick must clear (0: the point estimate)
    fit_options: Mapping[str, Any] = field(default_factory=lambda: dict(FIT_OPTIONS))


@dataclass
class RefitResult:
    """What one refit produced: a candidate to swap in (or None), the evidence, or the error."""

    swap: bool
    candidate: ServingPolicy | None
    evidence: dict[str, Any]
    error: str | None = None


def audits_table(rows: Sequence[tuple[AuditOutcome, str | None]], tiers: Sequence[str]) -> tuple[RoutingTable, np.ndarray]:
    """(routing table, good-enough matrix) of audited requests: one row per audit, one column per tier."""
    P, M = len(rows), len(tiers)
    q, c, g = np.full((P, M), np.nan), np.full((P, M), np.nan), np.full((P, M), np.nan)
    answers = np.full((P, M), None, dtype=object)
    for i, (outcome, _) in enumerate(rows):
        for j, m in enumerate(tiers):
            v = outcome.answers.get(m)
            if v is None or v.quality is None:
                continue
            q[i, j], c[i, j], answers[i, j] = v.quality, v.cost_usd, v.output
            g[i, j] = np.nan if v.at_least_as_good is None else float(v.at_least_as_good)
    has_text = any(a is not None for a in answers.ravel())
    table = RoutingTable(
        tuple(o.request_id for o, _ in rows),
        tuple(p for _, p in rows),
        tuple(tiers),
        q,
        c,
        answers=answers if has_text else None,
        source="<audits>",
    )
    return table, g


def good_matrix(table: RoutingTable, reference: str) -> np.ndarray:
    """1 where a tier's quality is at least the reference tier's on that row (NaN where unknown)."""
    ref = table.quality[:, table.model_index(reference)][:, None]
    good = (table.quality >= ref - 1e-9).astype(float)
    good[np.isnan(table.quality) | np.isnan(ref.repeat(table.n_models, 1))] = np.nan
    return good


def _scores(serving: ServingPolicy, table: RoutingTable) -> tuple[list[ChatRequest], Any]:
    """Requests for every row of ``table`` and the scorer to drive ``serving`` with: the batch
    scores of a fitted cascade looked up per (request, model), else the live scorer itself."""

    if serving.fitted is not None and len(serving.tiers) > 1:
        sub = table.select_models(serving.fitted.models)
        return lookup_requests(table, serving.fitted.score(sub), serving.fitted.models)
    return [ChatRequest.from_prompt(t or "") for t in table.prompts], serving.scorer


def replay(serving: ServingPolicy, table: RoutingTable, good: np.ndarray, offset: float = 0.0) -> dict[str, np.ndarray]:
    """Per-row cost, quality, good-enough flag and chosen column of ``serving`` (+ offset) on ``table``,
    by driving the live :class:`CascadePolicy` over the recorded answers."""

    requests, scorer = _scores(serving, table)
    policy = replace(serving, scorer=scorer).policy(offset)
    r = replay_policy(table, requests, policy)
    rows = np.arange(table.n_prompts)
    ok = r.chosen >= 0
    g = np.zeros(table.n_prompts)
    g[ok] = np.nan_to_num(good[rows[ok], r.chosen[ok]])
    return {"cost": r.cost, "quality": r.quality, "good": g, "chosen": r.chosen}


def _point(lab: Any, fitted: Any, table: RoutingTable, good: np.ndarray, settings: RefitSettings, w: np.ndarray | None = None) -> Any:
    """The front point for the profile's goal (see the module docstring). The target's share is
    measured on the scorer's out-of-fold scores (what the lab fitted the thresholds on), not on
    in-sample scores, which would overstate it."""

    if settings.budget is not None or settings.target is None:
        return next(iter(fitted.picks.values()))

    cols = [table.model_index(m) for m in fitted.models]
    S = lab.fit_feature_scorer(table, fitted.models, fitted.inputs_kw)[1]
    G, C = np.nan_to_num(good[:, cols]), table.cost[:, cols]
    # every tier alone is a candidate too: the front may have dropped "always the reference" (a
    # cascade into it looked better in training), yet that one meets any target by definition
    singles = [CascadeSpec((j,), (), _mean(C[:, j], w), _mean(table.quality[:, cols[j]], w)) for j in range(len(cols))]
    best, best_share = None, -1.0
    for spec in sorted([*fitted.front.points, *singles], key=lambda p: p.cost):  # cheapest first
        _, share = replay_arrays(S, G, C, spec)
        if share_bound(share, settings.share_z, w) >= settings.target - 1e-12:
            return _refine(S, G, C, spec, settings.target, settings.share_z, w)
        if _mean(share, w) > best_share + 1e-12:
            best, best_share = spec, _mean(share, w)
    return best


def _mean(x: np.ndarray, w: np.ndarray | None) -> float:
    """Mean of ``x`` (NaN skipped), inverse-probability weighted when ``w`` is given."""
    ok = ~np.isnan(x)
    return float(np.average(x[ok], weights=None if w is None else w[ok])) if ok.any() else float("nan")


def share_bound(good: np.ndarray, z: float, w: np.ndarray | None = None) -> float:
    """Wilson lower bound (one-sided ``z``; 0: the point estimate) of the share of 0/1 flags — with
    weights ``w``, of the weighted share at Kish's effective n. A pick on the point estimate misses
    the target about half the time (the cheapest threshold that reaches it on n audits is the one
    whose share was overestimated most); one on the bound about 1 − Φ(z)."""
    if len(good) == 0:
        return 0.0
    if w is not None:
        share, n_eff = weighted_share(good, w)
        return wilson(share * n_eff, n_eff, z)[0] if z > 0 else share
    return wilson(int(round(float(np.sum(good)))), len(good), z)[0] if z > 0 else float(np.mean(good))


def _refine(
    S: np.ndarray, G: np.ndarray, C: np.ndarray, spec: CascadeSpec, target: float, z: float = 0.0, w: np.ndarray | None = None
) -> CascadeSpec:
    """Lower the threshold into the last tier to the cheapest score that still meets ``target``.

    The lab's grid has 16 quantiles per tier, so its cheapest point meeting the target escalates up
    to 1/16 of the prompts more than needed (a share well above the target, paid for). Between two
    grid points every distinct out-of-fold score of that tier is a threshold of its own; this keeps
    the grid's tiers and the other thresholds and tries them, cheapest meeting the target wins."""
    if len(spec.tiers) < 2:
        return spec
    k = len(spec.tiers) - 2
    scores = np.unique(np.nan_to_num(S[:, spec.tiers[k]], nan=-np.inf))
    tries = scores[scores < spec.thresholds[k]]
    best = spec
    for t in tries[::-1]:  # from the grid point downwards: cheaper and cheaper
        cand = replace(spec, thresholds=(*spec.thresholds[:k], float(t), *spec.thresholds[k + 1 :]))
        cost, share = replay_arrays(S, G, C, cand)
        if share_bound(share, z, w) < target - 1e-12:
            break
        best = replace(cand, cost=_mean(cost, w))
    return best


def fit_candidate(
    table: RoutingTable, good: np.ndarray, settings: RefitSettings, seed: int = 0, weights: np.ndarray | None = None
) -> ServingPolicy:
    """Fit the lab's cascade on ``table`` and return the point for the goal as a ServingPolicy
    (``weights``: the audits' inverse-probability weights, for the target's share and the costs)."""

    stats = [s for s in table.model_stats() if s.n > 0]
    if not stats:
        raise ValueError("no audited answers to fit on")
    best = max(stats, key=lambda s: (s.quality, -s.cost))
    # the same 5% tolerance :func:`decide` allows: a budget equal to a tier's mean cost keeps that tier
    knobs = [settings.budget * 1.05 if settings.budget is not None else best.cost]
    lab = CascadeOffline(**{**dict(settings.fit_options), "seed": seed})
    with single_threaded():
        fitted = lab.fit(table, knobs)
        spec = _point(lab, fitted, table, good, settings, weights)
    fitted.picks = {knobs[0]: spec}
    tiers = tuple(fitted.models[t] for t in spec.tiers)
    return ServingPolicy(-1, tiers, tuple(float(t) for t in spec.thresholds), fitted.scorer, spec.select, "refit", fitted)


def _summary(r: dict[str, np.ndarray], w: np.ndarray | None = None) -> dict[str, Any]:
    n, k = len(r["good"]), int(r["good"].sum())
    share, n_eff = weighted_share(r["good"], w) if n else (0.0, 0.0)
    return {
        "cost_usd": _mean(r["cost"], w),
        "quality": _mean(r["quality"], w),
        "good_share": share,
        "good_interval": [round(x, 4) for x in (wilson(k, n) if w is None else wilson(share * n_eff, n_eff))],
    }


def decide(cand: dict[str, Any], serv: dict[str, Any], settings: RefitSettings, diff_se: float = 0.0) -> tuple[bool, str]:
    """Swap or refuse, and the rule that decided (see the module docstring); ``diff_se`` is the
    standard error of the paired per-request quality difference (a budget-mode gain must exceed it)."""
    if settings.budget is not None:
        limit = settings.budget * 1.05
        cm, sm = cand["cost_usd"] <= limit, serv["cost_usd"] <= limit
        if cm and not sm:
            return True, "only the candidate keeps the budget"
        if sm and not cm:
            return False, "the candidate overspends the budget"
        if cm:
            ok = cand["quality"] - serv["quality"] > max(serv["quality"] * settings.min_gain, diff_se)
            return ok, "both keep the budget; " + (
                "candidate's quality is higher" if ok else "candidate's quality is not higher by min_gain and one standard error"
            )
        ok = cand["cost_usd"] < serv["cost_usd"]
        return ok, "both overspend; " + ("candidate is cheaper" if ok else "candidate is not cheaper")
    target = settings.target if settings.target is not None else 0.0
    cm, sm = cand["good_share"] >= target, serv["good_share"] >= target
    if cm and not sm:
        return True, "only the candidate meets the target"
    if sm and not cm:
        return False, "the candidate misses the target"
    if cm:
        ok = cand["cost_usd"] < serv["cost_usd"] * (1 - settings.min_gain)
        return ok, "both meet the target; " + ("candidate is cheaper" if ok else "candidate is not cheaper by min_gain")
    ok = cand["good_share"] > serv["good_share"] + 0.005
    return ok, "both miss the target; " + ("candidate's share is higher" if ok else "candidate's share is not higher")


def validate(
    table: RoutingTable,
    good: np.ndarray,
    serving: ServingPolicy,
    offset: float,
    settings: RefitSettings,
    seed: int = 0,
    weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """K-fold CV on the audits: candidate (fitted on the other folds) vs the policy in service."""

    k = max(2, min(settings.folds, table.n_prompts // 10))
    cand = {key: np.zeros(table.n_prompts) for key in ("cost", "quality", "good")}
    serv = replay(serving, table, good, offset)
    # a fold's candidate is fitted on (k-1)/k of the audits; the margin its lower bound keeps above
    # the target grows as 1/sqrt(rows), so at the same z it would be more cautious than the candidate
    # fitted on every audit that is to be swapped in, and lose to the policy in service for that alone
    fold_settings = replace(settings, share_z=settings.share_z * float(np.sqrt((k - 1) / k)))
    for test in inner_folds(table.n_prompts, k, seed):
        train_rows = np.setdiff1d(np.arange(table.n_prompts), test)
        c = fit_candidate(table.take(train_rows), good[train_rows], fold_settings, seed, None if weights is None else weights[train_rows])
        r = replay(c, table.take(test), good[test])
        for key in cand:
            cand[key][test] = r[key]
    cs, ss = _summary(cand, weights), _summary(serv, weights)
    d = cand["quality"] - serv["quality"]
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    swap, rule = decide(cs, ss, settings, se)
    return {
        "n": table.n_prompts,
        "folds": k,
        "candidate_cv": cs,
        "serving_cv": ss,
        "serving_offset": offset,
        "quality_diff_se": se,
        "goal": {"target": settings.target, "budget": settings.budget},
        "swap": swap,
        "rule": rule,
    }


def refit(
    table: RoutingTable,
    good: np.ndarray,
    serving: ServingPolicy,
    offset: float,
    settings: RefitSettings,
    seed: int = 0,
    weights: np.ndarray | None = None,
) -> RefitResult:
    """Fit a candidate on every audit, validate it by CV against ``serving``; never raises — a crash
    is returned as ``RefitResult(error=...)`` and the policy in service stays."""
    try:
        evidence = validate(table, good, serving, offset, settings, seed, weights)
        candidate = fit_candidate(table, good, settings, seed, weights) if evidence["swap"] else None
        if candidate is not None:
            evidence["candidate"] = candidate.describe() | {"train": {"front_size": len(candidate.fitted.front.points)}}
        evidence["serving"] = serving.describe()
        return RefitResult(bool(evidence["swap"]), candidate, evidence)
    except Exception as exc:  # noqa: BLE001 - a failed refit must leave the policy in service untouched
        return RefitResult(False, None, {"n": table.n_prompts, "serving": serving.describe()}, error=f"{type(exc).__name__}: {exc}")
