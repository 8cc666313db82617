"""Benchmark the embedded local default: cold start, and latency of a 32-token answer per tier.

    PYTHONPATH=src python benchmarks/local_tiers.py [--runs 5] [--max-tokens 32] [--json out.json]

Cold start = from process start to both models loaded and ready (import llama_cpp, locate / verify
the weights, load SmolLM2, load Gemma). With ``--assemble`` the Gemma chunks are also joined afresh
in a temporary data dir (first run on a new machine). Per tier: median (and min/max) over ``--runs``
of a direct ``provider.complete()`` asked for ``--max-tokens`` tokens (transcript stop sequences off,
so answers run to the limit), the output tokens actually produced, tokens/s (prompt processing
included), and the same call through a one-tier :class:`Engine`; plus the engine's own overhead
measured around instant fake providers (the model timings are too noisy to show it).
One warm-up call per tier is not counted. llama.cpp runs with 1 thread (see ../shared/RUNTIME.md).
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

PROMPTS = {
    "smollm2-135m-instruct": "Write a short story about a robot who learns to paint.",
    "gemma-3-270m": "Write a short story about a robot who learns to paint.",
}


async def engine_overhead(n: int = 2000) -> float:
    """Median µs the Engine adds around an instant provider (plan, scoring, trace), two tiers, escalating."""
    from thrifty.policy.cascade import CascadePolicy
    from thrifty.scoring.heuristic import HeuristicScorer
    from thrifty.serving.engine import Engine
    from thrifty.types import ChatRequest, Completion

    class Instant:
        def __init__(self, name: str) -> None:
            self.name = name

        async def complete(self, request: ChatRequest) -> Completion:
            return Completion("I'm sorry, I cannot answer that.", self.name)

    engine = Engine(CascadePolicy(["a", "b"], [0.75], HeuristicScorer()), {"a": Instant("a"), "b": Instant("b")})
    req = ChatRequest.from_prompt("What is the capital of France?")
    times = []
    for _ in range(n):
        t = time.perf_counter()
        await engine.run(req)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--assemble", action="store_true", help="also time joining the Gemma chunks in a fresh data dir")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from thrifty.policy.cascade import CascadePolicy
    from thrifty.serving.engine import Engine
    from thrifty.types import ChatRequest

    result: dict = {"runs": args.runs, "max_tokens": args.max_tokens, "n_threads": 1}
    t = time.perf_counter()
    import llama_cpp  # noqa: F401

    result["import_llama_cpp_s"] = time.perf_counter() - t
    from thrifty.serving.local import embedded_default

    data_dir = tempfile.mkdtemp(prefix="thrifty-bench-") if args.assemble else None
    t = time.perf_counter()
    policy, providers = embedded_default(data_dir)
    result["locate_weights_s"] = time.perf_counter() - t
    loads = {}
    for name, provider in providers.items():
        loads[name] = provider.load()
    result["load_s"] = loads
    result["cold_start_s"] = time.perf_counter() - T0
    result["assembled_fresh"] = bool(args.assemble)

    from thrifty.serving.providers.llamacpp import LlamaCppProvider

    async def bench() -> dict:
        out = {}
        for name, tier in providers.items():
            # the same loaded model, without the transcript stop sequences, so every answer runs to max_tokens
            provider = LlamaCppProvider(
                name, tier.model_path, mode=tier.mode, examples=tier.examples, stop=("\n\n\n\n\n\n",), defaults=tier.defaults
            )
            req = ChatRequest.from_prompt(PROMPTS[name], max_tokens=args.max_tokens)
            engine = Engine(CascadePolicy([name], [], None), {name: provider}, name=name)
            await provider.complete(req)  # warm-up (not counted)
            direct, via_engine, tokens = [], [], []
            for _ in range(args.runs):
                t = time.perf_counter()
                c = await provider.complete(req)
                direct.append(time.perf_counter() - t)
                tokens.append(c.usage.output_tokens)
                t = time.perf_counter()
                await engine.run(req)
                via_engine.append(time.perf_counter() - t)
            med = statistics.median(direct)
            out[name] = {
                "median_s": med,
                "min_s": min(direct),
                "max_s": max(direct),
                "output_tokens_median": statistics.median(tokens),
                "tokens_per_s": statistics.median(tokens) / med,
                "engine_median_s": statistics.median(via_engine),
                "engine_overhead_ms": (statistics.median(via_engine) - med) * 1000,
                "sample": c.text[:80],
            }
        return out

    result["tiers"] = asyncio.run(bench())
    result["engine_overhead_us"] = asyncio.run(engine_overhead())
    result["load_average"] = os.getloadavg()

    console = Console(width=120)
    console.print(
        f"cold start {result['cold_start_s']:.2f} s  (import llama_cpp {result['import_llama_cpp_s']:.2f} s, "
        f"weights {result['locate_weights_s']:.2f} s{' incl. assembly' if args.assemble else ''}, "
        + ", ".join(f"load {k} {v:.2f} s" for k, v in loads.items())
        + ")"
    )
    table = Table(title=f"{args.max_tokens}-token answer, median of {args.runs} (1 thread)")
    for col in ("tier", "median s", "min s", "max s", "tokens", "tok/s", "via Engine s", "engine overhead ms"):
        table.add_column(col, justify="left" if col == "tier" else "right")
    for name, r in result["tiers"].items():
        table.add_row(
            name,
            f"{r['median_s']:.3f}",
            f"{r['min_s']:.3f}",
            f"{r['max_s']:.3f}",
            f"{r['output_tokens_median']:.0f}",
            f"{r['tokens_per_s']:.0f}",
            f"{r['engine_median_s']:.3f}",
            f"{r['engine_overhead_ms']:.1f}",
        )
    console.print(table)
    console.print(
        f"engine overhead (two tiers, instant fake providers, plan + heuristic score + trace): "
        f"{result['engine_overhead_us']:.0f} µs median; load average {result['load_average'][0]:.1f} on "
        f"{os.cpu_count()} cores"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
