"""The numbers and the plot of a ``thrifty simulate`` run.

- ``final_window``: mean quality, cost and good-enough share over the last 20% of each stream,
  averaged over seeds;
- the **offline held-out curve**: the offline lab's cascade (:class:`~thrifty.offline.cascade_policy.CascadeOffline`,
  default options) fitted on the training folds of the *whole* table over the same tiers, replayed
  on the held-out fold, pooled over folds, one point per budget knob, plus every single tier; the
  curve is their least concave majorant (:func:`thrifty.offline.curves.majorant`);
  ``offline_heldout_at_same_cost`` is its quality at the final window's cost and ``gap_to_offline``
  that minus the final window's quality (per seed, then averaged);
- ``offline_at_target``: the cheapest held-out point whose good-enough share reaches the target,
  and ``savings_share_of_offline`` = the final window's saving against always calling the reference
  divided by that point's saving;
- ``target_met_share_of_windows``: the stream cut into ``windows`` equal windows; the share whose
  good-enough share reaches the target;
- ``audit_cost_share``: what audits paid / what serving paid.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from thrifty.calibration.refit import good_matrix
from thrifty.calibration.simulate import SeedRun, SimConfig
from thrifty.table import RoutingTable

__all__ = ["offline_heldout", "summarise", "plot_png"]


def offline_heldout(table: RoutingTable, cfg: SimConfig, *, n_folds: int = 5, seed: int = 0,
                    options: dict[str, Any] | None = None) -> list[dict[str, float]]:
    """Held-out (cost, quality, good share) points of the lab's cascade over ``cfg.tiers`` plus each tier alone."""
    from thrifty.offline.cascade_policy import CascadeOffline
    from thrifty.offline.evaluate import default_knobs

    table = table.select_models(cfg.tiers)
    good = np.nan_to_num(good_matrix(table, cfg.reference))
    P = table.n_prompts
    knobs = [float(k) for k in default_knobs(table, n=24)]
    cost = {k: np.zeros(P) for k in knobs}
    qual = {k: np.zeros(P) for k in knobs}
    gd = {k: np.zeros(P) for k in knobs}
    for _, train, test, rows in table.splits(n_folds, seed):
        lab = CascadeOffline(**{"max_candidates": None, **(options or {})})
        for pt in lab.fit(train, knobs).replay(test):
            cost[pt.knob][rows], qual[pt.knob][rows] = pt.cost, pt.quality
            ch = np.asarray(pt.chosen)
            gd[pt.knob][rows] = np.where(ch >= 0, good[rows, np.maximum(ch, 0)], 0.0)
    out = [{"label": "cascade", "knob": k, "cost": float(cost[k].mean()), "quality": float(qual[k].mean()),
            "good_share": float(gd[k].mean())} for k in knobs]
    for j, m in enumerate(table.models):
        ok = ~np.isnan(table.quality[:, j])
        out.append({"label": f"single:{m}", "knob": None, "cost": float(np.nanmean(table.cost[:, j])),
                    "quality": float(np.nan_to_num(table.quality[:, j]).mean()), "good_share": float(good[ok, j].mean()) if ok.any() else 0.0})
    return out


def _window(run: SeedRun, lo: float, hi: float) -> slice:
    n = len(run.cost)
    return slice(int(round(lo * n)), int(round(hi * n)))


def summarise(table: RoutingTable, cfg: SimConfig, runs: Sequence[SeedRun], offline: list[dict[str, float]],
              *, final_share: float = 0.2, windows: int = 10) -> dict[str, Any]:
    """The summary fields (see the module docstring); per-seed values under ``per_seed``."""
    from thrifty.offline.curves import majorant

    target = cfg.loop.target
    curve = majorant([(p["cost"], p["quality"]) for p in offline])
    sub = table.select_models(cfg.tiers)
    stats = {s.model: s for s in sub.model_stats()}
    ref = stats[cfg.reference]
    best = max(stats.values(), key=lambda s: (s.quality, -s.cost))
    at_target = None
    if target is not None:
        ok = sorted((p for p in offline if p["good_share"] >= target), key=lambda p: p["cost"])
        at_target = ok[0] if ok else None
    per_seed = []
    for run in runs:
        w = _window(run, 1 - final_share, 1.0)
        fq, fc, fg = float(run.quality[w].mean()), float(run.cost[w].mean()), float(run.good[w].mean())
        off_q = float(curve.quality_at(fc))
        met = [float(run.good[_window(run, k / windows, (k + 1) / windows)].mean()) >= target for k in range(windows)] if target else []
        saving = 1.0 - fc / ref.cost if ref.cost > 0 else 0.0
        per_seed.append({
            "seed": run.seed, "audits": int(run.audited.sum()),
            "audit_cost_share": float(run.audit_cost.sum() / max(run.cost.sum(), 1e-300)),
            "final_window": {"quality": fq, "cost_usd": fc, "good_share": fg},
            "offline_heldout_at_same_cost": off_q, "gap_to_offline": off_q - fq,
            "target_met_share_of_windows": float(np.mean(met)) if met else None,
            "saving_vs_reference": saving,
            "savings_share_of_offline": (saving / (1.0 - at_target["cost"] / ref.cost)) if at_target and at_target["cost"] < ref.cost else None,
            "swaps": sum(e.kind == "swap" for e in run.events), "refusals": sum(e.kind == "refuse" for e in run.events),
            "refit_failures": sum(e.kind == "refit_failed" for e in run.events),
            "guardrail_moves": sum(e.kind == "guardrail" for e in run.events),
        })

    def mean(key: str, inner: str | None = None) -> float | None:
        vals = [(s[key][inner] if inner else s[key]) for s in per_seed]
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals else None

    return {
        "requests": int(len(runs[0].cost)) if runs else 0,
        "audits": mean("audits"),
        "audit_cost_share": mean("audit_cost_share"),
        "final_window": {"quality": mean("final_window", "quality"), "cost_usd": mean("final_window", "cost_usd"),
                         "good_share": mean("final_window", "good_share")},
        "offline_heldout_at_same_cost": mean("offline_heldout_at_same_cost"),
        "gap_to_offline": mean("gap_to_offline"),
        "gap_to_offline_max": max((s["gap_to_offline"] for s in per_seed), default=None),
        "target": target,
        "target_met_share_of_windows": mean("target_met_share_of_windows"),
        "saving_vs_reference": mean("saving_vs_reference"),
        "offline_at_target": at_target,
        "offline_saving_at_target": (1.0 - at_target["cost"] / ref.cost) if at_target else None,
        "savings_share_of_offline": mean("savings_share_of_offline"),
        "seeds": len(runs),
        "tiers": list(cfg.tiers), "reference": cfg.reference, "rate": cfg.rate, "every": cfg.loop.every,
        "baselines": {"always_reference": {"model": ref.model, "quality": ref.quality, "cost_usd": ref.cost},
                      "best_single": {"model": best.model, "quality": best.quality, "cost_usd": best.cost}},
        "per_seed": per_seed,
    }


def plot_png(path: str, runs: Sequence[SeedRun], summary: dict[str, Any], title: str = "thrifty simulate") -> str:
    """Cumulative mean cost and quality against requests served (each seed, thin; their mean, bold),
    beside always-the-reference, the best single tier and the offline held-out optimum."""
    from thrifty.offline.plots import pyplot

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
    lines = [("always " + b["always_reference"]["model"], b["always_reference"], "tab:red"),
             ("best single " + b["best_single"]["model"], b["best_single"], "tab:orange")]
    for label, s, color in lines:
        ax_q.axhline(s["quality"], color=color, ls="--", lw=1, label=label)
        ax_c.axhline(s["cost_usd"], color=color, ls="--", lw=1, label=label)
    fw = summary["final_window"]
    ax_q.axhline(summary["offline_heldout_at_same_cost"], color="tab:green", ls=":", lw=1.5,
                 label="offline held-out at the final window's cost")
    if summary.get("offline_at_target"):
        ax_c.axhline(summary["offline_at_target"]["cost"], color="tab:green", ls=":", lw=1.5, label="offline held-out at the target")
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
