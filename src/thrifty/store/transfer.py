"""Copy a log store to another (SQLite ⇄ PostgreSQL), idempotent, resumable and verified.

:func:`copy_store` copies every table of the source (the ``migrations`` table aside — the target
is brought to the same schema by opening it — and ``reservations``, live budget holds that mean
nothing outside the process that took them) in primary-key order, ``batch`` rows per transaction,
with ``INSERT … ON CONFLICT DO NOTHING``: a copy interrupted anywhere is finished by running it
again, and running it on a finished copy changes nothing. ``requests`` goes first (``steps``
references it). A table whose count and checksum already match is skipped whole.

Verification: per table, the row count and an order-independent checksum (the sum, modulo 2^256,
of the SHA-256 of each row's values as text) of source and target must agree, else
:class:`~thrifty.errors.DataError` says which table differs. The checksum does not depend on row
order, so it compares engines that sort text differently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from thrifty.errors import DataError
from thrifty.store.logs import LogStore
from thrifty.store.search import FTS_TABLE

__all__ = ["SKIPPED_TABLES", "TransferReport", "copy_store", "list_tables", "table_summary"]

#: not copied: the schema log (the target has its own) and transient budget holds
SKIPPED_TABLES = ("migrations", "reservations")
_MOD = 1 << 256


@dataclass
class TransferReport:
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → rows, copied, checksum

    @property
    def rows(self) -> int:
        return sum(t["rows"] for t in self.tables.values())

    @property
    def copied(self) -> int:
        return sum(t["copied"] for t in self.tables.values())


def list_tables(conn: Any, dialect: str) -> list[str]:
    """The tables to copy (parents first: ``steps`` and others reference ``requests``)."""
    if dialect == "sqlite":
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").fetchall()
    else:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        ).fetchall()
    # the search index (thrifty.store.search) is rebuilt by the target's own triggers, never copied
    names = sorted(r[0] for r in rows if r[0] not in SKIPPED_TABLES and not r[0].startswith(FTS_TABLE))
    return sorted(names, key=lambda n: n != "requests")  # parents first: steps (and others) reference requests


def _columns(conn: Any, dialect: str, table: str) -> tuple[list[str], list[str]]:
    """(columns in order, primary-key columns in order)."""
    if dialect == "sqlite":
        info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
        cols = [r[1] for r in info]
        pk = [r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
        return cols, pk or ["rowid"]
    cols = [
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ?"
            " ORDER BY ordinal_position",
            (table,),
        ).fetchall()
    ]
    pk = [
        r[0]
        for r in conn.execute(
            "SELECT k.column_name FROM information_schema.table_constraints c JOIN information_schema.key_column_usage k"
            " ON k.constraint_name = c.constraint_name AND k.table_schema = c.table_schema AND k.table_name = c.table_name"
            " WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = current_schema() AND c.table_name = ?"
            " ORDER BY k.ordinal_position",
            (table,),
        ).fetchall()
    ]
    return cols, pk or cols


def _row_hash(values: tuple[Any, ...]) -> int:
    """SHA-256 of the row's values as text, unit-separated (str, int, float and None print the same
    from both engines; ``str`` of a float is its shortest exact form)."""
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, values)).encode("utf-8", "surrogatepass")).digest(), "big")


def _pages(store: LogStore, table: str, cols: list[str], pk: list[str], batch: int) -> Any:
    """The table's rows in primary-key order, ``batch`` at a time (keyset pagination: constant memory)."""
    select = ", ".join(f'"{c}"' for c in cols) if pk != ["rowid"] else "rowid, " + ", ".join(f'"{c}"' for c in cols)
    order = ", ".join(f'"{c}"' if c != "rowid" else c for c in pk)
    key_idx = [(["rowid"] + cols if pk == ["rowid"] else cols).index(c) for c in pk]
    last: tuple[Any, ...] | None = None
    while True:
        if last is None:
            sql, params = f'SELECT {select} FROM "{table}" ORDER BY {order} LIMIT ?', (batch,)
        else:
            tuple_sql = "(" + ", ".join("?" for _ in pk) + ")"
            sql, params = f'SELECT {select} FROM "{table}" WHERE ({order}) > {tuple_sql} ORDER BY {order} LIMIT ?', (*last, batch)
        rows = store.iter_rows(sql, params)
        if not rows:
            return
        last = tuple(rows[-1][i] for i in key_idx)
        yield [tuple(r)[1:] if pk == ["rowid"] else tuple(r) for r in rows]
        if len(rows) < batch:
            return


def table_summary(store: LogStore, table: str, *, batch: int = 5000) -> tuple[int, str]:
    """(row count, order-independent checksum) of one table."""
    cols, pk = store.read(_columns, store.dialect, table)
    n, total = 0, 0
    for page in _pages(store, table, cols, pk, batch):
        n += len(page)
        total = (total + sum(_row_hash(r) for r in page)) % _MOD
    return n, f"{total:064x}"


def copy_store(src: LogStore, dst: LogStore, *, batch: int = 5000, progress: Callable[[str, int], None] | None = None) -> TransferReport:
    """Copy ``src`` into ``dst`` (see the module docstring); raises DataError when the copy does not verify."""
    report = TransferReport()
    src_tables = src.read(list_tables, src.dialect)
    dst_tables = set(dst.read(list_tables, dst.dialect))
    missing = [t for t in src_tables if t not in dst_tables]
    if missing:
        raise DataError(
            f"the target store has no table {', '.join(missing)}",
            file=str(dst.path),
            expected="the same thrifty version on both sides (upgrade the one that is older)",
        )
    for table in src_tables:
        cols, pk = src.read(_columns, src.dialect, table)
        dst_cols, _ = dst.read(_columns, dst.dialect, table)
        if set(cols) - set(dst_cols):
            raise DataError(
                f"table {table} of the target lacks columns {sorted(set(cols) - set(dst_cols))}",
                file=str(dst.path),
                expected="the same thrifty version on both sides",
            )
        copied, n, total = 0, 0, 0
        have = dst.read(_count, table)
        want = table_summary(src, table, batch=batch) if have else None  # an empty target: hash while copying
        done = want is not None and have == want[0] and table_summary(dst, table, batch=batch) == want
        if not done:
            insert = (
                f'INSERT INTO "{table}" ('
                + ", ".join(f'"{c}"' for c in cols)
                + ") VALUES ("
                + ", ".join("?" for _ in cols)
                + ") ON CONFLICT DO NOTHING"
            )
            for page in _pages(src, table, cols, pk, batch):
                copied += dst.run_in_transaction(_insert_rows, table, cols, insert, page)
                n, total = n + len(page), (total + sum(_row_hash(r) for r in page)) % _MOD
                if progress is not None:
                    progress(table, copied)
        if want is None:
            want = (n, f"{total:064x}")
        got = want if done else table_summary(dst, table, batch=batch)
        if got != want:
            raise DataError(
                f"table {table} differs after the copy: source {want[0]} rows (checksum {want[1][:12]}),"
                f" target {got[0]} rows (checksum {got[1][:12]})",
                file=str(dst.path),
                expected="an empty target or an earlier copy of the same source (rows the source lacks, or"
                " changed since, are not overwritten)",
            )
        report.tables[table] = {"rows": want[0], "copied": copied, "checksum": want[1]}
    return report


def _count(conn: Any, table: str) -> int:
    return int(conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])


def _insert_rows(conn: Any, table: str, cols: list[str], sql: str, rows: list[tuple[Any, ...]]) -> int:
    if hasattr(conn, "copy_insert"):  # PostgreSQL: COPY into a staging table, then one INSERT … ON CONFLICT
        return int(conn.copy_insert(table, cols, rows))
    cur = conn.executemany(sql, rows)
    return max(0, cur.rowcount) if cur.rowcount is not None else len(rows)
