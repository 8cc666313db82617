"""Processes of the load benchmarks: the instant upstream and thrifty, started as users start them.

Every server runs in its own session (process group) with its output in a log file, so
:func:`stop` ends it and any workers it forked, and CPU can be read per group (:mod:`harness.cpu`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_SCRIPT = ROOT / "benchmarks" / "bench_upstream.py"
GATEWAY_APP = "thrifty.gateway.app:app_from_env"  # the app factory `thrifty serve` runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> float:
    """Poll ``url`` until it answers below 500; the seconds it took. Raises if ``proc`` exits first."""
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not up after {timeout}s")


def wait_tcp(port: int, proc: subprocess.Popen, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    """Wait until ``host:port`` accepts connections (a server without an HTTP health check)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{host}:{port} not accepting connections after {timeout}s")


def stop(proc: subprocess.Popen | None) -> None:
    """End a server started by :func:`launch` and everything in its process group."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def src_env(extra: Mapping[str, str] | None = None, *, drop: Sequence[str] = ()) -> dict[str, str]:
    """This environment with this checkout's ``src/`` first on ``PYTHONPATH``, ``drop`` removed, ``extra`` added."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def launch(cmd: Sequence[str], *, log: Path | None, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """``cmd`` in a new session, stdout and stderr appended to ``log`` (discarded when None)."""
    fh = open(log, "ab") if log is not None else None
    try:
        return subprocess.Popen(
            list(cmd),
            stdout=fh if fh is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    finally:
        if fh is not None:
            fh.close()  # the child has its own copy


def start_upstream() -> tuple[subprocess.Popen, int]:
    """The instant upstream (``benchmarks/bench_upstream.py``) on a free port."""
    proc = subprocess.Popen(
        [sys.executable, str(UPSTREAM_SCRIPT), "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("READY"):
        raise RuntimeError(f"benchmark upstream failed: {line}")
    return proc, int(line.split()[1])


def write_config(data_dir: Path, text: str) -> Path:
    """``data_dir/thrifty.toml`` holding ``text`` (the folder is created)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "thrifty.toml"
    path.write_text(text)
    return path


def start_serve(
    data_dir: Path,
    config: str | None,
    *,
    workers: int | None = None,
    args: Sequence[str] = (),
    log: str = "server.log",
    timeout: float = 60.0,
) -> tuple[subprocess.Popen, int]:
    """The real ``thrifty serve`` command (``python -m thrifty`` is the ``thrifty`` script) on a free
    port, with ``config`` written to ``data_dir/thrifty.toml`` (None: no config, the embedded default)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [sys.executable, "-m", "thrifty", "serve", "--port", str(port)]
    if config is not None:
        cmd += ["--config", str(write_config(data_dir, config))]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    proc = launch([*cmd, *args], log=data_dir / log, env=src_env(drop=("THRIFTY_CONFIG",)), cwd=data_dir)
    wait_http(f"http://127.0.0.1:{port}/healthz", proc, timeout)
    return proc, port


def start_uvicorn(
    data_dir: Path,
    config: str,
    *,
    app: str = GATEWAY_APP,
    loop: str | None = None,
    http: str | None = None,
    workers: int | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[subprocess.Popen, int]:
    """Bare uvicorn on an app factory that reads ``$THRIFTY_CONFIG`` (``config`` written to
    ``data_dir/thrifty.toml``); uvicorn's own defaults where ``loop``/``http``/``workers`` are None."""
    path = write_config(data_dir, config)
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1", "--port", str(port)]
    for flag, value in (("--workers", workers), ("--loop", loop), ("--http", http)):
        if value is not None:
            cmd += [flag, str(value)]
    cmd += ["--no-access-log", "--log-level", "warning"]
    proc = launch(cmd, log=data_dir / "server.log", env=src_env({**(env or {}), "THRIFTY_CONFIG": str(path)}), cwd=data_dir)
    wait_http(f"http://127.0.0.1:{port}/healthz", proc, timeout)
    return proc, port
