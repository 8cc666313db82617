"""Where the log store's connections come from: one SQLite file, or a PostgreSQL pool.

:func:`open_backend` takes what ``[server] store`` / ``--store`` says — a path, ``sqlite:///path``
or ``postgresql://user@host:port/db`` — and returns a backend with three ways to get a connection:

- ``writer()``: the connection of the store's one writer thread (group commits);
- ``session()``: a connection for one transaction or read on the calling thread;
- ``read_session()``: a connection for read-only queries (SQLite: a read-only connection of the
  calling thread, so a long read never waits for the writer's lock in WAL mode; PostgreSQL: the pool);
- all yield connections speaking the same portable SQL (:mod:`thrifty.store.dialect`).

SQLite has one connection behind a lock (a file has one writer anyway). PostgreSQL has a psycopg
pool: the writer thread keeps one connection, callers borrow others, so reads never queue behind
the writer. ``serial_locks(conn, names)`` makes a transaction exclusive per name across every
process sharing the database (SQLite: ``BEGIN IMMEDIATE`` already is; PostgreSQL: transaction
advisory locks, always taken in sorted order before anything else, so they cannot deadlock).
"""

from __future__ import annotations

import contextlib
import os
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from thrifty.errors import ConfigError
from thrifty.store.db import connect, migrate
from thrifty.store.pg import PgConnection, open_pool, redact

__all__ = ["PgBackend", "SqliteBackend", "open_backend", "parse_target", "store_label"]


def parse_target(target: str | os.PathLike) -> tuple[str, str]:
    """``("sqlite", path)`` or ``("postgresql", url)`` for a store setting."""
    text = os.fspath(target)
    if text.startswith("sqlite:///"):
        return "sqlite", text[len("sqlite:///") :]  # sqlite:///relative, sqlite:////absolute (SQLAlchemy's spelling)
    if text.startswith("sqlite://"):
        return "sqlite", text[len("sqlite://") :]
    scheme = text.split("://", 1)[0] if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        return "postgresql", text
    if scheme:
        raise ConfigError(
            f"unknown store URL scheme {scheme!r} in {text!r}",
            key="server.store",
            fix="use a file path, sqlite:///path/logs.sqlite3 or postgresql://user@host:5432/dbname",
        )
    return "sqlite", text


def store_label(target: str | os.PathLike) -> str:
    """The store for messages: a path, or the URL without its password."""
    kind, where = parse_target(target)
    if kind == "sqlite":
        return where

    return redact(where)


class SqliteBackend:
    dialect = "sqlite"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.label = str(self.path)
        self.conn = connect(self.path)
        self.lock = threading.Lock()
        self._readers = threading.local()
        self._all_readers: list[Any] = []

    @contextlib.contextmanager
    def writer(self) -> Iterator[Any]:
        with self.lock:
            yield self.conn

    session = writer

    @contextlib.contextmanager
    def read_session(self) -> Iterator[Any]:
        """This thread's read-only connection (opened on first use; WAL: never blocks the writer)."""
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            import sqlite3
            from urllib.parse import quote

            conn = sqlite3.connect(
                f"file:{quote(str(self.path.resolve()))}?mode=ro", uri=True, check_same_thread=False, timeout=10.0, isolation_level=None
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only=ON")
            self._readers.conn = conn
            with self.lock:
                self._all_readers.append(conn)
        yield conn

    def serial_locks(self, conn: Any, names: list[str]) -> None:
        """Nothing: ``BEGIN IMMEDIATE`` already holds the database's one write lock."""

    def close(self) -> None:
        with self.lock:
            for reader in self._all_readers:
                reader.close()
            self._all_readers.clear()
            self.conn.close()


class PgBackend:
    dialect = "postgresql"

    def __init__(self, url: str, *, password_env: str | None = None, pool_size: int = 4) -> None:

        self.url = url
        self.label = redact(url)
        self.path = self.label
        self._wrap = PgConnection
        self.pool = open_pool(url, password_env=password_env, max_size=pool_size + 1)
        self._writer_raw: Any = None
        self._writer_lock = threading.Lock()
        try:
            with self.session() as conn:
                migrate(conn, where=self.label)
        except BaseException:
            self.pool.close()
            raise

    @contextlib.contextmanager
    def writer(self) -> Iterator[Any]:
        with self._writer_lock:
            if self._writer_raw is None or self._writer_raw.closed:
                if self._writer_raw is not None:  # lost (server restarted): hand it back, take a fresh one
                    self.pool.putconn(self._writer_raw)
                self._writer_raw = self.pool.getconn(timeout=30)
            yield self._wrap(self._writer_raw)

    @contextlib.contextmanager
    def session(self) -> Iterator[Any]:
        with self.pool.connection(timeout=30) as raw:
            yield self._wrap(raw)

    read_session = session  # pooled connections: a read never queues behind the writer

    def serial_locks(self, conn: Any, names: list[str]) -> None:
        for name in sorted(set(names)):
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_lock_key(name),))

    def close(self) -> None:
        with self._writer_lock:
            if self._writer_raw is not None:
                self.pool.putconn(self._writer_raw)
                self._writer_raw = None
        self.pool.close()


def _lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name`` (the same in every replica)."""
    return (0x74687269 << 32) | zlib.crc32(name.encode("utf-8"))


def open_backend(target: str | os.PathLike, *, password_env: str | None = None) -> SqliteBackend | PgBackend:
    kind, where = parse_target(target)
    if kind == "postgresql":
        return PgBackend(where, password_env=password_env)
    return SqliteBackend(where)
