"""Load generators: ``wrk`` (Debian package) and its parsed output, or an async httpx fallback.

:func:`run_wrk` posts one fixed chat request over and over; :func:`run_wrk_scripts` runs several
``wrk`` processes at once, each with its own Lua script (unique prompts per request, say), and
returns one :class:`Result` each. Percentiles come from ``wrk --latency``; errors count non-2xx/3xx
responses and socket errors.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

BODY = json.dumps({"model": "MODEL", "messages": [{"role": "user", "content": "Reply with OK."}], "max_tokens": 8})
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class Result:
    """One load run (or a measurement built from several): latency percentiles, req/s, errors."""

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


def ms(text: str) -> float:
    """A wrk duration (``812.00us``, ``1.20ms``, ``2.01s``) in milliseconds."""
    m = re.match(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNIT[m.group(2)]


def parse_wrk(out: str, target: str = "") -> Result:
    """``wrk --latency`` output as a Result (NaN where a figure is missing)."""
    r = Result("", target)
    for pct, attr in (("50", "p50_ms"), ("90", "p90_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            setattr(r, attr, ms(m.group(1)))
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


def post_script(body: str, headers: Mapping[str, str] | None = None) -> str:
    """A wrk Lua script that POSTs ``body`` as JSON with ``headers``."""
    body = body.replace("\\", "\\\\").replace("'", "\\'")
    lua = f"wrk.method = 'POST'\nwrk.body = '{body}'\nwrk.headers['Content-Type'] = 'application/json'\n"
    return lua + "".join(f"wrk.headers['{name}'] = '{value}'\n" for name, value in (headers or {}).items())


def run_wrk_scripts(runs: Sequence[tuple[str, str]], connections: int, duration: float, threads: int = 1) -> list[Result]:
    """One wrk per ``(url, lua script)``, all at once, each with ``connections`` connections for
    ``duration`` seconds (whole seconds, at least 1); their results in the same order."""
    scripts: list[str] = []
    procs: list[subprocess.Popen] = []
    try:
        for url, lua in runs:
            with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
                fh.write(lua)
                scripts.append(fh.name)
            cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", "--timeout", "10s"]
            procs.append(subprocess.Popen([*cmd, "-s", fh.name, url], stdout=subprocess.PIPE, text=True))
        outs = [p.communicate(timeout=duration + 60)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for s in scripts:
            os.unlink(s)
    return [parse_wrk(out, url) for out, (url, _) in zip(outs, runs)]


def run_wrk(url: str, model: str, connections: int, duration: float, threads: int = 1, headers: Mapping[str, str] | None = None) -> Result:
    """wrk posting the fixed chat request :data:`BODY` for ``model`` to ``url``."""
    return run_wrk_scripts([(url, post_script(BODY.replace("MODEL", model), headers))], connections, duration, threads)[0]


async def httpx_load(url: str, model: str, connections: int, duration: float) -> Result:
    """The same load as :func:`run_wrk` from an in-process async httpx client (when wrk is missing;
    it measures itself too, so its numbers are worse)."""
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
