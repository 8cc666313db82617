"""The dashboard's read-only view of the log store (SQLite or PostgreSQL), for :mod:`thrifty.ui.queries`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Sequence

from thrifty.store import search
from thrifty.store.db import table_columns as store_table_columns

__all__ = ["Reader", "table_columns", "has_rows"]


class Reader:
    """The dashboard's read-only view of the log store, SQLite or PostgreSQL, through
    :meth:`thrifty.store.logs.LogStore.read_only` (SQLite: a read-only WAL connection per thread that
    never takes the writer's lock; PostgreSQL: a pooled connection, so reads never queue behind the
    writer). Call from a worker thread: every method blocks on the database."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.path = store.path
        self.dialect: str = getattr(store, "dialect", "sqlite")
        self._search_mode: str | None = None

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        def read(c: Any) -> list[dict[str, Any]]:
            return [{k: _plain(v) for k, v in zip(r.keys(), tuple(r))} for r in c.execute(sql, tuple(params)).fetchall()]

        return self.store.read_only(read)

    def columns(self, table: str) -> tuple[str, ...] | None:
        return self.store.read_only(store_table_columns, table)

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``fn(connection, *args, **kwargs)`` on a read-only connection (a store-layer reader)."""
        return self.store.read_only(fn, *args, **kwargs)

    def search_mode(self) -> str:
        """How prompt search runs on this store: ``fts5`` | ``trigram`` (indexed) or ``scan`` (:mod:`thrifty.store.search`)."""
        if self._search_mode is None:
            self._search_mode = str(self.store.read_only(search.mode))
        return self._search_mode

    def close(self) -> None:
        """Nothing to release: the store owns its connections and closes them with itself."""


def _plain(value: Any) -> Any:
    """PostgreSQL sums BIGINTs as NUMERIC (a Decimal): back to the int or float SQLite gives."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def table_columns(db: Reader, table: str) -> tuple[str, ...] | None:
    """The column names of ``table``, None when it does not exist (read from the engine's catalogue)."""
    if not table.replace("_", "").isalnum():
        raise ValueError(f"not a table name: {table!r}")
    return db.columns(table)


def has_rows(db: Reader, table: str) -> bool:
    return table_columns(db, table) is not None and bool(db.rows(f"SELECT 1 AS x FROM {table} LIMIT 1"))  # noqa: S608
