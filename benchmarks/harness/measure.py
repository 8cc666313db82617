"""The protocol every load benchmark follows, and the bits of its report they share.

:func:`measure`: a warm-up at the throughput concurrency, latency at few connections (no
queueing), then throughput at many, with the servers' CPU milliseconds per completed request read
around the throughput run. "Added" latency (:func:`add_added_latency`) is a row's percentile minus
the direct upstream's in the same run.
"""

from __future__ import annotations

import subprocess
from typing import Callable, Mapping, Sequence

from harness.load import Result
from harness.servers import ROOT

Load = Callable[[int, float], Result]  # (connections, seconds) -> one load run


def measure(
    load: Load,
    *,
    duration: float,
    lat_conns: int,
    tput_conns: int,
    warmup_s: float = 1.0,
    cpu: Mapping[str, Callable[[], float]] | None = None,
    settle: Callable[[], None] | None = None,
) -> Result:
    """Warm-up (``warmup_s`` at ``tput_conns``: connections, lazy imports, first log rows), latency at
    ``lat_conns``, throughput at ``tput_conns``. Each ``cpu[name]()`` reads CPU seconds; the result's
    ``extra`` gets ``<name>_cpu_ms_per_request`` over the throughput run. ``settle()``, when given,
    runs after each phase (waits until the server has worked off its backlog)."""
    pause = settle or (lambda: None)
    load(tput_conns, warmup_s)
    pause()
    lat = load(lat_conns, duration)
    pause()
    before = {name: read() for name, read in (cpu or {}).items()}
    tput = load(tput_conns, duration)
    n = max(1, tput.requests)
    cpu_ms = {f"{name}_cpu_ms_per_request": round((read() - before[name]) * 1e3 / n, 3) for name, read in (cpu or {}).items()}
    pause()
    return Result(
        "",
        lat.target,
        p50_ms=lat.p50_ms,
        p90_ms=lat.p90_ms,
        p99_ms=lat.p99_ms,
        rps=tput.rps,
        errors=lat.errors + tput.errors,
        requests=lat.requests + tput.requests,
        extra={"rps_at_latency_conns": round(lat.rps, 1), "p50_ms_at_throughput_conns": round(tput.p50_ms, 3), **cpu_ms},
    )


def add_added_latency(rows: Sequence[Result], base: Result) -> None:
    """Set ``extra["added_p50_ms"]`` / ``["added_p99_ms"]`` on ``rows``: minus ``base``'s percentiles."""
    for r in rows:
        r.extra["added_p50_ms"] = round(r.p50_ms - base.p50_ms, 3)
        r.extra["added_p99_ms"] = round(r.p99_ms - base.p99_ms, 3)


def git_commit() -> str:
    """The commit the benchmark ran on ("?" outside a git checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return "?"
    return out.stdout.strip() or "?"
