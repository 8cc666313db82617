"""The dashboard's SQL: every figure is aggregated by the database, never by a loop over rows.

Each query groups the log into at most a few thousand rows (time bucket × profile × status …) and
Python only folds those groups. The ``0008_dashboard_indexes`` migration adds the covering indexes
these scans read instead of the wide ``requests`` rows (prompts and answers stay on disk).

Portable SQL only (``?`` placeholders, CASE, CAST, LIKE), so the same text runs on PostgreSQL.
``scope_key`` — a key's name or None for the admin — is applied to every query that touches
``requests``: a key's view never contains another key's rows.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["Reader", "Window", "overview", "latency_percentiles", "profile_series", "key_spend", "period_spend",
           "list_requests", "request_detail", "has_rows", "table_columns"]

#: the largest latency bucket (ms) kept apart; slower requests share the last one
_LATENCY_CAP_MS = 600_000


class Reader:
    """Read-only connections to the log database, one per thread (WAL: readers never block the
    gateway's writer, and the writer's lock is never taken)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._guard = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=10.0)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._guard:
                self._all.append(conn)
        return conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn().execute(sql, tuple(params)).fetchall()]

    def close(self) -> None:
        with self._guard:
            for c in self._all:
                c.close()
            self._all.clear()


def table_columns(db: Reader, table: str) -> tuple[str, ...] | None:
    """The column names of ``table``, None when it does not exist (portable: a zero-row SELECT)."""
    if not table.replace("_", "").isalnum():
        raise ValueError(f"not a table name: {table!r}")
    try:
        cur = db._conn().execute(f"SELECT * FROM {table} LIMIT 0")  # noqa: S608 - name checked above
    except sqlite3.OperationalError:
        return None
    return tuple(d[0] for d in cur.description)


def has_rows(db: Reader, table: str) -> bool:
    return table_columns(db, table) is not None and bool(db.rows(f"SELECT 1 AS x FROM {table} LIMIT 1"))  # noqa: S608


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in unix seconds, cut into buckets of ``bucket_s`` seconds from ``start``."""

    start: float
    end: float
    bucket_s: int

    @property
    def n_buckets(self) -> int:
        return max(1, -(-int(self.end - self.start) // self.bucket_s))

    def times(self) -> list[float]:
        return [self.start + i * self.bucket_s for i in range(self.n_buckets)]


def _where(window: Window, scope_key: str | None, profile: str | None = None) -> tuple[str, list[Any]]:
    sql, params = "created >= ? AND created < ?", [window.start, window.end]
    if scope_key is not None:
        sql += " AND key_name = ?"
        params.append(scope_key)
    if profile is not None:
        sql += " AND profile = ?"
        params.append(profile)
    return sql, params


#: created - start >= 0 here, so CAST truncation is floor (PostgreSQL: FLOOR(...))
_BUCKET = "CAST((created - ?) / ? AS INTEGER)"
_ESCALATED = "CASE WHEN tiers_tried LIKE '%,%' THEN 1 ELSE 0 END"  # a JSON list with more than one model
_CACHE_CLASS = "CASE WHEN cache IN ('hit', 'semantic') THEN 'hit' WHEN cache = 'miss' THEN 'miss' ELSE 'none' END"


def overview(db: Reader, window: Window, *, scope_key: str | None, baseline: Mapping[str, tuple[float, float]],
             profile: str | None = None) -> dict[str, Any]:
    """Requests, spend, saving against the dearest tier, errors, cache and escalation — per bucket and in total.

    ``baseline``: profile → (input, output) USD per 1M tokens of its dearest tier. The saving of a
    request is what that tier would have cost for the same tokens minus what was paid; requests of
    pass-through models (no profile) save nothing.
    """
    where, params = _where(window, scope_key, profile)
    groups = db.rows(
        f"SELECT {_BUCKET} AS b, profile, status, {_CACHE_CLASS} AS cache_class, {_ESCALATED} AS escalated,"
        " COUNT(*) AS n, SUM(cost_usd) AS cost, SUM(COALESCE(input_tokens, 0)) AS tin, SUM(COALESCE(output_tokens, 0)) AS tout"
        f" FROM requests WHERE {where} GROUP BY 1, 2, 3, 4, 5",  # noqa: S608 - fixed fragments, values bound
        [window.start, window.bucket_s, *params],
    )
    nb = window.n_buckets
    series = {k: [0.0] * nb for k in ("requests", "spend_usd", "saved_usd", "errors", "escalated", "cache_hits")}
    total = dict.fromkeys(("requests", "spend_usd", "dearest_usd", "ok", "errors", "escalated", "cache_hits", "cache_lookups"), 0.0)
    by_status: dict[str, int] = {}
    for g in groups:
        b = min(max(int(g["b"]), 0), nb - 1)
        n, cost = int(g["n"]), float(g["cost"] or 0.0)
        price = baseline.get(g["profile"]) if g["profile"] is not None else None
        dearest = (g["tin"] * price[0] + g["tout"] * price[1]) / 1e6 if price and int(g["status"]) < 400 else cost
        series["requests"][b] += n
        series["spend_usd"][b] += cost
        series["saved_usd"][b] += dearest - cost
        total["requests"] += n
        total["spend_usd"] += cost
        total["dearest_usd"] += dearest
        if int(g["status"]) >= 400:
            series["errors"][b] += n
            total["errors"] += n
            by_status[str(g["status"])] = by_status.get(str(g["status"]), 0) + n
            continue
        total["ok"] += n
        series["escalated"][b] += n * int(g["escalated"])
        total["escalated"] += n * int(g["escalated"])
        if g["cache_class"] != "none":
            total["cache_lookups"] += n
            if g["cache_class"] == "hit":
                total["cache_hits"] += n
                series["cache_hits"][b] += n
    ok = total["ok"]
    return {
        "t": window.times(),
        "series": series,
        "totals": {
            "requests": int(total["requests"]),
            "answered": int(ok),
            "errors": int(total["errors"]),
            "spend_usd": total["spend_usd"],
            "dearest_usd": total["dearest_usd"],
            "saved_usd": total["dearest_usd"] - total["spend_usd"],
            "escalation_rate": total["escalated"] / ok if ok else None,
            "escalated": int(total["escalated"]),
            "cache_hit_rate": total["cache_hits"] / total["cache_lookups"] if total["cache_lookups"] else None,
            "cache_hits": int(total["cache_hits"]),
            "cache_lookups": int(total["cache_lookups"]),
        },
        "errors_by_status": dict(sorted(by_status.items())),
    }


def latency_percentiles(db: Reader, window: Window, *, scope_key: str | None, profile: str | None = None,
                        qs: Sequence[float] = (0.5, 0.99)) -> dict[str, float | None]:
    """Nearest-rank percentiles of answered requests' latency, exact to the millisecond: the
    database counts requests per millisecond, Python walks those counts."""
    where, params = _where(window, scope_key, profile)
    hist = db.rows(
        f"SELECT CASE WHEN latency_s * 1000 > {_LATENCY_CAP_MS} THEN {_LATENCY_CAP_MS} ELSE CAST(latency_s * 1000 AS INTEGER) END AS ms,"
        f" COUNT(*) AS n FROM requests WHERE {where} AND status < 400 AND latency_s IS NOT NULL GROUP BY 1 ORDER BY 1",  # noqa: S608
        params,
    )
    n = sum(int(h["n"]) for h in hist)
    out: dict[str, float | None] = {}
    for q in qs:
        name = f"p{round(q * 100):d}_ms"
        if not n:
            out[name] = None
            continue
        rank, seen = max(1, -(-int(q * n * 1000) // 1000)), 0  # ceil(q·n), nearest-rank
        for h in hist:
            seen += int(h["n"])
            if seen >= rank:
                out[name] = float(h["ms"])
                break
    return out


def profile_series(db: Reader, window: Window, profile: str, *, scope_key: str | None) -> dict[str, Any]:
    """Per bucket: requests answered by each model (tier shares) and escalated requests."""
    where, params = _where(window, scope_key, profile)
    groups = db.rows(
        f"SELECT {_BUCKET} AS b, COALESCE(final_model, '(none)') AS model, {_ESCALATED} AS escalated, COUNT(*) AS n"
        f" FROM requests WHERE {where} AND status < 400 GROUP BY 1, 2, 3",  # noqa: S608
        [window.start, window.bucket_s, *params],
    )
    nb = window.n_buckets
    shares: dict[str, list[float]] = {}
    answered, escalated = [0.0] * nb, [0.0] * nb
    totals: dict[str, int] = {}
    for g in groups:
        b = min(max(int(g["b"]), 0), nb - 1)
        n = int(g["n"])
        shares.setdefault(g["model"], [0.0] * nb)[b] += n
        totals[g["model"]] = totals.get(g["model"], 0) + n
        answered[b] += n
        escalated[b] += n * int(g["escalated"])
    return {"t": window.times(), "answered": answered, "escalated": escalated, "by_model": shares, "totals_by_model": totals}


def key_spend(db: Reader, window: Window, *, scope_key: str | None) -> dict[str, dict[str, Any]]:
    """Per key name: requests, errors and spend inside the window."""
    where, params = _where(window, scope_key)
    rows = db.rows(
        "SELECT COALESCE(key_name, '') AS key_name, COUNT(*) AS n, SUM(cost_usd) AS cost,"
        f" SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS errors FROM requests WHERE {where} GROUP BY 1",  # noqa: S608
        params,
    )
    return {r["key_name"]: {"requests": int(r["n"]), "spend_usd": float(r["cost"] or 0.0), "errors": int(r["errors"])} for r in rows}


def period_spend(db: Reader, scope: str, names: Sequence[str], periods: Mapping[str, str | None]) -> dict[str, float]:
    """What the budget ledger has settled for each name in its limit's current period
    (``periods``: name → ``day:…``/``month:…`` row, None for the lifetime total)."""
    out: dict[str, float] = {}
    for name in names:
        period = periods.get(name)
        if period is None:
            rows = db.rows("SELECT spent_usd FROM spend WHERE scope = ? AND name = ?", (scope, name))
        else:
            rows = db.rows("SELECT spent_usd FROM spend_period WHERE scope = ? AND name = ? AND period = ?", (scope, name, period))
        out[name] = float(rows[0]["spent_usd"]) if rows else 0.0
    return out


@dataclass(frozen=True)
class RequestFilter:
    profile: str | None = None
    key: str | None = None
    model: str | None = None
    status: str | None = None  # "ok" | "error" | a status code
    cache: str | None = None  # hit | semantic | miss | bypass | none
    text: str | None = None
    start: float | None = None
    end: float | None = None


def list_requests(db: Reader, f: RequestFilter, *, scope_key: str | None, limit: int, before: tuple[float, str] | None
                  ) -> tuple[list[dict[str, Any]], bool]:
    """Newest first, at most ``limit`` rows older than the ``before`` cursor (created, id); and
    whether more follow. Keyset paging: a deep page costs what the first one does."""
    sql, params = ["1 = 1"], []
    for col, val in (("profile", f.profile), ("key_name", f.key if scope_key is None else scope_key), ("final_model", f.model)):
        if val is not None:
            sql.append(f"{col} = ?")
            params.append(val)
    if f.status == "ok":
        sql.append("status < 400")
    elif f.status == "error":
        sql.append("status >= 400")
    elif f.status is not None:
        sql.append("status = ?")
        params.append(int(f.status))
    if f.cache == "none":
        sql.append("cache IS NULL")
    elif f.cache is not None:
        sql.append("cache = ?")
        params.append(f.cache)
    if f.start is not None:
        sql.append("created >= ?")
        params.append(f.start)
    if f.end is not None:
        sql.append("created < ?")
        params.append(f.end)
    if f.text:
        sql.append("LOWER(prompt) LIKE ? ESCAPE '\\'")
        params.append("%" + f.text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    if before is not None:
        sql.append("(created < ? OR (created = ? AND id < ?))")
        params.extend([before[0], before[0], before[1]])
    rows = db.rows(
        "SELECT id, created, key_name, profile, model_requested, final_model, tiers_tried, cost_usd, latency_s, status,"
        f" cache, stream, SUBSTR(prompt, 1, 160) AS prompt FROM requests WHERE {' AND '.join(sql)}"  # noqa: S608
        " ORDER BY created DESC, id DESC LIMIT ?",
        [*params, limit + 1],
    )
    return rows[:limit], len(rows) > limit


def request_detail(db: Reader, request_id: str, *, scope_key: str | None) -> dict[str, Any] | None:
    """The request row and its steps; None when absent or outside ``scope_key``."""
    sql, params = "SELECT * FROM requests WHERE id = ?", [request_id]
    if scope_key is not None:
        sql += " AND key_name = ?"
        params.append(scope_key)
    rows = db.rows(sql, params)
    if not rows:
        return None
    row = rows[0]
    row["steps"] = db.rows("SELECT * FROM steps WHERE request_id = ? ORDER BY idx", (request_id,))
    return row
