"""``thrifty eval --contributions``: each strategy's contribution in one joint held-out replay.

Loads the table (base pool ``--models`` or every column not named by ``--adapted``/``--student``),
replays the cache over the request stream once, evaluates the cumulative stages
(:func:`thrifty.offline.contributions.contributions`), prints one table, and writes
``metrics.json`` and ``contributions.png`` into ``--out``. With ``--json`` stdout is exactly the
JSON document and the table goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from thrifty.errors import ConfigError

__all__ = ["run_contributions"]


def run_contributions(args: argparse.Namespace) -> int:
    from thrifty.cli.collect_cmd import comma_list
    from thrifty.cli.eval_options import jsonable, policy_options
    from thrifty.cli.table_args import table_folder
    from thrifty.data.table_io import load_table
    from thrifty.offline.contributions import contributions, cumulative_stages

    if args.policy and len(args.policy) > 1:
        raise ConfigError("--contributions evaluates one policy", key="--policy", fix="give --policy once (default cascade)")
    for flag in ("strong", "weak"):
        if getattr(args, flag):
            raise ConfigError(f"--{flag} does not apply to --contributions", key=f"--{flag}", fix=f"drop --{flag}")
    if args.label_noise:
        raise ConfigError("--label-noise does not apply to --contributions", key="--label-noise", fix="drop --label-noise")
    policy = args.policy[0] if args.policy else "cascade"
    options = policy_options(args.opt, [policy])[policy]
    adapted, student = comma_list(args.adapted) or [], comma_list(args.student) or []
    t0 = time.perf_counter()
    table = load_table(table_folder(args), exclude=args.exclude)
    base = comma_list(args.models) or [m for m in table.models if m not in adapted and m not in student]
    stages = cumulative_stages(base, adapted, student, cache=args.cache != "off")
    table = table.select_models(list(stages[-1].pool))
    load_s = time.perf_counter() - t0

    hits = None
    t0 = time.perf_counter()
    if args.cache != "off":
        hits = _cache_hits(table, args)
    cache_s = time.perf_counter() - t0
    report = contributions(
        table, stages, policy=policy, options=options, hits=hits, n_folds=args.folds, seed=args.seed, n_boot=args.bootstrap, progress=True
    )
    out = Path(args.out) if args.out else Path("runs") / time.strftime("contributions-%Y%m%d-%H%M%S", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    doc = report.to_json()
    doc["timing"] = {"load_s": load_s, "cache_replay_s": cache_s}
    files = {"metrics": str(out / "metrics.json")}
    if not args.no_plots:
        from thrifty.offline.contributions_plot import plot_contributions

        files["png"] = str(plot_contributions(report, out / "contributions.png"))
    doc["files"] = files
    (out / "metrics.json").write_text(json.dumps(doc, indent=1, allow_nan=False, default=jsonable), encoding="utf-8")
    if args.json:
        sys.stdout.write(json.dumps(doc, allow_nan=False, default=jsonable) + "\n")
    print_contributions(report, files, file=sys.stderr if args.json else sys.stdout)
    return 0


def _cache_hits(table: Any, args: argparse.Namespace) -> Any:
    from thrifty.cli.collect_cmd import comma_list
    from thrifty.offline.cache_replay import gold_grader, grade_hits, request_texts, stream_hits
    from thrifty.serving.cache.semantic import DEFAULT_THRESHOLD, SemanticMatcher

    matcher = None
    if args.cache == "semantic":
        from thrifty.scoring.embedding import get_embedder

        thr = DEFAULT_THRESHOLD if args.cache_threshold is None else args.cache_threshold
        matcher = SemanticMatcher(threshold=thr, guard=args.cache_guard, embedder=get_embedder())
    source, kind, rejected = stream_hits(request_texts(table), args.cache, matcher)
    grade = gold_grader(table, args.gold, args.match, comma_list(args.choices) or None)
    return grade_hits(table, source, kind, grade, args.cache, rejected, args.gold)


def _num(x: float | None, kind: str = "q") -> str:
    if x is None:
        return "—"
    if kind == "pct":
        return f"{100 * x:.1f}%"
    if kind == "usd":
        return f"{x:.3g}"
    return f"{x:.3f}"


def _with_ci(r: Any, key: str, value: float | None, kind: str = "q") -> str:
    ci = r.ci.get(key)
    return _num(value, kind) + ("" if not ci else f" [{_num(ci[0], kind)}, {_num(ci[1], kind)}]")


def _adds(stages: list[Any], k: int) -> str:
    """What stage k adds to the previous one: models, or the cache."""
    st = stages[k].stage
    if k == 0:
        return "pool: " + ", ".join(st.pool)
    new = [m for m in st.pool if m not in stages[k - 1].stage.pool]
    return ", ".join(new) if new else ("the cache" if st.cache else "")


def print_contributions(report: Any, files: dict[str, str], file: Any) -> None:
    """The one table: a row per cumulative stage, against the base pool's best single model."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, width=max(200, Console(file=file).width))
    ref, t = report.reference, report.table
    console.print(
        f"[bold]{t.n_prompts} prompts[/] from {t.source} — reference: best single model of the base pool "
        f"[bold]{ref.model}[/], quality {ref.quality:.3f} at ${ref.cost:.3g}/query"
    )
    tab = Table(
        title=f"{report.policy}: each strategy's contribution, one joint held-out replay ({report.n_folds} folds; "
        f"95% paired bootstrap intervals over prompts, {report.n_boot} resamples)"
    )
    for col in (
        "stage (cumulative)",
        "best point: quality",
        "at USD/query",
        f"quality @ ${ref.cost:.3g}",
        "Δ vs previous",
        f"savings @ quality {ref.quality:.3f}",
        "cache hits",
        "adds",
    ):
        tab.add_column(col, justify="left" if col in ("stage (cumulative)", "adds") else "right", no_wrap=col != "adds")
    for k, r in enumerate(report.stages):
        prev = report.stages[k - 1].quality_at_ref_cost if k else None
        delta = None if k == 0 or r.quality_at_ref_cost is None or prev is None else r.quality_at_ref_cost - prev
        tab.add_row(
            r.stage.name,
            _with_ci(r, "best_quality", r.best[1]),
            _num(r.best[0], "usd"),
            _with_ci(r, "quality_at_ref_cost", r.quality_at_ref_cost),
            "" if k == 0 else _with_ci(r, "delta_quality_at_ref_cost", delta),
            ("≥ " if r.savings_is_bound else "") + _with_ci(r, "savings_at_ref_quality", r.savings_at_ref_quality, "pct"),
            f"{r.hit_rate:.1%}" if r.stage.cache else "—",
            _adds(report.stages, k),
        )
    console.print(tab)
    if report.cache:
        c = report.cache
        agree = c.get("gold_agreement_on_hits")
        console.print(
            f"cache replay ({c['mode']}): {c['exact_hits']} exact + {c['semantic_hits']} semantic hits in "
            f"{c['n']} requests (stream = table order); {c['guard_rejections']} candidates refused by the lexical guard"
            + ("" if agree is None else f"; gold answer of the hit = its source's on {agree:.1%} of hits")
        )
    if any(r.savings_is_bound for r in report.stages):
        console.print("≥: the stage's cheapest held-out point already beats the reference's quality, so the saving is at least this")
    for r in report.stages:
        for w in r.report.warnings:
            console.print(f"[yellow]{r.stage.name}: {w}[/]")
    console.print("wrote " + ", ".join(files.values()))
