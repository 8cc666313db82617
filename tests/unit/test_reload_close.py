"""A reload closes the replaced profiles' cache stores — after their last in-flight request, not before."""

from __future__ import annotations

import asyncio
from pathlib import Path

from thrifty.config.settings import parse_settings


def _settings(tmp_path: Path):
    up = {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "prices": {"input": 1, "output": 2}}
    return parse_settings(
        {
            "server": {"data_dir": str(tmp_path), "request_timeout_s": 30},
            "providers": {"a": up, "b": up},
            "profiles": {
                "p": {"tiers": ["a", "b"], "thresholds": [0.5], "cache": {"mode": "exact"}},
                "q": {"tiers": ["a"], "cache": {"mode": "exact", "path": str(tmp_path / "q.sqlite")}},
            },
        }
    )


def _stores(routes: dict) -> list:
    return list({id(t.store): t.store for r in routes.values() for t in r.engine.providers if hasattr(t, "store")}.values())


def test_reload_closes_old_stores_once_the_old_generation_drained(tmp_path: Path) -> None:
    from thrifty.gateway.app import build_runtime
    from thrifty.gateway.reload import reload_runtime

    async def scenario() -> None:
        rt = build_runtime(_settings(tmp_path), db_path=tmp_path / "logs.sqlite3")
        old = _stores(rt.routes)
        assert len(old) == 2  # one store per cached profile
        for store in old:
            assert len(store) == 0 and store._db is not None  # opened by use
        rt.inflight[rt.generation] = 1  # a request admitted before the reload is still running
        await reload_runtime(rt)
        new = _stores(rt.routes)
        assert not {id(s) for s in new} & {id(s) for s in old}
        await asyncio.sleep(0.3)
        assert all(s._db is not None for s in old)  # still in use by the old generation
        rt.inflight[1] = 0  # it finished
        await asyncio.wait_for(asyncio.gather(*list(rt.retiring)), 5)
        assert all(s._db is None for s in old)
        assert all(len(s) == 0 for s in new)  # the new generation's stores work
        for s in new:
            s.close()
        rt.store.close()

    asyncio.run(scenario())


def test_close_routes_closes_each_wrapper_not_the_upstream(tmp_path: Path) -> None:
    from thrifty.gateway.build import build_routes
    from thrifty.gateway.reload import close_routes

    routes, providers = build_routes(_settings(tmp_path))
    stores = _stores(routes)
    for s in stores:
        len(s)
    closed: list[str] = []
    for name, p in providers.items():
        p.aclose = lambda name=name: closed.append(name)  # type: ignore[method-assign]  # must not be called
    asyncio.run(close_routes(routes))
    assert all(s._db is None for s in stores) and closed == []


def test_shutdown_closes_the_cache_stores(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from thrifty.gateway.app import build_runtime, create_app

    rt = build_runtime(_settings(tmp_path), db_path=tmp_path / "logs.sqlite3")
    stores = _stores(rt.routes)
    with TestClient(create_app(_settings(tmp_path), runtime=rt)) as client:
        assert client.get("/healthz").status_code == 200
        for s in stores:
            len(s)
        assert all(s._db is not None for s in stores)
    assert all(s._db is None for s in stores)
