"""Requests a budget refused (429 before any model ran), counted in the shared store.

A refused request has no ``requests`` row (nothing ran). Counting it in one process's memory would
show each replica its own share; counting it here — one upsert per refusal into
``budget_refusals`` (hour × key × profile × the limit that refused; migration
``0012_dash_budget_refusals``) — gives the dashboard's keys page and ``/metrics`` every replica's
refusals, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from typing import Any

__all__ = ["record_refusal", "refusals_by_key", "refusal_totals"]


def record_refusal(conn: Any, *, key: str | None, profile: str | None, scope: str, at: float) -> None:
    """Count one refusal at unix time ``at`` (inside the caller's write transaction)."""
    hour = int(at // 3600) * 3600
    conn.execute(
        "INSERT INTO budget_refusals (hour, key_name, profile, scope, n, last) VALUES (?, ?, ?, ?, 1, ?)"
        " ON CONFLICT(hour, key_name, profile, scope) DO UPDATE SET n = budget_refusals.n + 1,"
        " last = CASE WHEN excluded.last > budget_refusals.last THEN excluded.last ELSE budget_refusals.last END",
        (hour, key or "", profile or "", scope, float(at)),
    )


def refusals_by_key(conn: Any, start: float | None = None, end: float | None = None) -> dict[str, dict[str, int]]:
    """Key name ('' for none) → {"total", "key", "profile"}: refusals in the hours overlapping ``[start, end)``
    (every hour when None), and how many of them the key's own limit and the profile's budget caused."""
    lo = -(10**12) if start is None else int(start // 3600) * 3600
    hi = 10**12 if end is None else float(end)
    out: dict[str, dict[str, int]] = {}
    for r in conn.execute(
        "SELECT key_name, scope, SUM(n) AS n FROM budget_refusals WHERE hour >= ? AND hour < ? GROUP BY key_name, scope", (lo, hi)
    ).fetchall():
        d = out.setdefault(str(r[0]), {"total": 0, "key": 0, "profile": 0})
        d[str(r[1])] = d.get(str(r[1]), 0) + int(r[2])
        d["total"] += int(r[2])
    return out


def refusal_totals(conn: Any) -> list[tuple[str, str, str, int]]:
    """Every ``(key, profile, scope, refusals)`` since the store was created (for ``/metrics``)."""
    rows = conn.execute(
        "SELECT key_name, profile, scope, SUM(n) FROM budget_refusals GROUP BY key_name, profile, scope ORDER BY 1, 2, 3"
    ).fetchall()
    return [(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]
