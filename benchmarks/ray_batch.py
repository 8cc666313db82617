"""``thrifty collect`` throughput: the local executor vs a local Ray cluster, against an instant upstream.

In ONE run, on loopback: start ``benchmarks/bench_upstream.py`` (answers every call at once), write
``--n`` prompts, then collect them (one model) three ways, each into a fresh folder:

1. locally (the default asyncio executor, ``--concurrency``);
2. on a one-node Ray cluster started here (``ray start --head --num-cpus C``), ``--ray ADDRESS``;
3. the same with a second node (``ray start --address …``), ``C`` CPUs each.

Every call is a real HTTP round trip; what differs is where the calls run and how results come back
(per-call append + fsync on the driver in every case). On a 2-core machine the Ray numbers show the
per-batch overhead, not a speed-up: more nodes only pay off when calls are slow (real models) or
CPU-bound (local models, embeddings) and the nodes are separate machines.

    PYTHONPATH=src .venv/bin/python benchmarks/ray_batch.py [--n 2000] [--json results/ray_batch.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.measure import git_commit
from harness.servers import free_port, launch, src_env, start_upstream

RAY = Path(sys.executable).with_name("ray")
# Ray rewrites 127.0.0.1 (and localhost) to the machine's outward IP; another loopback address keeps it on lo
LOOPBACK = "127.0.0.2"


def _env() -> dict[str, str]:
    return src_env({"RAY_USAGE_STATS_ENABLED": "0"})


def _node(args: list[str], cpus: int) -> subprocess.Popen:
    cmd = [str(RAY), "start", *args, "--num-cpus", str(cpus), "--object-store-memory", str(100 * 1024 * 1024)]
    return launch([*cmd, "--node-ip-address", LOOPBACK, "--disable-usage-stats", "--block"], log=None, env=_env())


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the node's own process group; `ray stop` would stop every Ray here
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def _collect(prompts: Path, cfg: Path, out: Path, concurrency: int, ray: str | None) -> dict[str, float]:
    cmd = [
        sys.executable,
        "-c",
        "from thrifty.cli.main import entry; entry()",
        "collect",
        "--prompts",
        str(prompts),
        "--models",
        "up",
        "--out",
        str(out),
        "--config",
        str(cfg),
        "--concurrency",
        str(concurrency),
        "--no-progress",
    ]
    if ray:
        cmd += ["--ray", ray]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"collect failed: {done.stderr[-2000:]}")
    rows = sum(1 for _ in open(out / "outcomes.jsonl"))
    inner = float(done.stdout.split(" answers in ")[1].split("s")[0])
    return {"rows": rows, "wall_s": round(wall, 2), "collect_s": inner, "calls_per_s": round(rows / inner, 1)}


def _wait_cpus(address: str, cpus: int) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + 120
    while True:  # the head's GCS port first (ray.init fails at once without it)
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"no Ray head at {address} after 120 s") from None
            time.sleep(0.2)
    probe = (
        "import ray, sys, time\nray.init(address=sys.argv[1], logging_level='ERROR', _node_ip_address='127.0.0.2')\nend = time.time() + 60\n"
        "while ray.cluster_resources().get('CPU', 0) < int(sys.argv[2]) and time.time() < end: time.sleep(0.2)\n"
    )
    subprocess.run([sys.executable, "-c", probe, address, str(cpus)], env=_env(), check=True, timeout=120, capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="prompts (default 2000)")
    ap.add_argument("--concurrency", type=int, default=8, help="local: calls in flight; Ray: per task (default 8)")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs per Ray node (default 2)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="thrifty-rb-", dir="/tmp"))
    upstream, up_port = start_upstream()
    prompts = work / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt_id": f"p{i}", "prompt": f"Question number {i}?"}) + "\n" for i in range(args.n)))
    cfg = work / "thrifty.toml"
    cfg.write_text(
        f'[providers.up]\nkind = "openai"\nmodel = "bench-model"\nbase_url = "http://127.0.0.1:{up_port}/v1"\n'
        "prices = { input = 1.0, output = 2.0 }\ntimeout_s = 30\n"
    )
    results: dict[str, dict[str, float]] = {}
    nodes: list[subprocess.Popen] = []
    try:
        results["local"] = _collect(prompts, cfg, work / "local", args.concurrency, None)
        port = free_port()
        address = f"{LOOPBACK}:{port}"
        nodes.append(_node(["--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", str(work / "ray")], args.cpus))
        _wait_cpus(address, args.cpus)
        results[f"ray 1 node × {args.cpus} CPU"] = _collect(prompts, cfg, work / "ray1", args.concurrency, address)
        nodes.append(_node(["--address", address], args.cpus))
        _wait_cpus(address, 2 * args.cpus)
        results[f"ray 2 nodes × {args.cpus} CPU"] = _collect(prompts, cfg, work / "ray2", args.concurrency, address)
    finally:
        for proc in reversed(nodes):
            _stop(proc)
        _stop(upstream)
    print(f"collect of {args.n} prompts against an instant upstream on {os.cpu_count()} cores")
    print(f"{'executor':28s} {'rows':>6s} {'collect s':>10s} {'calls/s':>9s} {'wall s':>8s}")
    for name, r in results.items():
        print(f"{name:28s} {r['rows']:6d} {r['collect_s']:10.1f} {r['calls_per_s']:9.1f} {r['wall_s']:8.1f}")
    if args.json:
        commit = git_commit()
        Path(args.json).write_text(
            json.dumps(
                {"commit": commit, "n": args.n, "cores": os.cpu_count(), "concurrency": args.concurrency, "results": results}, indent=2
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
