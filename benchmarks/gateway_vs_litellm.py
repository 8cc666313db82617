"""thrifty vs the LiteLLM proxy, as users run them, in one run on loopback.

Both gateways sit in front of the same instant upstream (``benchmarks/bench_upstream.py``: a fixed
answer, no model) and are loaded by the same generator (``wrk``, one thread):

- **thrifty**: the real command, ``python -m thrifty serve --config … --port …`` (a subprocess; one
  worker; uvloop + httptools when installed, as the ``serve`` extra installs them), one pass-through
  model, an API key configured (``[keys.bench]``), and — unlike LiteLLM here — a committed SQLite log
  row per request;
- **LiteLLM**: ``litellm --config … --port … --num_workers 1`` from its own virtualenv, installed by
  this script on first use (``python -m venv /tmp/litellm-venv`` + ``pip install 'litellm[proxy]'``;
  ``--litellm-venv`` to put it elsewhere), no database, its own master key (``LITELLM_MASTER_KEY``),
  the local model-cost map (no network at start-up); health at ``/health/liveliness``.

Per server: two warm-up seconds, then latency at 1 connection (p50/p99; "added" = minus the direct
upstream's percentile in the same run), throughput at 32 connections (req/s), and the server's CPU
milliseconds per request during the throughput run (utime + stime from ``/proc/<pid>/stat`` of the
server's process tree — the number that holds on a busy machine, unlike req/s). Between phases the
script waits until the server is idle again, so a backlog of one phase is not timed in the next.

    python benchmarks/gateway_vs_litellm.py [--duration 5] [--quick] [--json results/gateway_vs_litellm.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.cpu import settle, tree_cpu_s
from harness.load import Result, run_wrk
from harness.measure import add_added_latency, git_commit, measure
from harness.servers import free_port, launch, start_serve, start_upstream, stop, wait_http

KEY = "sk-bench-0123456789"
MODEL = "bench-cheap"


def thrifty_config(upstream_port: int, data_dir: Path) -> str:
    return (
        f'[server]\ndata_dir = "{data_dir}"\nrequest_timeout_s = 30\n\n'
        f'[keys.bench]\nsha256 = "{hashlib.sha256(KEY.encode()).hexdigest()}"\n\n'
        f'[providers.{MODEL}]\nkind = "openai"\nmodel = "{MODEL}"\nbase_url = "http://127.0.0.1:{upstream_port}/v1"\n'
        "prices = { input = 0.1, output = 0.4 }\ntimeout_s = 10\nmax_tokens = 16\n"
    )


def start_thrifty(upstream_port: int, data_dir: Path) -> tuple[subprocess.Popen, int]:
    """``thrifty serve`` exactly as a user starts it."""
    return start_serve(data_dir, thrifty_config(upstream_port, data_dir))


def litellm_venv(path: Path) -> Path:
    """The LiteLLM proxy's own virtualenv (created and installed on first use); its ``litellm`` script."""
    exe = path / "bin" / "litellm"
    if not (path / ".ready").exists():
        print(f"installing litellm[proxy] into {path} (first run only)…", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(path / "bin" / "python"), "-m", "pip", "install", "-q", "litellm[proxy]"], check=True)
        (path / ".ready").touch()
    return exe


def litellm_version(venv: Path) -> str:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('litellm'))"], capture_output=True, text=True
    )
    return out.stdout.strip() or "?"


def start_litellm(exe: Path, upstream_port: int, data_dir: Path) -> tuple[subprocess.Popen, int]:
    data_dir.mkdir(parents=True, exist_ok=True)
    cfg = data_dir / "litellm.yaml"
    cfg.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: http://127.0.0.1:{upstream_port}/v1\n"
        "      api_key: sk-upstream\n"
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "DATABASE_URL")}
    env.update(LITELLM_MASTER_KEY=KEY, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False", LITELLM_LOG="ERROR")
    cmd = [str(exe), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    proc = launch(cmd, log=data_dir / "litellm.log", env=env, cwd=data_dir)
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, timeout=180)
    return proc, port


def run_measure(url: str, *, pid: int, auth: bool, duration: float, lat_conns: int, tput_conns: int) -> Result:
    """Two warm-up seconds, latency at ``lat_conns``, throughput at ``tput_conns`` with the server's
    CPU per completed request (its process tree, read when wrk stops), the server left idle between
    the phases."""
    headers = {"Authorization": f"Bearer {KEY}"} if auth else None
    return measure(
        lambda c, d: run_wrk(url, MODEL, c, d, headers=headers),
        duration=duration,
        lat_conns=lat_conns,
        tput_conns=tput_conns,
        warmup_s=2,
        cpu={"server": lambda: tree_cpu_s(pid)},
        settle=lambda: settle(pid),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="thrifty serve vs the LiteLLM proxy (loopback, instant upstream, wrk)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    ap.add_argument("--lat-conns", type=int, default=1)
    ap.add_argument("--tput-conns", type=int, default=32)
    ap.add_argument("--litellm-venv", type=Path, default=Path("/tmp/litellm-venv"), help="LiteLLM's own virtualenv")
    ap.add_argument("--skip-litellm", action="store_true", help="measure thrifty only (profiling runs)")
    ap.add_argument("--quick", action="store_true", help="1 s per measurement (a smoke run: the numbers are noise)")
    ap.add_argument("--json", type=Path, help="write the results here (e.g. results/gateway_vs_litellm.json)")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration = 1.0
    if not shutil.which("wrk"):
        print(
            "gateway_vs_litellm: needs wrk (apt-get install -y wrk); an in-process Python load generator would measure itself",
            file=sys.stderr,
        )
        return 2
    kw = dict(duration=args.duration, lat_conns=args.lat_conns, tput_conns=args.tput_conns)
    exe = None if args.skip_litellm else litellm_venv(args.litellm_venv)

    rows: list[Result] = []
    upstream, up_port = start_upstream()
    tmp = Path(tempfile.mkdtemp(prefix="thrifty-vs-litellm-"))
    try:
        direct = run_measure(f"http://127.0.0.1:{up_port}/v1/chat/completions", pid=upstream.pid, auth=False, **kw)
        direct.name, direct.notes = "upstream direct", "the floor: no gateway"
        rows.append(direct)
        servers: list[tuple[str, str, Any]] = [
            ("thrifty serve", "1 process, SQLite log row per request", lambda: start_thrifty(up_port, tmp / "thrifty"))
        ]
        if exe is not None:
            servers.append(
                (
                    f"LiteLLM proxy {litellm_version(args.litellm_venv)}",
                    "1 worker, no database",
                    lambda: start_litellm(exe, up_port, tmp / "litellm"),
                )
            )
        for name, notes, start in servers:
            proc, port = start()
            try:
                r = run_measure(f"http://127.0.0.1:{port}/v1/chat/completions", pid=proc.pid, auth=True, **kw)
                r.name, r.notes = name, notes
                rows.append(r)
            finally:
                stop(proc)
    finally:
        stop(upstream)
        shutil.rmtree(tmp, ignore_errors=True)

    add_added_latency(rows[1:], direct)
    out: dict[str, Any] = {
        "benchmark": "gateway_vs_litellm",
        "git_commit": git_commit(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "load": {
            "tool": "wrk (1 thread)",
            "duration_s": args.duration,
            "latency_connections": args.lat_conns,
            "throughput_connections": args.tput_conns,
        },
        "rows": [
            {
                "name": r.name,
                "notes": r.notes,
                "p50_ms": round(r.p50_ms, 3),
                "p99_ms": round(r.p99_ms, 3),
                "added_p50_ms": r.extra.get("added_p50_ms"),
                "added_p99_ms": r.extra.get("added_p99_ms"),
                "rps": round(r.rps, 1),
                "cpu_ms_per_request": r.extra.get("server_cpu_ms_per_request"),
                "errors": r.errors,
                "requests": r.requests,
            }
            for r in rows
        ],
    }
    if len(rows) == 3:
        t, l_ = rows[1], rows[2]
        out["cpu_ratio_litellm_over_thrifty"] = round(l_.extra["server_cpu_ms_per_request"] / t.extra["server_cpu_ms_per_request"], 1)
    print(
        f"load: wrk, {args.duration:g}s per measurement; latency at {args.lat_conns} connection(s), throughput at "
        f"{args.tput_conns}; {os.cpu_count()} CPUs"
    )
    print(f"{'server':28} {'notes':40} {'+p50 ms':>8} {'+p99 ms':>8} {'req/s':>8} {'CPU ms/req':>10} {'errors':>6}")
    for r in rows:
        print(
            f"{r.name:28} {r.notes:40} {r.extra.get('added_p50_ms', 0.0):8.2f} {r.extra.get('added_p99_ms', 0.0):8.2f} "
            f"{r.rps:8.0f} {r.extra['server_cpu_ms_per_request']:10.3f} {r.errors:6d}"
        )
    if "cpu_ratio_litellm_over_thrifty" in out:
        print(f"\nLiteLLM uses {out['cpu_ratio_litellm_over_thrifty']}× thrifty's CPU per request (goal ≥ 10×; thrifty goal ≤ 0.8 ms)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if all(r.errors == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
