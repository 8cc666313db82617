"""Held-out numbers of the ``cascade`` policy beside ``frugalgpt`` on the AlpacaEval routing data.

For each pool (``all``: 56 models; ``no-fusechat``: ``--exclude FuseChat``, 51 models) and each
policy, the harness (:func:`thrifty.offline.evaluate.evaluate`) fits on 4 folds of ``splits.json``
and replays on the fifth, five times; the pooled held-out points give

- ``quality_at_best_single_cost`` (the best single model's quality and cost shown beside it),
- ``savings_at_parity``, ``oracle_gap_closed``,
- budget violations: pooled points whose held-out mean cost exceeds their fitted budget by > 5%
  (count, of how many points, and the worst overspend),
- fit + 5-fold time (wall and CPU seconds; the one-time embedding of every text the scorers need is
  done and timed first, separately, so the fit time is the "embeddings cached" figure);
- ``perfect-scorer``: the same optimiser and replay scoring every answer by its *true* quality —
  the ceiling any ≤ 3-tier cascade over the same candidates could reach with a perfect scorer
  (``perfect-scorer[select=best]``: with answer selection).

Run::

    PYTHONPATH=src .venv/bin/python benchmarks/cascade_alpaca.py [--pools all,no-fusechat]
        [--policies 'cascade,cascade[select=best],frugalgpt'] [--opt embed=full] [--json out.json]

Needs the shared data (``THRIFTY_BENCHMARK_DIR`` or ``../shared/data/alpaca_eval_routing``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

POOLS = {"all": None, "no-fusechat": "FuseChat"}
DEFAULT_POLICIES = ",".join(
    [
        "cascade",
        "cascade[select=best]",
        "cascade[select=running]",
        "frugalgpt",
        "perfect-scorer",
        "perfect-scorer[select=best]",
        "perfect-scorer[select=running]",
    ]
)


class PerfectScorerCascade:
    """Diagnostic, not a policy: the same optimiser and replay with the *true* quality as the score.

    Its held-out curve is the ceiling of any ≤ L-tier cascade over the same candidate models: what
    a perfect answer scorer would reach (the thresholds are still fitted on the training folds).
    """

    name = "perfect-scorer"

    def __init__(self, max_candidates: int = 8, max_tiers: int = 3, select: str = "last") -> None:
        self.max_candidates, self.max_tiers, self.select = max_candidates, max_tiers, select

    def fit(self, train, knobs):
        from thrifty.offline.cascade_policy import replay_cascades, select_knobs
        from thrifty.offline.optimise import candidate_models, optimise

        cand = candidate_models(train.quality, train.cost, self.max_candidates)
        Q = train.quality[:, cand]
        front = optimise(np.nan_to_num(Q, nan=-1.0), Q, train.cost[:, cand], max_tiers=self.max_tiers, grid=32, select=self.select)
        picks = select_knobs(front, knobs)
        models = tuple(train.models[j] for j in cand)
        cascades = {k: (tuple(models[t] for t in s.tiers), s.thresholds, s.select) for k, s in picks.items()}

        class Fitted:
            def replay(self, table):
                S = np.nan_to_num(table.quality[:, [table.model_index(m) for m in models]], nan=-1.0)
                return replay_cascades(table, S, models, cascades, {k: k for k in cascades}, label="perfect-scorer")

        return Fitted()


def _opts(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        k, _, v = item.partition("=")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _embed_all(table, embed: str) -> dict[str, float]:
    """Embed (or read from the cache) every prompt and, for ``embed=full``, every answer, timed."""
    if embed == "none":
        return {"texts": 0, "seconds": 0.0}
    from thrifty.scoring.embedding import get_embedder

    texts = [p or "" for p in table.prompts]
    if embed == "full" and table.has_answers:
        texts += [a or "" for a in table.answers.ravel()]
    t0 = time.perf_counter()
    get_embedder().embed(texts, progress=sys.stderr.isatty())
    return {"texts": len(set(texts)), "seconds": time.perf_counter() - t0}


def parse_policy(spec: str) -> tuple[str, dict[str, Any]]:
    """``name`` or ``name[key=value;key=value]`` (row-specific options, e.g. ``cascade[select=best]``)."""
    name, _, rest = spec.partition("[")
    return name.strip(), _opts([x for x in rest.rstrip("]").split(";") if x.strip()])


def run_one(table, spec: str, options: dict[str, Any], n_boot: int) -> dict[str, Any]:
    from thrifty.offline.evaluate import evaluate

    policy, own = parse_policy(spec)
    c0, t0 = time.process_time(), time.perf_counter()
    if policy == "perfect-scorer":
        rep = evaluate(table, PerfectScorerCascade(**own), n_boot=n_boot)
        options = own
    else:
        options = {**options, **own}
        rep = evaluate(table, policy, options=options, n_boot=n_boot)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    doc = rep.to_json()
    m = rep.metrics
    over = [v["over"] for v in rep.budget_violations]
    budgeted = [p for p in rep.points if p.target_budget]
    return {
        "policy": spec,
        "options": options,
        "quality_at_best_single_cost": m.get("quality_at_best_single_cost"),
        "savings_at_parity": m.get("savings_at_parity"),
        "oracle_gap_closed": m.get("oracle_gap_closed"),
        "hull_quality_at_best_single_cost": m.get("hull_quality_at_best_single_cost"),
        "oracle_quality_at_best_single_cost": m.get("oracle_quality_at_best_single_cost"),
        "budget_violations": len(over),
        "budgeted_points": len(budgeted),
        "worst_overspend": max(over) if over else 0.0,
        "distinct_points": len({(round(p.mean_cost, 12), round(p.mean_quality, 9)) for p in rep.points}),
        "fit_5fold_wall_s": rep.timing["fit_replay_s"],
        "eval_wall_s": wall,
        "eval_cpu_s": cpu,
        "ci95": doc.get("ci95", doc.get("ci")),
        "points": [{"cost": p.mean_cost, "quality": p.mean_quality, "target_budget": p.target_budget} for p in rep.points],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pools", default="all,no-fusechat")
    ap.add_argument(
        "--policies",
        default=DEFAULT_POLICIES,
        help="policies, each optionally with its own options: name[key=value;key=value]; perfect-scorer = the cascade ceiling diagnostic",
    )
    ap.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="options for every policy (e.g. embed=query)")
    ap.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples for 95%% intervals (default 0)")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = ap.parse_args(argv)

    from thrifty.data.table_io import benchmark_dir, load_table
    from thrifty.scoring.answer_scorer import embed_mode

    options = _opts(args.opt)
    embed = embed_mode(options.get("embed", "none"))  # the policies' default
    results: dict[str, Any] = {"data": str(benchmark_dir()), "pools": {}}
    for pool in [p.strip() for p in args.pools.split(",") if p.strip()]:
        table = load_table(benchmark_dir(), exclude=POOLS[pool])
        best = table.best_single()
        entry: dict[str, Any] = {
            "n_models": table.n_models,
            "best_single": {"model": best.model, "quality": best.quality, "cost": best.cost},
            "embedding_one_time": _embed_all(table, embed),
            "policies": {},
        }
        for name in [p.strip() for p in args.policies.split(",") if p.strip()]:
            print(f"[{pool}] {name} …", file=sys.stderr, flush=True)
            entry["policies"][name] = run_one(table, name, options, args.bootstrap)
        results["pools"][pool] = entry

    def f(x: Any, pct: bool = False) -> str:
        if x is None:
            return "—"
        return f"{100 * x:.1f}%" if pct else f"{x:.4f}"

    print(
        f"{'pool':<12} {'policy':<30} {'q@best$':>8} {'hull':>7} {'oracle':>7} {'save@par':>9} {'gap':>7} {'viol':>7} {'worst':>7} {'fit5 s':>7} {'cpu s':>7}"
    )
    for pool, entry in results["pools"].items():
        b = entry["best_single"]
        for name, r in entry["policies"].items():
            print(
                f"{pool:<12} {name:<30} {f(r['quality_at_best_single_cost']):>8} {f(r['hull_quality_at_best_single_cost']):>7} "
                f"{f(r['oracle_quality_at_best_single_cost']):>7} {f(r['savings_at_parity'], True):>9} {f(r['oracle_gap_closed']):>7} "
                f"{r['budget_violations']:>3}/{r['budgeted_points']:<3} {f(r['worst_overspend'], True):>7} {r['fit_5fold_wall_s']:>7.1f} {r['eval_cpu_s']:>7.1f}"
            )
        e = entry["embedding_one_time"]
        print(
            f"{'':<12} best single {b['model']}: {b['quality']:.4f} at ${b['cost']:.6f}; one-time embedding of {e['texts']} texts: {e['seconds']:.1f}s"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
