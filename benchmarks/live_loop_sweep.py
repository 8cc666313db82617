"""How the refit's confidence ``share_z`` trades savings against meeting the target, over many streams.

For each synthetic structure (``benchmarks/live_loop.py``'s two) and each ``share_z``: the ceiling
(the loop's own refit, same ``share_z``, fitted on the training folds of the whole table and replayed
held out) and ``--seeds`` shuffled streams of ``thrifty simulate`` (10% audits, refit every 100,
target 0.95). Per seed: the final window's (last 20%) good-enough share, whether it met the target,
its saving against always the reference, and that saving as a share of the ceiling's saving on the
same prompts. It skips the offline lab's budget curve (what ``live_loop.py`` adds), so it is cheap
enough for 20 seeds.

    PYTHONPATH=src python benchmarks/live_loop_sweep.py [--seeds 20] [--z 0,1] [--json results/live_loop_sweep.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from harness.measure import git_commit
from live_loop import SECOND_STRUCTURE

from thrifty.calibration.loop import LoopConfig
from thrifty.calibration.refit import fit_candidate, good_matrix, replay
from thrifty.calibration.simulate import SimConfig, simulate_seed
from thrifty.calibration.synthetic import binary_table

TARGET = 0.95


def ceiling(table, loop: LoopConfig) -> dict[str, np.ndarray]:
    """Per-prompt held-out cost and good flag of the loop's refit fitted on the other folds."""
    good = good_matrix(table, table.models[-1])
    P = table.n_prompts
    out = {k: np.zeros(P) for k in ("cost", "good")}
    for _, train, test, rows in table.splits(5, 0):
        r = replay(fit_candidate(train, good[np.setdiff1d(np.arange(P), rows)], loop.refit_settings(), 0), test, good[rows])
        out["cost"][rows], out["good"][rows] = r["cost"], r["good"]
    return out


def run(table, z: float, seeds: range, sampling: str = "uniform") -> dict:
    loop = LoopConfig(every=100, target=TARGET, share_z=z)
    cfg = SimConfig(table.models, table.models[-1], 0.1, loop, seeds=(), sampling=sampling)
    ceil = ceiling(table, loop)
    ref_cost = table.cost[:, -1]
    per_seed = []
    for s in seeds:
        r = simulate_seed(table, cfg, s)
        w = slice(int(0.8 * len(r.cost)), len(r.cost))
        rows = r.rows[w]
        saving = 1 - r.cost[w].mean() / ref_cost[rows].mean()
        ceil_saving = 1 - ceil["cost"][rows].mean() / ref_cost[rows].mean()
        share = float(r.good[w].mean())
        ratio = float(saving / ceil_saving) if ceil_saving > 0.01 else None
        per_seed.append(
            {
                "seed": s,
                "audits": int(r.audited.sum()),
                "good_share": share,
                "met": share >= TARGET,
                "saving": float(saving),
                "savings_share": ratio,
            }
        )
    met = [p["met"] for p in per_seed]
    ratios = [p["savings_share"] or 0.0 for p in per_seed]
    return {
        "share_z": z,
        "sampling": sampling,
        "mean_audits": float(np.mean([p["audits"] for p in per_seed])),
        "ceiling": {"good_share": float(ceil["good"].mean()), "saving": float(1 - ceil["cost"].mean() / ref_cost.mean())},
        "seeds_met": int(sum(met)),
        "seeds": len(per_seed),
        "mean_good_share": float(np.mean([p["good_share"] for p in per_seed])),
        "min_good_share": float(min(p["good_share"] for p in per_seed)),
        "mean_saving": float(np.mean([p["saving"] for p in per_seed])),
        "savings_share": float(np.mean(ratios)),
        "savings_share_range": [float(min(ratios)), float(max(ratios))],
        "savings_share_if_met": float(np.mean([x if m else 0.0 for x, m in zip(ratios, met)])),
        "per_seed": per_seed,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--z", default="0,1", help="comma-separated share_z values")
    ap.add_argument("--sampling", default="uniform", help="comma-separated audit samplings: uniform, near_threshold")
    ap.add_argument("--json", default="results/live_loop_sweep.json")
    args = ap.parse_args(argv)
    tables = {"synthetic_3model": binary_table(5000, seed=0), "synthetic_2model": binary_table(5000, seed=0, **SECOND_STRUCTURE)}
    out: dict = {"commit": git_commit(), "target": TARGET, "rate": 0.1, "every": 100, "cases": {}}
    print(
        f"{'case':<18} {'sampling':<15} {'z':>5} {'ceiling share/saving':>21} {'met':>6} {'share mean/min':>15} {'saving':>7} {'savings share (range)':>24} {'miss=0':>7}"
    )
    for name, table in tables.items():
        for z, sampling in ((float(x), m) for x in args.z.split(",") for m in args.sampling.split(",")):
            r = run(table, z, range(args.seeds), sampling)
            out["cases"][f"{name}@z={z:g}" + ("" if sampling == "uniform" else f"@{sampling}")] = r
            c = r["ceiling"]
            print(
                f"{name:<18} {sampling:<15} {z:>5g} {c['good_share']:>10.3f}/{c['saving']:>9.1%} {r['seeds_met']:>3}/{r['seeds']:<2} "
                f"{r['mean_good_share']:>8.4f}/{r['min_good_share']:.3f} {r['mean_saving']:>7.1%} "
                f"{r['savings_share']:>8.0%} ({r['savings_share_range'][0]:.2f}..{r['savings_share_range'][1]:.2f}) {r['savings_share_if_met']:>7.0%}",
                flush=True,
            )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
