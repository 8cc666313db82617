"""Real PostgreSQL and Redis servers for end-to-end tests, started by the test itself.

``PostgresServer(folder)`` runs Debian's ``initdb`` + ``pg_ctl`` (as the ``postgres`` user via
``runuser`` when the tests run as root) into a temporary folder, on a free loopback port with its
socket in that folder. Local (socket) connections are trusted; TCP connections need a password
(SCRAM), so the tests exercise the real password path: the role ``thrifty`` with password
:data:`PASSWORD`, passed as ``$PGPASSWORD``. ``create_database()`` gives each test its own database.
``RedisServer()`` runs ``redis-server`` without persistence on a free port.

Both skip the test (with the install hint) when the binaries are absent; CI installs them.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

__all__ = ["PASSWORD", "PostgresServer", "RedisServer", "free_port", "pg_bin"]

PASSWORD = "thrifty-test-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class PostgresServer:
    def __init__(self, *, fsync: bool = False) -> None:
        self.bin = pg_bin()
        if self.bin is None:
            pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql)")
        self.folder = Path(tempfile.mkdtemp(prefix="thrifty-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.fsync = fsync

    def _run(self, cmd: list[str]) -> None:
        out = subprocess.run(_as_postgres(cmd), capture_output=True, text=True, cwd=str(self.folder), timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({out.returncode}): {out.stdout[-2000:]}{out.stderr[-2000:]}")

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        os.chmod(self.folder, 0o755)
        self._run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        )
        opts = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not self.fsync:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.folder / "server.log"), "-w", "start"])
        self.admin(f"CREATE ROLE thrifty LOGIN PASSWORD '{PASSWORD}'")
        return self

    def admin(self, sql: str, *, dbname: str = "postgres") -> list:
        """Run ``sql`` as the superuser over the trusted socket."""
        import psycopg

        with psycopg.connect(host=str(self.folder), port=self.port, user="postgres", dbname=dbname, autocommit=True) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str | None = None) -> str:
        """A fresh database owned by ``thrifty``; returns its URL (no password: use :meth:`env`)."""
        name = name or f"t_{uuid.uuid4().hex[:10]}"
        self.admin(f'CREATE DATABASE "{name}" OWNER thrifty')
        return self.url(name)

    def url(self, dbname: str) -> str:
        return f"postgresql://thrifty@127.0.0.1:{self.port}/{dbname}"

    @staticmethod
    def env() -> dict[str, str]:
        return {"PGPASSWORD": PASSWORD}

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(
                _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisServer:
    def __init__(self) -> None:
        self.exe = shutil.which("redis-server")
        if self.exe is None:
            pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("redis-server did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
