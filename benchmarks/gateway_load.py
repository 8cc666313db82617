"""Load benchmark: what thrifty adds on top of an upstream that answers instantly.

In ONE run, on loopback:

1. start the benchmark upstream (``benchmarks/bench_upstream.py``: a fixed answer, no model);
2. load it directly (the floor);
3. start the real ``thrifty serve`` command (``python -m thrifty serve --config … --port …``, as a
   user runs it) in front of it and load it through a pass-through model, a 2-tier cascade whose
   first tier is accepted (one upstream call + scoring), and a 2-tier cascade that always escalates
   (two upstream calls);
4. try server variants on the pass-through route: bare uvicorn with the stock asyncio loop + h11
   parser, ``thrifty serve --workers 2``, and no upstream connection pooling (``Connection: close``).

Each configuration is measured twice with ``wrk`` (Debian package; an async httpx generator when
``wrk`` is missing): at low concurrency for latency (p50/p99) and at high concurrency for
throughput (req/s). "Added" latency = thrifty's percentile minus the direct upstream's percentile
in the same run. Prints a table; ``--json`` prints one JSON object (``added_p50_ms``,
``added_p99_ms``, ``rps`` are the pass-through numbers of the default server).

    python benchmarks/gateway_load.py [--duration 5] [--json] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.cpu import group_cpu_s
from harness.load import Result, httpx_load, run_wrk
from harness.measure import add_added_latency, measure
from harness.servers import start_serve, start_upstream, start_uvicorn, stop


def gateway_config(upstream_port: int, data_dir: Path, *, pooled: bool = True) -> str:
    url = f"http://127.0.0.1:{upstream_port}/v1"
    headers = "" if pooled else 'options = { headers = { Connection = "close" } }\n'
    prov = ""
    for name in ("cheap", "strong"):
        prov += (
            f'[providers.{name}]\nkind = "openai"\nmodel = "bench-{name}"\nbase_url = "{url}"\n'
            f"prices = {{ input = 0.1, output = 0.4 }}\ntimeout_s = 10\nmax_tokens = 16\n{headers}\n"
        )
    return (
        f'[server]\ndata_dir = "{data_dir}"\nrequest_timeout_s = 30\n\n'
        + prov
        + '[profiles.default]\ntiers = ["cheap"]\n\n'
        + '[profiles.cascade]\ntiers = ["cheap", "strong"]\nthresholds = [0.0]\n\n'
        + '[profiles.escalate]\ntiers = ["cheap", "strong"]\nthresholds = [1.5]\n'
    )


def start_gateway(
    cfg: str, data_dir: Path, *, uvicorn: bool = False, loop: str = "uvloop", http: str = "httptools", workers: int = 1
) -> tuple[subprocess.Popen, int]:
    """The real ``thrifty serve`` command, or with ``uvicorn=True`` bare uvicorn on the app factory
    with the given ``loop`` and ``http``."""
    if uvicorn:
        return start_uvicorn(data_dir, cfg, loop=loop, http=http, workers=workers)
    return start_serve(data_dir, cfg, workers=workers)


def measure_url(url: str, model: str, *, pgid: int, duration: float, lat_conns: int, tput_conns: int, tool: str) -> Result:
    """:func:`harness.measure.measure` with wrk (or httpx) on ``url``; the server's CPU is its process group's."""

    def load(connections: int, seconds: float) -> Result:
        if tool == "wrk":
            return run_wrk(url, model, connections, seconds)
        return asyncio.run(httpx_load(url, model, connections, seconds))

    return measure(load, duration=duration, lat_conns=lat_conns, tput_conns=tput_conns, cpu={"server": lambda: group_cpu_s(pgid)})


# ---- the run -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="thrifty gateway load benchmark (loopback, instant upstream)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    ap.add_argument("--lat-conns", type=int, default=1, help="connections for the latency measurement (default 1: no queueing)")
    ap.add_argument("--tput-conns", type=int, default=32, help="connections for the throughput measurement (default 32)")
    ap.add_argument("--quick", action="store_true", help="2 s per measurement, no server variants")
    ap.add_argument("--tool", choices=["auto", "wrk", "httpx"], default="auto", help="load generator")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)
    duration = 2.0 if args.quick else args.duration
    tool = args.tool if args.tool != "auto" else ("wrk" if shutil.which("wrk") else "httpx")
    kw = dict(duration=duration, lat_conns=args.lat_conns, tput_conns=args.tput_conns, tool=tool)

    results: list[Result] = []
    upstream, up_port = start_upstream()
    tmp = Path(tempfile.mkdtemp(prefix="thrifty-load-"))
    try:
        direct = measure_url(f"http://127.0.0.1:{up_port}/v1/chat/completions", "bench-cheap", pgid=upstream.pid, **kw)
        direct.name, direct.notes = "upstream direct", "the floor: no gateway"
        results.append(direct)

        variants: list[tuple[str, dict[str, Any], bool, list[tuple[str, str]]]] = [
            (
                "thrifty serve (uvloop+httptools)",
                {},
                True,
                [
                    ("thrifty pass-through", "cheap"),
                    ("thrifty cascade, tier 0 accepted", "thrifty/cascade"),
                    ("thrifty cascade, escalates", "thrifty/escalate"),
                ],
            ),
        ]
        if not args.quick:
            variants += [
                (
                    "uvicorn, asyncio+h11, 1 worker",
                    {"uvicorn": True, "loop": "asyncio", "http": "h11"},
                    True,
                    [("thrifty pass-through", "cheap")],
                ),
                ("thrifty serve --workers 2", {"workers": 2}, True, [("thrifty pass-through", "cheap")]),
                ("thrifty serve, no upstream pooling", {}, False, [("thrifty pass-through", "cheap")]),
            ]
        for i, (server, opts, pooled, routes) in enumerate(variants):
            data = tmp / f"gw{i}"
            gw, port = start_gateway(gateway_config(up_port, data, pooled=pooled), data, **opts)
            try:
                for label, model in routes:
                    r = measure_url(f"http://127.0.0.1:{port}/v1/chat/completions", model, pgid=gw.pid, **kw)
                    r.name, r.notes = label, server
                    results.append(r)
            finally:
                stop(gw)
    finally:
        stop(upstream)
        shutil.rmtree(tmp, ignore_errors=True)

    add_added_latency(results[1:], results[0])
    main_row = results[1]
    summary = {
        "added_p50_ms": main_row.extra["added_p50_ms"],
        "added_p99_ms": main_row.extra["added_p99_ms"],
        "rps": round(main_row.rps, 1),
        "server_cpu_ms_per_request": main_row.extra["server_cpu_ms_per_request"],
        "tool": tool,
        "duration_s": duration,
        "latency_connections": args.lat_conns,
        "throughput_connections": args.tput_conns,
        "cpus": os.cpu_count(),
        "targets": {"added_p50_ms": 3.0, "added_p99_ms": 15.0, "rps": 1000.0},
        "results": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(r).items()} for r in results],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"load: {tool}, {duration:g}s per measurement; latency at {args.lat_conns} connections, throughput at {args.tput_conns}; {os.cpu_count()} CPUs"
    )
    print(f"{'route':34} {'server':40} {'p50 ms':>8} {'p99 ms':>8} {'+p50':>7} {'+p99':>7} {'req/s':>8} {'cpu ms/req':>10} {'errors':>6}")
    for r in results:
        add50 = r.extra.get("added_p50_ms", 0.0)
        add99 = r.extra.get("added_p99_ms", 0.0)
        cpu = r.extra.get("server_cpu_ms_per_request", float("nan"))
        print(f"{r.name:34} {r.notes:40} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {add50:7.2f} {add99:7.2f} {r.rps:8.0f} {cpu:10.3f} {r.errors:6d}")
    print(
        f"\npass-through: added p50 {summary['added_p50_ms']} ms (target ≤ 3), added p99 {summary['added_p99_ms']} ms "
        f"(target ≤ 15), {summary['rps']} req/s (target ≥ 1000); the gateway used {summary['server_cpu_ms_per_request']} ms "
        f"of CPU per request (≤ 2 ms is needed for 1000 req/s on 2 cores)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
