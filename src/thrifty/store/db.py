"""Connections and named migrations for the log store, on SQLite (embedded default) or PostgreSQL.

SQLite runs in WAL mode (readers never block the writer) with ``synchronous=NORMAL``: a committed
transaction survives a crash of the process (``kill -9``), which is what "a 200 has its log row"
needs. PostgreSQL (a ``postgresql://`` store URL, :mod:`thrifty.store.pg`) commits durably by
default. Migrations are ``(name, sql)`` pairs in portable SQL (see :mod:`thrifty.store.dialect`),
applied once each, in order, and recorded in the ``migrations`` table; the same list runs on both
engines (the list: :mod:`thrifty.store.migrations`), a migration that cannot be portable gives its
PostgreSQL text in :data:`PG_OVERRIDES`. A database that has them all is left untouched; one that
records a migration this thrifty does not know was written by a newer thrifty and is refused
(:class:`~thrifty.errors.ConfigError`).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from thrifty.errors import ConfigError
from thrifty.store.migrations import MIGRATION_STEPS, MIGRATIONS, PG_OVERRIDES

__all__ = ["MIGRATIONS", "MIGRATION_STEPS", "PG_OVERRIDES", "connect", "migrate", "applied_migrations", "dialect_of", "table_columns"]

_MIGRATION_LOCK = 7_204_211_001  # pg_advisory_xact_lock key: one replica migrates at a time


def dialect_of(conn: Any) -> str:
    """``"sqlite"`` or ``"postgresql"``."""
    return getattr(conn, "dialect", "sqlite")


def table_columns(conn: Any, table: str) -> tuple[str, ...] | None:
    """The column names of ``table`` in table order, None when it does not exist (either engine's
    catalogue: probing with a failing SELECT would abort a PostgreSQL transaction)."""
    if dialect_of(conn) == "postgresql":
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = ? ORDER BY ordinal_position",
            (table,),
        ).fetchall()
    else:
        rows = conn.execute("SELECT name FROM pragma_table_info(?) ORDER BY cid", (table,)).fetchall()
    return tuple(str(r[0]) for r in rows) or None


def connect(path: str | os.PathLike, *, migrate_now: bool = True) -> sqlite3.Connection:
    """Open (creating folders) the SQLite database at ``path`` in WAL mode and bring its schema up to date.

    The connection is in autocommit mode (``isolation_level=None``): callers open transactions
    explicitly with ``BEGIN``/``BEGIN IMMEDIATE``. It may be shared across threads under a lock.
    """
    p = Path(path)
    if str(p) != ":memory:":
        p.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(p), isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    if migrate_now:
        migrate(conn)
    return conn


def applied_migrations(conn: Any) -> list[str]:
    if dialect_of(conn) == "postgresql":  # concurrent replicas: CREATE IF NOT EXISTS can still race there
        conn.execute("BEGIN")
        try:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    else:
        conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
    return [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY name")]


def check_not_newer(done: set[str], where: str = "") -> None:
    """ConfigError when the database records migrations this thrifty does not know (a newer thrifty wrote it)."""
    unknown = sorted(done - {name for name, _ in MIGRATIONS})
    if unknown:
        raise ConfigError(
            f"the log database{f' {where}' if where else ''} has a schema from a newer thrifty (migrations {', '.join(unknown)})",
            key="server.store",
            fix="upgrade thrifty here (pip install -U thrifty) to the version the other replicas run, or point server.store / --store at another database",
        )


def migrate(conn: Any, *, where: str = "") -> list[str]:
    """Apply every migration not yet recorded (each in its own transaction); return those applied."""
    pg = dialect_of(conn) == "postgresql"
    done = set(applied_migrations(conn))
    check_not_newer(done, where)
    new: list[str] = []
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if pg:
                conn.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            # another process may have applied it while we waited for the write lock
            if conn.execute("SELECT 1 FROM migrations WHERE name = ?", (name,)).fetchone():
                conn.execute("COMMIT")
                continue
            for stmt in _statements(PG_OVERRIDES.get(name, sql) if pg else sql):
                conn.execute(stmt)
            if name in MIGRATION_STEPS:
                MIGRATION_STEPS[name](conn)
            conn.execute("INSERT INTO migrations (name, applied) VALUES (?, ?)", (name, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        new.append(name)
    return new


def _statements(sql: str) -> list[str]:
    """Split a migration script into statements (no semicolons inside our literals)."""
    lines = [ln.split("--", 1)[0] for ln in sql.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
