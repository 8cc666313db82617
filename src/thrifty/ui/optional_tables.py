"""Panels fed by tables other parts of thrifty add when they are switched on.

``audits`` / ``audit_answers`` (the live audit loop, migration ``0006_audits``) and
``artefact_history`` (refits) may be absent or empty; each reader then answers ``{"enabled": False, "reason": …}`` and the page says "off".
Their schemas are read from the table itself (columns present), so a column added later does not
break the panel; one that is missing turns the panel off with the reason, never a 500.
"""

from __future__ import annotations

import math
from typing import Any

from thrifty.calibration.audit_report import profile_report
from thrifty.store.audits import AUDIT_STATUSES
from thrifty.ui.queries import Reader, Window, table_columns

__all__ = ["audit_summary", "audit_for_request", "refit_history", "wilson_interval"]

#: the columns of migration ``0006_audits`` the panel reads (the live audit loop, thrifty.gateway.audits)
_AUDIT_NEEDS = {"request_id", "profile", "created", "status", "reference", "served_model", "served_cost_usd", "audit_cost_usd"}
_ANSWER_NEEDS = {"request_id", "model", "tier", "cost_usd", "reused", "quality", "at_least_as_good", "error"}
_ANSWER_COLS = "x.request_id, x.model, x.tier, x.cost_usd, x.reused, x.quality, x.at_least_as_good, x.error"


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of the share k/n (None when n = 0)."""
    if n <= 0:
        return None
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, centre - half), min(1.0, centre + half)


def _audit_where(window: Window, scope_key: str | None, profile: str | None) -> tuple[str, str, list[Any]]:
    """(JOIN, WHERE, params) selecting the audits of requests that arrived in the window, in scope."""
    where: list[str] = ["a.created >= ?", "a.created < ?"]
    params: list[Any] = [window.start, window.end]
    if profile is not None:
        where.append("a.profile = ?")
        params.append(profile)
    join = ""
    if scope_key is not None:  # audits are scoped through the request they audited
        join = " JOIN requests r ON r.id = a.request_id"
        where.append("r.key_name = ?")
        params.append(scope_key)
    return join, " AND ".join(where), params


def audit_rows_in(
    db: Reader, window: Window, *, scope_key: str | None, profile: str | None = None
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The done audits in the window in the shape :func:`thrifty.calibration.audit_report.profile_report`
    takes (each with its ``answers`` by model), and per profile the audits by status and what they paid."""
    join, where, params = _audit_where(window, scope_key, profile)
    audits = db.rows(
        "SELECT a.request_id, a.profile, a.created, a.status, a.reference, a.served_model, a.served_cost_usd,"
        f" a.audit_cost_usd FROM audits a{join} WHERE {where} AND a.status = 'done'"  # noqa: S608 - fixed fragments
        " ORDER BY a.created, a.request_id",
        params,
    )
    answers = db.rows(
        f"SELECT {_ANSWER_COLS} FROM audit_answers x JOIN audits a ON a.request_id = x.request_id{join}"  # noqa: S608
        f" WHERE {where} AND a.status = 'done' ORDER BY x.request_id, x.tier, x.model",
        params,
    )
    by_id: dict[str, dict[str, Any]] = {}
    for x in answers:
        x["reused"] = bool(x["reused"])
        x["at_least_as_good"] = None if x["at_least_as_good"] is None else bool(x["at_least_as_good"])
        by_id.setdefault(x["request_id"], {})[x["model"]] = x
    for a in audits:
        a["answers"] = by_id.get(a["request_id"], {})
    status: dict[str, dict[str, Any]] = {}
    for r in db.rows(
        f"SELECT a.profile, a.status, COUNT(*) AS n, COALESCE(SUM(a.audit_cost_usd), 0) AS cost FROM audits a{join}"  # noqa: S608
        f" WHERE {where} GROUP BY a.profile, a.status",
        params,
    ):
        d = status.setdefault(r["profile"], {"counts": dict.fromkeys(AUDIT_STATUSES, 0), "audit_cost_usd": 0.0})
        d["counts"][r["status"]] = int(r["n"])
        d["audit_cost_usd"] += float(r["cost"])
    return audits, status


def _serving(db: Reader, window: Window, scope_key: str | None, profile: str | None) -> dict[str, dict[str, float]]:
    """Per profile: requests logged in the window and what serving them cost (the audit report's denominator)."""
    sql = "SELECT profile, COUNT(*) AS n, COALESCE(SUM(cost_usd), 0) AS cost FROM requests WHERE created >= ? AND created < ? AND profile IS NOT NULL"
    params: list[Any] = [window.start, window.end]
    if profile is not None:
        sql += " AND profile = ?"
        params.append(profile)
    if scope_key is not None:
        sql += " AND key_name = ?"
        params.append(scope_key)
    return {r["profile"]: {"requests": int(r["n"]), "cost_usd": float(r["cost"])} for r in db.rows(sql + " GROUP BY profile", params)}


def _panel(report: dict[str, Any]) -> dict[str, Any]:
    served, saving = report["served"], report["saving"]
    return {
        "audited": report["audited"],
        "judged": served["n"],
        "at_least_as_good": served["k"],
        "share": served["share"],
        "ci95": [served["low"], served["high"]] if served["share"] is not None else None,
        "reference": report["reference"],
        "status": report["status"],
        "audit_cost_usd": report["audit_cost_usd"],
        "audit_spend_share": report["audit_spend_share"],
        "saving": saving["saving"],
        "saving_ci95": [saving["low"], saving["high"]] if saving["saving"] is not None else None,
    }


def audit_summary(db: Reader, window: Window, *, scope_key: str | None, profile: str | None = None) -> dict[str, Any]:
    """The audits of requests that arrived in the window, as ``thrifty audit report --since`` computes
    them (its pure :func:`~thrifty.calibration.audit_report.profile_report`, fed rows read here):
    the share of served answers at least as good as the reference with its 95% Wilson interval,
    the estimated saving, what the audits cost — over all profiles and per profile."""
    cols, answer_cols = table_columns(db, "audits"), table_columns(db, "audit_answers")
    if cols is None or answer_cols is None:
        return {"enabled": False, "reason": "audits off (no audits table in this log)"}
    missing = (_AUDIT_NEEDS - set(cols)) | (_ANSWER_NEEDS - set(answer_cols))
    if missing:
        return {"enabled": False, "reason": f"audits table lacks {sorted(missing)}"}
    audits, status = audit_rows_in(db, window, scope_key=scope_key, profile=profile)
    if not status:
        return {"enabled": False, "reason": "audits off (no audited request in this period)"}
    spend = _serving(db, window, scope_key, profile)
    by_profile: dict[str, list[dict[str, Any]]] = {}
    for a in audits:
        by_profile.setdefault(a["profile"], []).append(a)

    def report(rows: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for name in names:
            for k, v in status.get(name, {"counts": {}})["counts"].items():
                counts[k] = counts.get(k, 0) + v
        return profile_report(
            rows,
            serving_cost_usd=sum(spend.get(n, {"cost_usd": 0.0})["cost_usd"] for n in names),
            requests=sum(int(spend.get(n, {"requests": 0})["requests"]) for n in names),
            status_counts=counts,
            audit_cost_usd=sum(status.get(n, {"audit_cost_usd": 0.0})["audit_cost_usd"] for n in names),
            windows=1,
        )

    names = sorted(status)
    return {"enabled": True, **_panel(report(audits, names)), "profiles": {n: _panel(report(by_profile.get(n, []), [n])) for n in names}}


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
        return {"enabled": False, "reason": "no refit history for this profile yet ([profiles.NAME.refit] off, or none due)", "rows": []}
    return {"enabled": True, "columns": list(cols), "rows": rows}


def audit_for_request(db: Reader, request_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The audit row of one request and its judged answers (tier order); (None, []) when audits are off."""
    cols, answer_cols = table_columns(db, "audits"), table_columns(db, "audit_answers")
    if cols is None or "request_id" not in cols:
        return None, []
    rows = db.rows("SELECT * FROM audits WHERE request_id = ?", (request_id,))
    if not rows:
        return None, []
    rows[0].pop("request_json", None)  # the request itself is the graph's first node already
    order = " ORDER BY tier, model" if answer_cols and {"tier", "model"} <= set(answer_cols) else ""
    answers = (
        db.rows(f"SELECT * FROM audit_answers WHERE request_id = ?{order}", (request_id,))
        if answer_cols and "request_id" in answer_cols
        else []
    )
    return rows[0], answers
