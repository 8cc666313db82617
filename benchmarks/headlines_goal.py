"""Is the HEADLINES goal (≥ 0.45 accuracy at Gemma's cost, local tiers, no students) reachable at all?

On the local-tier table (smollm2 → gemma3-270m, ``runs/headlines/test``, 300 test headlines, built
by ``benchmarks/headlines.py``) this prints, at Gemma's mean cost:

- the single models and how often each / both / either is right;
- the perfect-scorer cascade ceiling (:func:`thrifty.offline.ceilings.cascade_ceiling`, L = 1, 2:
  the scorer is the label itself; in-sample, an upper bound for any cascade of these tiers);
- the exact oracle router (one model per prompt, chosen by the label);
- a router fed the truth plus noise at correlation ρ (:class:`NoisyTruthRouter`, 5 folds held-out):
  how good a prediction of "which tier is right" a router would need;
- the measured routers (mf, kNN-50; static MiniLM, 5 folds held-out).

    PYTHONPATH=src python benchmarks/headlines_goal.py [--run runs/headlines] [--json results/signals_headlines_goal.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np


def main() -> None:
    from thrifty.data.table_io import load_table
    from thrifty.offline import metrics as M
    from thrifty.offline.baselines import oracle_curve
    from thrifty.offline.ceilings import cascade_ceiling
    from thrifty.offline.evaluate import evaluate
    from thrifty.offline.prediction_ceiling import NoisyTruthRouter

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="runs/headlines")
    ap.add_argument("--json", default="results/signals_headlines_goal.json")
    args = ap.parse_args()
    t = load_table(f"{args.run}/test", models=["smollm2", "gemma3-270m"])
    g, s = t.model_index("gemma3-270m"), t.model_index("smollm2")
    gc = float(np.nanmean(t.cost[:, g]))
    Q = t.quality
    rows: dict[str, float | None] = {
        "smollm2": float(Q[:, s].mean()),
        "gemma3-270m": float(Q[:, g].mean()),
        "both right": float(np.mean((Q[:, s] == 1) & (Q[:, g] == 1))),
        "either right": float(np.mean(np.maximum(Q[:, s], Q[:, g]))),
    }
    for L in (1, 2):
        rows[f"perfect-scorer cascade, L={L}"] = M.quality_at_best_single_cost(cascade_ceiling(t, L), gc)
    rows["oracle router (one model per prompt)"] = M.quality_at_best_single_cost(oracle_curve(t).curve, gc)
    for rho in (0.3, 0.5, 0.7, 0.9, 1.0):
        rep = evaluate(t, NoisyTruthRouter(rho), n_boot=0)
        rows[f"noisy-truth router ρ={rho:g} (held-out)"] = M.quality_at_best_single_cost(rep.curve, gc)
    for label, name, opts in (("router (mf)", "router", {}), ("kNN-50", "router:knn", {"k": 50})):
        rep = evaluate(t, name, options={**opts, "embedder": "static"}, n_boot=0)
        rows[f"{label}, static MiniLM (held-out)"] = M.quality_at_best_single_cost(rep.curve, gc)
    print(f"HEADLINES local tiers, {t.n_prompts} test headlines; accuracy at Gemma's mean cost (${gc:.3g}); goal 0.45")
    for k, v in rows.items():
        print(f"  {k:<45} {'—' if v is None else f'{v:.4f}'}")
    doc = {
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "command": "PYTHONPATH=src python benchmarks/headlines_goal.py",
        "table": t.source,
        "gemma_cost": gc,
        "accuracy_at_gemma_cost": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
