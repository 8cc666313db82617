"""PostgreSQL connections that speak the store's portable SQL (psycopg 3 and its pool, imported lazily).

:class:`PgConnection` wraps one psycopg connection in autocommit mode with the small part of the
:class:`sqlite3.Connection` API the store uses — ``execute``/``executemany`` returning a cursor
with ``fetchone``/``fetchall``/``rowcount``, rows readable by position and by name — and
translates every statement with :func:`thrifty.store.dialect.to_postgres`. Transactions are
opened explicitly with ``BEGIN`` exactly as on SQLite, so the log store, the budget ledger and
migrations written by anyone run unchanged on both engines.

Connection errors become a :class:`~thrifty.errors.ConfigError` naming ``server.store`` and the fix
(unreachable server, wrong password, missing database), so ``thrifty serve`` exits before binding.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from thrifty.errors import ConfigError
from thrifty.store.dialect import reorder, row_class, to_postgres

__all__ = ["PgConnection", "is_postgres_url", "open_pool", "redact"]

_KEY = "server.store"


def is_postgres_url(target: Any) -> bool:
    return isinstance(target, str) and target.split("://", 1)[0] in ("postgresql", "postgres")


def redact(url: str) -> str:
    """``url`` without its password (for messages, logs and ``/healthz``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ConfigError(
            "a postgresql:// store needs psycopg 3", key=_KEY, fix="pip install 'thrifty[postgres]' (psycopg[binary] and psycopg-pool)"
        ) from None
    return psycopg


def _row_factory(cursor: Any) -> Any:
    desc = cursor.description
    if desc is None:
        return None
    cls = row_class(tuple(d.name for d in desc))
    return lambda values: cls(values)


class _Cursor:
    """What ``execute`` returns: the rows already fetched (statements are short) and the rowcount."""

    __slots__ = ("_at", "_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows, self.rowcount, self._at = rows, rowcount, 0

    def fetchone(self) -> Any:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchall(self) -> list[Any]:
        rows, self._at = self._rows[self._at :], len(self._rows)
        return rows

    def __iter__(self) -> Any:
        return iter(self.fetchall())


class PgConnection:
    """One autocommit psycopg connection with the sqlite3-style API the store uses."""

    dialect = "postgresql"

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        text, order = to_postgres(sql)
        with self.raw.cursor(row_factory=_row_factory) as cur:
            cur.execute(text, reorder(tuple(params), order))  # always a tuple: psycopg then undoes the '%%' of to_postgres
            rows = cur.fetchall() if cur.description is not None else []
            return _Cursor(rows, cur.rowcount)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> _Cursor:
        text, order = to_postgres(sql)
        batch = [reorder(tuple(p), order) for p in seq]
        if not batch:
            return _Cursor([], 0)
        with self.raw.cursor() as cur:
            cur.executemany(text, batch)
            return _Cursor([], cur.rowcount)

    def copy_insert(self, table: str, cols: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        """Insert ``rows`` skipping those whose key exists, via ``COPY`` into a session temp table (an
        order of magnitude faster than row-by-row inserts); inside the caller's transaction."""
        names = ", ".join(f'"{c}"' for c in cols)
        stage = f'"_thrifty_copy_{table}"'
        with self.raw.cursor() as cur:
            cur.execute(f'CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE "{table}") ON COMMIT DELETE ROWS')
            with cur.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(f'INSERT INTO "{table}" ({names}) SELECT {names} FROM {stage} ON CONFLICT DO NOTHING')
            n = cur.rowcount
            cur.execute(f"DELETE FROM {stage}")  # a later batch in the same transaction starts empty
            return n

    def close(self) -> None:
        self.raw.close()


def _connect_error(url: str, exc: Exception, password_env: str | None) -> ConfigError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = text.lower()
    where = redact(url)
    if "password" in low or "authentication" in low:
        secret = f"${password_env}" if password_env else "$PGPASSWORD (or server.store_password_env)"
        fix = f"set {secret} to the database user's password; never write it into the config file"
    elif "does not exist" in low:
        fix = "create the database (createdb) or fix the database name in the URL"
    else:
        fix = "start PostgreSQL or fix host/port in the URL (postgresql://user@host:5432/dbname)"
    return ConfigError(f"cannot open the PostgreSQL store {where}: {text}", key=_KEY, fix=fix)


def _conninfo(url: str, password_env: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": 5, "application_name": "thrifty"}
    if password_env:
        value = os.environ.get(password_env)
        if value is None:
            raise ConfigError(
                f"the environment variable {password_env} (the store's password) is not set",
                key="server.store_password_env",
                fix=f"export {password_env}=<the database password>, or remove store_password_env to use $PGPASSWORD",
            )
        kwargs["password"] = value
    return kwargs


def open_pool(url: str, *, password_env: str | None = None, max_size: int = 4) -> Any:
    """A psycopg pool on ``url`` whose connections are checked now (ConfigError when they cannot be)."""
    psycopg = _psycopg()
    try:
        from psycopg_pool import ConnectionPool
    except ImportError:
        raise ConfigError("a postgresql:// store needs psycopg-pool", key=_KEY, fix="pip install 'thrifty[postgres]'") from None
    kwargs = _conninfo(url, password_env)
    try:  # one direct attempt first: the pool would retry a wrong password until its timeout
        psycopg.connect(url, **kwargs).close()
    except psycopg.Error as exc:
        raise _connect_error(url, exc, password_env) from None
    pool = ConnectionPool(url, kwargs=kwargs, min_size=1, max_size=max_size, open=False, name="thrifty-store")
    pool.open(wait=True, timeout=10)
    return pool
