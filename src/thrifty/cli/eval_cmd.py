"""``thrifty eval``: held-out k-fold evaluation of offline policies against every baseline.

Prints a table (policy vs best single model, hull, oracle, random), writes ``metrics.json``,
``plot.png`` and ``plot.html`` into ``--out``; with ``--json`` stdout is exactly one JSON object
(the policy's report, or ``{"policies": [...]}`` for several) and everything else goes to stderr.

``--contributions`` instead measures each strategy in one joint held-out replay
(:mod:`thrifty.offline.contributions`): the policy over the base pool (``--models``), + the cache
replayed over the held-out stream (``--cache``), + prompt-adapted model columns (``--adapted``),
+ student columns (``--student``) — one table, ``metrics.json`` and ``contributions.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from thrifty.cli.eval_options import _json_or_text, jsonable, policy_options
from thrifty.cli.table_args import add_table_args, load_pool
from thrifty.errors import ConfigError

__all__ = ["register", "run"]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate routing policies held-out on a routing table",
        description="k-fold held-out evaluation of offline policies (oracle, random, single:<model>, …) with baselines, plots and JSON.",
    )
    add_table_args(p)
    p.add_argument(
        "--policy",
        action="append",
        metavar="NAME",
        help="policy name; repeat to compare several on one plot (with --contributions: one, default cascade)",
    )
    p.add_argument("--strong", metavar="MODEL", help="strong model of a pair (with --weak): APGR/CPT")
    p.add_argument("--weak", metavar="MODEL", help="weak model of a pair (with --strong)")
    p.add_argument("--folds", type=int, default=5, help="folds when the data has no splits.json (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed for folds and bootstrap (default 0)")
    p.add_argument("--bootstrap", type=int, default=200, metavar="N", help="bootstrap resamples for 95%% intervals (0 = off; default 200)")
    p.add_argument(
        "--opt",
        action="append",
        default=[],
        metavar="[POLICY.]KEY=VALUE",
        help="policy option, repeatable; KEY=VALUE applies to every --policy, POLICY.KEY=VALUE only to that one "
        "(e.g. router.embedder=static, hybrid.embed=full, router:knn.inner_folds=5)",
    )
    p.add_argument("--out", metavar="DIR", help="output folder (default ./runs/eval-<UTC time>)")
    p.add_argument("--no-plots", action="store_true", help="skip plot.png / plot.html")
    p.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    p.add_argument(
        "--label-noise",
        type=float,
        default=0.0,
        metavar="P",
        help="fit on training labels corrupted with probability P (binary: flipped; continuous: replaced by U(0,1)); held-out labels stay clean",
    )
    from thrifty.cli.eval_peers import add_arguments as add_peer_arguments

    add_peer_arguments(p)
    c = p.add_argument_group("strategy contributions (--contributions)")
    c.add_argument(
        "--contributions",
        action="store_true",
        help="one joint held-out replay of cumulative stages: the policy over --models, + cache, + --adapted columns, + --student columns",
    )
    c.add_argument("--adapted", metavar="MODELS", help="comma-separated prompt-adapted model columns (e.g. gemma3-270m@select-40)")
    c.add_argument("--student", metavar="MODELS", help="comma-separated student model columns (e.g. student-distil)")
    c.add_argument(
        "--cache",
        choices=("semantic", "exact", "off"),
        default="semantic",
        help="cache replayed in front of the policy (default semantic: exact + the live semantic matcher)",
    )
    c.add_argument(
        "--cache-guard",
        choices=("strict", "lexical", "off"),
        default="strict",
        help="lexical guard of the semantic cache (default strict, as live)",
    )
    c.add_argument(
        "--cache-threshold", type=float, metavar="COS", help="semantic similarity threshold (default: the calibrated live default)"
    )
    c.add_argument(
        "--gold",
        default="gold",
        metavar="COLUMN",
        help="prompt column with the gold answer, to grade answers served from the cache (default gold)",
    )
    c.add_argument(
        "--match",
        choices=("choice", "exact", "numeric", "regex"),
        default="choice",
        help="how a served answer is graded against gold (default choice)",
    )
    c.add_argument("--choices", metavar="A,B,...", help="allowed answers for --match choice (default: the distinct gold values)")
    p.set_defaults(func=run)


def _noisy(name: str, options: dict[str, Any], args: argparse.Namespace) -> Any:
    """The policy name, or with ``--label-noise`` the policy wrapped to fit on noisy training labels."""
    if not args.label_noise:
        return name
    from thrifty.offline.noise import NoisyLabels
    from thrifty.offline.registry import get_policy

    return NoisyLabels(get_policy(name, options), args.label_noise, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    from thrifty.offline.evaluate import evaluate

    if args.contributions:
        from thrifty.cli.eval_contributions import run_contributions

        return run_contributions(args)
    if not args.policy:
        raise ConfigError("no policy to evaluate", key="--policy", fix="give --policy NAME (repeatable), or --contributions")
    per_policy = policy_options(args.opt, args.policy)
    t0 = time.perf_counter()
    table = load_pool(args)
    load_s = time.perf_counter() - t0
    if args.strong and args.strong not in table.models or args.weak and args.weak not in table.models:
        missing = args.strong if args.strong not in table.models else args.weak
        raise ConfigError(f"model {missing!r} is not in the pool", key="--strong/--weak", fix="check --models/--exclude")
    reports = []
    for name in args.policy:
        options = per_policy[name]
        reports.append(
            evaluate(
                table,
                _noisy(name, options, args),
                strong=args.strong,
                weak=args.weak,
                n_folds=args.folds,
                seed=args.seed,
                progress=True,
                n_boot=args.bootstrap,
                options=options,
            )
        )
    from thrifty.cli.eval_peers import extras

    def evaluate_peer(name: str, options: dict[str, Any]) -> Any:
        return evaluate(
            table,
            name,
            strong=args.strong,
            weak=args.weak,
            n_folds=args.folds,
            seed=args.seed,
            progress=True,
            n_boot=args.bootstrap,
            options={**(peer_base if name.startswith("router") else {}), **options},
        )

    # peers share only the query embedder given for any policy (other keys may be another policy's)
    embedders = [o.partition("=")[2] for o in args.opt if o.partition("=")[0].rpartition(".")[2] == "embedder"]
    peer_base = {"embedder": _json_or_text(embedders[0])} if embedders else {}

    extra = extras(args, table, reports, evaluate_peer)
    out = Path(args.out) if args.out else Path("runs") / time.strftime("eval-%Y%m%d-%H%M%S", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    docs = [r.to_json() for r in reports]
    for d in docs:
        d["timing"]["load_s"] = load_s
    doc: dict[str, Any] = docs[0] if len(docs) == 1 else {"policies": docs}
    files = {"metrics": str(out / "metrics.json")}
    if not args.no_plots:
        from thrifty.offline.plots import plot_html, plot_png

        files["png"] = str(plot_png(reports, out / "plot.png"))
        files["html"] = str(plot_html(reports, out / "plot.html"))
    for d in docs:
        d["files"] = files
        d["ceilings"] = extra["ceilings"]
        if "paired" in extra:
            d["peers"], d["paired"] = extra["peers"], extra["paired"].get(d["policy"])
    (out / "metrics.json").write_text(json.dumps(doc, indent=1, allow_nan=False, default=jsonable), encoding="utf-8")
    if args.json:
        sys.stdout.write(json.dumps(doc, allow_nan=False, default=jsonable) + "\n")
        _print_table(reports, out, file=sys.stderr, extra=extra)
    else:
        _print_table(reports, out, file=sys.stdout, extra=extra)
    return 0


def _fmt(x: float | None, kind: str = "q") -> str:
    if x is None:
        return "—"
    if abs(x) < 1e-12:  # float noise around an exact 0 (e.g. a single model against itself)
        x = 0.0
    if kind == "pct":
        return f"{100 * x:.1f}%"
    if kind == "usd":
        return f"${x:.6f}"
    return f"{x:.4f}"


def _ci(rep, key: str, kind: str = "q") -> str:
    ci = rep.ci.get(key)
    return "" if not ci else f" [{_fmt(ci[0], kind)}, {_fmt(ci[1], kind)}]"


def _print_table(reports: list, out: Path, file, extra: dict[str, Any] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, width=max(120, Console(file=file).width))
    r0 = reports[0]
    b = r0.best_single
    console.print(
        f"[bold]{r0.table.n_prompts} prompts × {r0.table.n_models} models[/] from {r0.table.source} — "
        f"best single model [bold]{b.model}[/]: quality {b.quality:.4f} at ${b.cost:.6f}/query"
    )
    t = Table(title="held-out metrics (95% bootstrap intervals over prompts)")
    for col in ("policy", f"quality @ ${b.cost:.6f}", "savings at parity", "oracle gap closed", "AIQ", "points"):
        t.add_column(col, justify="right" if col != "policy" else "left")
    for rep in reports:
        m = rep.metrics
        t.add_row(
            rep.policy,
            _fmt(m["quality_at_best_single_cost"]) + _ci(rep, "quality_at_best_single_cost"),
            _fmt(m["savings_at_parity"], "pct") + _ci(rep, "savings_at_parity", "pct"),
            _fmt(m["oracle_gap_closed"], "pct") + _ci(rep, "oracle_gap_closed", "pct"),
            _fmt(m["aiq"]),
            str(len(rep.points)),
        )
    mh = r0.metrics
    t.add_row("[dim]best single[/]", _fmt(b.quality), "0.0%", "0.0%", "", "1")
    t.add_row("[dim]single-model hull[/]", _fmt(mh["hull_quality_at_best_single_cost"]), "0.0%", "0.0%", "", str(len(r0.hull.models)))
    t.add_row(
        "[dim]oracle (exact)[/]",
        _fmt(mh["oracle_quality_at_best_single_cost"]),
        _fmt(1 - r0.oracle.curve.cost_for(b.quality) / b.cost, "pct") if r0.oracle.curve.cost_for(b.quality) is not None else "—",
        "100.0%",
        "",
        str(len(r0.oracle.curve.x)),
    )
    t.add_row("[dim]random (uniform)[/]", f"{r0.random[1]:.4f} at ${r0.random[0]:.6f}", "", "", "", "1")
    console.print(t)
    if extra:
        from thrifty.cli.eval_peers import print_extras

        print_extras(console, reports, extra)
    for rep in reports:
        if rep.pair is not None:
            p = rep.pair
            console.print(
                f"{rep.policy}: pair weak={p['weak']} ({p['weak_quality']:.4f}) → strong={p['strong']} ({p['strong_quality']:.4f}): "
                f"APGR {_fmt(p['apgr'])}{_ci(rep, 'apgr')}, CPT(50%) {_fmt(p['cpt50'], 'pct')}, CPT(80%) {_fmt(p['cpt80'], 'pct')} strong calls"
            )
        if rep.budget_violations:
            n_inf = sum(v["infeasible"] for v in rep.budget_violations)
            why = f" ({n_inf} of them below the cheapest possible mean cost: no policy can meet those)" if n_inf else ""
            console.print(f"[yellow]{rep.policy}: {len(rep.budget_violations)} point(s) more than 5% over their target budget{why}[/]")
        for w in rep.warnings:
            console.print(f"[yellow]{rep.policy}: {w}[/]")
        tm = rep.timing
        console.print(
            f"[dim]{rep.policy}: fit+replay {tm['fit_replay_s']:.2f}s, metrics {tm['metrics_s']:.2f}s, bootstrap {tm['bootstrap_s']:.2f}s[/]"
        )
    console.print(
        f"wrote {out / 'metrics.json'}" + ("" if not (out / "plot.png").exists() else f", {out / 'plot.png'}, {out / 'plot.html'}")
    )
