"""The live learning loop, replayed: ``thrifty simulate`` on AlpacaEval-56 and a large synthetic binary table.

What it runs (each a few minutes at most on 2 cores):

1. **AlpacaEval-56** (``$THRIFTY_BENCHMARK_DIR``, default ``../shared/data/alpaca_eval_routing``):
   tiers = the single-model Pareto front of the 56 models (cheapest first; the dearest, the best
   single model, is the reference), 10% audits, refit every 20 audits, 5 seeds;
   (a) ``target = 0.95`` (share of answers at least as good as the reference's, judged by AlpacaEval's
   per-prompt quality); (b) no target (guardrail off), the refit picking by mean cost = the best
   single model's (the reference's) cost.
   Reported: ``gap_to_offline`` (offline held-out curve's quality at the final window's cost − the
   final window's quality), audit spend as a share of serving spend.
2. **Synthetic binary tables** (:func:`thrifty.calibration.synthetic.binary_table`, 5,000 prompts,
   stated structure): (a) the defaults, 3 models; (b) ``SECOND_STRUCTURE``, 2 models with a stronger
   cheap tier and a wider difficulty spread. 10% audits, refit every 100 audits, target 0.95, 10
   seeds. Reported per seed: the final window's saving against always calling the reference as a
   share of the offline held-out policy's saving on the same prompts (goal ≥ 90%), whether the final
   window met the target (a seed that missed it counts as 0 in ``savings_share_of_offline_if_met``),
   and the ceiling (the offline policy itself).

HEADLINES with the local tiers is skipped: no routing table of it is stored here (``docs/headlines.json``
has only aggregates; collecting one takes the local models several minutes).

    PYTHONPATH=src python benchmarks/live_loop.py [--quick] [--seeds N] [--json results/live_loop.json] [--png-dir docs]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from harness.measure import git_commit

from thrifty.calibration.loop import LoopConfig
from thrifty.calibration.simulate import SimConfig, profile_tiers, simulate
from thrifty.calibration.simulate_report import offline_heldout, plot_png, summarise

#: the second synthetic structure (``binary_table`` keyword arguments): a cheap tier right ~66% of the
#: time, the reference ~80%, prices 0.5 / 6 USD per 1M tokens, a flatter difficulty curve, a weaker
#: prompt signal and stronger hedging
SECOND_STRUCTURE: dict = {
    "models": (("mid", 0.7, 0.5), ("big", 1.6, 6.0)),
    "slope": 1.3,
    "query_signal": 0.3,
    "hedge_wrong": 0.7,
    "hedge_right": 0.1,
}


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def run_case(name: str, table, cfg: SimConfig, png: Path | None) -> dict:
    t0 = time.perf_counter()
    runs = simulate(table, cfg, progress=sys.stderr.isatty())
    t1 = time.perf_counter()
    offline = offline_heldout(table, cfg)
    summary = summarise(table, cfg, runs, offline)
    summary["seconds"] = {"stream": round(t1 - t0, 1), "offline": round(time.perf_counter() - t1, 1)}
    summary["commit"] = git_commit()
    if png is not None:
        summary["plot"] = plot_png(
            str(png), runs, summary, title=f"{name}: {cfg.rate:.0%} audits, refit every {cfg.loop.every}, target {cfg.loop.target}"
        )
    fw = summary["final_window"]
    print(
        f"{name:<34} n={summary['requests']:>5} audits={summary['audits']:>6.1f} audit$={summary['audit_cost_share']:.1%} "
        f"final q={fw['quality']:.4f} ${fw['cost_usd']:.3g} share={fw['good_share']:.3f} offline@$={summary['offline_heldout_at_same_cost']:.4f} "
        f"gap={summary['gap_to_offline']:+.4f} (paired {summary['gap_to_offline_paired']:+.4f}) offline refit ${summary['offline_refit']['cost_usd']:.3g} share={summary['offline_refit']['good_share']:.3f} met={summary['target_met_share_of_windows'] or 0:.0%} "
        f"savings/offline={_num(summary['savings_share_of_offline'])} (miss=0: {_num(summary['savings_share_of_offline_if_met'])}, "
        f"range {summary['savings_share_of_offline_range']}) final window met target: {summary['seeds_target_met_final']}/{summary['seeds']} "
        f"({summary['seconds']['stream']}s+{summary['seconds']['offline']}s)",
        flush=True,
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds, 2,000 synthetic prompts (smoke run)")
    ap.add_argument("--json", default="results/live_loop.json")
    ap.add_argument("--png-dir", default="results")
    ap.add_argument("--seeds", type=int, default=10, help="streams per case (default 10)")
    ap.add_argument(
        "--share-z", type=float, default=1.0, help="refit picks on the share's lower bound at this z (0: the old point-estimate rule)"
    )
    ap.add_argument(
        "--sampling",
        default="uniform",
        choices=("uniform", "near_threshold", "near_or_above_threshold"),
        help="audit sampling (thrifty.calibration.audit_sampling; default uniform)",
    )
    ap.add_argument(
        "--only", choices=("alpaca", "alpaca_budget", "synthetic", "synthetic_2model"), help="run one case only (merged into --json)"
    )
    args = ap.parse_args(argv)
    seeds = (0, 1) if args.quick else tuple(range(args.seeds))
    out: dict = {"commit": git_commit(), "seeds": len(seeds), "share_z": args.share_z, "sampling": args.sampling, "cases": {}}
    if args.only and Path(args.json).exists():  # one case rerun: keep the others
        out["cases"] = json.loads(Path(args.json).read_text())["cases"]
        out["commit_per_case"] = {k: v.get("commit") for k, v in out["cases"].items()}
    png_dir = Path(args.png_dir)
    png_dir.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "alpaca", "alpaca_budget"):
        from thrifty.data.table_io import benchmark_dir, load_table

        try:
            table = load_table(benchmark_dir())
        except Exception as exc:  # noqa: BLE001
            print(f"AlpacaEval skipped: {exc}")
            table = None
        if table is not None:
            tiers = profile_tiers(table)
            ref = tiers[-1]
            best = table.select_models([ref]).model_stats()[0]
            cfg = SimConfig(tiers, ref, 0.1, LoopConfig(every=20, target=0.95, share_z=args.share_z), seeds=seeds, sampling=args.sampling)
            if args.only != "alpaca_budget":
                out["cases"]["alpaca_target"] = run_case("alpaca-56 target 0.95", table, cfg, png_dir / "live_loop_alpaca.png")
            cfg_b = SimConfig(
                tiers,
                ref,
                0.1,
                LoopConfig(every=20, target=None, budget=best.cost, share_z=args.share_z),
                seeds=seeds,
                sampling=args.sampling,
            )
            out["cases"]["alpaca_budget"] = run_case(
                "alpaca-56 mean cost = best single", table, cfg_b, png_dir / "live_loop_alpaca_budget.png"
            )
    if args.only in (None, "synthetic"):
        from thrifty.calibration.synthetic import binary_table

        n = 2000 if args.quick else 5000
        table = binary_table(n, seed=0)
        cfg = SimConfig(
            table.models,
            table.models[-1],
            0.1,
            LoopConfig(every=100, target=0.95, share_z=args.share_z),
            seeds=seeds,
            sampling=args.sampling,
        )
        out["cases"]["synthetic_binary"] = run_case(f"synthetic binary {n}x3 target 0.95", table, cfg, png_dir / "live_loop_synthetic.png")
        out["cases"]["synthetic_binary"]["structure"] = "thrifty.calibration.synthetic.binary_table defaults (see its docstring)"
    if args.only in (None, "synthetic_2model"):
        from thrifty.calibration.synthetic import binary_table

        n = 2000 if args.quick else 5000
        table = binary_table(n, seed=0, **SECOND_STRUCTURE)
        cfg = SimConfig(
            table.models,
            table.models[-1],
            0.1,
            LoopConfig(every=100, target=0.95, share_z=args.share_z),
            seeds=seeds,
            sampling=args.sampling,
        )
        case = run_case(f"synthetic binary {n}x2 target 0.95", table, cfg, png_dir / "live_loop_synthetic_2model.png")
        out["cases"]["synthetic_2model"] = case | {"structure": {k: v for k, v in SECOND_STRUCTURE.items()}}
    out["headlines"] = "skipped: no HEADLINES routing table with the local tiers is stored here (docs/headlines.json holds aggregates only)"
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
