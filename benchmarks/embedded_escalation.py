"""How often the embedded default (SmolLM2 → Gemma-3, heuristic scorer) escalates on ordinary prompts.

Runs ``--n`` prompts through the same engine `thrifty serve` / `thrifty ask` use with no config, one
at a time (1 llama.cpp thread per model), and reports the share answered by each tier, the mean
heuristic score of tier 0's answers, latency and cost. Prompts: the first ``--n`` AlpacaEval prompts of
the shared benchmark (``$THRIFTY_BENCHMARK_DIR``; instructions people actually send), else a small
built-in list. Answers are capped at ``--max-tokens``.

    PYTHONPATH=src .venv/bin/python benchmarks/embedded_escalation.py --n 40 --json results/embedded_escalation.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

FALLBACK = [
    "Name three colours.",
    "Why is the sky blue?",
    "Write a haiku about autumn.",
    "What is 17 times 23?",
    "Give me a synonym for happy.",
    "Translate 'good morning' into French.",
    "What is the capital of Australia?",
    "Explain photosynthesis in one sentence.",
    "List two benefits of exercise.",
    "Who wrote Hamlet?",
]


def prompts(n: int) -> tuple[list[str], str]:
    from thrifty.data.table_io import benchmark_dir, load_table
    from thrifty.errors import ThriftyError

    try:
        table = load_table(benchmark_dir())
        return [p for p in table.prompts if p and len(p) < 600][:n], "AlpacaEval prompts (shared benchmark)"
    except (ThriftyError, OSError):
        return (FALLBACK * (n // len(FALLBACK) + 1))[:n], "built-in prompts"


async def run(texts: list[str], max_tokens: int) -> list[dict]:
    from thrifty.serving.engine import Engine
    from thrifty.serving.local import embedded_default
    from thrifty.types import ChatRequest

    policy, providers = embedded_default(max_tokens=max_tokens)
    engine = Engine(policy, providers, name="thrifty/default")
    rows = []
    try:
        for text in texts:
            t0 = time.perf_counter()
            trace = await engine.run(ChatRequest.from_prompt(text, model="thrifty/default", max_tokens=max_tokens))
            first = trace.steps[0]
            rows.append(
                {
                    "tiers": list(trace.tiers_tried),
                    "model": trace.model,
                    "score0": first.score,
                    "cost_usd": float(trace.cost_usd),
                    "latency_s": time.perf_counter() - t0,
                }
            )
    finally:
        await engine.aclose()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--json", metavar="FILE", help="also write the results here")
    args = ap.parse_args()
    texts, source = prompts(args.n)
    rows = asyncio.run(run(texts, args.max_tokens))
    escalated = sum(len(r["tiers"]) > 1 for r in rows)
    scores = [r["score0"] for r in rows if r["score0"] is not None]
    out = {
        "prompts": source,
        "n": len(rows),
        "max_tokens": args.max_tokens,
        "escalation_rate": escalated / len(rows),
        "mean_tier0_score": statistics.fmean(scores) if scores else None,
        "median_latency_s": statistics.median(r["latency_s"] for r in rows),
        "mean_cost_usd": statistics.fmean(r["cost_usd"] for r in rows),
        "rows": rows,
    }
    print(f"{source}: {len(rows)} prompts, max_tokens {args.max_tokens}")
    print(
        f"escalated to Gemma: {escalated}/{len(rows)} ({out['escalation_rate']:.0%}); "
        f"mean tier-0 heuristic score {out['mean_tier0_score']:.2f}; median latency {out['median_latency_s']:.2f} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
