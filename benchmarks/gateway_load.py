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
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BODY = json.dumps({"model": "MODEL", "messages": [{"role": "user", "content": "Reply with OK."}], "max_tokens": 8})


@dataclass
class Result:
    name: str
    target: str
    p50_ms: float = float("nan")
    p90_ms: float = float("nan")
    p99_ms: float = float("nan")
    rps: float = float("nan")
    errors: int = 0
    requests: int = 0
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ---- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not up after {timeout}s")


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by every process in process group ``pgid`` (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the command name: state ppid pgrp … utime(11) stime(12)
            total += int(fields[11]) + int(fields[12])
    return total / tick


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def start_upstream() -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "bench_upstream.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("READY"):
        raise RuntimeError(f"benchmark upstream failed: {line}")
    return proc, port


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
    """The real ``thrifty serve`` command (``python -m thrifty`` is the ``thrifty`` script), or with
    ``uvicorn=True`` bare uvicorn on the app factory with the given ``loop`` and ``http``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "thrifty.toml"
    path.write_text(cfg)
    port = free_port()
    env = {**os.environ, "THRIFTY_CONFIG": str(path), "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log = open(data_dir / "server.log", "ab")
    if uvicorn:
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "thrifty.gateway.app:app_from_env",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            loop,
            "--http",
            http,
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    else:
        cmd = [sys.executable, "-m", "thrifty", "serve", "--config", str(path), "--port", str(port), "--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=str(data_dir))
    log.close()
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    return proc, port


# ---- load generators -----------------------------------------------------------------------------

_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNIT[m.group(2)]


def run_wrk(url: str, model: str, connections: int, duration: float, threads: int = 1, headers: dict[str, str] | None = None) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        body = BODY.replace("MODEL", model).replace("\\", "\\\\").replace("'", "\\'")
        fh.write(f"wrk.method = 'POST'\nwrk.body = '{body}'\nwrk.headers['Content-Type'] = 'application/json'\n")
        for name, value in (headers or {}).items():
            fh.write(f"wrk.headers['{name}'] = '{value}'\n")
        script = fh.name
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(duration))}s",
                "--latency",
                "--timeout",
                "10s",
                "-s",
                script,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=duration + 60,
        ).stdout
    finally:
        os.unlink(script)
    r = Result("", url)
    for pct, attr in (("50", "p50_ms"), ("90", "p90_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            setattr(r, attr, _ms(m.group(1)))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r.rps = float(m.group(1)) if m else float("nan")
    m = re.search(r"(\d+) requests in", out)
    r.requests = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    r.errors = errors
    return r


async def _httpx_load(url: str, model: str, connections: int, duration: float) -> Result:
    import httpx

    body = BODY.replace("MODEL", model).encode()
    lat: list[float] = []
    errors = 0
    end = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                try:
                    r = await client.post(url, content=body, headers={"content-type": "application/json"})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                lat.append((time.perf_counter() - t0) * 1e3)
                errors += not ok

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - t0
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [float("nan")] * 99
    return Result("", url, p50_ms=q[49], p90_ms=q[89], p99_ms=q[98], rps=len(lat) / elapsed, errors=errors, requests=len(lat))


def measure(
    url: str,
    model: str,
    *,
    duration: float,
    lat_conns: int,
    tput_conns: int,
    tool: str,
    pgid: int | None = None,
    headers: dict[str, str] | None = None,
    cpu_s: Any = None,
) -> Result:
    """Latency at ``lat_conns`` connections, throughput at ``tput_conns`` (one warm-up second first).

    With ``pgid`` (the server's process group; ``cpu_s(pgid)`` reads CPU seconds, default
    :func:`group_cpu_s`) it also reports the server's CPU milliseconds per request during the
    throughput run: a number that holds on a busy machine, unlike req/s. ``headers``: sent by wrk.
    """
    cpu_s = cpu_s or group_cpu_s
    load = (
        (lambda c, d: run_wrk(url, model, c, d, headers=headers))
        if tool == "wrk"
        else (lambda c, d: asyncio.run(_httpx_load(url, model, c, d)))
    )
    load(tput_conns, 1)  # warm-up: connections, caches, first log rows
    lat = load(lat_conns, duration)
    cpu0 = cpu_s(pgid) if pgid else 0.0
    tput = load(tput_conns, duration)
    cpu_ms = (cpu_s(pgid) - cpu0) * 1e3 / max(1, tput.requests) if pgid else float("nan")
    return Result(
        "",
        url,
        p50_ms=lat.p50_ms,
        p90_ms=lat.p90_ms,
        p99_ms=lat.p99_ms,
        rps=tput.rps,
        errors=lat.errors + tput.errors,
        requests=lat.requests + tput.requests,
        extra={
            "rps_at_latency_conns": round(lat.rps, 1),
            "p50_ms_at_throughput_conns": round(tput.p50_ms, 3),
            "server_cpu_ms_per_request": round(cpu_ms, 3),
        },
    )


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
        direct = measure(f"http://127.0.0.1:{up_port}/v1/chat/completions", "bench-cheap", pgid=upstream.pid, **kw)
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
                    r = measure(f"http://127.0.0.1:{port}/v1/chat/completions", model, pgid=gw.pid, **kw)
                    r.name, r.notes = label, server
                    results.append(r)
            finally:
                stop(gw)
    finally:
        stop(upstream)
        shutil.rmtree(tmp, ignore_errors=True)

    base = results[0]
    for r in results[1:]:
        r.extra["added_p50_ms"] = round(r.p50_ms - base.p50_ms, 3)
        r.extra["added_p99_ms"] = round(r.p99_ms - base.p99_ms, 3)
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
