"""``thrifty fit``: fit a cascade, router or hybrid on a routing table and write a versioned artefact.

``--policy cascade`` (default) fits the cascade (scorers, models, order, thresholds); ``router`` a
query-only quality predictor and one λ per budget; ``hybrid`` both, jointly. The policy is fitted on
*all* prompts of the table (hyperparameters by cross-validation inside them); the artefact
(:mod:`thrifty.offline.artefact`) stores the selected point for ``--budget`` (highest training
quality at mean cost ≤ B) or ``--target-quality`` (cheapest at quality ≥ Q; default: the best
single model's cost as budget) and the whole training front, so the gateway can switch budgets
without refitting. Router and hybrid training numbers are out-of-fold (router predictions) /
exact replays of the live rule. Held-out numbers come from ``thrifty eval``, not from here.
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
        help="fit a cascade, router or hybrid and write an artefact",
        description="Fit the budget-optimal cascade, router or hybrid on a routing table; write a versioned artefact.",
    )
    p.add_argument("--policy", default="cascade", choices=("cascade", "router", "hybrid"), help="what to fit (default cascade)")
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
    p.add_argument("--variant", choices=("knn", "mf", "linear", "auto"), help="router / hybrid: the router's head (default mf)")
    p.add_argument("--embedder", default="minilm", metavar="NAME",
                   help="router / hybrid: query embedder — minilm (default), static (distilled lookup table, no torch at run time) or module:Factory")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="further option of the policy (as in thrifty eval), repeatable")
    p.add_argument("--out", required=True, metavar="DIR", help="artefact directory to write")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON to stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from thrifty.cli.eval_cmd import _options
    from thrifty.offline.evaluate import default_knobs
    from thrifty.table_io import benchmark_dir, load_table

    if not 1 <= args.max_tiers <= 3:
        raise ConfigError(f"--max-tiers {args.max_tiers} is out of range", key="--max-tiers", fix="use 1, 2 or 3")
    data = Path(args.data) if args.data else benchmark_dir()
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    table = load_table(data, models=models, exclude=args.exclude)
    knobs = sorted(set(float(k) for k in default_knobs(table)) | ({args.budget} if args.budget else set()))
    opts = _options(args.opt)
    if args.policy == "cascade":
        return _fit_cascade(args, table, knobs, opts)
    from thrifty.cli.fit_kinds import fit_router_or_hybrid

    return fit_router_or_hybrid(args, table, knobs, opts)


def goal_of(args: argparse.Namespace, best_cost: float) -> dict[str, float]:
    """``{"target_quality": Q}`` or ``{"budget": B}`` (default B: the best single model's cost)."""
    if args.target_quality is not None:
        return {"target_quality": args.target_quality}
    return {"budget": args.budget if args.budget is not None else best_cost}


def _portable(scorer):
    """A copy of the fitted answer scorer that pickles (its embedder is re-attached when loaded)."""
    import copy

    from thrifty.scoring.answer_scorer import AnswerScorer

    if not isinstance(scorer, AnswerScorer):
        raise ConfigError(f"thrifty fit cannot store a {type(scorer).__name__} in an artefact yet", key="--opt scorer",
                          fix="fit with the default feature scorer, or evaluate that scorer with thrifty eval")
    out = copy.copy(scorer)
    out._embedder = None
    return out


def _fit_cascade(args: argparse.Namespace, table, knobs: list[float], opts: dict) -> int:
    from thrifty.offline.artefact import json_number, write_artefact
    from thrifty.offline.cascade_policy import CascadeOffline

    if str(opts.get("scorer", "features")) != "features":  # fail before minutes of fitting, not after
        raise ConfigError(f"thrifty fit cannot store a {opts['scorer']} scorer in an artefact yet", key="--opt scorer",
                          fix="fit with the default feature scorer, or evaluate that scorer with thrifty eval")
    best = table.best_single()
    t0 = time.perf_counter()
    try:
        policy = CascadeOffline(**{"max_tiers": args.max_tiers, "max_candidates": args.max_candidates or None,
                                   "embed": args.embed, "heads": args.heads, **opts})
    except TypeError as exc:
        raise ConfigError(f"bad option for the cascade: {exc}", key="--opt") from None
    fitted = policy.fit(table, knobs)
    fit_s = time.perf_counter() - t0
    front = fitted.front
    goal = goal_of(args, best.cost)
    spec = front.for_quality(goal["target_quality"]) if "target_quality" in goal else front.for_budget(goal["budget"])

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
    out = write_artefact(args.out, manifest, {"scorer": _portable(fitted.scorer)}, kind="cascade")
    if args.json:
        print(json.dumps(json.loads((out / "manifest.json").read_text()), indent=2))
    else:
        sel = manifest["selected"]
        print(f"fitted on {table.n_prompts} prompts × {table.n_models} models in {fit_s:.1f}s; front of {len(front.points)} cascades", file=sys.stderr)
        print(f"selected ({', '.join(f'{k}={v:g}' for k, v in goal.items())}): {' → '.join(sel['tiers'])}  thresholds {sel['thresholds']}")
        print(f"training estimate: quality {sel['train_quality']:.4f} at ${sel['train_cost']:.6g}/query (best single {best.model}: {best.quality:.4f} at ${best.cost:.6g})")
        print(f"artefact: {out}")
    return 0
