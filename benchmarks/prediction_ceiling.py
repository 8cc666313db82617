"""Prediction ceiling: held-out routing metrics of a router whose predictions correlate with the truth at ρ.

For each ρ the router's predictions are the true quality plus noise tuned to that correlation
(:mod:`thrifty.offline.prediction_ceiling`; calibrated, independent across models), fitted and
calibrated on the training folds and replayed on the test folds by the harness of ``thrifty eval``
(5 fixed folds, averaged over ``--seeds`` noise draws). Pools ``all`` and ``no-fusechat`` give
quality at the best single model's cost, savings at parity and oracle-gap closed; the RouteLLM pairs
(gpt4_1106_preview vs claude-instant-1.2 / gpt-3.5-turbo-1106, ``--exclude FuseChat``, share
calibration) give APGR, CPT(50%), CPT(80%). Beside them: the exact oracles and the *measured*
held-out correlation of our real routers (``--real``), to read off how far prediction must improve.

    PYTHONPATH=src python benchmarks/prediction_ceiling.py [--json docs/prediction_ceiling.json] [--png docs/prediction_ceiling.png]
        [--rhos 0.2,0.3,0.5,0.7,0.9,1.0] [--seeds 3] [--real mf,gbm] [--embedder static]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

STRONG = "gpt4_1106_preview"
WEAKS = ("claude-instant-1.2", "gpt-3.5-turbo-1106")
POOL_KEYS = ("quality_at_best_single_cost", "savings_at_parity", "oracle_gap_closed")
PAIR_KEYS = ("apgr", "cpt50", "cpt80")
TARGETS = {"quality_at_best_single_cost": 0.78, "savings_at_parity": 0.5, "oracle_gap_closed": 0.5, "apgr": 0.70}


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if len(vals) == len(values) and vals else None


def _row(evaluate, table, rho: float, seeds: int, pair: str | None) -> dict:
    from thrifty.offline.prediction_ceiling import NoisyTruthRouter

    keys = PAIR_KEYS if pair else POOL_KEYS
    docs = []
    for s in range(seeds):
        pol = NoisyTruthRouter(rho, seed=s, calibrate="share" if pair else "budget")
        kw = {"strong": STRONG, "weak": pair} if pair else {}
        docs.append(evaluate(table, pol, n_boot=0, **kw).to_json())
    out = {k: _mean([d.get(k) for d in docs]) for k in keys}
    out["budget_violations"] = float(np.mean([len(d["budget_violations"]) for d in docs]))
    return out


def _needed(rhos: list[float], values: list[float | None], target: float) -> float | None:
    """Smallest ρ (linear interpolation on the grid) whose metric reaches ``target``; None if none does."""
    prev = None
    for r, v in zip(rhos, values):
        if v is not None and v >= target:
            if prev is None or prev[1] is None:
                return r
            (r0, v0) = prev
            return float(r0 + (r - r0) * (target - v0) / (v - v0)) if v > v0 else r
        prev = (r, v)
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--png", help="write a plot of each metric against ρ")
    ap.add_argument("--rhos", default="0.2,0.3,0.5,0.7,0.9,1.0")
    ap.add_argument("--seeds", type=int, default=3, help="noise draws averaged per ρ")
    ap.add_argument("--real", default="mf", help="comma-separated real router heads whose held-out correlation to measure ('' = none)")
    ap.add_argument("--embedder", default="static", help="the real routers' query embedder (static | minilm)")
    args = ap.parse_args(argv)

    from thrifty.data.table_io import benchmark_dir, load_table
    from thrifty.offline.evaluate import evaluate
    from thrifty.offline.prediction_ceiling import heldout_correlation, share_oracle_metrics
    from thrifty.offline.router_policy import RouterOffline

    t_start = time.perf_counter()
    rhos = [float(r) for r in args.rhos.split(",")]
    full = load_table(benchmark_dir())
    nofuse = full.select_models(exclude="FuseChat")
    settings = [("all", full, None), ("no-fusechat", nofuse, None)] + [(f"pair {w}", nofuse, w) for w in WEAKS]
    doc: dict = {"data": str(benchmark_dir()), "rhos": rhos, "seeds": args.seeds, "targets": TARGETS, "settings": {}}
    for name, table, weak in settings:
        t0 = time.perf_counter()
        rows = {str(r): _row(evaluate, table, r, args.seeds, weak) for r in rhos}
        kw = {"strong": STRONG, "weak": weak} if weak else {}
        oracle = evaluate(table, "oracle", n_boot=0, **kw).to_json()
        entry: dict = {"ceiling": rows, "oracle": {k: oracle.get(k) for k in (PAIR_KEYS if weak else POOL_KEYS)}}
        pair_table = table.select_models([weak, STRONG]) if weak else table
        if weak:
            q = pair_table.quality
            entry["share_oracle"] = share_oracle_metrics(q[:, pair_table.model_index(weak)], q[:, pair_table.model_index(STRONG)])
        entry["real_correlation"] = {
            v: heldout_correlation(pair_table, RouterOffline(variant=v, embedder=args.embedder)) for v in filter(None, args.real.split(","))
        }
        entry["rho_needed"] = {
            k: _needed(rhos, [rows[str(r)][k] for r in rhos], t) for k, t in TARGETS.items() if k in (PAIR_KEYS if weak else POOL_KEYS)
        }
        doc["settings"][name] = entry
        print(f"{name:30s} done in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    doc["seconds"] = time.perf_counter() - t_start

    _print(doc)
    if args.png:
        _plot(doc, Path(args.png))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(doc, indent=2))
    return 0


def _print(doc: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    t = Table(title="Prediction ceiling: held-out metrics of a router with prediction–truth correlation ρ")
    for c in ("setting", "ρ", "q@best-single", "savings@parity", "gap closed", "APGR", "CPT50", "CPT80"):
        t.add_column(c, justify="right")
    for name, e in doc["settings"].items():
        for r, row in e["ceiling"].items():
            t.add_row(name, r, *(fmt(row.get(k)) for k in (*POOL_KEYS, *PAIR_KEYS)))
        o = e["oracle"]
        t.add_row(name, "oracle", *(fmt(o.get(k)) for k in (*POOL_KEYS, *PAIR_KEYS)))
        if "share_oracle" in e:
            t.add_row(name, "share oracle", "", "", "", *(fmt(e["share_oracle"][k]) for k in PAIR_KEYS))
        t.rows[-1].end_section = True
    con = Console(file=sys.stderr, width=170)
    con.print(t)
    for name, e in doc["settings"].items():
        real = ", ".join(f"{v} {c:.3f}" for v, c in e["real_correlation"].items()) or "not measured"
        need = ", ".join(f"{k} {'unreachable' if v is None else f'ρ≈{v:.2f}'}" for k, v in e["rho_needed"].items())
        con.print(f"{name}: our routers' held-out ρ: {real}; ρ needed for the targets: {need}")


def _plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("quality_at_best_single_cost", ("all", "no-fusechat")),
        ("oracle_gap_closed", ("all", "no-fusechat")),
        ("apgr", tuple(n for n in doc["settings"] if n.startswith("pair"))),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, (key, names) in zip(axes, panels):
        for name in names:
            e = doc["settings"][name]
            ys = [e["ceiling"][str(r)][key] for r in doc["rhos"]]
            line = ax.plot(doc["rhos"], [np.nan if y is None else y for y in ys], marker="o", label=name)[0]
            for c in e["real_correlation"].values():
                ax.axvline(c, color=line.get_color(), ls=":", lw=1)
        ax.axhline(TARGETS[key], color="red", ls="--", lw=1, label="issue target")
        ax.set_xlabel("ρ (prediction–truth correlation; dotted: our routers)")
        ax.set_title(key)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
