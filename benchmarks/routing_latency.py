"""Routing latency: the time of ONE routing decision (embedding + features + head + rule), on this CPU.

For each embedder (MiniLM through torch; the static distilled MiniLM table; MiniLM behind the
in-memory cache for repeated queries) a router (default ``mf``) is fitted on the AlpacaEval table and
the live :class:`RouterPolicy` is asked for its first ``Call`` — everything the gateway does before
any model is called. Queries are the 805 AlpacaEval prompts with a per-run nonce appended, so no
embedding cache can answer them (except in the ``cached`` row, which repeats them on purpose).

- single: one request at a time, p50 / p99 over ``--n`` requests;
- concurrent: ``--concurrency`` (64) threads each routing requests back to back, per-request
  latency p50 / p99 and total throughput (a thread pool, the way a sync gateway worker pool would).

Also reports the routing quality of each embedder's router held-out (5 folds, AlpacaEval-56):
quality at the best single model's cost and oracle-gap closed, from the evaluation harness.

    PYTHONPATH=src python benchmarks/routing_latency.py [--n 300] [--json out.json] [--no-quality]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def _pcts(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()), "n": len(a)}


class _Raw:
    """The uncached inner embedder (no SQLite, no memory): what a never-seen query costs."""

    def __init__(self, inner):
        self.inner, self.name, self.dim = inner, inner.name, inner.dim

    def embed(self, texts):
        return self.inner.embed(texts)


def make_embedder(kind: str):
    from thrifty.scoring.embedding import CachedEmbedder, MiniLMEmbedder

    if kind == "minilm-torch":
        return _Raw(MiniLMEmbedder(threads=1))
    if kind == "static":
        from thrifty.scoring.static_embedding import StaticMiniLMEmbedder

        return StaticMiniLMEmbedder()
    if kind == "minilm-cached":
        import tempfile

        return CachedEmbedder(MiniLMEmbedder(threads=1), path=tempfile.mkdtemp() + "/emb.sqlite")
    raise ValueError(kind)


def time_decisions(policy, prompts: list[str], n: int, concurrency: int) -> dict:
    from thrifty.types import ChatRequest

    def one(text: str) -> float:
        t0 = time.perf_counter()
        plan = policy.plan(ChatRequest.from_prompt(text))
        next(plan)  # the routing decision: Call(tier)
        dt = time.perf_counter() - t0
        plan.close()
        return dt

    for t in prompts[:5]:  # warm-up: load models, first-call allocations
        one(t)
    single = [one(t) for t in prompts[:n]]
    lat: list[float] = []
    lock = threading.Lock()
    batches = [prompts[i::concurrency] for i in range(concurrency)]

    def worker(texts: list[str]) -> None:
        local = [one(t) for t in texts]
        with lock:
            lat.extend(local)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as ex:
        list(ex.map(worker, batches))
    wall = time.perf_counter() - t0
    return {"single": _pcts(single), f"concurrent_{concurrency}": {**_pcts(lat), "throughput_rps": len(lat) / wall}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="mf")
    ap.add_argument("--n", type=int, default=300, help="single-request decisions to time")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--embedders", default="static,minilm-torch,minilm-cached")
    ap.add_argument("--no-quality", action="store_true", help="skip the held-out routing-quality evaluation")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)

    from thrifty.data.table_io import benchmark_dir, load_table
    from thrifty.offline.router_policy import RouterOffline

    table = load_table(benchmark_dir())
    nonce = uuid.uuid4().hex[:8]
    fresh = [f"{p} [{nonce}-{i}]" for i, p in enumerate(table.prompts)]
    results: dict[str, dict] = {}
    for kind in args.embedders.split(","):
        emb = make_embedder(kind)
        pol = RouterOffline(variant=args.variant, embedder=emb)
        fitted = pol.fit(table, [float(np.median([s.cost for s in table.model_stats()]))])
        live = fitted.policy(index=0)
        queries = list(table.prompts) if kind == "minilm-cached" else fresh
        if kind == "minilm-cached":
            emb.embed(queries)  # the repeated-query case: every vector already cached
        row = time_decisions(live, queries, args.n, args.concurrency)
        if not args.no_quality and kind != "minilm-cached":
            from thrifty.offline.evaluate import evaluate

            rep = evaluate(table, RouterOffline(variant=args.variant, embedder=emb if kind == "static" else "minilm"), n_boot=0).to_json()
            row["quality"] = {k: rep[k] for k in ("quality_at_best_single_cost", "savings_at_parity", "oracle_gap_closed")}
        results[kind] = row
        print(f"{kind}: done", file=sys.stderr)

    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Routing decision latency (router:{args.variant}, 56 models, this CPU)")
    for c in (
        "embedder",
        "single p50 ms",
        "single p99 ms",
        f"{args.concurrency}-conc p50 ms",
        f"{args.concurrency}-conc p99 ms",
        "req/s",
        "q@best-cost",
        "gap closed",
    ):
        t.add_column(c, justify="right")
    for kind, r in results.items():
        c = r[f"concurrent_{args.concurrency}"]
        q = r.get("quality", {})
        f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        t.add_row(
            kind,
            f"{r['single']['p50_ms']:.2f}",
            f"{r['single']['p99_ms']:.2f}",
            f"{c['p50_ms']:.2f}",
            f"{c['p99_ms']:.2f}",
            f"{c['throughput_rps']:.0f}",
            f(q.get("quality_at_best_single_cost")),
            f(q.get("oracle_gap_closed")),
        )
    Console(file=sys.stderr, width=160).print(t)
    doc = {"variant": args.variant, "concurrency": args.concurrency, "results": results}
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(doc, fh, indent=2)
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
