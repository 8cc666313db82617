"""``thrifty simulate``: replay a routing table as a request stream through the live learning loop.

Cold start (the profile's thresholds, heuristic scorer), seeded audits at ``--rate``, a refit every
``--every`` audits validated against the policy in service, the quality guardrail at ``--target`` —
the very loop the gateway runs (:mod:`thrifty.calibration.simulate`). Prints a table (or ``--json``),
writes ``--png`` (cumulative cost and quality against requests served, beside always the reference,
the best single tier and the offline held-out optimum) and ``--out`` (the JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thrifty.cli.table_args import add_table_args, load_pool

if TYPE_CHECKING:
    from thrifty.calibration.simulate import SimConfig

__all__ = ["register", "run"]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "simulate",
        help="replay a routing table through the live learning loop (audits, refits, guardrail)",
        description="Serve a routing table as a shuffled request stream from a cold start, with sampled audits, "
        "continuous refits and the quality guardrail; compare with the offline held-out optimum.",
    )
    add_table_args(p)
    p.add_argument("--tiers", help="the profile's tiers, comma list (default: the table's single-model Pareto front, cheapest first)")
    p.add_argument("--reference", help="the tier answers are judged against (default: the dearest tier)")
    p.add_argument("--rate", type=float, default=0.1, help="share of requests audited (default 0.1)")
    p.add_argument(
        "--sampling",
        choices=("uniform", "near_threshold", "near_or_above_threshold"),
        default="uniform",
        help="audit sampling: uniform, or near_threshold (oversample requests scored near a threshold, same mean rate; default uniform)",
    )
    p.add_argument(
        "--share-z", type=float, default=1.0, help="the refit's confidence: one-sided z of the share's lower bound (default 1.0)"
    )
    p.add_argument("--every", type=int, default=20, help="refit after this many new audits (default 20)")
    p.add_argument("--target", type=float, default=0.95, help="share of answers at least as good as the reference (default 0.95)")
    p.add_argument("--mean-cost-usd", type=float, help="pick refits by this mean cost per request instead of the target")
    p.add_argument("--thresholds", help="cold-start thresholds, comma list (default 0.75 each)")
    p.add_argument("--seeds", type=int, default=5, help="number of shuffled streams (default 5)")
    p.add_argument("--offline-folds", type=int, default=5, help="folds of the offline held-out curve (default 5)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--out", metavar="FILE", help="write the summary JSON here")
    p.add_argument("--png", metavar="FILE", help="write the plot here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace, table: Any) -> SimConfig:
    from thrifty.calibration.loop import LoopConfig
    from thrifty.calibration.simulate import SimConfig, profile_tiers
    from thrifty.cli.collect_cmd import comma_list
    from thrifty.errors import ConfigError

    if args.every < 1:
        raise ConfigError(f"--every {args.every} is below 1", key="--every", fix="refit after at least 1 audit, e.g. --every 20")
    if not 0 < args.target <= 1:
        raise ConfigError(f"--target {args.target} is outside (0, 1]", key="--target", fix="e.g. --target 0.95")
    if args.seeds < 1:
        raise ConfigError("--seeds must be at least 1", key="--seeds")
    tiers = profile_tiers(table, comma_list(args.tiers) if args.tiers else None)
    if len(tiers) < 2:
        raise ConfigError(f"a cascade needs at least two tiers, got {list(tiers)}", key="--tiers", fix="list two or more models")
    costs = {s.model: s.cost for s in table.model_stats()}
    reference = args.reference or max(tiers, key=lambda m: costs[m])
    thr = tuple(float(x) for x in comma_list(args.thresholds) or ()) if args.thresholds else None
    if not 0 <= args.share_z <= 5:
        raise ConfigError(f"--share-z {args.share_z} is outside [0, 5]", key="--share-z", fix="e.g. --share-z 1 (0: the point estimate)")
    loop = LoopConfig(every=args.every, target=args.target, budget=args.mean_cost_usd, share_z=args.share_z)
    return SimConfig(tiers, reference, args.rate, loop, thr, seeds=tuple(range(args.seeds)), sampling=args.sampling)


def run(args: argparse.Namespace) -> int:
    from thrifty.calibration.simulate import simulate
    from thrifty.calibration.simulate_report import offline_heldout, plot_png, summarise

    table = load_pool(args)
    cfg = config_from_args(args, table)
    runs = simulate(table, cfg, progress=not args.no_progress and sys.stderr.isatty())
    offline = offline_heldout(table, cfg, n_folds=args.offline_folds)
    summary = summarise(table, cfg, runs, offline)
    summary["data"] = table.source
    if args.png:
        summary["plot"] = plot_png(
            args.png,
            runs,
            summary,
            title=f"thrifty simulate: {Path(table.source).name}, {cfg.rate:.0%} audits, "
            f"refit every {cfg.loop.every}, target {cfg.loop.target}",
        )
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "per_seed"}, indent=2))
        return 0
    print_table(summary)
    return 0


def _yes_no(v: bool | None) -> str:
    return "—" if v is None else ("yes" if v else "no")


def _share(v: float | None) -> str:
    return "—" if v is None else f"{v:.0%}"


def print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"thrifty simulate — {summary['requests']} requests × {summary['seeds']} seeds, tiers {', '.join(summary['tiers'])}")
    for col in (
        "seed",
        "audits",
        "audit $ share",
        "final quality",
        "final $/req",
        "offline @ same $",
        "gap",
        "target met",
        "swaps/refused",
        "guardrail",
    ):
        t.add_column(col, justify="right")
    for s in summary["per_seed"]:
        fw = s["final_window"]
        met = s["target_met_share_of_windows"]
        t.add_row(
            str(s["seed"]),
            str(s["audits"]),
            f"{s['audit_cost_share']:.1%}",
            f"{fw['quality']:.4f}",
            f"{fw['cost_usd']:.3g}",
            f"{s['offline_heldout_at_same_cost']:.4f}",
            f"{s['gap_to_offline']:+.4f}",
            "—" if met is None else f"{met:.0%}",
            f"{s['swaps']}/{s['refusals'] + s['refit_failures']}",
            str(s["guardrail_moves"]),
        )
    fw = summary["final_window"]
    t.add_row(
        "mean",
        f"{summary['audits']:.0f}",
        f"{summary['audit_cost_share']:.1%}",
        f"{fw['quality']:.4f}",
        f"{fw['cost_usd']:.3g}",
        f"{summary['offline_heldout_at_same_cost']:.4f}",
        f"{summary['gap_to_offline']:+.4f}",
        "—" if summary["target_met_share_of_windows"] is None else f"{summary['target_met_share_of_windows']:.0%}",
        "",
        "",
    )
    Console().print(t)
    # the final window per seed, on lines of their own (a narrow terminal would cut extra columns)
    print("final window (last 20%) per seed: share ≥ reference / met the target / savings share of the offline refit (a miss counts 0)")
    for s in summary["per_seed"]:
        fw_s = s["final_window"]
        print(
            f"  seed {s['seed']}: {fw_s['good_share']:.3f} / {_yes_no(s.get('target_met_final'))} / "
            f"{_share(s.get('savings_share_of_offline_if_met'))}"
        )
    if summary.get("seeds_target_met_final") is not None:
        print(
            f"  met the target in {summary['seeds_target_met_final']}/{summary['seeds']} seeds; savings share, a miss as 0: "
            f"{_share(summary.get('savings_share_of_offline_if_met'))}"
        )
    b = summary["baselines"]
    print(
        f"always {b['always_reference']['model']}: quality {b['always_reference']['quality']:.4f} at ${b['always_reference']['cost_usd']:.3g}; "
        f"best single {b['best_single']['model']}: {b['best_single']['quality']:.4f} at ${b['best_single']['cost_usd']:.3g}"
    )
    o = summary["offline_refit"]
    print(
        f"offline held-out refit (every training row audited): quality {o['quality']:.4f}, share {o['good_share']:.3f} at ${o['cost_usd']:.3g} "
        f"(saving {o['saving_vs_reference']:.1%}); the stream's final window saves {summary['saving_vs_reference']:.1%}"
        + (f" = {summary['savings_share_of_offline']:.0%} of it" if summary.get("savings_share_of_offline") is not None else "")
    )
