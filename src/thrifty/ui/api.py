"""``/ui/api/...``: the dashboard's JSON endpoints (read-only), and the access rule the pages share.

Access: with no ``[keys]`` configured the gateway is open and so is the dashboard (loopback use);
once keys exist, every ``/ui`` path needs the admin key (``[server] admin_sha256``) as
``Authorization: Bearer <key>`` or as the password of HTTP Basic auth (what a browser prompts for) —
anything else is a 401 with the OpenAI error body. Queries run on the dashboard's own two threads
with read-only connections (SQLite: WAL readers; PostgreSQL: the store's pool), so a slow
aggregation never holds the event loop or the log writer.
"""

import asyncio
import base64
import binascii
import hmac
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from thrifty.config.settings import hash_key

# no ``from __future__ import annotations``: FastAPI reads the endpoints' ``Request`` annotation at runtime
from thrifty.errors import AuthError, RequestError
from thrifty.gateway.errors import error_body
from thrifty.ui import context, params, queries
from thrifty.ui.graph import request_graph
from thrifty.ui.lab import lab_listing
from thrifty.ui.optional_tables import audit_for_request, audit_summary, refit_history
from thrifty.ui.rollup import Roller

__all__ = [
    "register_api",
    "admin_scope",
    "run_query",
    "overview_doc",
    "profiles_doc",
    "profile_doc",
    "keys_doc",
    "requests_doc",
    "request_doc",
    "DashboardState",
]

_REALM = 'Basic realm="thrifty dashboard", charset="UTF-8"'


@dataclass
class DashboardState:
    reader: queries.Reader
    roller: Roller
    pool: ThreadPoolExecutor


#: an hour is rolled up once it ended this long beyond the longest request (see thrifty.ui.rollup)
SETTLE_MARGIN_S = 300.0


def _state(app: Any) -> DashboardState:
    st = getattr(app.state, "dashboard", None)
    rt = app.state.runtime
    if st is None or st.reader.store is not rt.store:  # a reload may have opened another store
        st = DashboardState(
            queries.Reader(rt.store),
            Roller(rt.store, settle_s=rt.settings.server.request_timeout_s + SETTLE_MARGIN_S),
            ThreadPoolExecutor(2, thread_name_prefix="thrifty-ui", initializer=_background_priority),
        )
        app.state.dashboard = st
    return st


def _background_priority() -> None:
    """Run this dashboard thread at a lower CPU priority (Linux: nice applies per thread), so on a
    busy machine the gateway's event loop gets the CPU first; a no-op where that is not possible."""
    import os
    import threading

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10))
    except (AttributeError, OSError):
        pass


async def run_query(request: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(reader, *args, **kwargs)`` on the dashboard's threads (never on the event loop), after
    rolling up the hours that settled since the last look."""
    st = _state(request.app)

    def go() -> Any:
        st.roller.catch_up()
        return fn(st.reader, *args, **kwargs)

    return await asyncio.get_running_loop().run_in_executor(st.pool, go)


def _presented_key(request: Any) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            _, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return password or None
    return None


def admin_scope(request: Any) -> str | None:
    """The key scope of the request — None: the admin, who sees every key's rows — or AuthError (401)."""

    settings = request.app.state.runtime.settings
    if not settings.auth_required:
        return None
    digest = settings.server.admin_sha256
    if not digest:
        raise AuthError("the dashboard needs the admin key, and none is configured: set [server] admin_sha256 (thrifty keys hash <key>)")
    key = _presented_key(request)
    if key is None:
        raise AuthError("the dashboard needs the admin key: send 'Authorization: Bearer <admin key>' (or Basic auth)")
    if not hmac.compare_digest(hash_key(key), digest):
        raise AuthError("not the admin key")
    return None


def unauthorized(exc: AuthError) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse(
        error_body(str(exc), "authentication_error", code="invalid_api_key"), status_code=401, headers={"www-authenticate": _REALM}
    )


def _request_error(exc: RequestError) -> Any:
    """400 for a bad parameter, 404 for an unknown profile, request or lab file."""
    from fastapi.responses import JSONResponse

    status = 404 if exc.code in ("not_found", "profile_not_found") else 400
    return JSONResponse(error_body(str(exc), "invalid_request_error", param=exc.param, code=exc.code), status_code=status)


def known_profile(rt: Any, name: str) -> dict[str, Any]:
    for p in context.profiles_in_service(rt):
        if p["name"] == name:
            return p
    raise RequestError(
        f"unknown profile {name!r}; profiles in service: {[p['name'] for p in context.profiles_in_service(rt)]}",
        param="profile",
        code="profile_not_found",
    )


# ---- documents (sync: they run on the dashboard's threads) --------------------------------------
def overview_doc(db: queries.Reader, rt: Any, window: queries.Window, scope: str | None, profile: str | None = None) -> dict[str, Any]:
    doc = queries.overview(db, window, scope_key=scope, baseline=context.baseline_prices(rt), profile=profile)
    doc["latency"] = queries.latency_percentiles(db, window, scope_key=scope, profile=profile)
    doc["audit"] = audit_summary(db, window, scope_key=scope, profile=profile)
    doc["window"] = {"start": window.start, "end": window.end, "bucket_s": window.bucket_s}
    return doc


def profiles_doc(db: queries.Reader, rt: Any, window: queries.Window, scope: str | None) -> dict[str, Any]:
    profiles = context.profiles_in_service(rt)
    spent = queries.period_spend(db, "profile", [p["name"] for p in profiles], {p["name"]: p["budget_period_key"] for p in profiles})
    for p in profiles:
        p["budget_spent_usd"] = spent[p["name"]]
        p["budget_left_usd"] = None if p["budget_usd"] is None else max(0.0, p["budget_usd"] - spent[p["name"]])
        series = queries.profile_series(db, window, p["name"], scope_key=scope)
        n = sum(series["totals_by_model"].values())
        p["answered"] = n
        p["tier_shares"] = {m: c / n for m, c in series["totals_by_model"].items()} if n else {}
        p["escalation_rate"] = sum(series["escalated"]) / n if n else None
    return {"profiles": profiles, "window": {"start": window.start, "end": window.end, "bucket_s": window.bucket_s}}


def profile_doc(db: queries.Reader, rt: Any, window: queries.Window, scope: str | None, profile: dict[str, Any]) -> dict[str, Any]:
    name = profile["name"]
    spent = queries.period_spend(db, "profile", [name], {name: profile["budget_period_key"]})[name]
    return {
        "profile": {
            **profile,
            "budget_spent_usd": spent,
            "budget_left_usd": None if profile["budget_usd"] is None else max(0.0, profile["budget_usd"] - spent),
        },
        "series": queries.profile_series(db, window, name, scope_key=scope),
        "overview": overview_doc(db, rt, window, scope, profile=name),
        "refits": refit_history(db, name),
    }


def keys_doc(db: queries.Reader, rt: Any, window: queries.Window, scope: str | None) -> dict[str, Any]:
    keys = context.keys_configured(rt)
    spent = queries.period_spend(db, "key", [k["name"] for k in keys], {k["name"]: k["period_key"] for k in keys})
    in_window = queries.key_spend(db, window, scope_key=scope)
    refused = queries.key_refusals(db, window, scope_key=scope)  # every replica's, from the store
    for k in keys:
        k["spent_in_period_usd"] = spent[k["name"]]
        k["left_usd"] = None if k["limit_usd"] is None else max(0.0, k["limit_usd"] - spent[k["name"]])
        k.update(in_window.pop(k["name"], {"requests": 0, "spend_usd": 0.0, "errors": 0}))
        k["refused"] = refused.pop(k["name"], {"total": 0, "key": 0, "profile": 0})
    for name, r in refused.items():  # refusals of a key no longer configured, or of requests without a key
        in_window.setdefault(name, {"requests": 0, "spend_usd": 0.0, "errors": 0})["refused"] = r
    others = [{"name": name or "(no key)", "refused": {"total": 0, "key": 0, "profile": 0}, **v} for name, v in sorted(in_window.items())]
    return {
        "keys": keys,
        "unconfigured": others,
        "refused_by_budget": sum(k["refused"]["total"] for k in keys) + sum(o["refused"]["total"] for o in others),
        "window": {"start": window.start, "end": window.end, "bucket_s": window.bucket_s},
    }


def requests_doc(db: queries.Reader, f: queries.RequestFilter, scope: str | None, limit: int, before: Any) -> dict[str, Any]:
    rows, more = queries.list_requests(db, f, scope_key=scope, limit=limit, before=before)
    nxt = f"{rows[-1]['created']!r}:{rows[-1]['id']}" if more and rows else None
    search = db.search_mode() if f.text else None  # fts5 | trigram (indexed) | scan
    return {"requests": rows, "next": nxt, "filter": params.as_dict(f), "limit": limit, "search": search}


def request_doc(db: queries.Reader, rt: Any, request_id: str, scope: str | None) -> dict[str, Any] | None:
    detail = queries.request_detail(db, request_id, scope_key=scope)
    if detail is None:
        return None
    profile = next((p for p in context.profiles_in_service(rt) if p["name"] == detail.get("profile")), None)
    audit, answers = audit_for_request(db, request_id)
    detail.pop("request_json", None)
    texts = context.shot_texts(((profile or {}).get("prompt_adaptation") or {}).get("examples"))
    graph = request_graph({**detail}, profile=profile, audit=audit, audit_answers=answers, shot_texts=texts)
    return {"request": detail, "graph": graph}


def register_api(app: Any) -> None:
    from fastapi import Request
    from fastapi.responses import JSONResponse

    def q(request: Request) -> dict[str, str]:
        return dict(request.query_params)

    async def guarded(request: Request, body: Callable[[str | None], Awaitable[Any]]) -> Any:
        try:
            scope = admin_scope(request)
            return JSONResponse(await body(scope))
        except AuthError as exc:
            return unauthorized(exc)
        except RequestError as exc:
            return _request_error(exc)

    @app.get("/ui/api/overview", include_in_schema=False)
    async def api_overview(request: Request) -> Any:
        async def body(scope: Any) -> Any:
            rt, window = request.app.state.runtime, params.window_from(q(request))
            prof = q(request).get("profile") or None
            if prof is not None:
                known_profile(rt, prof)
            return await run_query(request, overview_doc, rt, window, scope, prof)

        return await guarded(request, body)

    @app.get("/ui/api/profiles", include_in_schema=False)
    async def api_profiles(request: Request) -> Any:
        async def body(scope: Any) -> Any:
            return await run_query(request, profiles_doc, request.app.state.runtime, params.window_from(q(request)), scope)

        return await guarded(request, body)

    @app.get("/ui/api/profiles/{name}", include_in_schema=False)
    async def api_profile(request: Request, name: str) -> Any:
        async def body(scope: Any) -> Any:
            rt = request.app.state.runtime
            window, prof = params.window_from(q(request)), known_profile(rt, name)
            return await run_query(request, profile_doc, rt, window, scope, prof)

        return await guarded(request, body)

    @app.get("/ui/api/keys", include_in_schema=False)
    async def api_keys(request: Request) -> Any:
        async def body(scope: Any) -> Any:
            return await run_query(request, keys_doc, request.app.state.runtime, params.window_from(q(request)), scope)

        return await guarded(request, body)

    @app.get("/ui/api/requests", include_in_schema=False)
    async def api_requests(request: Request) -> Any:
        async def body(scope: Any) -> Any:
            qs = q(request)
            return await run_query(request, requests_doc, params.request_filter(qs), scope, params.page_size(qs), params.cursor(qs))

        return await guarded(request, body)

    @app.get("/ui/api/requests/{request_id}", include_in_schema=False)
    async def api_request(request: Request, request_id: str) -> Any:
        async def body(scope: Any) -> Any:
            doc = await run_query(request, request_doc, request.app.state.runtime, request_id, scope)
            if doc is None:
                raise RequestError(f"no logged request {request_id!r}", param="request_id", code="not_found")
            return doc

        return await guarded(request, body)

    @app.get("/ui/api/lab", include_in_schema=False)
    async def api_lab(request: Request) -> Any:

        async def body(scope: Any) -> Any:
            return await asyncio.to_thread(lab_listing, request.app.state.runtime, q(request).get("file"))

        return await guarded(request, body)
