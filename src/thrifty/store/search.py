"""Indexed text search in the logged prompts: a trigram index on each engine, same answers as a scan.

What a search means (the dashboard's ``q``): the requests whose prompt contains the text,
ignoring case — ``LOWER(prompt) LIKE '%text%'`` with ``%``, ``_`` and ``\\`` taken literally. That
condition is always what decides; the index only narrows the rows it is tested on:

- **SQLite**: an FTS5 table ``requests_fts`` with the ``trigram`` tokenizer over ``requests.prompt``
  (external content: the index stores no second copy of the text). New rows are indexed in batches
  (:func:`catch_up`, run by the log store's writer thread when it is idle, at least every second):
  FTS5 writes a segment per transaction, so indexing each request in its own transaction would cost
  ~0.7 ms of CPU per request, a batch ~0.02 ms per row. ``requests_fts_state``
  records how far the index reaches; a search reads the rows after it directly (a short tail), so
  results never lag. Triggers keep the indexed rows in step (delete, update of ``prompt``). Every
  prompt containing the text has the text's trigrams (case-folded): the index's candidates are a
  superset of the LIKE matches, which the LIKE then confirms.
- **PostgreSQL**: a ``pg_trgm`` GIN index on ``LOWER(prompt)``, which the planner uses for the very
  same ``LOWER(prompt) LIKE ?`` (PostgreSQL's LOWER folds every script; SQLite's only ASCII).

Texts under 3 characters have no trigram, and a text found in very many prompts is faster to find by
walking the newest rows, which stops at the page's end: the dashboard's request list
(``thrifty.ui.request_list.fts_narrowing``) chooses per search.

The migration ``0012_dash_prompt_search`` runs :func:`install`. Where the engine cannot index (an
SQLite built without FTS5, PostgreSQL without the ``pg_trgm`` extension — Debian ships it in the
``postgresql`` package, ``CREATE EXTENSION`` needs the database owner or a superuser) it logs a
warning with the fix and search falls back to the scan; :func:`mode` says which one is in use.
"""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = [
    "FTS_TABLE",
    "PG_INDEX",
    "MIN_CHARS",
    "STATE",
    "install",
    "behind",
    "catch_up",
    "indexed_until",
    "set_indexed_until",
    "install_postgres_index",
    "mode",
    "like_pattern",
    "fts_phrase",
]

log = logging.getLogger("thrifty.store")

FTS_TABLE = "requests_fts"
PG_INDEX = "requests_prompt_trgm"
MIN_CHARS = 3  # a trigram index cannot narrow a shorter text

#: one row: every requests row with a rowid up to done_until is indexed. Named like the index, so
#: ``thrifty store migrate`` copies neither (the target indexes its own rows, from 0)
STATE = f"{FTS_TABLE}_state"
_INDEXED = f"(SELECT done_until FROM {STATE})"
_SQLITE_SCHEMA = (
    f"CREATE TABLE {STATE} (done_until BIGINT NOT NULL)",
    # detail=none: no positions (the LIKE decides), a third of the index; queries are single trigrams ANDed
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(prompt, content='requests', content_rowid='rowid', tokenize='trigram', detail=none)",
    # new rows are indexed in batches by catch_up (off the request path); the triggers keep the indexed
    # part in step: an external-content index must be told a row's old text to forget it
    f"CREATE TRIGGER requests_fts_insert AFTER INSERT ON requests WHEN new.rowid <= {_INDEXED} BEGIN"
    f" INSERT INTO {FTS_TABLE}(rowid, prompt) VALUES (new.rowid, new.prompt); END",
    f"CREATE TRIGGER requests_fts_delete AFTER DELETE ON requests WHEN old.rowid <= {_INDEXED} BEGIN"
    f" INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, prompt) VALUES ('delete', old.rowid, old.prompt); END",
    f"CREATE TRIGGER requests_fts_update AFTER UPDATE OF prompt ON requests WHEN old.rowid <= {_INDEXED} BEGIN"
    f" INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, prompt) VALUES ('delete', old.rowid, old.prompt);"
    f" INSERT INTO {FTS_TABLE}(rowid, prompt) VALUES (new.rowid, new.prompt); END",
)
_PG_FIX = (
    "install PostgreSQL's contrib extensions (Debian: the postgresql package ships pg_trgm), then as the database owner or a"
    f" superuser run: CREATE EXTENSION pg_trgm; CREATE INDEX {PG_INDEX} ON requests USING gin (LOWER(prompt) gin_trgm_ops)"
)


def _dialect(conn: Any) -> str:
    return getattr(conn, "dialect", "sqlite")


def install(conn: Any) -> None:
    """Create the search index and fill it from the rows already logged (inside the caller's migration
    transaction); a warning and no index where the engine cannot have one."""
    t0 = time.perf_counter()
    if _dialect(conn) == "postgresql":
        if not install_postgres_index(conn):
            return
    else:
        conn.execute("SAVEPOINT fts_probe")
        try:
            for stmt in _SQLITE_SCHEMA:
                conn.execute(stmt)
        except Exception as exc:  # noqa: BLE001 - sqlite3.OperationalError: no such module fts5 / tokenizer trigram
            conn.execute("ROLLBACK TO fts_probe")
            conn.execute("RELEASE fts_probe")
            log.warning(
                "thrifty: prompt search is not indexed (SQLite %s has no FTS5 trigram tokenizer: %s); it scans", _version(conn), exc
            )
            return
        conn.execute("RELEASE fts_probe")
        conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")  # the rows logged before this migration
        conn.execute(f"INSERT INTO {STATE} (done_until) SELECT COALESCE(MAX(rowid), 0) FROM requests")
    n = conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    if n:
        log.info("thrifty: indexed the prompts of %d logged requests for search in %.1fs", n, time.perf_counter() - t0)


def install_postgres_index(conn: Any) -> bool:
    """``CREATE EXTENSION pg_trgm`` and the GIN index (a savepoint keeps the caller's transaction
    usable when the extension is missing or not allowed); False, with a warning, when it cannot."""
    conn.execute("SAVEPOINT trgm_probe")
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception as exc:  # noqa: BLE001 - psycopg errors: no control file, permission denied
        conn.execute("ROLLBACK TO SAVEPOINT trgm_probe")
        conn.execute("RELEASE SAVEPOINT trgm_probe")
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("thrifty: prompt search is not indexed (pg_trgm: %s); it scans. Fix: %s", first, _PG_FIX)
        return False
    conn.execute("RELEASE SAVEPOINT trgm_probe")
    conn.execute(f"CREATE INDEX IF NOT EXISTS {PG_INDEX} ON requests USING gin (LOWER(prompt) gin_trgm_ops)")
    return True


def indexed_until(conn: Any) -> int:
    """SQLite: the ``requests`` rowid up to which every row is in the FTS5 index (rows after it: not yet)."""
    row = conn.execute(f"SELECT done_until FROM {STATE}").fetchone()  # noqa: S608
    return int(row[0]) if row else 0


def set_indexed_until(conn: Any, rowid: int) -> None:
    conn.execute(f"UPDATE {STATE} SET done_until = ?", (int(rowid),))  # noqa: S608


def behind(conn: Any) -> bool:
    """Whether rows were logged after the last one indexed (two index lookups)."""
    return int(conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM requests").fetchone()[0]) > indexed_until(conn)


def catch_up(conn: Any, limit: int = 2_000) -> int:
    """Index up to ``limit`` rows logged since the last call (SQLite, inside the caller's write
    transaction); returns how many rowids it advanced over. Batched, a row costs ~1/40 of what
    indexing it in its own request's transaction does (FTS5 writes a segment per transaction)."""
    done = indexed_until(conn)
    top = int(conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM requests").fetchone()[0])
    upto = min(top, done + int(limit))
    if upto <= done:
        return 0
    conn.execute(f"INSERT INTO {FTS_TABLE}(rowid, prompt) SELECT rowid, prompt FROM requests WHERE rowid > ? AND rowid <= ?", (done, upto))
    set_indexed_until(conn, upto)
    return upto - done


def _version(conn: Any) -> str:
    try:
        return str(conn.execute("SELECT sqlite_version()").fetchone()[0])
    except Exception:  # noqa: BLE001
        return "?"


def mode(conn: Any) -> str:
    """``"fts5"`` (SQLite index), ``"trigram"`` (PostgreSQL index) or ``"scan"`` (no index)."""
    if _dialect(conn) == "postgresql":
        row = conn.execute("SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND indexname = ?", (PG_INDEX,)).fetchone()
        return "trigram" if row else "scan"
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (FTS_TABLE,)).fetchone()
    return "fts5" if row else "scan"


def like_pattern(text: str) -> str:
    """``%text%`` for ``LOWER(prompt) LIKE ? ESCAPE '\\'``: lower-cased, the wildcards taken literally."""
    return "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def fts_phrase(text: str) -> str:
    """``text`` as one FTS5 phrase (a trigram phrase: the prompts containing it, case-folded)."""
    return '"' + text.replace('"', '""') + '"'
