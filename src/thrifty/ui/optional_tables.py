"""Panels fed by tables other parts of thrifty add when they are switched on.

``audits`` / ``audit_answers`` (the live audit loop) and ``artefact_history`` (refits) may be absent
or empty; each reader then answers ``{"enabled": False, "reason": …}`` and the page says "off".
Their schemas are read from the table itself (columns present), so a column added later does not
break the panel; one that is missing turns the panel off with the reason, never a 500.
"""

from __future__ import annotations

import math
from typing import Any

from thrifty.ui.queries import Reader, Window, table_columns

__all__ = ["audit_summary", "audit_for_request", "refit_history", "wilson_interval"]

_AUDIT_NEEDS = {"request_id", "created", "audit_cost_usd"}
_ANSWER_NEEDS = {"request_id", "model", "at_least_as_good"}


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of the share k/n (None when n = 0)."""
    if n <= 0:
        return None
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, centre - half), min(1.0, centre + half)


def audit_summary(db: Reader, window: Window, *, scope_key: str | None, profile: str | None = None) -> dict[str, Any]:
    """Audited requests in the window: the share whose served answer was judged at least as good as
    the reference (with its 95% interval) and what the audits cost."""
    cols = table_columns(db, "audits")
    answer_cols = table_columns(db, "audit_answers")
    if cols is None or answer_cols is None:
        return {"enabled": False, "reason": "audits off (no audits table in this log)"}
    missing = (_AUDIT_NEEDS - set(cols)) | (_ANSWER_NEEDS - set(answer_cols))
    if missing:
        return {"enabled": False, "reason": f"audits table lacks {sorted(missing)}"}
    served = "served_model" if "served_model" in cols else None
    where: list[str] = ["a.created >= ?", "a.created < ?"]
    params: list[Any] = [window.start, window.end]
    if profile is not None and "profile" in cols:
        where.append("a.profile = ?")
        params.append(profile)
    if scope_key is not None:  # audits are scoped through the request they audited
        where.append("r.key_name = ?")
        params.append(scope_key)
    join_served = f"AND x.model = a.{served}" if served else ""
    rows = db.rows(
        "SELECT COUNT(*) AS n, SUM(a.audit_cost_usd) AS cost,"
        " SUM(CASE WHEN x.at_least_as_good IS NULL THEN 0 ELSE 1 END) AS judged,"
        " SUM(CASE WHEN x.at_least_as_good = 1 THEN 1 ELSE 0 END) AS good"
        " FROM audits a JOIN requests r ON r.id = a.request_id"
        f" LEFT JOIN audit_answers x ON x.request_id = a.request_id {join_served}"
        f" WHERE {' AND '.join(where)}",  # noqa: S608 - fixed fragments, values bound
        params,
    )
    r = rows[0] if rows else {}
    n = int(r.get("n") or 0)
    if n == 0:
        return {"enabled": False, "reason": "audits off (no audited request in this period)"}
    judged, good = int(r.get("judged") or 0), int(r.get("good") or 0)
    ci = wilson_interval(good, judged)
    return {
        "enabled": True,
        "audited": n,
        "judged": judged,
        "at_least_as_good": good,
        "share": good / judged if judged else None,
        "ci95": list(ci) if ci else None,
        "audit_cost_usd": float(r.get("cost") or 0.0),
    }


def refit_history(db: Reader, profile: str, *, limit: int = 50) -> dict[str, Any]:
    """The profile's refits (swaps and refusals with their evidence), newest first."""
    cols = table_columns(db, "artefact_history")
    if cols is None:
        return {"enabled": False, "reason": "no refit history (the live loop is off)", "rows": []}
    order = next((c for c in ("created", "at", "ts", "time", "id") if c in cols), None)
    where, params = ("WHERE profile = ?", [profile]) if "profile" in cols else ("", [])
    sql = f"SELECT * FROM artefact_history {where}" + (f" ORDER BY {order} DESC" if order else "") + " LIMIT ?"  # noqa: S608
    rows = db.rows(sql, [*params, limit])
    if not rows:  # the table exists once any profile refits; this one may never have
        return {"enabled": False, "reason": "no refits for this profile yet ([profiles.NAME.refit] off, or none due)", "rows": []}
    return {"enabled": True, "columns": list(cols), "rows": rows}


def audit_for_request(db: Reader, request_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The audit row of one request and its judged answers; (None, []) when audits are off."""
    cols, answer_cols = table_columns(db, "audits"), table_columns(db, "audit_answers")
    if cols is None or "request_id" not in cols:
        return None, []
    rows = db.rows("SELECT * FROM audits WHERE request_id = ?", (request_id,))
    if not rows:
        return None, []
    answers = (
        db.rows("SELECT * FROM audit_answers WHERE request_id = ?", (request_id,)) if answer_cols and "request_id" in answer_cols else []
    )
    return rows[0], answers
