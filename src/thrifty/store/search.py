"""Indexed text search in the logged prompts: a trigram index on each engine, same answers as a scan.

What a search means (the dashboard's ``q``): the requests whose prompt contains the text,
ignoring case — ``LOWER(prompt) LIKE '%text%'`` with ``%``, ``_`` and ``\\`` taken literally. That
condition is always what decides; the index only narrows the rows it is tested on:

- **SQLite**: an FTS5 table ``requests_fts`` with the ``trigram`` tokenizer over ``requests.prompt``
  (external content: the index stores no second copy of the text), kept in step by triggers on
  ``requests`` (insert, delete, update of ``prompt``), so every writer — the gateway, ``thrifty
  store migrate``, an import — keeps it current. A trigram phrase query finds every prompt that
  contains the text (case-folded), a superset of the LIKE matches, which the LIKE then confirms.
- **PostgreSQL**: a ``pg_trgm`` GIN index on ``LOWER(prompt)``, which the planner uses for the very
  same ``LOWER(prompt) LIKE ?`` (PostgreSQL's LOWER folds every script; SQLite's only ASCII).

Texts under 3 characters have no trigram, and a text found in very many prompts is faster to find by
walking the newest rows: both are answered by the scan (:func:`plan`), which stops at the page's end.

The migration ``0012_dash_prompt_search`` runs :func:`install`. Where the engine cannot index (an
SQLite built without FTS5, PostgreSQL without the ``pg_trgm`` extension — Debian ships it in the
``postgresql`` package, ``CREATE EXTENSION`` needs the database owner or a superuser) it logs a
warning with the fix and search falls back to the scan; :func:`mode` says which one is in use.
"""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["FTS_TABLE", "PG_INDEX", "MIN_CHARS", "install", "install_postgres_index", "mode", "like_pattern", "fts_phrase"]

log = logging.getLogger("thrifty.store")

FTS_TABLE = "requests_fts"
PG_INDEX = "requests_prompt_trgm"
MIN_CHARS = 3  # a trigram index cannot narrow a shorter text

_SQLITE_SCHEMA = (
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(prompt, content='requests', content_rowid='rowid', tokenize='trigram')",
    # external content: the index must be told the old text to forget it, exactly as it was indexed
    # every row, NULL prompts too: the index keeps a size row per content row (FTS5's integrity-check counts them)
    f"CREATE TRIGGER requests_fts_insert AFTER INSERT ON requests BEGIN"
    f" INSERT INTO {FTS_TABLE}(rowid, prompt) VALUES (new.rowid, new.prompt); END",
    f"CREATE TRIGGER requests_fts_delete AFTER DELETE ON requests BEGIN"
    f" INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, prompt) VALUES ('delete', old.rowid, old.prompt); END",
    f"CREATE TRIGGER requests_fts_update AFTER UPDATE OF prompt ON requests BEGIN"
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
            log.warning("thrifty: prompt search is not indexed (SQLite %s has no FTS5 trigram tokenizer: %s); it scans", _version(conn), exc)
            return
        conn.execute("RELEASE fts_probe")
        conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")  # the rows logged before this migration
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
