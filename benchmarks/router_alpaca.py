"""Held-out numbers of the routers and the hybrid on AlpacaEval (5 fixed folds of splits.json).

Rows: ``router:knn``, ``router:mf``, ``router:linear``, ``router:gbm``, ``router:ensemble`` (MiniLM), ``router:mf``
and ``router:ensemble`` on the static distilled embeddings, ``router:mf`` with target calibration, ``hybrid``
(and optionally ``cascade``) on the pools ``all`` (56 models) and
``no-fusechat`` (``--exclude FuseChat``, 51 models); then the RouteLLM pairs with ``--exclude
FuseChat``: gpt4_1106_preview vs claude-instant-1.2 and vs gpt-3.5-turbo-1106, the router with
share-of-strong calibration, beside the random router, the harness's oracle (best per *cost*) and the
share-optimal oracle (best per share of strong calls: the exact ceiling of APGR on this data). Every number comes from :func:`thrifty.offline.evaluate.evaluate` — the harness of ``thrifty eval``.

    PYTHONPATH=src python benchmarks/router_alpaca.py [--json out.json] [--plots DIR] [--quick] [--with-cascade]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

STRONG = "gpt4_1106_preview"
WEAKS = ("claude-instant-1.2", "gpt-3.5-turbo-1106")
KEYS = ("quality_at_best_single_cost", "savings_at_parity", "oracle_gap_closed", "apgr", "cpt50", "cpt80")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--plots", metavar="DIR", help="write one cost-quality PNG per pool with every policy")
    ap.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples for 95%% intervals (default 0: off)")
    ap.add_argument("--quick", action="store_true", help="routers only (no hybrid)")
    ap.add_argument("--with-cascade", action="store_true", help="add the cascade policy for a side-by-side")
    ap.add_argument(
        "--hybrid-opts",
        default="embed=query",
        help="comma-separated key=value options of the hybrid (default: embed=query — cached query embeddings, cheap answer features)",
    )
    ap.add_argument("--no-pairs", action="store_true", help="skip the two-model (RouteLLM) pairs")
    ap.add_argument("--no-pools", action="store_true", help="only the two-model pairs")
    ap.add_argument("--only", help="comma-separated row labels to run (e.g. hybrid)")
    args = ap.parse_args(argv)

    from thrifty.data.table_io import benchmark_dir, load_table
    from thrifty.offline.evaluate import evaluate
    from thrifty.offline.prediction_ceiling import share_oracle_metrics
    from thrifty.offline.registry import get_policy

    full = load_table(benchmark_dir())
    pools = {"all": full, "no-fusechat": full.select_models(exclude="FuseChat")}
    hopts: dict = {
        k: json.loads(v) if v in ("true", "false") or v.isdigit() else v
        for k, v in (kv.split("=", 1) for kv in args.hybrid_opts.split(",") if kv)
    }
    runs = [
        ("router:knn", "router:knn", {}),
        ("router:mf", "router:mf", {}),
        ("router:linear", "router:linear", {}),
        ("router:gbm", "router:gbm", {}),
        ("router:ensemble", "router:ensemble", {}),
        ("router:mf static-emb", "router:mf", {"embedder": "static"}),
        ("router:ensemble static-emb", "router:ensemble", {"embedder": "static"}),
        ("router:mf target", "router:mf", {"calibrate": "target"}),
    ]
    if not args.quick:
        runs.append(("hybrid", "hybrid", hopts))
    if args.with_cascade:  # same scorer settings as the hybrid row, for a like-for-like comparison
        runs.append(("cascade", "cascade", {k: v for k, v in hopts.items() if k not in ("router", "n_lams", "grid", "smooth", "margin")}))
    if args.only:
        runs = [r for r in runs if r[0] in args.only.split(",")]
    rows: list[dict] = []
    reports: dict[str, list] = {p: [] for p in pools}
    for pool, table in () if args.no_pools else pools.items():
        for label, name, opts in runs:
            t0 = time.perf_counter()
            rep = evaluate(table, get_policy(name, opts), n_boot=args.bootstrap)
            doc = rep.to_json()
            rows.append(
                {
                    "pool": pool,
                    "policy": label,
                    "options": opts,
                    **{k: doc.get(k) for k in KEYS},
                    "best_single": doc["best_single"],
                    "budget_violations": len(doc["budget_violations"]),
                    "n_points": len(doc["points"]),
                    "ci95": doc.get("ci95"),
                    "seconds": time.perf_counter() - t0,
                }
            )
            reports[pool].append(rep)
            print(f"{pool:12s} {label:22s} done in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    pair_table = pools["no-fusechat"]
    pair_runs = [
        ("router:mf share", "router:mf", {"calibrate": "share"}),
        ("router:mf budget", "router:mf", {}),
        ("router:knn share", "router:knn", {"calibrate": "share"}),
        ("router:gbm share", "router:gbm", {"calibrate": "share"}),
        ("router:ensemble share", "router:ensemble", {"calibrate": "share"}),
        ("router:mf target", "router:mf", {"calibrate": "target"}),
        ("hybrid (answer emb.)", "hybrid", {}),  # embed=full: embeds the pair's answers once (cached)
        ("random", "random", {}),
        ("oracle", "oracle", {}),
    ]
    if args.only:
        pair_runs = [r for r in pair_runs if r[0] in args.only.split(",")]
    for weak in () if args.no_pairs else WEAKS:
        for label, name, opts in pair_runs:
            t0 = time.perf_counter()
            doc = evaluate(pair_table, get_policy(name, opts), strong=STRONG, weak=weak, n_boot=args.bootstrap).to_json()
            rows.append(
                {
                    "pool": f"pair {weak}",
                    "policy": label,
                    "options": opts,
                    **{k: doc.get(k) for k in KEYS},
                    "budget_violations": len(doc["budget_violations"]),
                    "ci95": doc.get("ci95"),
                    "seconds": time.perf_counter() - t0,
                }
            )
            print(f"pair {weak:20s} {label:18s} done in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        if not args.only or "share oracle" in args.only.split(","):
            pair = pair_table.select_models([weak, STRONG])
            q = pair.quality
            best = share_oracle_metrics(q[:, pair.model_index(weak)], q[:, pair.model_index(STRONG)])
            rows.append(
                {
                    "pool": f"pair {weak}",
                    "policy": "share oracle",
                    "options": {},
                    **{k: best.get(k) for k in KEYS},
                    "budget_violations": 0,
                    "ci95": None,
                    "seconds": 0.0,
                }
            )

    if args.plots:
        from thrifty.offline.plots import plot_png

        out = Path(args.plots)
        out.mkdir(parents=True, exist_ok=True)
        for pool, reps in reports.items():
            if reps:
                plot_png(reps, out / f"routers_{pool}.png", title=f"Routers and hybrid, held-out, pool {pool}")

    from rich.console import Console
    from rich.table import Table

    t = Table(title="Routers on AlpacaEval, held-out (5 folds)")
    for c in ("pool", "policy", "q@best-single-cost", "savings@parity", "oracle-gap closed", "APGR", "CPT50", "CPT80", "viol", "s"):
        t.add_column(c, justify="right")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for r in rows:
        t.add_row(r["pool"], r["policy"], *(fmt(r[k]) for k in KEYS), str(r["budget_violations"]), f"{r['seconds']:.0f}")
    Console(file=sys.stderr, width=160).print(t)
    doc = {"data": str(benchmark_dir()), "rows": rows}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(doc, indent=2))
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
