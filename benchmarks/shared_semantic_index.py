"""Semantic lookup cost on a shared Redis cache: the stream-fed local index vs fetching every candidate.

In ONE run: start ``redis-server`` (Debian package) on a free loopback port, write ``--n`` semantic
entries of one context (random unit ``[whole ‖ last paragraph]`` vectors, 2 × 384 floats, as MiniLM
would give) through one ``RedisStore``, then time a second store (another replica's view):

- ``bootstrap`` — the first lookup of a new replica (loads every entry once);
- ``lookup (index)`` — ``candidates()`` + ``SemanticMatcher.best`` on the mirrored matrix: one round
  trip to read new stream events, then an exact cosine over the local matrix;
- ``lookup (fetch all)`` — what a lookup costs when every candidate's vector is read from Redis per
  lookup (``ZRANGE`` + pipelined ``HMGET`` of all entries, then the same matcher) — the layout before
  the shared index.

Embedding time is not included (the same in both). Prints a table; ``--json`` writes the numbers.

    PYTHONPATH=src .venv/bin/python benchmarks/shared_semantic_index.py [--n 1000,10000] [--json results/shared_semantic_index.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from harness.measure import git_commit
from harness.servers import free_port, launch, stop, wait_tcp

DIM = 384


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _fetch_all(store, context: str):  # the per-lookup read of every candidate (the old layout)
    from thrifty.serving.cache.store import Candidate

    r = store._redis()
    keys = [k.decode() for k in r.zrange(store._k("ctx", context), 0, -1)]
    pipe = r.pipeline()
    for key in keys:
        pipe.hmget(store._k("e", key), "query", "vec")
    return [Candidate(k, q.decode(), np.frombuffer(v, dtype=np.float32)) for k, (q, v) in zip(keys, pipe.execute()) if q and v]


def _ms(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return round(1000 * statistics.median(s), 3), round(1000 * s[int(0.99 * (len(s) - 1))], 3)


def run(url: str, n: int, lookups: int) -> dict[str, float]:
    from thrifty.serving.cache import RedisStore, SemanticMatcher
    from thrifty.serving.cache.store import CacheEntry

    rng = np.random.default_rng(0)
    writer = RedisStore(url, prefix=f"bench{n}:", max_entries=None)
    writer.clear()
    whole, tail = _unit(rng, n), _unit(rng, n)
    for i in range(n):
        writer.put(CacheEntry(f"k{i}", "ctx", f"query number {i}", np.concatenate([whole[i], tail[i]]), {"text": "x", "model": "m"}))
    reader = RedisStore(url, prefix=f"bench{n}:", max_entries=None)
    matcher = SemanticMatcher(guard="off")
    probes = [np.concatenate([whole[i], tail[i]]) for i in rng.integers(0, n, lookups)]
    t0 = time.perf_counter()
    reader.candidates("ctx")
    bootstrap = time.perf_counter() - t0
    index, fetch = [], []
    for vec in probes:
        t0 = time.perf_counter()
        hit = matcher.best("q", vec, reader.candidates("ctx"))
        index.append(time.perf_counter() - t0)
        assert hit is not None and hit.similarity > 0.999
    for vec in probes[: max(5, lookups // 10)]:
        t0 = time.perf_counter()
        hit = matcher.best("q", vec, _fetch_all(reader, "ctx"))
        fetch.append(time.perf_counter() - t0)
        assert hit is not None and hit.similarity > 0.999
    writer.clear()
    i50, i99 = _ms(index)
    f50, f99 = _ms(fetch)
    return {
        "n": n,
        "bootstrap_ms": round(1000 * bootstrap, 1),
        "index_p50_ms": i50,
        "index_p99_ms": i99,
        "fetch_all_p50_ms": f50,
        "fetch_all_p99_ms": f99,
        "mirror_mb": round(n * 2 * DIM * 4 / 1e6, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="1000,10000", help="entries per run, comma-separated (default 1000,10000)")
    ap.add_argument("--lookups", type=int, default=200)
    ap.add_argument("--json")
    args = ap.parse_args()
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server not installed (apt-get install redis-server)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="thrifty-redis-")
    proc = launch([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir], log=None)
    try:
        wait_tcp(port, proc)
        rows = [run(f"redis://127.0.0.1:{port}/0", int(n), args.lookups) for n in args.n.split(",")]
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{'entries':>8s} {'bootstrap ms':>13s} {'index p50/p99 ms':>18s} {'fetch-all p50/p99 ms':>22s} {'mirror MB':>10s}")
    for r in rows:
        print(
            f"{r['n']:8d} {r['bootstrap_ms']:13.1f} {r['index_p50_ms']:>8.3f} / {r['index_p99_ms']:<7.3f} "
            f"{r['fetch_all_p50_ms']:>10.2f} / {r['fetch_all_p99_ms']:<9.2f} {r['mirror_mb']:10.1f}"
        )
    if args.json:
        commit = git_commit()
        Path(args.json).write_text(json.dumps({"commit": commit, "lookups": args.lookups, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
