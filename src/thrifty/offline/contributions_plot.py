"""One PNG of a :class:`~thrifty.offline.contributions.ContributionReport`.

Log-scaled mean cost per query on x, mean quality on y: each stage's held-out curve (points and
majorant; dashed when the cache is in front), its best point labelled, every single model of the
table (grey), and the reference (the base pool's best single model, a star). A log axis cannot show a cost of 0, so free points (an
all-student or all-cache answer) are drawn at a floor one decade below the cheapest positive cost
and marked "(free)".
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from thrifty.offline.plots import pyplot

if TYPE_CHECKING:  # pragma: no cover
    from thrifty.offline.contributions import ContributionReport

__all__ = ["plot_contributions"]

_COLORS = ["#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]


def plot_contributions(report: "ContributionReport", path: str | Path, title: str | None = None) -> Path:
    """Write the PNG to ``path`` and return it."""
    plt = pyplot()
    singles = [s for s in report.table.model_stats() if s.n > 0]
    costs = [s.cost for s in singles] + [p.mean_cost for r in report.stages for p in r.report.points]
    positive = [c for c in costs if c > 0]
    floor = min(positive) / 10 if positive else 1e-9
    hi = max(positive) * 1.5 if positive else 1.0

    def x(c: float) -> float:
        return max(c, floor)

    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    for s in singles:
        ax.scatter([x(s.cost)], [s.quality], s=22, color="#999999", zorder=2)
        ax.annotate(
            s.model + (" (free)" if s.cost <= 0 else ""),
            (x(s.cost), s.quality),
            xytext=(4, -10),
            textcoords="offset points",
            fontsize=7,
            color="#555555",
        )
    ref = report.reference
    ax.scatter([x(ref.cost)], [ref.quality], marker="*", s=200, color="#ffbf00", edgecolor="k", zorder=5, label=f"reference: {ref.model}")
    for i, r in enumerate(report.stages):
        col = _COLORS[i % len(_COLORS)]
        pts = sorted((p.mean_cost, p.mean_quality) for p in r.report.points)
        ax.scatter([x(c) for c, _ in pts], [q for _, q in pts], s=8, color=col, alpha=0.5, zorder=3)
        cx = np.asarray(r.report.curve.x, dtype=float)
        grid = np.unique(np.concatenate([np.geomspace(x(cx[0]), hi, 200), [x(c) for c in cx]]))
        qy = np.asarray(r.report.curve.quality_at(grid), dtype=float)
        # the cache stage often coincides with the previous one: draw it dashed over a wider line
        ax.plot(
            grid,
            qy,
            color=col,
            lw=3.5 if i == 0 else 2,
            ls="--" if r.stage.cache else "-",
            zorder=4 + i / 10,
            label=f"{r.stage.name} (held-out)",
        )
        bc, bq = r.best
        ax.scatter([x(bc)], [bq], s=60, color=col, edgecolor="k", zorder=6)
        if i == 0 or (bc, bq) != report.stages[i - 1].best:
            ax.annotate(
                f"{bq:.3f}" + (" (free)" if bc <= 0 else ""), (x(bc), bq), xytext=(6, 4), textcoords="offset points", fontsize=8, color=col
            )
    ax.set_xscale("log")
    ax.set_xlim(floor / 1.5, hi)
    ax.set_xlabel("mean cost per query (USD, log scale)")
    ax.set_ylabel("mean quality (held-out)")
    t = report.table
    ax.set_title(
        title or f"{report.policy}: each strategy's contribution — {t.n_prompts} prompts, {report.n_folds}-fold held-out", fontsize=10
    )
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
