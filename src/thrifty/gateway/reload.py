"""Live reload: rebuild routes from the config file and its artefacts without dropping a request.

Triggered by ``POST /admin/reload`` (served only when ``[server] admin_sha256`` is set; the caller
sends ``Authorization: Bearer <admin key>``) or by ``SIGHUP`` to a single-process ``thrifty serve``.

What happens, in order:

1. the config file the gateway started from is read and validated again (no file — settings passed
   in code — means the same settings; artefacts are still re-read);
2. providers, policies (fitted artefacts loaded from disk again) and engines are built in a worker
   thread, so the event loop keeps serving meanwhile;
3. if anything fails, nothing changes: the old routes keep serving and the error is returned;
4. otherwise the route table, keys and budget limits are swapped in one step (profiles with a
   learning loop then get their learned policy back: :meth:`~thrifty.gateway.learning.ProfileLearner.after_reload`). A request admitted
   before the swap finishes on the engine it started with; the replaced providers — and the
   wrappers the old profiles put around them (completion-cache stores: SQLite connections, Redis
   pools) — are closed once the last such request has finished (at the latest after
   ``request_timeout_s``; a store closed under a straggler reopens for it and is then dropped).

``[server]`` settings (host, port, data_dir, limits, the admin key) need a restart; a reload that
finds the body limit, CORS origins, request timeout or admin key changed lists them in
``restart_needed``.
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from typing import Any

from thrifty.config.settings import hash_key, load_settings
from thrifty.errors import AuthError
from thrifty.gateway.build import build_routes
from thrifty.gateway.errors import error_body
from thrifty.gateway.routes import bearer_token
from thrifty.serving.budget import ledger_for
from thrifty.serving.providers.base import Wrapper

# no ``from __future__ import annotations``: FastAPI reads the endpoint's ``Request`` annotation at runtime

__all__ = ["reload_runtime", "retire", "close_routes", "close_providers", "warm_providers", "summary", "register_admin"]

log = logging.getLogger("thrifty.gateway")

#: [server] settings only the file sets (host, port and data_dir may come from CLI flags or the
#: environment, so a difference there is not a change); a reload reports these as restart_needed
_FILE_ONLY_SERVER = ("max_body_bytes", "cors_origins", "request_timeout_s", "admin_sha256")


def summary(routes: dict[str, Any]) -> dict[str, Any]:
    """Model id → the tiers and thresholds its policy runs, plus a router's or hybrid's class and λ
    (what a reload changed)."""
    out: dict[str, Any] = {}
    for model_id, route in routes.items():
        if route.profile is None:
            continue
        policy = route.engine.policy
        out[model_id] = {"tiers": list(policy.tiers), "thresholds": [float(t) for t in getattr(policy, "thresholds", ())]}
        if hasattr(policy, "lam"):  # router / hybrid: its class and fitted λ (inf: a hybrid that always starts at tier 0)
            out[model_id]["policy"] = type(policy).__name__
            out[model_id]["lam"] = float(policy.lam) if policy.lam != float("inf") else "inf"
    return out


async def reload_runtime(rt: Any) -> dict[str, Any]:
    """Rebuild ``rt``'s routes from its config file (see the module docstring); returns a summary.

    Raises what loading or building raised (ConfigError, DataError …) with ``rt`` untouched.
    """

    async with rt.reload_lock:
        t0 = time.perf_counter()
        current = rt.settings
        fresh = await asyncio.to_thread(load_settings, current.source) if current.source else current
        restart = [f for f in _FILE_ONLY_SERVER if getattr(fresh.server, f) != getattr(current.server, f)]
        settings = replace(fresh, server=current.server)  # host, port, data dir … stay as started
        routes, providers = await asyncio.to_thread(build_routes, settings)
        try:
            await warm_providers(providers)  # load local weights now (shared in-process: usually instant)
            # it releases orphaned holds: SQLite, off the loop
            ledger = await asyncio.wrap_future(rt.store.submit(ledger_for, rt.store, settings))
        except BaseException:
            await close_providers(providers)
            await close_routes(routes)
            raise
        old_generation, old_providers, old_routes = rt.generation, rt.providers, rt.routes
        rt.settings, rt.routes, rt.providers, rt.ledger = settings, routes, providers, ledger
        rt.generation += 1
        for learner in getattr(rt, "learners", ()):  # the routes came from the file: put the learned policies back
            learner.after_reload()
        task = asyncio.get_running_loop().create_task(
            retire(rt, old_generation, old_providers, current.server.request_timeout_s, routes=old_routes)
        )
        rt.retiring.add(task)
        task.add_done_callback(rt.retiring.discard)
        took = time.perf_counter() - t0
        log.warning("thrifty: reloaded %s in %.2fs (generation %d)", current.source or "settings", took, rt.generation)
        return {
            "object": "reload",
            "generation": rt.generation,
            "source": current.source,
            "seconds": round(took, 3),
            "models": sorted(routes),
            "profiles": summary(routes),
            "restart_needed": restart,
        }


async def retire(rt: Any, generation: int, providers: dict[str, Any], max_wait_s: float, routes: dict[str, Any] | None = None) -> None:
    """Close ``providers`` (and the tier wrappers of ``routes``) once no request admitted in
    ``generation`` is still running."""
    deadline = time.monotonic() + max_wait_s + 5.0
    try:
        while rt.inflight.get(generation, 0) > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:  # also on shutdown (cancelled): the connections are closed either way
        rt.inflight.pop(generation, None)
        await close_providers(providers)
        if routes:
            await close_routes(routes)


def _wrappers(routes: dict[str, Any]) -> list[Any]:
    """Every wrapper layer (:class:`~thrifty.serving.providers.base.Wrapper`: a cache, a prompt adapter) around
    the tiers of ``routes``' engines, each once; the providers they wrap are closed separately."""

    found: dict[int, Any] = {}
    for route in routes.values():
        for provider in getattr(route.engine, "providers", ()):
            while isinstance(provider, Wrapper):
                found.setdefault(id(provider), provider)
                provider = provider.inner
    return list(found.values())


async def close_routes(routes: dict[str, Any]) -> None:
    """Release what the wrappers of ``routes`` hold (cache stores); the wrapped providers stay open."""
    for wrapper in _wrappers(routes):
        close = getattr(wrapper, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()  # quick: a SQLite connection or a Redis pool


async def warm_providers(providers: dict[str, Any]) -> None:
    """Load what each provider loads lazily (local weights), so no request waits for it."""
    for provider in providers.values():
        warm = getattr(provider, "warm", None)
        if warm is not None:
            await warm()


async def close_providers(providers: dict[str, Any]) -> None:
    """Close each provider's upstream connections, ignoring errors."""
    for provider in providers.values():
        close = getattr(provider, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()


def _authenticate_admin(digest: str, request: Any) -> None:
    """AuthError (401) unless the request carries the admin key whose SHA-256 is ``digest``."""
    import hmac

    if not hmac.compare_digest(hash_key(bearer_token(request, "admin key")), digest):
        raise AuthError("not the admin key")


def register_admin(app: Any, admin_sha256: str | None) -> None:
    """``POST /admin/reload`` — only when an admin key is configured (otherwise the path is a 404)."""
    if not admin_sha256:
        return
    from fastapi import Request
    from fastapi.responses import JSONResponse

    @app.post(
        "/admin/reload",
        responses={
            401: {"description": "not the admin key"},
            409: {"description": "the new config failed; the previous one keeps serving"},
        },
    )
    async def reload(request: Request) -> Any:
        """Rebuild every route from the config file and its fitted artefacts; in-flight requests finish first."""

        _authenticate_admin(admin_sha256, request)
        try:
            return JSONResponse(await reload_runtime(request.app.state.runtime))
        except Exception as exc:  # noqa: BLE001 - a bad new config must not take the gateway down
            log.error("thrifty: reload failed, still serving the previous config: %s", exc)
            return JSONResponse(
                error_body(f"reload failed, the previous config keeps serving: {exc}", "invalid_request_error", code="reload_failed"),
                status_code=409,
            )
