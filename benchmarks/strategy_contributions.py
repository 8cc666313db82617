"""Each FrugalGPT strategy's contribution on HEADLINES: cascade alone, + cache, + prompt adaptation, + student.

One table, one plot (issue 8, item 4). Inputs, each produced by its own benchmark:

- ``--headlines`` (``benchmarks/headlines.py --json``): held-out k-fold harness reports of the
  cascade over the local LLMs, and over LLMs + distilled students. The cascade point used is the
  held-out operating point of highest accuracy (cheapest among ties) of each report.
- ``--prompt-adaptation`` (``benchmarks/prompt_adaptation.py --json``): token saving and accuracy
  change of the best prompt-adaptation condition whose accuracy drop is at most ``--max-drop``.
- the cache is measured here: ``--n-cache`` HEADLINES test headlines, each as the full 8-shot prompt
  the gateway would receive, in file order through the live matcher (``SemanticMatcher`` at the
  calibrated default threshold, guard on) plus exact matching; a hit serves the cached answer of an
  earlier headline, which is right when that headline had the same gold label (``agree``).

Each strategy is measured against its own baseline as a **cost ratio** (cost with / without) and an
**error ratio** ((1 − accuracy with) / (1 − accuracy without)):

    cache              cost 1−h; accuracy a(1−h) + a·g·h on the cascade's accuracy a (hit rate h, agreement g)
    prompt adaptation  the chosen condition vs FrugalGPT's fixed 8-shot prefix, on Gemma-3-270M
    student            the cascade over LLMs + students vs the cascade over LLMs only (harness, held-out)

Rows are *cumulative*: starting from the LLM-only cascade point, each row multiplies cost and error
by its strategy's ratios — composition under independence ("each strategy removes the same share of
the remaining cost and errors"), an estimate rather than one joint replay.

Missing inputs are reported as missing, never filled in.

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/strategy_contributions.py --headlines docs/headlines.json
--prompt-adaptation docs/prompt_adaptation.json --json docs/strategy_contributions.json --plot docs/strategy_contributions.png``
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from thrifty.cache.guard import lexical_mismatch  # noqa: E402
from thrifty.cache.semantic import DEFAULT_THRESHOLD, SemanticMatcher, similarities  # noqa: E402

LLM_ONLY = "cascade (LLMs only)"
#: the student row uses the first of these reports present (the distilled student is the issue's "student")
STUDENT_REPORTS = ("cascade (LLMs + distilled student)", "cascade (LLMs + students)", "cascade (LLMs + both students)")


def headlines_dir() -> Path:
    from thrifty.table_io import benchmark_dir

    return benchmark_dir().parent / "headlines"


def cache_stream(n: int, threshold: float, guard: str = "strict") -> dict:
    """Replay ``n`` test headlines (full 8-shot prompts, file order) through an exact + semantic cache."""
    folder = headlines_dir()
    prefix = (folder / "prefix_e8.txt").read_text(encoding="utf-8")
    with (folder / "test.csv").open(encoding="utf-8", newline="") as fh:
        rows = [(q, g.strip()) for q, g, _ in csv.reader(fh)][:n]
    prompts = [prefix + q for q, _ in rows]
    from thrifty.scoring.embedding import get_embedder

    matcher = SemanticMatcher(threshold=threshold, guard=guard, embedder=get_embedder())
    t0 = time.time()
    vecs = matcher.embed_many(prompts)
    embed_s = time.time() - t0
    seen_exact: dict[str, int] = {}
    kept: list[int] = []  # indices cached so far (one entry per distinct prompt)
    exact = semantic = agree = 0
    blocked = 0
    for i, p in enumerate(prompts):
        if p in seen_exact:
            exact += 1
            agree += rows[seen_exact[p]][1] == rows[i][1]
            continue
        hit = None
        if kept:
            sims = similarities(vecs[i], vecs[kept])
            for j in np.argsort(-sims, kind="stable"):
                if sims[j] < threshold:
                    break
                src = kept[int(j)]
                if guard != "off" and lexical_mismatch(p, prompts[src], strict=guard == "strict") is not None:
                    blocked += 1
                    continue
                hit = src
                break
        if hit is not None:
            semantic += 1
            agree += rows[hit][1] == rows[i][1]
            continue
        seen_exact[p] = i
        kept.append(i)
    hits = exact + semantic
    return {
        "n": len(rows), "threshold": threshold, "guard": guard, "exact_hits": exact, "semantic_hits": semantic,
        "hit_rate": hits / len(rows), "agreement_on_hits": (agree / hits) if hits else None,
        "guard_rejections": blocked, "embedding_seconds": round(embed_s, 1),
    }


def best_point(report: dict) -> tuple[float, float] | None:
    pts = [(float(p["cost"]), float(p["quality"])) for p in report.get("points", [])]
    if not pts:
        return None
    return min(pts, key=lambda cq: (-round(cq[1], 6), cq[0]))


def pick_adaptation(doc: dict, max_drop: float) -> dict | None:
    rows = [r for r in doc.get("rows", []) if "tokens_saved_vs_fixed8" in r and r["accuracy_change_vs_fixed8"] >= -max_drop]
    rows = [r for r in rows if r["tokens_saved_vs_fixed8"] > 0]
    return max(rows, key=lambda r: r["tokens_saved_vs_fixed8"]) if rows else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--headlines", type=Path, default=Path("docs/headlines.json"))
    ap.add_argument("--prompt-adaptation", type=Path, default=Path("docs/prompt_adaptation.json"))
    ap.add_argument("--n-cache", type=int, default=2000)
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    ap.add_argument("--max-drop", type=float, default=0.02, help="largest accuracy drop accepted for prompt adaptation")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path)
    args = ap.parse_args(argv)

    missing: list[str] = []
    result: dict = {"composition": "cumulative, independent (see module docstring)", "missing": missing}
    head = json.loads(args.headlines.read_text()) if args.headlines.exists() else None
    if head is None:
        missing.append(f"{args.headlines} (run benchmarks/headlines.py --json {args.headlines})")
    adapt = json.loads(args.prompt_adaptation.read_text()) if args.prompt_adaptation.exists() else None
    if adapt is None:
        missing.append(f"{args.prompt_adaptation} (run benchmarks/prompt_adaptation.py --json {args.prompt_adaptation})")

    cache = cache_stream(args.n_cache, args.threshold, guard="strict")
    others = {g: cache_stream(args.n_cache, args.threshold, guard=g) for g in ("lexical", "off")}
    result["cache"] = cache
    result["cache_other_guards"] = others

    rows: list[dict] = []
    base = stud = None
    if head is not None:
        cascades = head.get("cascades", {})
        base = best_point(cascades.get(LLM_ONLY, {}))
        student_name = next((n for n in STUDENT_REPORTS if best_point(cascades.get(n, {})) is not None), None)
        stud = best_point(cascades[student_name]) if student_name else None
        result["other_cascades"] = {n: best_point(r) for n, r in cascades.items()}
        if base is None:
            missing.append(f"held-out points of {LLM_ONLY!r} in {args.headlines}")
        if stud is None:
            missing.append(f"held-out points of any of {STUDENT_REPORTS} in {args.headlines}")
    if base is not None:
        c, a = base
        rows.append({"strategy": "cascade alone", "cost_usd": c, "accuracy": a, "cost_ratio": 1.0, "error_ratio": 1.0,
                     "source": f"{args.headlines}: {LLM_ONLY}, best held-out point"})

        def add(name: str, cost_ratio: float, error_ratio: float, source: str) -> None:
            prev = rows[-1]
            rows.append({"strategy": name, "cost_usd": prev["cost_usd"] * cost_ratio,
                         "accuracy": 1 - (1 - prev["accuracy"]) * error_ratio, "cost_ratio": cost_ratio,
                         "error_ratio": error_ratio, "source": source})

        h, g = cache["hit_rate"], cache["agreement_on_hits"] or 0.0
        a_cached = a * (1 - h) + a * g * h
        add("+ cache", 1 - h, (1 - a_cached) / (1 - a) if a < 1 else 1.0,
            f"hit rate {h:.3f} (exact {cache['exact_hits']}, semantic {cache['semantic_hits']}), label agreement {g:.3f}, {cache['n']} headlines")
        pick = pick_adaptation(adapt, args.max_drop) if adapt else None
        if pick is not None:
            fixed = next(r for r in adapt["rows"] if r["condition"] == "fixed-8")
            err = (1 - pick["accuracy"]) / (1 - fixed["accuracy"]) if fixed["accuracy"] < 1 else 1.0
            add("+ prompt adaptation", 1 - pick["tokens_saved_vs_fixed8"], err,
                f"{pick['condition']} vs fixed-8 on Gemma-3-270M: tokens −{pick['tokens_saved_vs_fixed8']:.1%}, accuracy {fixed['accuracy']:.3f}→{pick['accuracy']:.3f} (N={pick['n']})")
        elif adapt is not None:
            missing.append(f"no prompt-adaptation condition within an accuracy drop of {args.max_drop}")
        if stud is not None:
            add("+ student", stud[0] / base[0] if base[0] > 0 else 1.0, (1 - stud[1]) / (1 - base[1]) if base[1] < 1 else 1.0,
                f"{student_name} vs {LLM_ONLY}: accuracy {base[1]:.3f}→{stud[1]:.3f}, cost {base[0]:.3g}→{stud[0]:.3g}")
    result["rows"] = rows

    print(f"cache on HEADLINES ({cache['n']} test headlines as full 8-shot prompts, threshold {args.threshold}):")
    for name, m in (("strict", cache), *others.items()):
        ag = m["agreement_on_hits"]
        print(f"  {name:<9} exact {m['exact_hits']:>4}  semantic {m['semantic_hits']:>4}  hit rate {m['hit_rate']:.3f}  "
              f"label agreement on hits {'n/a' if ag is None else f'{ag:.3f}'}")
    if rows:
        print(f"\n{'strategy (cumulative)':<22} {'USD/query':>11} {'accuracy':>9} {'cost ×':>8} {'error ×':>8}  measured as")
        for r in rows:
            print(f"{r['strategy']:<22} {r['cost_usd']:>11.3g} {r['accuracy']:>9.3f} {r['cost_ratio']:>8.3f} {r['error_ratio']:>8.3f}  {r['source']}")
    for name, pt in result.get("other_cascades", {}).items():
        if pt is not None:
            print(f"  (held-out best point of {name}: accuracy {pt[1]:.3f} at ${pt[0]:.3g}/query)")
    for m in missing:
        print(f"missing: {m}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    if args.plot and rows:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        tiers = head.get("tiers", []) if head is not None else []
        positive = [r["cost_usd"] for r in rows if r["cost_usd"] > 0] + [t["mean_cost_usd"] for t in tiers if t["mean_cost_usd"] > 0]
        floor = min(positive) / 10 if positive else 1e-9  # free tiers (students) are drawn at this cost
        xs = [max(r["cost_usd"], floor) for r in rows]
        ys = [r["accuracy"] for r in rows]
        ax.plot(xs, ys, marker="o", label="cumulative strategies (composed)")
        for i, (r, x, y) in enumerate(zip(rows, xs, ys)):
            ax.annotate(r["strategy"], (x, y), textcoords="offset points", xytext=(8, -12 if i % 2 else 6), fontsize=8)
        for t in tiers:
            x = max(t["mean_cost_usd"], floor)
            ax.scatter([x], [t["accuracy"]], marker="x", color="grey")
            ax.annotate(t["model"] + (" (free)" if t["mean_cost_usd"] <= 0 else ""), (x, t["accuracy"]),
                        textcoords="offset points", xytext=(4, -10), fontsize=7, color="grey")
        ax.legend(loc="lower left", fontsize=8)
        ax.set_xscale("log")
        from matplotlib.ticker import NullFormatter

        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("mean cost per query (USD, notional local prices, log)")
        ax.set_ylabel("accuracy vs gold (HEADLINES)")
        ax.set_title("Contribution of each strategy (cumulative)")
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
