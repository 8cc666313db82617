"""``thrifty fit``: fit the cascade (scorers, models, order, thresholds) on a routing table.

Fits the ``cascade`` offline policy on *all* prompts of the table (hyperparameters by nested
cross-validation inside them), selects the cascade for ``--budget`` (highest training quality at
mean cost ≤ B) or ``--target-quality`` (cheapest at quality ≥ Q; default: the best single model's
cost as budget) and writes a versioned artefact (:mod:`thrifty.offline.artefact`) with the whole
training Pareto front, so the gateway can switch budgets without refitting. Held-out numbers come
from ``thrifty eval --policy cascade``, not from here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from thrifty.errors import ConfigError

__all__ = ["register", "run"]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "fit",
        help="fit a cascade (scorers + models + thresholds) and write an artefact",
        description="Fit answer scorers and the budget-optimal cascade on a routing table; write a versioned artefact.",
    )
    p.add_argument("--data", help="routing-table folder (default: the shared AlpacaEval routing data)")
    p.add_argument("--models", help="comma-separated model pool (default: all)")
    p.add_argument("--exclude", metavar="REGEX", help="drop models whose name matches REGEX")
    p.add_argument("--max-tiers", type=int, default=3, metavar="L", help="most tiers in a cascade, 1–3 (default 3)")
    goal = p.add_mutually_exclusive_group()
    goal.add_argument("--budget", type=float, metavar="USD", help="target mean cost per query")
    goal.add_argument("--target-quality", type=float, metavar="Q", help="target mean quality (cheapest cascade reaching it)")
    p.add_argument(
        "--embed", default="none", choices=("full", "query", "none"),
        help="MiniLM embedding inputs of the scorers: full (query+answer), query, none (cheap features only; default — measured best held-out on AlpacaEval)",
    )
    p.add_argument("--heads", default="ridge", help="head kinds to choose from by nested CV: ridge, gbm, ridge,gbm (default ridge)")
    p.add_argument("--max-candidates", type=int, default=8, help="models the optimiser searches over (0 = whole pool; default 8)")
    p.add_argument("--out", required=True, metavar="DIR", help="artefact directory to write")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON to stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from thrifty.offline.artefact import json_number, write_artefact
    from thrifty.offline.cascade_policy import CascadeOffline
    from thrifty.offline.evaluate import default_knobs
    from thrifty.table_io import benchmark_dir, load_table

    if not 1 <= args.max_tiers <= 3:
        raise ConfigError(f"--max-tiers {args.max_tiers} is out of range", key="--max-tiers", fix="use 1, 2 or 3")
    data = Path(args.data) if args.data else benchmark_dir()
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    table = load_table(data, models=models, exclude=args.exclude)
    best = table.best_single()
    knobs = sorted(set(float(k) for k in default_knobs(table)) | ({args.budget} if args.budget else set()))
    t0 = time.perf_counter()
    policy = CascadeOffline(
        max_tiers=args.max_tiers, max_candidates=args.max_candidates or None, embed=args.embed, heads=args.heads
    )
    fitted = policy.fit(table, knobs)
    fit_s = time.perf_counter() - t0
    front = fitted.front
    if args.target_quality is not None:
        spec, goal = front.for_quality(args.target_quality), {"target_quality": args.target_quality}
    else:
        budget = args.budget if args.budget is not None else best.cost
        spec, goal = front.for_budget(budget), {"budget": budget}

    def point(s) -> dict:
        return {
            "tiers": [fitted.models[t] for t in s.tiers],
            "thresholds": [json_number(t) for t in s.thresholds],
            "train_cost": s.cost,
            "train_quality": s.quality,
        }

    manifest = {
        "data": {"source": table.source, "hash": table.data_hash, "n_prompts": table.n_prompts},
        "pool": list(table.models),
        "best_single": {"model": best.model, "quality": best.quality, "cost": best.cost},
        "goal": goal,
        "selected": point(spec),
        "scorer": {"inputs": fitted.inputs_kw["inputs"], "embed": fitted.inputs_kw["embed"], "embedder": "all-MiniLM-L6-v2", "models": list(fitted.models)},
        "front": [point(s) for s in front.points],
        "training": {**fitted.info, "fit_seconds": fit_s},
    }
    out = write_artefact(args.out, manifest, fitted.scorer.heads)
    if args.json:
        print(json.dumps(json.loads((out / "manifest.json").read_text()), indent=2))
    else:
        sel = manifest["selected"]
        print(f"fitted on {table.n_prompts} prompts × {table.n_models} models in {fit_s:.1f}s; front of {len(front.points)} cascades", file=sys.stderr)
        print(f"selected ({', '.join(f'{k}={v:g}' for k, v in goal.items())}): {' → '.join(sel['tiers'])}  thresholds {sel['thresholds']}")
        print(f"training estimate: quality {sel['train_quality']:.4f} at ${sel['train_cost']:.6g}/query (best single {best.model}: {best.quality:.4f} at ${best.cost:.6g})")
        print(f"artefact: {out}")
    return 0
