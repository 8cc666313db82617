"""Issue #16 signals, held-out on more than one table: pooled IRT target, label shrinkage, tier agreement.

Every policy runs the harness's 5 fixed folds (hyperparameters chosen inside the training folds);
each variant is compared with the current default of its kind (``router`` = mf, or ``cascade``) AND
with kNN-50, by the paired difference of the headline metrics on common bootstrap resamples of the
prompts (:mod:`thrifty.offline.peers`). Evaluation always uses the raw held-out labels.

Tables (``--table``):

``alpaca``      AlpacaEval-56 (``THRIFTY_BENCHMARK_DIR`` or /work/shared/data/alpaca_eval_routing), MiniLM
``alpaca_binary`` the same with preference > 0.5 → 1 (a correctness table; same prompts, so not independent)
``synthetic``   ``benchmarks/lab_scale.py``'s generator, binary correctness, 3,000 prompts × 5 models
                (latent topic + difficulty, per-model skill and topic affinity; embeddings given)
``headlines``   HEADLINES local tiers (smollm2, gemma3-270m; ``runs/headlines/test``), static MiniLM
``headlines4``  the same prompts with the two distilled students (cost 0) — a 3-tier cascade, for
                the agreement signal (the student's answer label as the first tier's answer)

Studies (``--study``): ``router`` (router, kNN-50, router:irt, shrink=mean, shrink=prompt) and
``agreement`` (cascade, kNN-50, cascade + agreement).

    PYTHONPATH=src python benchmarks/signals_study.py --table alpaca --study router
    PYTHONPATH=src python benchmarks/signals_study.py --table synthetic --study agreement
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROUTER = "router"
EXTRA_REFS = {"cascade + agreement": "cascade start=cheapest (control)"}  # the signal against its constraint alone
STUDIES: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "router": [
        ("router (mf, default)", "router", {}),
        ("kNN-50", "router:knn", {"k": 50}),
        ("router:irt", "router:irt", {}),
        ("router shrink=mean", "router", {"shrink": "mean"}),
        ("router shrink=prompt", "router", {"shrink": "prompt"}),
        ("router:irt shrink=prompt", "router:irt", {"shrink": "prompt"}),
    ],
    "agreement": [
        ("cascade (default)", "cascade", {}),
        ("kNN-50", "router:knn", {"k": 50}),
        ("cascade + agreement", "cascade", {"agreement": True}),
        ("cascade start=cheapest (control)", "cascade", {"start": "cheapest"}),
    ],
}


def load(name: str):
    """(table, embedder option for routers, cascade options) of a ``--table`` name."""
    from thrifty.data.table_io import benchmark_dir, load_table

    if name == "alpaca":
        return load_table(benchmark_dir()), None, {}
    if name == "alpaca_binary":  # preference > 0.5 → 1: a correctness table, but the same prompts (not independent)
        t = load_table(benchmark_dir())
        q = t.quality
        return replace(t, quality=np.where(np.isnan(q), np.nan, (q > 0.5).astype(float)), source=t.source + " (binarised > 0.5)"), None, {}
    if name == "synthetic":
        sys.path.insert(0, str(Path(__file__).parent))
        from lab_scale import LookupEmbedder, synthetic_table

        table, emb = synthetic_table(3000, 5, graded=False, seed=0)
        return table, LookupEmbedder(table.prompts, emb), {"embed": "none"}
    if name in ("headlines", "headlines4"):
        folder = os.environ.get("THRIFTY_HEADLINES_RUN", "runs/headlines") + "/test"
        models = ["smollm2", "gemma3-270m"] + (["student-gold", "student-distil"] if name == "headlines4" else [])
        return load_table(folder, models=models), "static", {"embed": "none"}
    raise SystemExit(f"unknown table {name!r}")


def at_cost_samples(report, model: str, n_boot: int, seed: int = 0) -> tuple[float, np.ndarray]:
    """Quality of the report's pooled held-out curve at ``model``'s mean cost: the point estimate and
    one value per bootstrap resample of the prompts (the same resamples for every report: paired)."""
    from thrifty.offline import metrics as M
    from thrifty.offline.curves import majorant

    table = report.table
    j = table.model_index(model)
    C = np.stack([p.cost for p in report.points])
    Q = np.stack([p.quality for p in report.points])
    have = table.available[:, j]
    cj = np.where(have, np.nan_to_num(table.cost[:, j]), 0.0)

    def one(w: np.ndarray) -> float:
        ref = float(w @ cj / max(w @ have, 1e-12))
        v = M.quality_at_best_single_cost(majorant(np.column_stack([C @ w / w.sum(), Q @ w / w.sum()])), ref)
        return float("nan") if v is None else float(v)

    W = M.resample_weights(table.n_prompts, n_boot, seed + 104729)
    return one(np.ones(table.n_prompts)), np.array([one(w) for w in W])


def main() -> None:
    from thrifty.errors import ConfigError
    from thrifty.offline.evaluate import evaluate
    from thrifty.offline.peers import headline_samples, paired_difference

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", choices=("alpaca", "alpaca_binary", "synthetic", "headlines", "headlines4"), default="alpaca")
    ap.add_argument("--study", choices=sorted(STUDIES), default="router")
    ap.add_argument("--only", default=None, help="comma list of row labels to run (the first row always runs)")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--ref-model", default=None, help="also report quality at this model's cost (paired), e.g. gemma3-270m")
    ap.add_argument("--json", default=None, help="default: results/signals_<study>_<table>.json")
    args = ap.parse_args()
    table, embedder, cascade_opts = load(args.table)
    rows = STUDIES[args.study]
    if args.only:
        keep = {x.strip() for x in args.only.split(",")}
        rows = [r for i, r in enumerate(rows) if i < 2 or r[0] in keep]
    reports = []
    skipped: list[dict[str, str]] = []
    for label, name, opts in rows:
        o = dict(opts)
        if name.startswith(ROUTER) and embedder is not None:
            o["embedder"] = embedder
        elif name == "cascade":
            o = {**cascade_opts, **o}
        t0 = time.perf_counter()
        try:
            rep = evaluate(table, name, options=o, n_boot=args.bootstrap)
        except ConfigError as exc:  # a signal that does not apply to this table says why
            print(f"{label:>26}: not applicable — {exc}", flush=True)
            skipped.append({"label": label, "reason": str(exc)})
            continue
        m = rep.metrics
        sav = m["savings_at_parity"]
        print(
            f"{label:>26}: q@best {m['quality_at_best_single_cost']:.4f}  savings {'—' if sav is None else f'{100 * sav:.1f}%'}  "
            f"gap closed {100 * (m['oracle_gap_closed'] or 0):.1f}%  oof corr {m.get('oof_pred_corr') or float('nan'):.3f}  "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        reports.append((label, rep, time.perf_counter() - t0))
    samples = {lb: headline_samples(rep, args.bootstrap) for lb, rep, _ in reports}
    base, knn = reports[0][0], reports[1][0]
    diffs = []
    print("\n| variant − reference | quality @ best cost | savings at parity | gap closed |\n|---|---|---|---|")
    for lb, _, _ in reports[1:]:
        for ref in (base, knn, *([EXTRA_REFS[lb]] if EXTRA_REFS.get(lb) in samples else [])):
            if ref == lb:
                continue
            d = paired_difference(samples[lb], samples[ref])
            cells = []
            for k in ("quality_at_best_single_cost", "savings_at_parity", "oracle_gap_closed"):
                v = d.get(k) or {}
                ci = v.get("ci95")
                cells.append(
                    "—"
                    if v.get("diff") is None
                    else f"{v['diff']:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}] {v['verdict']}"
                    if ci
                    else f"{v['diff']:+.4f}"
                )
            print(f"| {lb} − {ref} | " + " | ".join(cells) + " |")
            diffs.append({"variant": lb, "vs": ref, "paired": d})
    at_ref: dict[str, Any] = {}
    if args.ref_model:
        est = {lb: at_cost_samples(rep, args.ref_model, args.bootstrap) for lb, rep, _ in reports}
        print(f"\nquality at {args.ref_model}'s cost:")
        for lb, (v, _) in est.items():
            print(f"  {lb}: {v:.4f}")
            at_ref[lb] = {"quality": v}
        for lb in list(est)[1:]:
            for ref in (base, knn):
                if ref != lb:
                    d = est[lb][1] - est[ref][1]
                    d = d[np.isfinite(d)]
                    lo, hi = (float(x) for x in np.percentile(d, [2.5, 97.5]))
                    verdict = "better" if lo > 0 else "worse" if hi < 0 else "not better" if d.mean() >= 0 else "not worse"
                    print(f"  {lb} − {ref}: {d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}] {verdict}")
                    at_ref[lb][f"vs {ref}"] = {"diff": float(d.mean()), "ci95": [lo, hi], "verdict": verdict}
    b = table.best_single()
    doc = {
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "command": "PYTHONPATH=src python benchmarks/signals_study.py " + " ".join(sys.argv[1:]),
        "study": args.study,
        "table": args.table,
        "source": table.source,
        "shape": [table.n_prompts, table.n_models],
        "best_single": {"model": b.model, "quality": b.quality, "cost": b.cost},
        "load_average": os.getloadavg(),
        "policies": [
            {
                "label": lb,
                "seconds": round(sec, 1),
                **{
                    k: rep.metrics.get(k)
                    for k in ("quality_at_best_single_cost", "savings_at_parity", "oracle_gap_closed", "oof_pred_corr")
                },
            }
            for lb, rep, sec in reports
        ],
        "differences": diffs,
        "not_applicable": skipped,
        "at_ref_model_cost": {"model": args.ref_model, **at_ref} if args.ref_model else None,
    }
    out = Path(args.json or f"results/signals_{args.study}_{args.table}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
