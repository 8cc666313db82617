"""Gateway latency on real local models: cold start, per-tier answer latency, added overhead.

Measures, in one run on this machine:

1. **cold start** of ``thrifty serve`` with no config (the embedded two-tier GGUF default): seconds
   from process start until ``/healthz`` answers (models loaded; Gemma weights already assembled);
2. **per-tier latency** of a ``--tokens``-token answer (default 32) from each embedded tier, called by
   its pass-through model name through the gateway (median of ``--tier-reps``);
3. **added latency**: the same short request (``--overhead-tokens``, default 4) sent alternately
   straight to a ``python -m llama_cpp.server`` process and through ``thrifty serve`` passing
   through to that very server; reports both medians and the median of the paired differences
   (``--reps`` pairs, default 40).

Prints a table; ``--json FILE`` writes every number. Run:
``PYTHONPATH=src .venv/bin/python benchmarks/gateway_overhead.py --json runs/gateway_overhead.json``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from harness.servers import free_port, launch, start_serve, stop, wait_http

PROMPT = [{"role": "user", "content": "Name three colours."}]
LONG_PROMPT = [{"role": "user", "content": "Describe the sea in a few sentences."}]  # long enough to fill 32 tokens


def chat(client: httpx.Client, url: str, model: str, tokens: int, messages: list | None = None) -> tuple[float, dict]:
    body = {"model": model, "messages": messages or PROMPT, "max_tokens": tokens, "temperature": 0.0, "seed": 0}
    t0 = time.perf_counter()
    r = client.post(url, json=body)
    dt = time.perf_counter() - t0
    r.raise_for_status()
    return dt, r.json()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=40, help="direct/gateway pairs for the overhead (default 40)")
    ap.add_argument("--tier-reps", type=int, default=5, help="answers per tier for the per-tier latency (default 5)")
    ap.add_argument("--tokens", type=int, default=32, help="answer length for per-tier latency (default 32)")
    ap.add_argument("--overhead-tokens", type=int, default=4, help="answer length for the overhead pairs (default 4)")
    ap.add_argument("--json", metavar="FILE", help="write the results as one JSON object")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 3 pairs, 1 answer per tier, 8-token answers")
    args = ap.parse_args(argv)
    if args.quick:
        args.reps, args.tier_reps, args.tokens = 3, 1, 8

    from thrifty.serving.local import GEMMA3, SMOLLM2, gemma3_path, smollm2_path

    gemma3_path()  # assemble once up front: cold start below measures serving, not unpacking
    tmp = Path(tempfile.mkdtemp(prefix="thrifty-bench-"))
    procs = []
    out: dict = {"machine": {"cpus": os.cpu_count(), "load_avg_1m_at_start": os.getloadavg()[0]}, "tokens": args.tokens}
    try:
        # 1. cold start of the embedded default
        t0 = time.perf_counter()
        p, port = start_serve(tmp / "d1", None, args=["--data-dir", str(tmp / "d1")], log="embedded.log", timeout=300)
        procs.append(p)
        out["cold_start_s"] = time.perf_counter() - t0
        # 2. per-tier latency through the gateway (pass-through model names)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        with httpx.Client(timeout=120) as c:
            per_tier = {}
            for tier in (SMOLLM2, GEMMA3):
                chat(c, url, tier, args.tokens, LONG_PROMPT)  # warm-up
                runs = [chat(c, url, tier, args.tokens, LONG_PROMPT) for _ in range(args.tier_reps)]
                lat = [dt for dt, _ in runs]
                toks = [b["usage"]["completion_tokens"] for _, b in runs]
                per_tier[tier] = {"median_s": statistics.median(lat), "min_s": min(lat), "median_tokens": statistics.median(toks)}
            out["per_tier"] = per_tier
        stop(p)
        procs.remove(p)

        # 3. added latency over calling the llama.cpp server directly
        lport = free_port()
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path()), "--host", "127.0.0.1", "--port", str(lport)]
        cmd += ["--n_threads", "1", "--n_threads_batch", "1", "--n_ctx", "1024", "--model_alias", "smollm2"]
        server = launch(cmd, log=None)
        procs.append(server)
        wait_http(f"http://127.0.0.1:{lport}/v1/models", server, timeout=300)
        cfg = (
            f'[providers.remote]\nkind = "openai"\nbase_url = "http://127.0.0.1:{lport}/v1"\n'
            f'model = "smollm2"\nprices = {{ input = 0.0, output = 0.0 }}\n[profiles.default]\ntiers = ["remote"]\n'
        )
        gw, gport = start_serve(tmp / "d2", cfg, args=["--data-dir", str(tmp / "d2")], log="passthrough.log", timeout=300)
        procs.append(gw)
        direct_url = f"http://127.0.0.1:{lport}/v1/chat/completions"
        gw_url = f"http://127.0.0.1:{gport}/v1/chat/completions"
        with httpx.Client(timeout=120) as c:
            for _ in range(3):
                chat(c, direct_url, "smollm2", args.overhead_tokens)
                chat(c, gw_url, "remote", args.overhead_tokens)
            direct, through, diffs = [], [], []
            for i in range(args.reps):
                order = [(direct_url, "smollm2"), (gw_url, "remote")][:: 1 if i % 2 == 0 else -1]
                res = {}
                for u, m in order:
                    res[u] = chat(c, u, m, args.overhead_tokens)[0]
                direct.append(res[direct_url])
                through.append(res[gw_url])
                diffs.append(res[gw_url] - res[direct_url])
        out["overhead"] = {
            "reps": args.reps,
            "tokens": args.overhead_tokens,
            "direct_median_ms": 1000 * statistics.median(direct),
            "gateway_median_ms": 1000 * statistics.median(through),
            "added_median_ms": 1000 * statistics.median(diffs),
            "added_p90_ms": 1000 * sorted(diffs)[int(0.9 * (len(diffs) - 1))],
        }
    finally:
        for p in procs:
            stop(p)

    o = out["overhead"]
    print(f"load average at start: {out['machine']['load_avg_1m_at_start']:.1f} on {out['machine']['cpus']} CPUs")
    print(f"{'measure':44s} {'value':>12s}")
    print(f"{'cold start, thrifty serve (embedded default)':44s} {out['cold_start_s']:>10.2f} s")
    for tier, v in out["per_tier"].items():
        print(f"{f'{tier}: {args.tokens}-token answer (median)':44s} {v['median_s']:>10.3f} s  ({v['median_tokens']:.0f} tokens)")
    print(f"{'llama.cpp server direct (median)':44s} {o['direct_median_ms']:>9.1f} ms")
    print(f"{'through thrifty pass-through (median)':44s} {o['gateway_median_ms']:>9.1f} ms")
    print(
        f"{'added by the gateway (median of pairs)':44s} {o['added_median_ms']:>9.1f} ms  (p90 {o['added_p90_ms']:.1f} ms, n={o['reps']})"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
