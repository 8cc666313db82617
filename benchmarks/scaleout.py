"""Scale-out benchmark: one replica on SQLite, one on PostgreSQL, and 2–3 replicas on PostgreSQL + Redis.

In ONE run, on loopback, against the same instant upstream (``benchmarks/bench_upstream.py``):

1. the upstream alone (the floor);
2. 1 ``thrifty serve`` replica on the embedded SQLite store;
3. 1 replica on PostgreSQL (a real server: initdb + pg_ctl, fsync on, default durability);
4. 2 and 3 replicas sharing that PostgreSQL and a Redis completion cache (``redis-server``).

Every request carries an API key with a (large) spend limit, so each one takes a budget hold and
settles it — the store work a real deployment does — and a unique prompt, so the cache misses
(one Redis GET and SET each) rather than answering from memory. Load comes from ``wrk`` (one
process per replica, the connections split between them): first at 1 connection per replica for
latency (p50/p99; "added" = minus the upstream's own), then at ``--tput-conns`` for throughput.
CPU milliseconds per request are measured for every server process — the replicas, PostgreSQL
(the postmaster and its backends), Redis — because on a shared 2-core machine req/s says more
about the machine than about thrifty, while CPU per request holds on bigger machines
(docs/scaleout.md extrapolates from it).

    python benchmarks/scaleout.py [--duration 5] [--tput-conns 32] [--quick]

Writes ``results/scaleout.json`` (with the git commit it ran on) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from harness.cpu import children_of, group_cpu_s, pids_cpu_s
from harness.load import Result, run_wrk_scripts
from harness.measure import git_commit, measure
from harness.servers import ROOT, start_upstream, start_uvicorn, stop

sys.path.insert(0, str(ROOT / "tests" / "e2e"))  # db_servers: the PostgreSQL and Redis the e2e tests start

KEY = "sk-bench-scaleout-0123456789abcdef"

_LUA = """
counter = 0
request = function()
  counter = counter + 1
  local body = '{"model":"thrifty/default","messages":[{"role":"user","content":"Reply with OK. %s-' .. counter .. '"}],"max_tokens":8,"temperature":0}'
  return wrk.format("POST", "/v1/chat/completions", {["Content-Type"]="application/json", ["Authorization"]="Bearer %s"}, body)
end
"""


def _config(upstream_port: int, data_dir: Path, store: str | None, redis: bool) -> str:
    from thrifty.config.settings import hash_key

    server = f'[server]\ndata_dir = "{data_dir}"\nrequest_timeout_s = 30\n' + (f'store = "{store}"\n' if store else "")
    cache = '[profiles.default.cache]\nmode = "exact"\nredis_url_env = "THRIFTY_BENCH_REDIS"\n\n' if redis else ""
    return (
        server + "\n" + f'[providers.cheap]\nkind = "openai"\nmodel = "bench-cheap"\nbase_url = "http://127.0.0.1:{upstream_port}/v1"\n'
        "prices = { input = 0.1, output = 0.4 }\ntimeout_s = 10\nmax_tokens = 16\n\n"
        '[profiles.default]\ntiers = ["cheap"]\n\n' + cache + f'[keys.bench]\nsha256 = "{hash_key(KEY)}"\nlimit_usd = 1000000.0\n'
    )


def _wrk(ports: list[int], connections: int, duration: float, tag: str) -> Result:
    """One wrk per port at once, ``connections`` split between them; summed req/s, mean p50, max p99."""
    per = max(1, connections // len(ports))
    stamp = f"{tag}-{time.time_ns()}"  # every prompt unique: the cache misses
    runs = run_wrk_scripts([(f"http://127.0.0.1:{port}", _LUA % (f"{stamp}-{i}", KEY)) for i, port in enumerate(ports)], per, duration)
    return Result(
        tag,
        ",".join(str(p) for p in ports),
        p50_ms=sum(r.p50_ms for r in runs) / len(runs),
        p99_ms=max(r.p99_ms for r in runs),
        rps=sum(r.rps for r in runs),
        requests=sum(r.requests for r in runs),
        errors=sum(r.errors for r in runs),
    )


def _postgres_pids(data: Path) -> list[int]:
    """The postmaster and its children (the backends serving the replicas)."""
    master = int((data / "postmaster.pid").read_text().split()[0])
    return [master, *children_of(master)]


def _measure(
    name: str, ports: list[int], procs: list[subprocess.Popen], extra_pids: dict[str, Callable[[], list[int]]], args: argparse.Namespace
) -> dict[str, Any]:
    """Latency at 1 connection per replica, throughput at ``--tput-conns`` in all; CPU per request of
    the replicas (their process groups) and of each of ``extra_pids`` (PostgreSQL, Redis)."""
    cpu: dict[str, Callable[[], float]] = {"gateway": lambda: sum(group_cpu_s(p.pid) for p in procs)}
    cpu.update({k: (lambda f=f: pids_cpu_s(f())) for k, f in extra_pids.items()})
    r = measure(lambda c, d: _wrk(ports, c, d, name), duration=args.duration, lat_conns=len(ports), tput_conns=args.tput_conns, cpu=cpu)
    return {
        "name": name,
        "replicas": len(ports),
        "p50_ms": r.p50_ms,
        "p99_ms": r.p99_ms,
        "rps": r.rps,
        "p50_ms_at_throughput": r.extra["p50_ms_at_throughput_conns"],
        "errors": r.errors,
        "requests": r.requests,
        **{k: v for k, v in r.extra.items() if k.endswith("_cpu_ms_per_request")},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="thrifty scale-out benchmark: SQLite vs PostgreSQL vs replicas on PostgreSQL + Redis")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    ap.add_argument("--tput-conns", type=int, default=32, help="connections in all for the throughput measurement (default 32)")
    ap.add_argument("--max-replicas", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="2 s per measurement")
    ap.add_argument("--out", default=str(ROOT / "results" / "scaleout.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.duration = 2.0
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    from db_servers import PASSWORD, PostgresServer, RedisServer

    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()[0]  # other work on the machine inflates every number: recorded with them
    tmp = Path(tempfile.mkdtemp(prefix="thrifty-scaleout-"))
    upstream, up_port = start_upstream()
    try:
        direct = _wrk([up_port], 1, args.duration, "direct")
        rows.append(
            {
                "name": "upstream direct",
                "replicas": 0,
                **{k: getattr(direct, k) for k in ("p50_ms", "p99_ms", "rps", "requests", "errors")},
                "gateway_cpu_ms_per_request": 0.0,
            }
        )
        proc, port = start_uvicorn(tmp / "sqlite", _config(up_port, tmp / "sqlite", None, False))
        try:
            rows.append(_measure("1 replica, SQLite", [port], [proc], {}, args))
        finally:
            stop(proc)
        with PostgresServer(fsync=True) as pg, RedisServer() as redis:
            env = {"PGPASSWORD": PASSWORD, "THRIFTY_BENCH_REDIS": redis.url}
            pg_pids = {"postgres": lambda: _postgres_pids(pg.data)}
            for n, use_redis in [(1, False)] + [(k, True) for k in range(2, args.max_replicas + 1)]:
                store = pg.create_database()
                started = [
                    start_uvicorn(tmp / f"pg{n}-{i}", _config(up_port, tmp / f"pg{n}-{i}", store, use_redis), env=env) for i in range(n)
                ]
                try:
                    extra = dict(pg_pids)
                    if use_redis:
                        extra["redis"] = lambda: [redis.proc.pid]
                    name = f"{n} replica{'s' if n > 1 else ''}, PostgreSQL" + (" + Redis cache" if use_redis else "")
                    rows.append(_measure(name, [p for _, p in started], [p for p, _ in started], extra, args))
                finally:
                    for p, _ in started:
                        stop(p)
    finally:
        stop(upstream)
        shutil.rmtree(tmp, ignore_errors=True)

    base = rows[0]
    for r in rows[1:]:
        r["added_p50_ms"] = r["p50_ms"] - base["p50_ms"]
        r["added_p99_ms"] = r["p99_ms"] - base["p99_ms"]
        r["store_cpu_ms_per_request"] = r.get("postgres_cpu_ms_per_request", 0.0) + r.get("redis_cpu_ms_per_request", 0.0)
    commit = git_commit()
    doc = {
        "benchmark": "scaleout",
        "commit": commit,
        "cpus": os.cpu_count(),
        "duration_s": args.duration,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "throughput_connections": args.tput_conns,
        "tool": "wrk",
        "rows": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(
        f"wrk, {args.duration:g}s per measurement; latency at 1 connection per replica, throughput at {args.tput_conns} in all;"
        f" {os.cpu_count()} CPUs (replicas, PostgreSQL, Redis and wrk share them)"
    )
    print(
        f"{'setup':40} {'p50 ms':>7} {'p99 ms':>7} {'+p50':>6} {'+p99':>6} {'req/s':>7} {'gw cpu ms/req':>13} {'pg ms/req':>9} {'redis ms/req':>12} {'errors':>6}"
    )
    for r in rows:
        print(
            f"{r['name']:40} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} {r.get('added_p50_ms', 0):6.2f} {r.get('added_p99_ms', 0):6.2f}"
            f" {r['rps']:7.0f} {r['gateway_cpu_ms_per_request']:13.3f} {r.get('postgres_cpu_ms_per_request', 0):9.3f}"
            f" {r.get('redis_cpu_ms_per_request', 0):12.3f} {r['errors']:6d}"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
