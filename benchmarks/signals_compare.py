"""Signals of issue #16, held-out, each against its baseline with a paired bootstrap interval.

Each study evaluates a baseline policy and the same policy with one signal switched on (5 folds,
pooled held-out points) and prints the paired difference of the headline metrics on common
bootstrap resamples of the prompts (:mod:`thrifty.offline.peers`). Tables: the AlpacaEval-56 routing
table, and the same table with binarised labels (preference > 0.5 → 1: a "correct?" table).

    PYTHONPATH=src python benchmarks/signals_compare.py --study good_length [--binary] [--json results/signals_good_length.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

STUDIES = {
    "good_length": [("cascade", "cascade", {}), ("cascade + good_length", "cascade", {"good_length": True})],
    "router_knn50": [("router (mf)", "router", {}), ("kNN-50", "router:knn", {"k": 50})],
    "embedder": [("router (MiniLM, torch)", "router", {}), ("router (static MiniLM table)", "router", {"embedder": "static"})],
}


def main() -> None:
    from thrifty.data.table_io import benchmark_dir, load_table
    from thrifty.offline.evaluate import evaluate
    from thrifty.offline.peers import headline_samples, paired_difference

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--study", choices=sorted(STUDIES), default="good_length")
    ap.add_argument("--data", default=None)
    ap.add_argument("--binary", action="store_true", help="binarise the labels (quality > 0.5 → 1)")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    table = load_table(args.data or benchmark_dir())
    if args.binary:
        q = table.quality
        table = replace(table, quality=np.where(np.isnan(q), np.nan, (q > 0.5).astype(float)), source=table.source + " (binarised > 0.5)")
    reports = []
    for label, name, opts in STUDIES[args.study]:
        t0 = time.perf_counter()
        rep = evaluate(table, name, options=dict(opts), n_boot=args.bootstrap, progress=True)
        m = rep.metrics
        print(
            f"{label:>24}: q@best {m['quality_at_best_single_cost']:.4f}  savings {100 * (m['savings_at_parity'] or 0):.1f}%  "
            f"gap closed {100 * (m['oracle_gap_closed'] or 0):.1f}%  oof corr {m.get('oof_pred_corr') or float('nan'):.3f}  "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        reports.append((label, rep))
    base = headline_samples(reports[0][1], args.bootstrap)
    rows = []
    for label, rep in reports[1:]:
        diff = paired_difference(headline_samples(rep, args.bootstrap), base)
        for k, v in diff.items():
            ci = "—" if v["ci95"] is None else f"[{v['ci95'][0]:+.4f}, {v['ci95'][1]:+.4f}]"
            print(f"{label} − {reports[0][0]}: {k} {v['diff'] if v['diff'] is None else round(v['diff'], 4)} {ci} {v['verdict']}")
        rows.append({"variant": label, "vs": reports[0][0], "paired": diff})
    doc = {
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "study": args.study,
        "table": table.source,
        "binary": args.binary,
        "policies": [
            {
                "label": lb,
                **{k: r.metrics[k] for k in ("quality_at_best_single_cost", "savings_at_parity", "oracle_gap_closed", "oof_pred_corr")},
            }
            for lb, r in reports
        ],
        "differences": rows,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
