"""The numbers and the plot of a ``thrifty simulate`` run.

- ``final_window``: mean quality, cost and good-enough share over the last 20% of each stream,
  averaged over seeds;
- the **offline held-out curve**: the offline lab's cascade (:class:`~thrifty.offline.cascade_policy.CascadeOffline`,
  default options) fitted on the training folds of the *whole* table over the same tiers, replayed
  on the held-out fold (every prompt is held out once), one point per budget knob, plus every
  single tier; the curve is their least concave majorant (:func:`thrifty.offline.curves.majorant`).
  ``offline_heldout_at_same_cost`` is that curve at the final window's mean cost and
  ``gap_to_offline`` it minus the final window's quality (per seed, then averaged).
  ``gap_to_offline_paired`` computes the curve on the very prompts of the final window instead (the
  window's luck in drawing easy or hard prompts cancels, but a majorant of many noisy points on a
  few hundred prompts is biased upwards, so it overstates the gap);
- ``offline_refit``: the loop's own refit (the same :func:`~thrifty.calibration.refit.fit_candidate`
  for the same goal) fitted on the training folds of the whole table — an audit of every request —
  replayed held-out: the ceiling of what the stream can learn. ``savings_share_of_offline`` = the
  final window's saving against always calling the reference divided by that policy's saving on
  the same prompts. A saving bought by missing the target is no saving: per seed,
  ``target_met_final`` says whether the final window's good-enough share reached the target (and
  ``target_missed_significantly`` whether its Wilson 95% interval lies wholly below it), and
  ``savings_share_of_offline_if_met`` counts a seed that missed as 0 (the headline); the summary
  gives the mean, the spread and the number of seeds that met the target;
- ``target_met_share_of_windows``: the stream cut into ``windows`` equal windows; the share whose
  good-enough share reaches the target;
- ``audit_cost_share``: what audits paid / what serving paid.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from thrifty.calibration.guardrail import wilson
from thrifty.calibration.refit import fit_candidate, good_matrix, replay
from thrifty.calibration.simulate import SeedRun, SimConfig
from thrifty.data.table import RoutingTable
from thrifty.offline.cascade_policy import CascadeOffline
from thrifty.offline.curves import majorant
from thrifty.offline.evaluate import default_knobs
from thrifty.offline.plots import pyplot

__all__ = ["offline_heldout", "summarise", "plot_png"]


def offline_heldout(
    table: RoutingTable, cfg: SimConfig, *, n_folds: int = 5, seed: int = 0, options: dict[str, Any] | None = None, n_knobs: int = 40
) -> dict[str, Any]:
    """Held-out per-prompt (cost, quality, good) of the lab's cascade over ``cfg.tiers`` — one row
    per budget knob, then one per single tier — and of the loop's own refit fitted on the training
    folds (``refit``: the ceiling of what audits of every request could teach it)."""

    table = table.select_models(cfg.tiers)
    good_raw = good_matrix(table, cfg.reference)
    good = np.nan_to_num(good_raw)
    P, M = table.n_prompts, table.n_models
    knobs = [float(k) for k in default_knobs(table, n=n_knobs)]
    K = len(knobs)
    cost, qual, gd = np.zeros((K + M, P)), np.zeros((K + M, P)), np.zeros((K + M, P))
    ref = {key: np.zeros(P) for key in ("cost", "quality", "good")}
    settings = cfg.loop.refit_settings()
    for _, train, test, rows in table.splits(n_folds, seed):
        lab = CascadeOffline(**{"max_candidates": None, **(options or {})})
        for k, pt in enumerate(lab.fit(train, knobs).replay(test)):
            cost[k, rows], qual[k, rows] = pt.cost, pt.quality
            ch = np.asarray(pt.chosen)
            gd[k, rows] = np.where(ch >= 0, good[rows, np.maximum(ch, 0)], 0.0)
        train_rows = np.setdiff1d(np.arange(P), rows)
        r = replay(fit_candidate(train, good_raw[train_rows], settings, seed), test, good_raw[rows])
        for key in ref:
            ref[key][rows] = r[key]
    for j in range(M):
        cost[K + j], qual[K + j], gd[K + j] = np.nan_to_num(table.cost[:, j]), np.nan_to_num(table.quality[:, j]), good[:, j]
    labels = [f"cascade@{k:.3g}" for k in knobs] + [f"single:{m}" for m in table.models]
    return {
        "labels": labels,
        "cost": cost,
        "quality": qual,
        "good": gd,
        "refit": ref,
        "reference_cost": np.nan_to_num(table.cost[:, table.model_index(cfg.reference)]),
    }


def _curve(off: dict[str, Any], rows: np.ndarray | slice):

    return majorant(np.stack([off["cost"][:, rows].mean(1), off["quality"][:, rows].mean(1)], 1))


def _range(vals: Sequence[float | None]) -> list[float] | None:
    v = [x for x in vals if x is not None]
    return [float(min(v)), float(max(v))] if v else None


def _window(run: SeedRun, lo: float, hi: float) -> slice:
    n = len(run.cost)
    return slice(int(round(lo * n)), int(round(hi * n)))


def summarise(
    table: RoutingTable, cfg: SimConfig, runs: Sequence[SeedRun], off: dict[str, Any], *, final_share: float = 0.2, windows: int = 10
) -> dict[str, Any]:
    """The summary fields (see the module docstring); per-seed values under ``per_seed``."""
    target = cfg.loop.target
    pooled = _curve(off, slice(None))
    sub = table.select_models(cfg.tiers)
    stats = {s.model: s for s in sub.model_stats()}
    ref, best = stats[cfg.reference], max(stats.values(), key=lambda s: (s.quality, -s.cost))
    rf = off["refit"]
    per_seed: list[dict[str, Any]] = []
    for run in runs:
        w = _window(run, 1 - final_share, 1.0)
        rows = run.rows[w]
        fq, fc, fg = float(run.quality[w].mean()), float(run.cost[w].mean()), float(run.good[w].mean())
        same = float(_curve(off, rows).quality_at(fc))  # the offline curve on the very prompts of the final window
        met = [float(run.good[_window(run, k / windows, (k + 1) / windows)].mean()) >= target for k in range(windows)] if target else []
        ref_cost = float(off["reference_cost"][rows].mean())
        saving = 1.0 - fc / ref_cost if ref_cost > 0 else 0.0
        off_saving = 1.0 - float(rf["cost"][rows].mean()) / ref_cost if ref_cost > 0 else 0.0
        ratio = saving / off_saving if off_saving > 0.01 else None  # a ratio of two near-zero savings means nothing
        n_w = len(run.good[w])
        met_final = None if target is None else bool(fg >= target - 1e-12)
        missed = None if target is None else bool(wilson(int(round(fg * n_w)), n_w)[1] < target)
        per_seed.append(
            {
                "seed": run.seed,
                "audits": int(run.audited.sum()),
                "audit_cost_share": float(run.audit_cost.sum() / max(run.cost.sum(), 1e-300)),
                "final_window": {"quality": fq, "cost_usd": fc, "good_share": fg},
                "offline_heldout_at_same_cost": float(pooled.quality_at(fc)),
                "gap_to_offline": float(pooled.quality_at(fc)) - fq,
                "offline_heldout_at_same_cost_paired": same,
                "gap_to_offline_paired": same - fq,
                "target_met_share_of_windows": float(np.mean(met)) if met else None,
                "saving_vs_reference": saving,
                "offline_refit_on_window": {
                    "cost_usd": float(rf["cost"][rows].mean()),
                    "quality": float(rf["quality"][rows].mean()),
                    "good_share": float(rf["good"][rows].mean()),
                    "saving_vs_reference": off_saving,
                },
                "savings_share_of_offline": ratio,
                "target_met_final": met_final,
                "target_missed_significantly": missed,
                "savings_share_of_offline_if_met": None if ratio is None or met_final is None else (ratio if met_final else 0.0),
                "swaps": sum(e.kind == "swap" for e in run.events),
                "refusals": sum(e.kind == "refuse" for e in run.events),
                "refit_failures": sum(e.kind == "refit_failed" for e in run.events),
                "guardrail_moves": sum(e.kind == "guardrail" for e in run.events),
            }
        )

    def mean(key: str, inner: str | None = None) -> float | None:
        vals = [(s[key][inner] if inner else s[key]) for s in per_seed]
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals else None

    return {
        "requests": int(len(runs[0].cost)) if runs else 0,
        "audits": mean("audits"),
        "audit_cost_share": mean("audit_cost_share"),
        "final_window": {
            "quality": mean("final_window", "quality"),
            "cost_usd": mean("final_window", "cost_usd"),
            "good_share": mean("final_window", "good_share"),
        },
        "offline_heldout_at_same_cost": mean("offline_heldout_at_same_cost"),
        "gap_to_offline": mean("gap_to_offline"),
        "gap_to_offline_paired": mean("gap_to_offline_paired"),
        "gap_to_offline_max": max((s["gap_to_offline"] for s in per_seed), default=None),
        "target": target,
        "target_met_share_of_windows": mean("target_met_share_of_windows"),
        "saving_vs_reference": mean("saving_vs_reference"),
        "offline_refit": {
            "cost_usd": float(rf["cost"].mean()),
            "quality": float(rf["quality"].mean()),
            "good_share": float(rf["good"].mean()),
            "saving_vs_reference": 1.0 - float(rf["cost"].mean()) / ref.cost if ref.cost > 0 else 0.0,
        },
        "savings_share_of_offline": mean("savings_share_of_offline"),
        "savings_share_of_offline_if_met": mean("savings_share_of_offline_if_met"),
        "savings_share_of_offline_range": _range([s["savings_share_of_offline"] for s in per_seed]),
        "seeds_target_met_final": None if target is None else sum(bool(s["target_met_final"]) for s in per_seed),
        "seeds_target_missed_significantly": None if target is None else sum(bool(s["target_missed_significantly"]) for s in per_seed),
        "seeds": len(runs),
        "tiers": list(cfg.tiers),
        "reference": cfg.reference,
        "rate": cfg.rate,
        "every": cfg.loop.every,
        "share_z": cfg.loop.share_z,
        "sampling": cfg.sampling,
        "budget": cfg.loop.budget,
        "baselines": {
            "always_reference": {"model": ref.model, "quality": ref.quality, "cost_usd": ref.cost},
            "best_single": {"model": best.model, "quality": best.quality, "cost_usd": best.cost},
        },
        "offline_curve": [{"cost_usd": float(x), "quality": float(y)} for x, y in zip(pooled.x, pooled.y)],
        "per_seed": per_seed,
    }


def plot_png(path: str, runs: Sequence[SeedRun], summary: dict[str, Any], title: str = "thrifty simulate") -> str:
    """Cumulative mean cost and quality against requests served (each seed, thin; their mean, bold),
    beside always-the-reference, the best single tier and the offline held-out optimum."""

    plt = pyplot()
    fig, (ax_q, ax_c) = plt.subplots(1, 2, figsize=(11, 4.2))
    n = np.arange(1, len(runs[0].cost) + 1)
    cq = np.array([np.cumsum(r.quality) / n for r in runs])
    cc = np.array([np.cumsum(r.cost) / n for r in runs])
    for k in range(len(runs)):
        ax_q.plot(n, cq[k], color="tab:blue", alpha=0.25, lw=0.8)
        ax_c.plot(n, cc[k], color="tab:blue", alpha=0.25, lw=0.8)
    ax_q.plot(n, cq.mean(0), color="tab:blue", lw=2, label="thrifty loop (cumulative)")
    ax_c.plot(n, cc.mean(0), color="tab:blue", lw=2, label="thrifty loop (cumulative)")
    b = summary["baselines"]
    lines = [
        ("always " + b["always_reference"]["model"], b["always_reference"], "tab:red"),
        ("best single " + b["best_single"]["model"], b["best_single"], "tab:orange"),
    ]
    for label, s, color in lines:
        ax_q.axhline(s["quality"], color=color, ls="--", lw=1, label=label)
        ax_c.axhline(s["cost_usd"], color=color, ls="--", lw=1, label=label)
    fw = summary["final_window"]
    ax_q.axhline(
        summary["offline_heldout_at_same_cost"],
        color="tab:green",
        ls=":",
        lw=1.5,
        label="offline held-out curve at the final window's cost",
    )
    ax_c.axhline(
        summary["offline_refit"]["cost_usd"], color="tab:green", ls=":", lw=1.5, label="offline held-out refit (all training rows)"
    )
    ax_q.set_xlabel("requests served")
    ax_c.set_xlabel("requests served")
    ax_q.set_ylabel("mean quality so far")
    ax_c.set_ylabel("mean cost so far (USD/request)")
    ax_q.set_title(f"final window: quality {fw['quality']:.3f}, gap {summary['gap_to_offline']:+.3f}")
    ax_c.set_title(f"final window: ${fw['cost_usd']:.3g}/request")
    ax_q.legend(fontsize=7)
    ax_c.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
