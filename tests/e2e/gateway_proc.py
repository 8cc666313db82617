"""Run the real thrifty gateway as a subprocess on loopback for end-to-end tests.

``GatewayProcess(config_toml, data_dir)`` writes the TOML, starts ``uvicorn`` with the app factory
(``thrifty.gateway.app:app_from_env``; ``cli=True``: the ``thrifty serve`` command) on a free port, waits for ``/healthz`` and keeps the
server's combined stdout/stderr in ``output_path`` (so tests can grep it). ``kill()`` sends SIGKILL.
``serve_in_thread(settings)`` serves ``create_app(settings)`` with uvicorn in a daemon thread of the
test process instead (no TOML, no subprocess; tests can then reach the app's objects).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx

__all__ = ["GatewayProcess", "free_port", "toml_provider", "read_db", "serve_in_thread"]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toml_provider(
    name: str,
    base_url: str,
    *,
    model: str | None = None,
    price_in: float = 1.0,
    price_out: float = 2.0,
    timeout_s: float = 1.0,
    max_tokens: int = 64,
) -> str:
    return (
        f'[providers.{name}]\nkind = "openai"\nmodel = "{model or name}"\nbase_url = "{base_url}"\n'
        f"prices = {{ input = {price_in}, output = {price_out} }}\ntimeout_s = {timeout_s}\nmax_tokens = {max_tokens}\n\n"
    )


def read_db(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the gateway's log DB from outside the server (a separate connection, WAL-safe)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@contextmanager
def serve_in_thread(settings: Any, *, timeout_s: float = 30.0) -> Iterator[str]:
    """Serve the gateway app for ``settings`` on a free loopback port in a daemon thread; yields its base URL."""
    import uvicorn

    from thrifty.gateway.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        if not server.started:
            raise RuntimeError(f"in-thread gateway did not start in {timeout_s}s")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class GatewayProcess:
    def __init__(
        self,
        config_toml: str,
        data_dir: Path,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        workers: int = 1,
        extra_args: tuple[str, ...] = (),
        cli: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.data_dir / "thrifty.toml"
        if "[server]" not in config_toml:
            config_toml = f'[server]\ndata_dir = "{self.data_dir}"\n\n' + config_toml
        self.config_path.write_text(config_toml)
        self.port = port or free_port()
        self.output_path = self.data_dir / f"server-{self.port}.log"
        self.env = {
            **os.environ,
            "THRIFTY_CONFIG": str(self.config_path),
            "PYTHONPATH": str(ROOT / "src"),
            "THRIFTY_DATA_DIR": str(self.data_dir),
            **(env or {}),
        }
        self.workers = workers
        self.extra_args = extra_args
        self.cli = cli  # True: `thrifty serve --config … --port …` (the user's command) instead of bare uvicorn
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "logs.sqlite3"

    def output(self) -> str:
        return self.output_path.read_text(errors="replace") if self.output_path.exists() else ""

    def start(self, timeout_s: float = 60.0) -> "GatewayProcess":
        if self.cli:
            cmd = [
                sys.executable,
                "-c",
                "from thrifty.cli.main import entry; entry()",
                "serve",
                "--config",
                str(self.config_path),
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                *self.extra_args,
            ]
        else:
            cmd = [
                sys.executable,
                "-m",
                "uvicorn",
                "thrifty.gateway.app:app_from_env",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--workers",
                str(self.workers),
                *self.extra_args,
            ]
        out = open(self.output_path, "ab")
        self.proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=str(self.data_dir), start_new_session=True
        )
        out.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gateway did not become healthy in {timeout_s}s:\n{self.output()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole server process group (uvicorn and any workers): no cleanup runs."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def __enter__(self) -> "GatewayProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
