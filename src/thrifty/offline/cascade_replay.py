"""The cascade's replay and knob selection, shared by the cascade, FrugalGPT and hybrid policies.

:func:`replay_cascades` drives :class:`thrifty.policy.cascade.CascadePolicy` (or its batch form,
:func:`thrifty.offline.batch_replay.cascade_batch`, for ``select="last"``) over a table's recorded
answers with precomputed scores; :func:`replay_policy` is the one prompt-by-prompt replay loop;
:func:`select_knobs` turns a fitted front into one cascade per budget knob (with the significance
gate). Split out of :mod:`thrifty.offline.cascade_policy`, which re-exports every name.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from thrifty.data.table import RoutingTable
from thrifty.offline.api import OperatingPoint, recorded_completion
from thrifty.offline.batch_replay import Replayed, cascade_batch
from thrifty.offline.optimise import CascadeSpec, Front, replay_arrays
from thrifty.policy.cascade import CascadePolicy
from thrifty.policy.drive import drive
from thrifty.types import ChatRequest, Completion

__all__ = ["LookupScorer", "lookup_requests", "replay_policy", "replay_cascades", "select_knobs", "knob_range", "Replayed"]


class LookupScorer:
    """Scores precomputed by the fitted scorer, looked up by (request object, model)."""

    def __init__(self) -> None:
        self.table: dict[tuple[int, str], float] = {}

    def score(self, request: ChatRequest, completion: Completion | None, model: str) -> float:
        return self.table[(id(request), model)]


def lookup_requests(table: RoutingTable, scores: np.ndarray, models: Sequence[str]) -> tuple[list[ChatRequest], LookupScorer]:
    """One request per prompt of ``table`` and a scorer that returns ``scores[p, j]`` for model
    ``models[j]``'s recorded answer to request p."""
    requests = [ChatRequest.from_prompt(t or "") for t in table.prompts]
    scorer = LookupScorer()
    for i, req in enumerate(requests):
        for j, m in enumerate(models):
            scorer.table[(id(req), m)] = float(scores[i, j])
    return requests, scorer


def replay_policy(
    table: RoutingTable, requests: Sequence[ChatRequest], policy: Any, plan_kw: Callable[[int], dict] | None = None
) -> Replayed:
    """Drive ``policy.plan(requests[i], **plan_kw(i))`` on every prompt with :func:`drive`, answering
    each ``Call(k)`` with the recorded completion of ``policy.tiers[k]`` (a missing pair fails, as a
    provider error would live). The one replay loop of the cascade, FrugalGPT and hybrid policies."""
    P = table.n_prompts
    tindex = [table.model_index(m) for m in policy.tiers]
    out = Replayed(np.zeros(P), np.zeros(P), np.zeros((P, table.n_models), dtype=bool), np.full(P, -1), np.zeros(P, dtype=int))
    for i, req in enumerate(requests):

        def call(k: int, i: int = i) -> Completion:
            m = tindex[k]
            out.calls[i, m] = True
            return recorded_completion(table, i, m)

        d = drive(policy.plan(req, **(plan_kw(i) if plan_kw else {})), call)
        out.start[i] = d.steps[0].tier if d.steps else 0
        out.cost[i] = d.cost_usd
        if d.completion is not None:
            out.chosen[i] = tindex[d.tier]
            out.quality[i] = table.quality[i, out.chosen[i]]
    return out


def replay_cascades(
    table: RoutingTable,
    scores: np.ndarray,
    models: Sequence[str],
    cascades: dict[float, tuple],
    budgets: dict[float, float | None] | None = None,
    label: str = "cascade",
) -> list[OperatingPoint]:
    """Drive ``CascadePolicy`` on every prompt of ``table`` for each knob → OperatingPoints.

    ``scores[p, j]`` is the scorer's score of model ``models[j]``'s recorded answer on prompt p;
    ``cascades[knob] = (tier model names, thresholds[, select])`` (select defaults to ``"last"``).
    """
    lookup: tuple[list[ChatRequest], LookupScorer] | None = None  # built only for the live loop
    done: dict[tuple, OperatingPoint] = {}
    out = []
    for knob, (tiers, thresholds, *rest) in cascades.items():
        select = rest[0] if rest else "last"
        key = (tuple(tiers), tuple(thresholds), select)
        if key not in done:
            if select == "last" or len(tiers) == 1:  # the batch form of the live loop (held equal by the tests)
                r = cascade_batch(table, scores, models, tiers, thresholds)
            else:
                lookup = lookup or lookup_requests(table, scores, models)
                policy = CascadePolicy(tiers, thresholds, lookup[1] if len(tiers) > 1 else None, select=select)
                r = replay_policy(table, lookup[0], policy)
            params = {"tiers": list(tiers), "thresholds": list(thresholds)} | ({"select": select} if select != "last" else {})
            done[key] = OperatingPoint(0.0, r.cost, r.quality, r.calls, r.chosen, params=params)
        base = done[key]
        out.append(
            OperatingPoint(
                float(knob),
                base.cost,
                base.quality,
                base.calls,
                base.chosen,
                target_budget=None if budgets is None else budgets.get(knob),
                label=label,
                params=dict(base.params),
            )
        )
    return out


def select_knobs(
    front: Front,
    knobs: Sequence[float] | np.ndarray,
    margin: float = 0.0,
    gate: tuple[Front, np.ndarray, np.ndarray, np.ndarray, float] | None = None,
) -> dict[float, CascadeSpec]:
    """The front's pick per knob (mean cost ≤ knob·(1 − margin)).

    ``gate = (singles, S, Q, C, z)``: keep a multi-tier pick only if its paired per-prompt quality
    gain over the best *single model* within the same budget (``singles`` = the 1-tier front), on
    the training rows (S, Q, C), is at least ``z`` standard errors — otherwise take that single
    model. A threshold whose training gain is noise then costs nothing held-out.
    """
    out: dict[float, CascadeSpec] = {}
    memo: dict[tuple, bool] = {}
    for b in knobs:
        spec = front.for_budget(float(b) * (1.0 - margin))
        if gate is not None and len(spec.tiers) > 1 and gate[4] > 0:
            singles, S, Q, C, z = gate
            single = singles.for_budget(float(b) * (1.0 - margin))
            key = (spec.tiers, spec.thresholds, single.tiers)
            if key not in memo:
                _, q1 = replay_arrays(S, Q, C, spec)
                _, q0 = replay_arrays(S, Q, C, single)
                d = q1 - q0
                memo[key] = d.mean() >= z * d.std(ddof=1) / np.sqrt(max(1, len(d) - 1))
            if not memo[key] and single.cost <= spec.cost:
                spec = single
        out[float(b)] = spec
    return out


def knob_range(train: RoutingTable, knobs: Sequence[float] | np.ndarray) -> list[float]:
    costs = [s.cost for s in train.model_stats() if s.n > 0]
    lo, hi = min(costs), max(costs)
    inside = [float(k) for k in knobs if lo <= k <= hi]
    return inside or [float(k) for k in knobs]
