"""``thrifty fit --policy cascade|router|hybrid``: fit, build the training front, write the artefact.

One path for every kind (:func:`fit_and_write`): a per-kind fitter returns the training front, the
kind's manifest blocks, the pickled payload and any weight files; the manifest is built here once.

The training front holds one operating point per distinct fitted setting (cascade: the optimiser's
training Pareto front, on out-of-fold scores; router: λ; hybrid: (λ, cascade)) with its training
mean cost and quality — router: the out-of-fold predictions routed with that λ (the numbers λ was
calibrated on); hybrid: the exact replay of the live start rule + cascade on the out-of-fold scores
(:func:`thrifty.offline.hybrid_policy.train_replay`). Points that cost more without gaining quality
are dropped, so "best point at cost ≤ B" is the last affordable one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from contextlib import nullcontext
from typing import Any

import numpy as np

from thrifty.errors import ConfigError
from thrifty.scoring.progress import progress_scope, step

__all__ = ["fit_and_write", "select_point", "pareto_points", "goal_of", "portable_scorer"]


def goal_of(args: argparse.Namespace, best_cost: float) -> dict[str, float]:
    """``{"target_quality": Q}`` or ``{"budget": B}`` (default B: the best single model's cost)."""
    if args.target_quality is not None:
        return {"target_quality": args.target_quality}
    return {"budget": args.budget if args.budget is not None else best_cost}


def portable_scorer(scorer: Any) -> tuple[Any, dict[str, bytes]]:
    """(a copy of the fitted answer scorer that pickles, weight files to write beside it).

    The feature scorer pickles whole (its embedder is re-attached when loaded); a scorer with
    ``to_files()`` (the fine-tuned MiniLM, the blend) returns a light copy plus its torch state dict
    bytes, which the artefact stores as hash-checked files next to the manifest."""
    import copy

    from thrifty.scoring.answer_scorer import AnswerScorer

    if hasattr(scorer, "to_files"):
        return scorer.to_files()
    if not isinstance(scorer, AnswerScorer):
        raise ConfigError(
            f"thrifty fit cannot store a {type(scorer).__name__} in an artefact",
            key="--opt scorer",
            fix="fit with scorer=features, finetuned or blend",
        )
    out = copy.copy(scorer)
    out._embedder = None
    return out, {}


def pareto_points(points: list[dict[str, Any]], key: Any) -> list[dict[str, Any]]:
    """Distinct points (by ``key(point)``), sorted by training cost, each better than all cheaper ones."""
    seen: dict[Any, dict[str, Any]] = {}
    for p in points:
        seen.setdefault(key(p), p)
    out: list[dict[str, Any]] = []
    for p in sorted(seen.values(), key=lambda p: (p["train_cost"], -p["train_quality"])):
        if not out or p["train_quality"] > out[-1]["train_quality"] + 1e-12:
            out.append(p)
    return out


def select_point(front: list[dict[str, Any]], goal: dict[str, float]) -> dict[str, Any]:
    """Budget: the best training quality at mean cost ≤ B (else the cheapest point); target quality:
    the cheapest point reaching Q (else the best)."""
    if "target_quality" in goal:
        ok = [p for p in front if p["train_quality"] >= goal["target_quality"]]
        return ok[0] if ok else front[-1]
    ok = [p for p in front if p["train_cost"] <= goal["budget"]]
    return ok[-1] if ok else front[0]


def _stripped(fp: Any) -> Any:
    """The fitted predictor without its embedder or training-time arrays (what the artefact pickles)."""
    return dataclasses.replace(fp, encoder=None, oof_pred=np.empty((0, len(fp.exp_cost))), search=[])


def _router_block(fp: Any, models: Any, spec: str) -> dict[str, Any]:
    return {
        "models": list(models),
        "expected_cost": [float(c) for c in fp.exp_cost],
        "variant": fp.variant,
        "params": dict(fp.params),
        "cv_area": float(fp.cv_area),
        "embedder": spec,
    }


def _fit_cascade(args: argparse.Namespace, table: Any, knobs: list[float], opts: dict[str, Any]):
    from thrifty.offline.cascade_policy import CascadeOffline

    pol = CascadeOffline(
        **{"max_tiers": args.max_tiers, "max_candidates": args.max_candidates or None, "embed": args.embed, "heads": args.heads, **opts}
    )
    fitted = pol.fit(table, knobs)
    front = fitted.front_json()
    scorer, files = portable_scorer(fitted.scorer)
    extra = {
        "scorer": {
            "inputs": fitted.inputs_kw["inputs"],
            "embed": fitted.inputs_kw["embed"],
            "embedder": "all-MiniLM-L6-v2",
            "kind": pol.scorer,
            "models": list(fitted.models),
        }
    }
    return front, extra, {"scorer": scorer}, dict(fitted.info), files


def _fit_router(args: argparse.Namespace, table: Any, knobs: list[float], opts: dict[str, Any]):
    from thrifty.offline.router_policy import RouterOffline, target_choice
    from thrifty.offline.routers import route
    from thrifty.serving.artefact import json_number

    pol = RouterOffline(**{"variant": args.variant, "embedder": args.embedder, **opts})
    fitted = pol.fit(table, knobs)
    fp = fitted.predictor
    avail = ~np.isnan(table.quality)
    rows = np.arange(table.n_prompts)
    points = []
    taus = fitted.quality_targets or (None,) * len(fitted.knobs)  # calibrate=target: the live target rule
    for knob, lam, tau in zip(fitted.knobs, fitted.lambdas, taus):
        ch = route(fp.oof_pred, fp.exp_cost, lam, avail) if tau is None else target_choice(fp.oof_pred, fp.exp_cost, tau, avail)
        points.append(
            {
                "tiers": list(table.models),
                "lam": json_number(lam),
                "knob": knob,
                "train_cost": float(table.cost[rows, ch].mean()),
                "train_quality": float(table.quality[rows, ch].mean()),
                "shares": {m: float(np.mean(ch == j)) for j, m in enumerate(table.models)},
                **({} if tau is None else {"target": float(tau)}),
            }
        )
    front = pareto_points(points, key=lambda p: (p["lam"], p.get("target")))
    extra = {"router": _router_block(fp, table.models, pol.embedder_spec)}
    info = {"router": fp.variant, "router_params": fp.params, "calibrate": fitted.calibrate}
    return front, extra, {"predictor": _stripped(fp)}, info, {}


def _fit_hybrid(args: argparse.Namespace, table: Any, knobs: list[float], opts: dict[str, Any]):
    from thrifty.offline.hybrid_policy import HybridOffline
    from thrifty.serving.artefact import json_number

    kw = {
        "router": args.variant,
        "embedder": args.embedder,
        "max_tiers": args.max_tiers,
        "max_candidates": args.max_candidates or None,
        "embed": args.embed,
        "heads": args.heads,
        **opts,
    }
    pol = HybridOffline(**kw)
    fitted = pol.fit(table, knobs)
    points = []
    for knob, (lam, spec) in fitted.picks.items():
        cost, qual = fitted.train[knob]
        points.append(
            {
                "tiers": [fitted.models[t] for t in spec.tiers],
                "thresholds": [json_number(t) for t in spec.thresholds],
                "lam": json_number(lam),
                "knob": knob,
                "train_cost": cost,
                "train_quality": qual,
            }
        )
    front = pareto_points(points, key=lambda p: (str(p["lam"]), tuple(p["tiers"]), tuple(map(str, p["thresholds"]))))
    scorer, files = portable_scorer(fitted.scorer)  # its embedder is rebuilt from the manifest's name when loaded
    extra = {
        "router": _router_block(fitted.predictor, fitted.models, pol.embedder_spec),
        "scorer": {"inputs": fitted.inputs_kw["inputs"], "embed": fitted.inputs_kw["embed"], "models": list(fitted.models)},
    }
    return front, extra, {"predictor": _stripped(fitted.predictor), "scorer": scorer}, dict(fitted.info), files


FITTERS = {"cascade": _fit_cascade, "router": _fit_router, "hybrid": _fit_hybrid}


def fit_and_write(args: argparse.Namespace, table: Any, knobs: list[float], opts: dict[str, Any]) -> int:
    """Fit ``args.policy`` on all of ``table`` and write its artefact to ``args.out``."""
    from thrifty.serving.artefact import write_artefact

    best = table.best_single()
    t0 = time.perf_counter()
    try:
        with progress_scope(sys.stderr.isatty()):  # the fit, and any long step inside it (embedding …)
            with step(f"fitting a {args.policy} on {table.n_prompts} prompts × {table.n_models} models", None) or nullcontext():
                front, extra, payload, info, files = FITTERS[args.policy](args, table, knobs, opts)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad option for the {args.policy}: {exc}", key="--opt") from None
    fit_s = time.perf_counter() - t0
    goal = goal_of(args, best.cost)
    manifest = {
        "data": {"source": table.source, "hash": table.data_hash, "n_prompts": table.n_prompts},
        "pool": list(table.models),
        "best_single": {"model": best.model, "quality": best.quality, "cost": best.cost},
        "goal": goal,
        "selected": select_point(front, goal),
        **extra,
        "front": front,
        "training": {**info, "fit_seconds": fit_s},
    }
    out = write_artefact(args.out, manifest, payload, kind=args.policy, files=files)
    if args.json:
        print(json.dumps(json.loads((out / "manifest.json").read_text()), indent=2))
        return 0
    sel = manifest["selected"]
    print(
        f"fitted a {args.policy} on {table.n_prompts} prompts × {table.n_models} models in {fit_s:.1f}s; front of {len(front)} points",
        file=sys.stderr,
    )
    if args.policy == "router":
        top = sorted(sel["shares"].items(), key=lambda kv: -kv[1])[:5]
        what = f"routes among {len(sel['tiers'])} models; training shares " + ", ".join(f"{m} {100 * v:.0f}%" for m, v in top if v > 0)
    else:
        what = (
            " → ".join(sel["tiers"])
            + f"  thresholds {sel['thresholds']}"
            + (f"  select={sel['select']}" if sel.get("select", "last") != "last" else "")
        )
    lam = f"  λ={sel['lam']}" if "lam" in sel else ""
    print(f"selected ({', '.join(f'{k}={v:g}' for k, v in goal.items())}): {what}{lam}")
    print(
        f"training estimate: quality {sel['train_quality']:.4f} at ${sel['train_cost']:.6g}/query (best single {best.model}: {best.quality:.4f} at ${best.cost:.6g})"
    )
    print(f"artefact: {out}")
    return 0
