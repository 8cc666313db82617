"""``/ui``: the dashboard's server-rendered pages (Jinja2) and its static files.

Every page is complete HTML with its figures already in it (readable without JavaScript, printable);
small scripts then draw the charts and the node graph from ``/ui/api/...`` and refresh the overview.
The vendored libraries (uPlot, Cytoscape.js — see ``static/vendor/*.LICENSE``) are served from here,
so the dashboard works offline. :func:`register_dashboard` is the gateway's one hook.
"""

import datetime as _dt
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

# no ``from __future__ import annotations``: FastAPI reads the endpoints' ``Request`` annotation at runtime
from thrifty.errors import AuthError, ConfigError, RequestError
from thrifty.ui import api, context, params
from thrifty.ui.lab import lab_listing

__all__ = ["register_dashboard"]

_HERE = Path(__file__).resolve().parent
NAV = (
    ("overview", "/ui", "Overview"),
    ("profiles", "/ui/profiles", "Profiles"),
    ("keys", "/ui/keys", "Keys & budgets"),
    ("requests", "/ui/requests", "Requests"),
    ("lab", "/ui/lab", "Lab"),
)


def usd(v: Any) -> str:
    """Money as the pages and scripts both print it (ui.js ``fmt.usd``)."""
    if v is None:
        return "–"
    v = float(v)
    text = f"${abs(v):.2f}" if abs(v) >= 1 else f"${abs(v):.6f}"
    return "-" + text if v < 0 and text.strip("$0.") else text


def pct(v: Any) -> str:
    return "–" if v is None else f"{float(v) * 100:.1f}%"


def ms(v: Any) -> str:
    return "–" if v is None else f"{float(v):.0f} ms"


def le_ms(v: Any) -> str:
    """A latency percentile, reported as the upper bound of its bucket (thrifty.ui.rollup)."""
    return "–" if v is None else f"≤ {float(v):.0f} ms"


def utc(t: Any) -> str:
    if t is None:
        return "–"
    return _dt.datetime.fromtimestamp(float(t), tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def meta(d: dict[str, Any]) -> str:
    """A node's facts, each in its unit: ``decision=escalated · score=0.41 · cost=$0.000002 · latency=12 ms``."""
    out = []
    for k, v in sorted(d.items()):
        if k.endswith("_usd"):
            out.append(f"{k[:-4]}={usd(v)}")
        elif k.endswith("latency_s"):
            out.append(f"latency={ms(float(v) * 1000)}")
        elif isinstance(v, bool):
            out.append(f"{k}={'yes' if v else 'no'}")
        elif isinstance(v, float):
            out.append(f"{k}={v:.3g}")
        elif k != "error":  # the error's text is the node's text
            out.append(f"{k}={v}")
    return " · ".join(out)


@lru_cache(maxsize=1)
def _env() -> Any:
    try:
        import jinja2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError("the dashboard needs Jinja2", key="serve", fix="pip install 'thrifty[serve]'") from exc
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_HERE / "templates")),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        usd=usd, pct=pct, ms=ms, le_ms=le_ms, utc=utc, meta=meta, tojson_compact=lambda v: json.dumps(v, separators=(",", ":"), default=str)
    )
    return env


def _render(name: str, status: int = 200, **ctx: Any) -> Any:
    from fastapi.responses import HTMLResponse

    html = _env().get_template(name).render(nav=NAV, ranges=list(params.RANGES), **ctx)
    return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})


def register_dashboard(app: Any) -> None:
    """Serve ``/ui`` (pages), ``/ui/api/...`` (JSON) and ``/ui/static/...`` (scripts, styles, vendored libraries)."""
    from fastapi import Request
    from fastapi.staticfiles import StaticFiles

    api.register_api(app)
    app.mount("/ui/static", StaticFiles(directory=str(_HERE / "static")), name="ui-static")

    async def page(request: Request, active: str, build: Any) -> Any:
        try:
            api.admin_scope(request)
            name, ctx = await build(dict(request.query_params))
            return _render(name, active=active, query=dict(request.query_params), **ctx)
        except AuthError as exc:
            return api.unauthorized(exc)
        except RequestError as exc:
            status = 404 if exc.code in ("not_found", "profile_not_found") else 400
            return _render("error.html", status=status, active=active, query={}, message=str(exc), param=exc.param)

    async def windowed(request: Request, active: str, template: str, doc_fn: Any, default_range: str = "24h") -> Any:
        """A page that shows one document of the chosen time window (overview, profiles, keys)."""

        async def build(q: dict[str, str]) -> Any:
            rt, window = request.app.state.runtime, params.window_from(q)
            doc = await api.run_query(request, doc_fn, rt, window, None)
            return template, {"doc": doc, "sel_range": q.get("range") or default_range}

        return await page(request, active, build)

    @app.get("/ui", include_in_schema=False)
    async def overview(request: Request) -> Any:
        return await windowed(request, "overview", "overview.html", api.overview_doc)

    @app.get("/ui/profiles", include_in_schema=False)
    async def profiles(request: Request) -> Any:
        return await windowed(request, "profiles", "profiles.html", api.profiles_doc)

    @app.get("/ui/profiles/{name}", include_in_schema=False)
    async def profile(request: Request, name: str) -> Any:
        async def build(q: dict[str, str]) -> Any:
            rt, window = request.app.state.runtime, params.window_from(q)
            prof = api.known_profile(rt, name)
            doc = await api.run_query(request, api.profile_doc, rt, window, None, prof)
            return "profile.html", {"doc": doc, "sel_range": q.get("range") or "24h"}

        return await page(request, "profiles", build)

    @app.get("/ui/keys", include_in_schema=False)
    async def keys(request: Request) -> Any:
        return await windowed(request, "keys", "keys.html", api.keys_doc, default_range="30d")

    @app.get("/ui/requests", include_in_schema=False)
    async def requests_page(request: Request) -> Any:
        async def build(q: dict[str, str]) -> Any:
            rt = request.app.state.runtime
            f, limit, before = params.request_filter(q), params.page_size(q), params.cursor(q)
            doc = await api.run_query(request, api.requests_doc, f, None, limit, before)
            profiles = [p["name"] for p in context.profiles_in_service(rt)]
            keys = [k["name"] for k in context.keys_configured(rt)]
            return "requests.html", {"doc": doc, "profiles": profiles, "keys": keys}

        return await page(request, "requests", build)

    @app.get("/ui/requests/{request_id}", include_in_schema=False)
    async def request_page(request: Request, request_id: str) -> Any:
        async def build(q: dict[str, str]) -> Any:
            doc = await api.run_query(request, api.request_doc, request.app.state.runtime, request_id, None)
            if doc is None:
                raise RequestError(f"no logged request {request_id!r}", param="request_id", code="not_found")
            return "request.html", {"doc": doc}

        return await page(request, "requests", build)

    @app.get("/ui/lab", include_in_schema=False)
    async def lab(request: Request) -> Any:
        import asyncio

        async def build(q: dict[str, str]) -> Any:
            listing = await asyncio.to_thread(lab_listing, request.app.state.runtime)
            return "lab.html", {"listing": listing}

        return await page(request, "lab", build)
