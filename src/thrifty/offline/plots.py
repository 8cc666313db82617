"""Cost–quality plots of one or more evaluated policies with every baseline.

``plot_png`` (matplotlib, Agg) and ``plot_html`` (plotly, interactive, self-contained) draw the same
picture: log-scaled mean cost per query on x, mean quality on y; each policy's held-out curve and
points; every single model (hull models labelled); the single-model hull; the exact oracle; the
uniform random router; the best single model. Curves are linear in cost between vertices, so they
are sampled densely to look right on the log axis. Baselines are taken from the first report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from thrifty.errors import ConfigError
from thrifty.offline.curves import Curve

if TYPE_CHECKING:  # pragma: no cover
    from thrifty.offline.evaluate import EvalReport

__all__ = ["plot_png", "plot_html"]

_COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only), or a ConfigError naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on extras
        raise ConfigError("plots need matplotlib", fix="pip install 'thrifty[lab]'") from exc
    return plt


def _x_range(reports: Sequence["EvalReport"]) -> tuple[float, float]:
    r = reports[0]
    xs = [s.cost for s in r.singles if s.n > 0 and s.cost > 0] + [float(r.oracle.curve.x[0])]
    for rep in reports:
        xs += [p.mean_cost for p in rep.points if p.mean_cost > 0]
    return min(xs) / 1.5, max(xs) * 1.5


def _dense(curve: Curve, hi: float, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    lo = max(curve.x_min, 1e-12)
    x = np.unique(np.concatenate([np.geomspace(lo, max(hi, lo * 1.0001), n), curve.x[curve.x >= lo]]))
    return x, np.asarray(curve.quality_at(x))


def _title(reports: Sequence["EvalReport"]) -> str:
    r = reports[0]
    names = ", ".join(rep.policy for rep in reports)
    return f"{names} — {r.table.n_prompts} prompts × {r.table.n_models} models (held-out, {r.n_folds} folds)"


def plot_png(reports: Sequence["EvalReport"], path: str | Path, title: str | None = None) -> Path:
    """Write a PNG of ``reports`` (one or more policies on the same pool) to ``path``."""
    plt = pyplot()
    r = reports[0]
    lo, hi = _x_range(reports)
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=120)
    on_hull = set(r.hull.models)
    sx = [s.cost for s in r.singles if s.n > 0]
    sy = [s.quality for s in r.singles if s.n > 0]
    ax.scatter(sx, sy, s=14, color="#999999", zorder=2, label="single models")
    for s in r.singles:
        if s.model in on_hull:
            ax.annotate(s.model, (s.cost, s.quality), xytext=(4, -10), textcoords="offset points", fontsize=7, color="#555555")
    ax.plot(*_dense(r.hull.curve, hi), color="#555555", lw=1.2, ls="--", label="single-model hull (random mixes)", zorder=3)
    ax.plot(*_dense(r.oracle.curve, hi), color="#000000", lw=1.0, ls=":", label="oracle", zorder=3)
    ax.scatter([r.random[0]], [r.random[1]], marker="x", s=50, color="#7f7f7f", label="random router", zorder=4)
    b = r.best_single
    ax.scatter([b.cost], [b.quality], marker="*", s=180, color="#ffbf00", edgecolor="k", label=f"best single: {b.model}", zorder=5)
    for i, rep in enumerate(reports):
        col = _COLORS[i % len(_COLORS)]
        ax.plot(*_dense(rep.curve, hi), color=col, lw=2.0, label=f"{rep.policy} (held-out curve)", zorder=6)
        ax.scatter([p.mean_cost for p in rep.points], [p.mean_quality for p in rep.points], s=10, color=col, alpha=0.6, zorder=6)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("mean cost per query (USD, log scale)")
    ax.set_ylabel("mean quality")
    ax.set_title(title or _title(reports), fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_html(reports: Sequence["EvalReport"], path: str | Path, title: str | None = None) -> Path:
    """Write an interactive, self-contained plotly HTML of ``reports`` to ``path`` (hover shows models and knobs)."""
    try:
        import plotly.graph_objects as go
    except ImportError as exc:  # pragma: no cover - depends on extras
        raise ConfigError("interactive plots need plotly", fix="pip install 'thrifty[lab]'") from exc
    r = reports[0]
    lo, hi = _x_range(reports)
    fig = go.Figure()
    live = [s for s in r.singles if s.n > 0]
    on_hull = set(r.hull.models)
    fig.add_trace(
        go.Scatter(
            x=[s.cost for s in live],
            y=[s.quality for s in live],
            mode="markers+text",
            name="single models",
            text=[s.model if s.model in on_hull else "" for s in live],
            textposition="bottom right",
            hovertext=[f"{s.model}<br>quality {s.quality:.4f}<br>cost ${s.cost:.6f}" for s in live],
            hoverinfo="text",
            marker=dict(color="#999999", size=7),
        )
    )
    hx, hy = _dense(r.hull.curve, hi)
    fig.add_trace(go.Scatter(x=hx, y=hy, mode="lines", name="single-model hull", line=dict(color="#555555", dash="dash")))
    ox, oy = _dense(r.oracle.curve, hi)
    fig.add_trace(go.Scatter(x=ox, y=oy, mode="lines", name="oracle", line=dict(color="#000000", dash="dot")))
    fig.add_trace(
        go.Scatter(
            x=[r.random[0]], y=[r.random[1]], mode="markers", name="random router", marker=dict(symbol="x", size=10, color="#7f7f7f")
        )
    )
    b = r.best_single
    fig.add_trace(
        go.Scatter(
            x=[b.cost],
            y=[b.quality],
            mode="markers",
            name=f"best single: {b.model}",
            marker=dict(symbol="star", size=16, color="#ffbf00", line=dict(color="black", width=1)),
        )
    )
    for i, rep in enumerate(reports):
        col = _COLORS[i % len(_COLORS)]
        cx, cy = _dense(rep.curve, hi)
        fig.add_trace(go.Scatter(x=cx, y=cy, mode="lines", name=f"{rep.policy} curve", line=dict(color=col, width=3)))
        fig.add_trace(
            go.Scatter(
                x=[p.mean_cost for p in rep.points],
                y=[p.mean_quality for p in rep.points],
                mode="markers",
                name=f"{rep.policy} points",
                hovertext=[
                    f"{rep.policy} {p.label}<br>knob {p.knob:.4g}<br>quality {p.mean_quality:.4f}<br>cost ${p.mean_cost:.6f}"
                    for p in rep.points
                ],
                hoverinfo="text",
                marker=dict(color=col, size=5, opacity=0.7),
            )
        )
    fig.update_layout(
        title=title or _title(reports),
        xaxis=dict(type="log", title="mean cost per query (USD, log scale)", range=[np.log10(lo), np.log10(hi)]),
        yaxis=dict(title="mean quality"),
        template="plotly_white",
        width=1100,
        height=700,
    )
    path = Path(path)
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)
    return path
