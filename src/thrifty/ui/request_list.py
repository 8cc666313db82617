"""The request list (filters, text search in the prompt, keyset paging) and one request's rows.

Text search: the prompts containing the text, ignoring case (:mod:`thrifty.store.search` says
exactly). On PostgreSQL the ``pg_trgm`` index serves the very ``LOWER(prompt) LIKE`` condition and
the planner picks it or the newest-first walk. On SQLite the FTS5 trigram index narrows the rows to
those holding the text's rarest trigrams (:func:`fts_narrowing`) when they are few: a text in many
prompts is found sooner by walking the newest rows, which stops at the end of the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thrifty.store import search
from thrifty.ui.reader import Reader

__all__ = ["FTS_CAP", "RARE", "fts_narrowing", "RequestFilter", "list_requests", "request_detail"]

#: a trigram in fewer prompts than this narrows the search on its own (a probe reads at most this many entries)
RARE = 2_000
#: the rarest trigram in more prompts than this: walk the newest rows instead — the text is then likely
#: common (the trigram is in ≥ 2% of a 1M-row log), so the page fills within a few thousand rows
FTS_CAP = 20_000
_MAX_PROBES = 24  # trigrams probed at most, spread over the text (a 200-character text has ~200)


def _count(db: Reader, expr: str, cap: int) -> int:
    rows = db.rows(
        f"SELECT COUNT(*) AS n FROM (SELECT rowid FROM {search.FTS_TABLE} WHERE {search.FTS_TABLE} MATCH ? LIMIT ?)",  # noqa: S608
        (expr, cap),
    )
    return int(rows[0]["n"])


def fts_narrowing(db: Reader, text: str) -> tuple[str, int] | None:
    """The FTS5 expression that narrows a search for ``text`` — its rarest trigrams, ANDed (every prompt
    containing the text contains them; the LIKE decides) — with the rowid the index reaches (later rows
    are read directly); or None: walk the newest rows instead (no FTS5 index, under 3 characters, a
    text whose trigrams are all in very many prompts, or many rows not indexed yet).

    Why not the text as one phrase: FTS5 walks every prompt holding all its trigrams to check their
    positions, which for a text made of common trigrams is a large share of the log."""
    if len(text) < search.MIN_CHARS or db.search_mode() != "fts5":
        return None
    upto = int(db.call(search.indexed_until))
    if int(db.rows("SELECT COALESCE(MAX(rowid), 0) AS top FROM requests")[0]["top"]) - upto > FTS_CAP:
        return None
    grams = sorted({text[i : i + 3] for i in range(len(text) - 2)})
    grams = grams[:: max(1, -(-len(grams) // _MAX_PROBES))]
    counts = {g: _count(db, search.fts_phrase(g), RARE) for g in grams}
    if min(counts.values()) >= RARE:  # every trigram hit the cap: count again, higher, until a rare-enough one turns up
        counts = dict.fromkeys(grams, FTS_CAP)  # not counted again: taken as common
        for g in grams:
            counts[g] = _count(db, search.fts_phrase(g), FTS_CAP)
            if counts[g] < FTS_CAP // 4:
                break
        if min(counts.values()) >= FTS_CAP:
            return None  # even its rarest trigram is in FTS_CAP prompts or more: a common text
    rarest = sorted(grams, key=lambda g: counts[g])[:3]
    expr = " AND ".join(search.fts_phrase(g) for g in rarest)
    return expr, upto


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


def list_requests(
    db: Reader, f: RequestFilter, *, scope_key: str | None, limit: int, before: tuple[float, str] | None
) -> tuple[list[dict[str, Any]], bool]:
    """Newest first, at most ``limit`` rows older than the ``before`` cursor (created, id); and
    whether more follow. Keyset paging: a deep page costs what the first one does."""
    narrowing = fts_narrowing(db, f.text) if f.text else None
    # with the index's rowids in hand, they drive: a unary + keeps SQLite off the other columns' indexes
    c = (lambda col: "+" + col) if narrowing is not None else (lambda col: col)
    sql: list[str] = ["1 = 1"]
    params: list[Any] = []
    for col, val in (("profile", f.profile), ("key_name", f.key if scope_key is None else scope_key), ("final_model", f.model)):
        if val is not None:
            sql.append(f"{c(col)} = ?")
            params.append(val)
    if f.status == "ok":
        sql.append("status < 400")
    elif f.status == "error":
        sql.append("status >= 400")
    elif f.status is not None:
        sql.append(f"{c('status')} = ?")
        params.append(int(f.status))
    if f.cache == "none":
        sql.append("cache IS NULL")
    elif f.cache is not None:
        sql.append(f"{c('cache')} = ?")
        params.append(f.cache)
    if f.start is not None:
        sql.append(f"{c('created')} >= ?")
        params.append(f.start)
    if f.end is not None:
        sql.append(f"{c('created')} < ?")
        params.append(f.end)
    if f.text:  # what matches is always this LIKE; an index only narrows the rows it is tested on
        sql.append("LOWER(prompt) LIKE ? ESCAPE '\\'")
        params.append(search.like_pattern(f.text))
    if narrowing is not None:  # the index's candidates, and the few rows logged since it was last fed
        sql.append(
            f"rowid IN (SELECT rowid FROM {search.FTS_TABLE} WHERE {search.FTS_TABLE} MATCH ?"  # noqa: S608
            " UNION ALL SELECT rowid FROM requests WHERE rowid > ?)"  # one list of rowids: looked up one by one
        )
        params.extend(narrowing)
    if before is not None:
        sql.append(f"({c('created')} < ? OR ({c('created')} = ? AND {c('id')} < ?))")
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
