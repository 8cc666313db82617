"""``create_app(settings) -> FastAPI``: the OpenAI-compatible gateway, no module globals.

The lifespan builds everything once — providers, one engine per profile, the SQLite log store and
budget ledger, the metrics registry — and keeps it on ``app.state.runtime``; shutdown closes
upstream connection pools, then the database once every queued log row is written.
``POST /admin/reload`` (with an admin key) or ``SIGHUP`` rebuilds the routes from the config and
its artefacts (:mod:`thrifty.gateway.reload`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

from thrifty import __version__
from thrifty.config.settings import Settings, load_settings
from thrifty.gateway.audits import Auditor
from thrifty.gateway.build import build_routes
from thrifty.gateway.errors import fast_route, install_handlers
from thrifty.gateway.leadership import start_leadership
from thrifty.gateway.learning import start_learning, stop_learning
from thrifty.gateway.metrics import Metrics
from thrifty.gateway.reload import close_providers, close_routes, register_admin, reload_runtime, warm_providers
from thrifty.gateway.replica_sync import start as start_replica_sync
from thrifty.gateway.routes import register_routes
from thrifty.scoring.memo import set_memo_entries
from thrifty.serving.budget import ledger_for
from thrifty.store.logs import LogStore

__all__ = ["create_app", "Runtime", "app_from_env"]


@dataclass
class Runtime:
    settings: Settings
    routes: dict[str, Any]
    providers: dict[str, Any]
    store: Any
    ledger: Any
    metrics: Any
    started_at: float
    generation: int = 1  # bumped by every successful reload (thrifty.gateway.reload)
    inflight: dict[int, int] = field(default_factory=dict)  # generation → requests admitted and not yet finished
    retiring: set[Any] = field(default_factory=set)  # tasks closing the providers a reload replaced
    auditor: Any = None  # the sampled-audit queue (thrifty.gateway.audits), started with the app
    artefact_versions: dict[str, Any] = field(default_factory=dict)  # profile → version in service (thrifty.gateway.replica_sync)
    replica_sync: Any = None
    learners: list[Any] = field(default_factory=list)  # one per profile with [profiles.NAME.refit] (thrifty.gateway.learning)
    _reload_lock: asyncio.Lock | None = None

    @property
    def reload_lock(self) -> asyncio.Lock:
        """One reload at a time (created on first use, inside the server's event loop)."""
        if self._reload_lock is None:
            self._reload_lock = asyncio.Lock()
        return self._reload_lock


def build_runtime(settings: Settings, *, db_path: Path | None = None) -> Runtime:

    set_memo_entries(settings.server.memo_entries)
    routes, providers = build_routes(settings)
    store = LogStore(db_path or settings.server.resolved_store(), password_env=settings.server.store_password_env)
    ledger = ledger_for(store, settings)
    return Runtime(settings, routes, providers, store, ledger, Metrics(), time.time())


def create_app(settings: Settings | None = None, *, db_path: Path | None = None, runtime: Runtime | None = None) -> Any:
    """The FastAPI app for ``settings`` (default: the embedded local default).

    ``runtime`` (from :func:`build_runtime`) lets a caller build — and validate — everything before
    the server starts, so configuration errors surface as clean CLI errors, not a failed startup.
    """
    try:
        from fastapi import FastAPI
    except ImportError as exc:  # pragma: no cover - depends on the install
        from thrifty.errors import ConfigError

        raise ConfigError("the gateway needs FastAPI", key="serve", fix="pip install 'thrifty[serve]'") from exc

    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        rt = runtime if runtime is not None else build_runtime(settings, db_path=db_path)
        app.state.runtime = rt
        await warm_providers(rt.providers)  # load local weights now, not on the first request
        await _start_audits(app, rt)
        hup = _install_sighup(rt)
        learners = start_learning(app, rt)  # [profiles.NAME.refit]: audits → refits (thrifty.gateway.learning)
        leadership = await start_leadership(learners, rt.settings)  # one learner per profile across processes on the store
        sync = await start_replica_sync(rt)  # budget leases + artefact versions (learned ones too) shared with other replicas
        try:
            yield
        finally:
            if rt.auditor is not None:  # unfinished audits stay pending on disk for the next start
                await rt.auditor.close()
            await leadership.stop()  # a clean stop lets the lease go at once
            stop_learning(learners)
            sync.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sync
            if hup:
                import signal

                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            for task in list(rt.retiring):  # replaced providers still waiting for their last request
                task.cancel()
            await close_providers(rt.providers)
            await close_routes(rt.routes)  # the profiles' cache stores (the providers are closed above)
            await asyncio.to_thread(rt.store.close)  # finishes the queued log rows first

    app = _gateway_class(FastAPI)(
        title="thrifty",
        version=__version__,
        lifespan=lifespan,
        description="OpenAI-compatible gateway that answers each request with the cheapest good-enough model.",
    )
    app.state.audit_listeners = []  # callables given each AuditOutcome once committed (thrifty.gateway.audits)
    install_handlers(app)
    if settings.server.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.server.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type"],
            expose_headers=["x-thrifty-model", "x-thrifty-tiers", "x-thrifty-cost-usd", "x-thrifty-request-id"],
        )
    chat = register_routes(app)
    register_admin(app, settings.server.admin_sha256)
    if not settings.server.cors_origins:  # with middleware configured, every request goes through the stack
        app.fast_chat = fast_route(chat)
    return app


_GATEWAY_CLASS: list[Any] = []


def _gateway_class(fastapi_cls: Any) -> Any:
    """FastAPI, with ``POST /v1/chat/completions`` dispatched straight to its handler (the hot path;
    the route stays registered for the OpenAPI schema and for apps with middleware)."""
    if not _GATEWAY_CLASS:

        class Gateway(fastapi_cls):
            fast_chat: Any = None

            async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
                if (
                    self.fast_chat is not None
                    and scope["type"] == "http"
                    and scope["path"] == "/v1/chat/completions"
                    and scope["method"] == "POST"
                    and not self.root_path
                ):
                    scope["app"] = self
                    await self.fast_chat(scope, receive, send)
                    return
                await super().__call__(scope, receive, send)

        _GATEWAY_CLASS.append(Gateway)
    return _GATEWAY_CLASS[0]


async def _start_audits(app: Any, rt: Runtime) -> None:
    """Start the sampled-audit worker (issue #12); it also re-queues audits left pending by a crash."""

    rt.auditor = Auditor(rt, app.state.audit_listeners)
    await rt.auditor.start()


def _install_sighup(rt: Runtime) -> bool:
    """``kill -HUP <pid>`` reloads (single-process server, main thread); False where not possible."""
    import logging
    import signal

    loop = asyncio.get_running_loop()
    if not hasattr(signal, "SIGHUP"):
        return False

    def on_hup() -> None:

        async def go() -> None:
            try:
                await reload_runtime(rt)
            except Exception as exc:  # noqa: BLE001 - keep serving the old routes; say why
                logging.getLogger("thrifty.gateway").error("thrifty: reload on SIGHUP failed, still serving the previous config: %s", exc)

        task = loop.create_task(go())
        rt.retiring.add(task)
        task.add_done_callback(rt.retiring.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
        return False
    return True


def app_from_env() -> Any:
    """Factory for ``uvicorn --factory`` / multiple workers: settings from ``$THRIFTY_CONFIG``."""
    import os

    settings = load_settings()
    port = os.environ.get("THRIFTY_SERVER_PORT")
    data_dir = os.environ.get("THRIFTY_SERVER_DATA_DIR")
    settings = settings.with_server(store=os.environ.get("THRIFTY_SERVER_STORE"))
    return create_app(
        settings.with_server(
            host=os.environ.get("THRIFTY_SERVER_HOST"), port=int(port) if port else None, data_dir=Path(data_dir) if data_dir else None
        )
    )
