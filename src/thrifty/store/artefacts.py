"""The artefact history of the learning loop: one row per refit of a profile (migration
``0007_artefact_history``).

``status`` is ``serving`` (swapped in), ``refused`` (validated worse, or the refit crashed; no
artefact is kept) or ``rolled_back``. The artefact in service is the newest ``serving`` row, so the
rows form a stack: a swap pushes, :func:`rollback` marks the top ``rolled_back`` and the one below
serves again. Portable SQL (``?`` placeholders, no SQLite-only functions).

What every replica on the store serves follows the profile's version row
(:mod:`thrifty.store.versions`): a swap publishes its folder there, and :func:`rollback_and_publish`
publishes what serves after a rollback, so replicas switch without a restart.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["HistoryRow", "record", "history", "get", "current", "by_path", "rollback", "rollback_and_publish", "STATUSES"]

STATUSES = ("serving", "refused", "rolled_back")


@dataclass(frozen=True)
class HistoryRow:
    profile: str
    version: int
    path: str | None
    created: float
    status: str
    evidence: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "version": self.version,
            "path": self.path,
            "created": self.created,
            "status": self.status,
            "evidence": self.evidence,
        }


def _row(r: Any) -> HistoryRow:
    return HistoryRow(r[0], int(r[1]), r[2], float(r[3]), r[4], json.loads(r[5]))


_COLS = "profile, version, path, created, status, evidence"


def record(
    conn: sqlite3.Connection, profile: str, status: str, evidence: dict[str, Any], path: str | None = None, created: float | None = None
) -> HistoryRow:
    """Append the next version of ``profile`` (call inside a write transaction)."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}")
    top = conn.execute("SELECT MAX(version) FROM artefact_history WHERE profile = ?", (profile,)).fetchone()[0]
    row = HistoryRow(profile, int(top or 0) + 1, path, time.time() if created is None else created, status, evidence)
    conn.execute(
        f"INSERT INTO artefact_history ({_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
        (row.profile, row.version, row.path, row.created, row.status, json.dumps(evidence, default=str)),
    )
    return row


def history(conn: sqlite3.Connection, profile: str | None = None) -> list[HistoryRow]:
    """Every row (of ``profile``), newest first."""
    if profile is None:
        rows = conn.execute(f"SELECT {_COLS} FROM artefact_history ORDER BY profile, version DESC").fetchall()
    else:
        rows = conn.execute(f"SELECT {_COLS} FROM artefact_history WHERE profile = ? ORDER BY version DESC", (profile,)).fetchall()
    return [_row(r) for r in rows]


def get(conn: sqlite3.Connection, profile: str, version: int) -> HistoryRow | None:
    r = conn.execute(f"SELECT {_COLS} FROM artefact_history WHERE profile = ? AND version = ?", (profile, version)).fetchone()
    return None if r is None else _row(r)


def current(conn: sqlite3.Connection, profile: str) -> HistoryRow | None:
    """The artefact in service: the newest ``serving`` row (None: the configured policy serves)."""
    r = conn.execute(
        f"SELECT {_COLS} FROM artefact_history WHERE profile = ? AND status = ? ORDER BY version DESC LIMIT 1", (profile, "serving")
    ).fetchone()
    return None if r is None else _row(r)


def by_path(conn: sqlite3.Connection, profile: str, path: str) -> HistoryRow | None:
    """The newest row of ``profile`` whose artefact folder is ``path`` (None: not a learned artefact)."""
    r = conn.execute(
        f"SELECT {_COLS} FROM artefact_history WHERE profile = ? AND path = ? ORDER BY version DESC LIMIT 1", (profile, path)
    ).fetchone()
    return None if r is None else _row(r)


def rollback(conn: sqlite3.Connection, profile: str) -> tuple[HistoryRow | None, HistoryRow | None]:
    """Mark the artefact in service ``rolled_back`` (inside a write transaction); returns
    (the row rolled back, the row now serving — None: the configured policy)."""
    top = current(conn, profile)
    if top is None:
        return None, None
    conn.execute("UPDATE artefact_history SET status = ? WHERE profile = ? AND version = ?", ("rolled_back", profile, top.version))
    return top, current(conn, profile)


def rollback_and_publish(conn: Any, profile: str, *, source: str = "cli") -> tuple[HistoryRow | None, HistoryRow | None]:
    """:func:`rollback`, then a new version row for what serves now (its folder's digest, or the
    config file's policy), in the same transaction: every replica on the store switches to it."""
    from thrifty.store.versions import artefact_digest, bump_in, serve_config_in

    old, now = rollback(conn, profile)
    if old is None:
        return old, now
    if now is not None and now.path:
        bump_in(conn, profile, sha256=artefact_digest(now.path), path=now.path, source=source)
    else:
        serve_config_in(conn, profile, source=source)
    return old, now
