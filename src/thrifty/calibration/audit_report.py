"""The audit report: what the sampled audits say about served quality and savings, with 95% intervals.

Pure computation over the rows of :mod:`thrifty.store.audits` (plain dicts in, plain dicts out), so
the CLI (``thrifty audit report``), ``/metrics`` and a dashboard all show the same figures:

- ``served``: the share of *served* answers judged at least as good as the reference's answer, with a
  Wilson score interval (exact enough at small n and at shares near 0 or 1, unlike the normal one);
- per tier: the share of that tier's answers at least as good as the reference (Wilson), the same
  over the requests it served, its mean judged quality and cost, how often it served;
- ``saving``: 1 − Σ served cost / Σ reference cost over the audited requests — the estimated saving
  against always calling the reference — with a percentile bootstrap interval over requests (the
  ratio of two sums has no simple closed form); per tier the same for "always this tier";
- ``audit_spend_share``: what the audits paid (errors and retries included) / what serving every
  logged request of the profile cost, both over the same period;
- ``drift``: the done audits in time order are cut into ``windows`` equal-count windows; drift is the
  last window's served share minus the first's, with Newcombe's hybrid score interval for a
  difference of two independent proportions.

Audits sampled with unequal probabilities (``[profiles.NAME.audit] sampling = "near_threshold"``)
carry their probability ``sample_prob``; every share, mean and saving is then weighted by
``1 / sample_prob`` (the Hájek estimate), and the intervals use the effective n of
:func:`thrifty.calibration.audit_sampling.weighted_share` (``n`` stays the count; ``n_eff`` is added).
Otherwise the oversampled requests near a threshold would bias every figure.

The unit tests recount every figure from the rows.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from thrifty.calibration.audit_sampling import weighted_share
from thrifty.store.audits import audit_rows, audit_status_counts, serving_spend

__all__ = ["Z95", "wilson", "newcombe_difference", "bootstrap_saving", "profile_report", "audit_report"]

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def wilson(k: float, n: float, z: float = Z95) -> dict[str, Any]:
    """``{"n", "k", "share", "low", "high"}``: k successes of n with the Wilson score interval (None when n = 0)."""
    if n <= 0:
        return {"n": 0, "k": 0, "share": None, "low": None, "high": None}
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low, high = (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))  # exact at the ends
    return {"n": n, "k": k, "share": p, "low": low, "high": high}


def newcombe_difference(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> dict[str, Any]:
    """p2 − p1 with Newcombe's (1998, method 10) interval built from the two Wilson intervals."""
    a, b = wilson(k1, n1, z), wilson(k2, n2, z)
    if a["share"] is None or b["share"] is None:
        return {"difference": None, "low": None, "high": None}
    d = b["share"] - a["share"]
    low = d - math.sqrt((b["share"] - b["low"]) ** 2 + (a["high"] - a["share"]) ** 2)
    high = d + math.sqrt((b["high"] - b["share"]) ** 2 + (a["share"] - a["low"]) ** 2)
    return {"difference": d, "low": low, "high": high}


def bootstrap_saving(
    paid: Sequence[float], reference: Sequence[float], *, resamples: int = 2000, seed: int = 0, weights: Sequence[float] | None = None
) -> dict[str, Any]:
    """1 − Σpaid / Σreference over paired requests, with a 95% percentile bootstrap interval
    (requests resampled with replacement, ``seed`` fixed: the same rows give the same interval);
    ``weights``: inverse audit probabilities (both sums weighted)."""
    import numpy as np

    x, y = np.asarray(paid, dtype=float), np.asarray(reference, dtype=float)
    if weights is not None:
        w = np.asarray(weights, dtype=float)
        x, y = x * w, y * w
    if len(x) == 0 or y.sum() <= 0:
        return {"n": int(len(x)), "saving": None, "low": None, "high": None}
    est = 1.0 - x.sum() / y.sum()
    rng, parts = np.random.default_rng(seed), []
    per_chunk = max(1, 1_000_000 // len(x))  # bounded memory however many audits there are
    for start in range(0, resamples, per_chunk):
        idx = rng.integers(0, len(x), size=(min(per_chunk, resamples - start), len(x)))
        xs, ys = x[idx].sum(axis=1), y[idx].sum(axis=1)
        parts.append(1.0 - xs[ys > 0] / ys[ys > 0])
    draws = np.concatenate(parts)
    low, high = (float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))) if len(draws) else (None, None)
    return {"n": int(len(x)), "saving": float(est), "low": low, "high": high}


def _windows(audits: Sequence[Mapping[str, Any]], k: int) -> list[list[Mapping[str, Any]]]:
    """``audits`` (already in time order) cut into ``k`` equal-count windows (earlier ones one longer)."""
    n = len(audits)
    k = max(1, min(k, n))
    size, extra = divmod(n, k)
    out, start = [], 0
    for i in range(k):
        end = start + size + (1 if i < extra else 0)
        out.append(list(audits[start:end]))
        start = end
    return out


def _weight(a: Mapping[str, Any]) -> float:
    p = a.get("sample_prob")
    return 1.0 / float(p) if p else 1.0


def share_interval(flags: Sequence[bool], weights: Sequence[float] | None = None, z: float = Z95) -> dict[str, Any]:
    """:func:`wilson` of 0/1 ``flags``; with inverse-probability ``weights`` the share is the weighted
    one and the interval is Wilson's at the effective n (``n_eff``), ``n`` and ``k`` stay counts."""
    if weights is None or not flags:
        return wilson(sum(1 for f in flags if f), len(flags), z)
    import numpy as np

    share, n_eff = weighted_share(np.asarray(flags, dtype=float), np.asarray(weights, dtype=float))
    out = wilson(share * n_eff, n_eff, z) if n_eff > 0 else wilson(0, 0, z)
    return out | {"n": len(flags), "k": sum(1 for f in flags if f), "share": share, "n_eff": n_eff}


def _difference(first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    """Newcombe's interval of last − first from two :func:`share_interval` results."""
    if first["share"] is None or last["share"] is None:
        return {"difference": None, "low": None, "high": None}
    a, b = first, last
    d = b["share"] - a["share"]
    low = d - math.sqrt((b["share"] - b["low"]) ** 2 + (a["high"] - a["share"]) ** 2)
    high = d + math.sqrt((b["high"] - b["share"]) ** 2 + (a["share"] - a["low"]) ** 2)
    return {"difference": d, "low": low, "high": high}


def _served_verdicts(audits: Sequence[Mapping[str, Any]]) -> tuple[list[bool], list[float]]:
    """The served answer's at-least-as-good verdict of every audit that has one, and its weight."""
    out, weights = [], []
    for a in audits:
        v = a["answers"].get(a.get("served_model") or "", {}).get("at_least_as_good")
        if v is not None:
            out.append(bool(v))
            weights.append(_weight(a))
    return out, weights


def profile_report(
    audits: Sequence[Mapping[str, Any]],
    *,
    serving_cost_usd: float,
    requests: int = 0,
    status_counts: Mapping[str, int] | None = None,
    audit_cost_usd: float | None = None,
    windows: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """The figures of one profile from its done audits (:func:`thrifty.store.audits.audit_rows`, time order)."""
    audits = sorted(audits, key=lambda a: (a["created"], a["request_id"]))
    weighted = any(a.get("sample_prob") for a in audits)  # non-uniform sampling: every figure weighted

    def ws(values: Sequence[float]) -> list[float] | None:
        return list(values) if weighted else None

    served, served_w = _served_verdicts(audits)
    reference = audits[-1]["reference"] if audits else None
    paid, ref_cost, paid_w = [], [], []
    for a in audits:
        ref = a["answers"].get(a["reference"])
        if ref is not None and ref.get("error") is None:
            paid.append(float(a["served_cost_usd"]))
            ref_cost.append(float(ref["cost_usd"] or 0.0))
            paid_w.append(_weight(a))
    tiers: dict[str, dict[str, Any]] = {}
    models = sorted(
        {m for a in audits for m in a["answers"]},
        key=lambda m: min((a["answers"][m]["tier"] if a["answers"][m]["tier"] >= 0 else 10_000) for a in audits if m in a["answers"]),
    )
    for m in models:
        rows = [(a, a["answers"][m]) for a in audits if m in a["answers"]]
        judged = [(a, x) for a, x in rows if x["at_least_as_good"] is not None]
        jw = [_weight(a) for a, _ in judged]
        pairs = [
            (float(x["cost_usd"] or 0.0), float(a["answers"][a["reference"]]["cost_usd"] or 0.0), _weight(a))
            for a, x in rows
            if x["quality"] is not None and a["reference"] in a["answers"] and a["answers"][a["reference"]].get("error") is None
        ]
        mine = [(a, x) for a, x in judged if a.get("served_model") == m]
        tiers[m] = {
            "n": len(judged),
            "errors": sum(1 for _, x in rows if x.get("error")),
            "at_least_as_good": share_interval([bool(x["at_least_as_good"]) for _, x in judged], ws(jw)),
            "mean_quality": (sum(float(x["quality"]) * w for (_, x), w in zip(judged, jw)) / sum(jw)) if judged else None,
            "mean_cost_usd": (sum(float(x["cost_usd"] or 0.0) * w for (_, x), w in zip(judged, jw)) / sum(jw)) if judged else None,
            "served": sum(1 for a, _ in rows if a.get("served_model") == m),
            "served_at_least_as_good": share_interval([bool(x["at_least_as_good"]) for _, x in mine], ws([_weight(a) for a, _ in mine])),
            "reused": sum(1 for _, x in rows if x["reused"]),
            "saving_if_always": bootstrap_saving(
                [p for p, _, _ in pairs], [r for _, r, _ in pairs], seed=seed, weights=ws([w for *_, w in pairs])
            ),
        }
    spent = audit_cost_usd if audit_cost_usd is not None else sum(float(a["audit_cost_usd"]) for a in audits)
    wins = _windows(audits, windows) if audits else []
    (first, first_w), (last, last_w) = (_served_verdicts(wins[0]), _served_verdicts(wins[-1])) if len(wins) >= 2 else (([], []), ([], []))
    drift_first, drift_last = share_interval(first, ws(first_w)), share_interval(last, ws(last_w))
    return {
        "audited": len(audits),
        "reference": reference,
        "status": dict(status_counts or {"done": len(audits)}),
        "requests": requests,
        "served": share_interval(served, ws(served_w)),
        "sampling": "weighted" if weighted else "uniform",
        "saving": bootstrap_saving(paid, ref_cost, seed=seed, weights=ws(paid_w)),
        "serving_cost_usd": float(serving_cost_usd),
        "audit_cost_usd": float(spent),
        "audit_spend_share": (spent / serving_cost_usd) if serving_cost_usd > 0 else None,
        "drift": {
            "windows": len(wins),
            "first": drift_first,
            "last": drift_last,
            **_difference(drift_first, drift_last),
        },
        "tiers": tiers,
    }


def audit_report(store: Any, profile: str | None = None, since: float | None = None, *, windows: int = 5, seed: int = 0) -> dict[str, Any]:
    """``{"since", "profiles": {name: profile_report(...)}}`` for every audited profile in the log store."""

    rows = audit_rows(store, profile, since)
    status = audit_status_counts(store, profile, since)
    spend = serving_spend(store, profile, since)
    by_profile: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_profile.setdefault(r["profile"], []).append(r)
    out: dict[str, Any] = {}
    for name in sorted(set(by_profile) | set(status)):
        s = status.get(name, {"counts": {}, "audit_cost_usd": 0.0})
        sp = spend.get(name, {"requests": 0, "cost_usd": 0.0})
        out[name] = profile_report(
            by_profile.get(name, []),
            serving_cost_usd=sp["cost_usd"],
            requests=int(sp["requests"]),
            status_counts=s["counts"],
            audit_cost_usd=s["audit_cost_usd"],
            windows=windows,
            seed=seed,
        )
    return {"since": since, "profiles": out}
