"""Cascade optimiser: models, order and thresholds on the whole cost–quality Pareto front.

Problem. Given per-prompt scores ``S[p, m]`` (calibrated, out-of-fold), qualities ``Q[p, m]`` and
costs ``C[p, m]`` on training prompts, a cascade ``(m1, …, mL; t1, …, t(L-1))`` asks m1, accepts its
answer when ``S[p, m1] ≥ t1``, else pays for m2, … ; the last tier always answers. Maximise mean
quality s.t. mean cost ≤ B (and the dual: minimum cost s.t. quality ≥ Q) — for every B at once.

Method (score once, sort, sweep).

1. Threshold grids. For each model the candidate thresholds are ``-inf``, the ``G`` quantiles of its
   training scores and ``+inf``. With ``G ≥ number of distinct scores`` (``grid=None``) this is
   *exact*: between two consecutive distinct scores every threshold induces the same decisions. A
   coarse grid moves each threshold by at most ``1/G`` of the prompts, so it loses at most
   ``(L-1)·max(Q)/G`` of mean quality against the exact optimum at equal cost (usually far less),
   and acts as a regulariser against thresholds that fit noise.
2. For a fixed order, the accept/reject indicators are (P, G) matrices ``A_k`` (``R_k = 1 - A_k``),
   and mean quality and cost over the whole (G, G) threshold grid of a 3-tier order are two matrix
   products, summing the cascade backwards:
   ``Q = A1ᵀq1 ⊕ R1ᵀ(A2∘q2 + R2∘q3)``, ``C = Σc1 ⊕ R1ᵀ(c2 + R2∘c3)`` (⊕ broadcasts the G1 column).
   The thresholds ``-inf`` embed every shorter cascade (t2 = -inf is the 2-tier prefix, t1 = -inf
   the single model), so all orders of length ≤ L are covered by the ordered L-lists.
3. Orders: every ordered list of L distinct *candidate* models. Candidates are the models on the
   training single-model Pareto front (cost, quality; best first, and always the cheapest model)
   plus the best by quality and by quality-per-dollar, up to ``max_candidates`` (``None``: the whole pool). A model that is
   dominated as a single model can still help a cascade, which is why the quality-ranked ones are
   added; pass the whole pool to search every order exhaustively.
4. The Pareto front is the non-dominated set of all (cost, quality) points over all orders and
   threshold cells: sort by cost, keep every point that beats all cheaper ones. ``for_budget(B)``
   and ``for_quality(Q)`` are lookups on that front (the primal and the dual).
5. ``smooth`` replaces each cell's quality and cost by the mean over a ``(2r+1)²`` window of
   neighbouring threshold cells before the front is taken, so the chosen thresholds sit on plateaus
   rather than spikes of the training objective (held-out quality is a blurred version of it).

6. ``select="best"`` (answer selection, :class:`thrifty.policy.cascade.CascadePolicy`): a prompt that
   no tier accepts gets the best-scored answer among the tiers it called, so the last tier's quality
   column ``q_L`` is replaced by ``q*[p] = Q[p, argmax_k S[p, m_k]]`` (ties to the later tier) — one
   vector per order, independent of the thresholds, so the sweep is unchanged. Costs do not change.
   The ``-inf`` prefix embedding then means "accept tier k" (its answer, not the best so far), so
   every length 2..L is enumerated with this rule, beside the usual ordered L-lists with the
   last-answer rule; a ``-inf`` cell simplifies to the shorter cascade with ``select="last"``. The
   front mixes both kinds of cascade (each spec carries its own ``select``), so it dominates the
   last-answer front.

7. ``select="running"``: tier k tests the best score *so far* and returns that answer (earlier tiers'
   evidence at every decision). Per order, tier k's score column becomes the prefix maximum
   ``max(S[p, m_1..m_k])`` and its accepted quality the quality of that argmax — again one vector per
   order and tier, so the sweep is unchanged; tier k's threshold grid is taken over the prefix
   maxima (exact with ``grid=None``). ``select="running"`` searches all three rules.

Missing (prompt, model) pairs: the tier is skipped at cost 0 (the live cascade's behaviour on an
error); a missing last tier counts quality 0 here (the replay uses the real fallback rule).
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = ["CascadeSpec", "Front", "optimise", "candidate_models", "replay_arrays", "pareto_front"]


@dataclass(frozen=True)
class CascadeSpec:
    """One cascade: tier model indices (into the optimiser's model list), thresholds, train estimates."""

    tiers: tuple[int, ...]
    thresholds: tuple[float, ...]
    cost: float
    quality: float
    select: str = "last"  # "best": no tier accepted → the best-scored answer among those called


@dataclass
class Front:
    """The training Pareto front, cheapest first (costs strictly increasing, qualities too)."""

    points: list[CascadeSpec]
    n_evaluated: int = 0
    meta: dict = field(default_factory=dict)

    def for_budget(self, budget: float) -> CascadeSpec:
        """Highest training quality at mean cost ≤ budget (the cheapest point if none fits)."""
        ok = [p for p in self.points if p.cost <= budget]
        return ok[-1] if ok else self.points[0]

    def for_quality(self, target: float) -> CascadeSpec:
        """Cheapest point with training quality ≥ target (the best point if none reaches it)."""
        ok = [p for p in self.points if p.quality >= target]
        return ok[0] if ok else self.points[-1]


def pareto_front(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points, by increasing cost (and strictly increasing quality)."""
    cost, quality = np.asarray(cost, float), np.asarray(quality, float)
    if cost.size == 0:
        return np.zeros(0, dtype=int)
    order = np.lexsort((-quality, cost))
    q = quality[order]
    prev = np.concatenate([[-np.inf], np.maximum.accumulate(q)[:-1]])
    return order[q > prev + 1e-12]


def candidate_models(quality: np.ndarray, cost: np.ndarray, max_candidates: int | None = 8) -> list[int]:
    """Column indices worth cascading over (see the module docstring, step 3)."""
    M = quality.shape[1]
    if max_candidates is None or M <= max_candidates:
        return list(range(M))
    mq, mc = np.nanmean(quality, 0), np.nanmean(cost, 0)
    front = list(pareto_front(mc, mq)[::-1])  # best first
    chosen = front[: max(1, max_candidates // 2)]
    if front[-1] not in chosen:  # the cheapest model: the only way to honour the smallest budgets
        chosen.append(front[-1])
    by_q = list(np.argsort(-mq))
    by_v = list(np.argsort(-(mq / np.maximum(mc, 1e-12))))
    for a, b in itertools.zip_longest(by_q, by_v):
        for j in (a, b):
            if j is not None and j not in chosen and len(chosen) < max_candidates:
                chosen.append(int(j))
    return sorted(int(j) for j in chosen)


def _grid(s: np.ndarray, G: int | None) -> np.ndarray:
    vals = np.unique(s[np.isfinite(s)])
    if G is not None and len(vals) > G:
        vals = np.unique(np.quantile(vals, np.linspace(0, 1, G)))
    return np.concatenate([[-np.inf], vals, [np.inf]])


def _box(x: np.ndarray, r: int) -> np.ndarray:
    if r <= 0:
        return x
    out = x.copy()
    for axis in range(x.ndim):
        n = x.shape[axis]

        def cut(a: np.ndarray, lo: int, hi: int, axis: int = axis) -> np.ndarray:  # a[lo:hi] along axis
            return a[(slice(None),) * axis + (slice(lo, hi),)]

        # edge padding by r (as np.pad's "edge"), a running sum, and the window sums as differences
        xp = np.concatenate([cut(out, 0, 1)] * r + [out] + [cut(out, n - 1, n)] * r, axis=axis)
        cs = np.cumsum(xp, axis=axis)
        cs = np.concatenate([np.zeros_like(cut(cs, 0, 1)), cs], axis=axis)
        out = (cut(cs, 2 * r + 1, n + 2 * r + 1) - cut(cs, 0, n)) / (2 * r + 1)
    return out


def _best_of(Sz: np.ndarray, Qz: np.ndarray, order: Sequence[int]) -> np.ndarray:
    """Per prompt, the quality of the best-scored answer among ``order`` (ties to the later tier;
    a missing pair scores ``-inf``: ``Sz``, ``Qz`` as cleaned by :func:`_clean`) — what
    ``select="best"`` returns when no tier accepts."""
    best_s = np.full(Sz.shape[0], -np.inf)
    best_q = np.zeros(Sz.shape[0])
    for m in order:
        s = Sz[:, m]
        take = s >= best_s
        best_s = np.where(take, s, best_s)
        best_q = np.where(take, Qz[:, m], best_q)
    return best_q


def _clean(S: np.ndarray, Q: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Missing pairs as the sweep reads them: score ``-inf`` (never accepted), quality and cost 0."""
    return np.nan_to_num(S, nan=-np.inf), np.nan_to_num(Q), np.nan_to_num(C)


def _accept(Sz: np.ndarray, m: int, grid: np.ndarray, cache: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """(P, G) accept indicators of model ``m``'s scores over its threshold grid, and 1 − that
    (one per model and optimise call: every order that asks ``m`` first or second reuses them)."""
    got = cache.get(("acc", m)) if cache is not None else None
    if got is None:
        a = (Sz[:, m][:, None] >= grid[None, :]).astype(np.float64)
        got = (a, 1 - a)
        if cache is not None:
            cache[("acc", m)] = got
    return got


def _order_grid(Sz, Qz, Cz, order, grids, select="last", G=None, cache=None):
    """Mean quality and cost over the full threshold grid of one order (arrays of shape G1×…×G(L-1)),
    and the threshold grid of each non-final tier (``Sz``, ``Qz``, ``Cz``: :func:`_clean`'s arrays).
    ``cache`` (a dict, one per optimise call): the pieces that only depend on a model or a pair of
    models — the accept matrices and the last two tiers' tail — computed once, not once per order;
    the same arithmetic on the same arrays, so the same numbers."""
    P = Sz.shape[0]
    L = len(order)
    q = [Qz[:, m] for m in order]
    c = [Cz[:, m] for m in order]
    if L == 1:
        return np.array(q[0].mean()), np.array(c[0].mean()), []
    s = [Sz[:, m] for m in order[:-1]]
    tier_grids = [grids[m] for m in order[:-1]]
    if select != "last":
        q[-1] = _best_of(Sz, Qz, order)
        cache = None  # the last tier's column depends on the whole order
    if select == "running":  # tier k tests the best score so far and returns that answer (step 7)
        for k in range(1, L - 1):
            take = s[k] >= s[k - 1]
            s[k] = np.where(take, s[k], s[k - 1])
            q[k] = np.where(take, q[k], q[k - 1])
            tier_grids[k] = _grid(s[k], G)
    # tail value/cost of reaching tier L-1 (0-based L-2) onward, as (P, G_last) then fold backwards
    pair = (order[-2], order[-1])
    tail = cache["tail"][1] if cache is not None and cache.get("tail", (None,))[0] == pair else None
    if tail is None:
        if select == "running":
            aL = (s[-1][:, None] >= tier_grids[-1][None, :]).astype(np.float64)
            rL = 1 - aL
        else:
            aL, rL = _accept(Sz, order[-2], tier_grids[-1], cache)
        tail = (aL * q[-2][:, None] + rL * q[-1][:, None], c[-2][:, None] + rL * c[-1][:, None])
        if cache is not None:  # one tail held at a time: the caller runs the orders grouped by tail
            cache["tail"] = (pair, tail)
    tail_q, tail_c = tail
    if L == 2:
        return tail_q.mean(0), tail_c.mean(0), tier_grids
    if L == 3:
        a1, r1 = _accept(Sz, order[0], tier_grids[0], cache)
        head = cache.get(("head", order[0])) if cache is not None else None
        if head is None:  # mean quality of the first tier's accepted answers, per threshold
            head = (a1 * q[0][:, None]).sum(0)[:, None]
            if cache is not None:
                cache[("head", order[0])] = head
        gq = head + r1.T @ tail_q
        gc = c[0].sum() + r1.T @ tail_c
        return gq / P, gc / P, tier_grids
    raise ValueError("the grid optimiser handles up to 3 tiers; pass max_tiers ≤ 3")


def optimise(
    S: np.ndarray,
    Q: np.ndarray,
    C: np.ndarray,
    *,
    max_tiers: int = 3,
    candidates: Sequence[int] | None = None,
    grid: int | None = 32,
    smooth: int = 0,
    ordered: str = "any",
    select: str = "last",
    first: int | None = None,
) -> Front:
    """Pareto front of all cascades over ``candidates`` with ≤ ``max_tiers`` tiers (module docstring).

    ``ordered="cheap-first"`` keeps only orders whose tiers get more expensive (mean training cost),
    the usual FrugalGPT-style cascade; ``"any"`` searches every permutation. ``select="best"`` also
    searches cascades that return the best-scored answer when no tier accepts (step 6). ``first`` (a
    candidate): every multi-tier cascade starts with that model (single models are all kept) — for
    scores that read the first tier's answer (the agreement feature).
    """
    if max_tiers < 1 or max_tiers > 3:
        raise ValueError("max_tiers must be 1, 2 or 3")
    if select not in ("last", "best", "running"):
        raise ValueError(f"select must be 'last', 'best' or 'running', not {select!r}")
    M = Q.shape[1]
    cand = list(range(M)) if candidates is None else list(candidates)
    grids = {m: _grid(S[:, m], grid) for m in cand}
    with warnings.catch_warnings():  # a model with no training outcome has mean cost NaN: never ordered before others
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_cost = np.nanmean(C, 0)
    costs: list[np.ndarray] = []
    quals: list[np.ndarray] = []
    specs: list[tuple[tuple[int, ...], str, list[np.ndarray], tuple[int, ...], int]] = []
    n_eval = 0
    L = min(max_tiers, len(cand))
    # (order, rule) pairs: the ordered L-lists with the last-answer rule (shorter ones embedded), plus,
    # with select="best", every ordered list of 2..L models with the best-answer rule
    runs = [(o, "last") for o in itertools.permutations(cand, L)]
    if select in ("best", "running"):
        runs += [(o, "best") for n in range(2, L + 1) for o in itertools.permutations(cand, n)]
    if select == "running" and L >= 3:  # shorter running cascades are best-answer ones, or embedded by -inf
        runs += [(o, "running") for o in itertools.permutations(cand, L)]
    if first is not None:  # later tiers' scores read the first tier's answer: it must have been paid for
        runs = [(o, r) for o, r in runs if o[0] == first] + [((m,), "last") for m in cand if m != first]
    Sz, Qz, Cz = _clean(S, Q, C)
    if ordered == "cheap-first":
        runs = [(o, r) for o, r in runs if not any(mean_cost[a] > mean_cost[b] for a, b in zip(o, o[1:]))]
    # computed grouped by the last two tiers (whose tail is then built once), collected in the
    # original order below (ties on the front resolve as they always did)
    cache: dict = {}
    grids_of = {}
    for i in sorted(range(len(runs)), key=lambda i: (runs[i][1], runs[i][0][-2:], runs[i][0])):
        grids_of[i] = _order_grid(Sz, Qz, Cz, runs[i][0], grids, runs[i][1], grid, cache)
    cache.clear()
    for i, (order, rule) in enumerate(runs):
        gq, gc, tgrids = grids_of.pop(i)
        gq, gc = _box(np.asarray(gq), smooth), _box(np.asarray(gc), smooth)
        n_eval += gq.size
        keep = pareto_front(gc.ravel(), gq.ravel())
        costs.append(gc.ravel()[keep])
        quals.append(gq.ravel()[keep])
        specs.extend((order, rule, tgrids, gq.shape, int(i)) for i in keep)
    costs_a, quals_a = np.concatenate(costs), np.concatenate(quals)
    points = []
    for i in pareto_front(costs_a, quals_a):
        order, rule, tgrids, shape, flat = specs[i]
        idx = np.unravel_index(flat, shape) if shape else ()
        thr = tuple(float(tgrids[k][idx[k]]) for k in range(len(order) - 1))
        tiers, thr, sel = _simplify(order, thr, rule)
        points.append(CascadeSpec(tiers, thr, float(costs_a[i]), float(quals_a[i]), sel))
    return Front(points, n_eval, {"candidates": cand, "grid": grid, "smooth": smooth, "max_tiers": max_tiers, "select": select})


def _simplify(order: tuple[int, ...], thr: tuple[float, ...], select: str = "last") -> tuple[tuple[int, ...], tuple[float, ...], str]:
    """Drop tiers that are never reached: a ``-inf`` threshold accepts everything at that tier (whose
    answer is then returned — so the shorter cascade is a ``select="last"`` one — or, with
    ``"running"``, the best so far, which the shorter running cascade's last tier returns too)."""
    for k, t in enumerate(thr):
        if t == -np.inf:
            return order[: k + 1], thr[:k], ("running" if select == "running" and k > 0 else "last")
    return tuple(order), tuple(thr), select if len(order) > 1 else "last"


def replay_arrays(S: np.ndarray, Q: np.ndarray, C: np.ndarray, spec: CascadeSpec) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised per-prompt (cost, quality) of one cascade — the optimiser's view of the rules."""
    P = S.shape[0]
    cost = np.zeros(P)
    qual = np.zeros(P)
    open_ = np.ones(P, dtype=bool)
    last = len(spec.tiers) - 1
    best_s, best_q = np.full(P, -np.inf), np.zeros(P)  # the best-scored answer so far (ties to the later tier)
    for k, m in enumerate(spec.tiers):
        cost[open_] += np.nan_to_num(C[open_, m])
        s = np.nan_to_num(S[:, m], nan=-np.inf)
        take = s >= best_s
        best_s, best_q = np.where(take, s, best_s), np.where(take, np.nan_to_num(Q[:, m]), best_q)
        if k == last:
            qual[open_] = (best_q if spec.select != "last" else np.nan_to_num(Q[:, m]))[open_]
            break
        if spec.select == "running":
            acc = open_ & (best_s >= spec.thresholds[k])
            qual[acc] = best_q[acc]
        else:
            acc = open_ & (s >= spec.thresholds[k])
            qual[acc] = Q[acc, m]
        open_ &= ~acc
    return cost, qual
