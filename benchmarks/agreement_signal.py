"""How much does agreement between two tiers' answers say about the later tier's quality?

For every ordered pair (earlier tier f, later tier m) of the cascade's candidates on AlpacaEval-56
(the 8 models ``candidate_models`` picks on the whole table), the Spearman correlation of the
agreement of m's answer with f's answer (token Jaccard; cosine of static-MiniLM answer embeddings)
with m's label, and the partial correlation once the log length of m's answer — the cheap feature
the scorer already has — is regressed out of both. A signal worth a feature shows up here first.

    PYTHONPATH=src python benchmarks/agreement_signal.py [--json results/signals_agreement_signal.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np


def _partial(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    Z = np.column_stack([np.ones(len(z)), z])
    rx = x - Z @ np.linalg.lstsq(Z, x, rcond=None)[0]
    ry = y - Z @ np.linalg.lstsq(Z, y, rcond=None)[0]
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def main() -> None:
    from scipy.stats import spearmanr

    from thrifty.data.table_io import benchmark_dir, load_table
    from thrifty.offline.optimise import candidate_models
    from thrifty.scoring.agreement import agreement_features
    from thrifty.scoring.static_embedding import StaticMiniLMEmbedder

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default="results/signals_agreement_signal.json")
    args = ap.parse_args()
    t = load_table(benchmark_dir())
    cand = [t.models[j] for j in candidate_models(t.quality, t.cost, 8)]
    cand.sort(key=lambda m: float(np.nanmean(t.cost[:, t.model_index(m)])))
    emb = StaticMiniLMEmbedder()
    A = {m: [t.answers[p, t.model_index(m)] or "" for p in range(t.n_prompts)] for m in cand}
    E = {m: np.asarray(emb.embed(A[m]), np.float64) for m in cand}
    rows = []
    for m in cand:
        q = t.quality[:, t.model_index(m)]
        ok = ~np.isnan(q)
        if np.nanstd(q) == 0:
            continue  # the reference model scores 0.5 everywhere
        length = np.log1p([len(a) for a in A[m]])[ok]
        for f in cand:
            if f == m:
                continue
            feats = agreement_features(A[m], A[f], E[m], E[f])[ok]
            row = {"later": m, "earlier": f}
            for k, name in ((0, "jaccard"), (2, "cosine")):
                row[name] = float(spearmanr(feats[:, k], q[ok]).statistic)
                row[f"{name}_partial_length"] = _partial(feats[:, k], q[ok], length)
            rows.append(row)
    print("| later tier m | earlier tier f | Jaccard ρ (partial on length) | cosine ρ (partial on length) |\n|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['later']} | {r['earlier']} | {r['jaccard']:+.3f} ({r['jaccard_partial_length']:+.3f}) | {r['cosine']:+.3f} ({r['cosine_partial_length']:+.3f}) |"
        )
    part = np.array([[r["jaccard_partial_length"], r["cosine_partial_length"]] for r in rows])
    summary = {
        "pairs": len(rows),
        "median_abs_partial": {"jaccard": float(np.nanmedian(np.abs(part[:, 0]))), "cosine": float(np.nanmedian(np.abs(part[:, 1])))},
        "max_partial": {"jaccard": float(np.nanmax(part[:, 0])), "cosine": float(np.nanmax(part[:, 1]))},
    }
    print(summary)
    doc = {
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "command": "PYTHONPATH=src python benchmarks/agreement_signal.py",
        "table": t.source,
        "candidates": cand,
        "summary": summary,
        "pairs": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
