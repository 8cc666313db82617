"""The app factory in-process (ASGI, no sockets, no upstream calls): routing table of model ids,
CORS off by default, body limit without Content-Length, JSON errors for unknown routes, OpenAPI refs."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from thrifty.config.settings import parse_settings
from thrifty.gateway.app import create_app

PRICE = {"input": 1.0, "output": 2.0}


def settings(tmp_path: Path, **server: Any):
    return parse_settings(
        {
            "server": {"data_dir": str(tmp_path), "max_body_bytes": 1000, **server},
            "providers": {
                "a": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "prices": PRICE},  # never called here
                "b": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "prices": {"input": 5.0, "output": 15.0}, "vision": True},
            },
            "profiles": {"support": {"tiers": ["a", "b"], "thresholds": [0.5], "system": "Be brief."}},
        }
    )


def call(app: Any, fn) -> Any:
    async def go() -> Any:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
                return await fn(c)

    return asyncio.run(go())


def test_model_ids_default_alias_and_pass_through(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path))

    async def fn(c: httpx.AsyncClient) -> Any:
        return (await c.get("/v1/models")).json(), app.state.runtime.routes

    body, routes = call(app, fn)
    ids = [m["id"] for m in body["data"]]
    assert ids[:2] == ["thrifty/default", "thrifty/support"] and set(ids[2:]) == {"a", "b"}
    assert routes["thrifty/default"] is routes["thrifty/support"]  # no 'default' profile: the first one
    assert routes["a"].profile is None and routes["a"].engine.tiers == ("a",)
    assert routes["thrifty/support"].baseline_price == (5.0, 15.0)  # the most expensive tier
    support, a = routes["thrifty/support"], routes["a"]  # what a route derives from its profile and engine
    assert (support.budget_name, support.system, support.owner, support.vision) == ("support", "Be brief.", "thrifty", True)
    assert (a.budget_name, a.system, a.owner, a.vision) == (None, None, "a", False)
    assert {m["id"]: m["owned_by"] for m in body["data"]}["b"] == "b"


def test_providers_without_profiles_never_build_the_embedded_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import thrifty.serving.local

    def refuse(*a: Any, **k: Any) -> Any:
        raise AssertionError("a pass-through config must not load the local models")

    monkeypatch.setattr(thrifty.serving.local, "embedded_default", refuse)
    cfg = parse_settings(
        {
            "server": {"data_dir": str(tmp_path)},
            "providers": {
                "first": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "prices": PRICE},
                "second": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "prices": PRICE},
            },
        }
    )
    app = create_app(cfg)

    async def fn(c: httpx.AsyncClient) -> Any:
        return (await c.get("/v1/models")).json(), app.state.runtime.routes

    body, routes = call(app, fn)
    assert [m["id"] for m in body["data"]] == ["thrifty/default", "first", "second"]
    default = routes["thrifty/default"]
    assert default.engine.tiers == ("first",) and default.budget_name == "default" and default.profile is not None


def test_cors_is_off_unless_configured(tmp_path: Path) -> None:
    pre = {"origin": "https://evil.example", "access-control-request-method": "POST"}

    async def fn(c: httpx.AsyncClient) -> Any:
        return await c.options("/v1/chat/completions", headers=pre)

    r = call(create_app(settings(tmp_path)), fn)
    assert "access-control-allow-origin" not in r.headers
    pre["origin"] = "https://app.example"
    r = call(create_app(settings(tmp_path, cors_origins=["https://app.example"])), fn)
    assert r.headers["access-control-allow-origin"] == "https://app.example"


def test_streamed_oversize_body_without_content_length_is_413(tmp_path: Path) -> None:
    async def chunks():
        for _ in range(50):
            yield b"x" * 100

    async def fn(c: httpx.AsyncClient) -> Any:
        return await c.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})

    r = call(create_app(settings(tmp_path)), fn)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_unknown_routes_and_methods_are_json_errors(tmp_path: Path) -> None:
    async def fn(c: httpx.AsyncClient) -> Any:
        return await c.get("/v1/nothing"), await c.get("/v1/chat/completions")

    r404, r405 = call(create_app(settings(tmp_path)), fn)
    assert r404.status_code == 404 and r404.json()["error"]["code"] == "not_found"
    assert r405.status_code == 405 and r405.json()["error"]["type"] == "invalid_request_error"


def test_openapi_schema_resolves_every_reference(tmp_path: Path) -> None:
    doc = create_app(settings(tmp_path)).openapi()
    refs = set(re.findall(r"#/components/schemas/([A-Za-z0-9_]+)", json.dumps(doc)))
    assert refs and refs <= set(doc["components"]["schemas"])
    body = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ChatCompletionRequest"}


@pytest.mark.parametrize("header", ["Bearer", "Basic abc", ""])
def test_keys_required_when_configured(tmp_path: Path, header: str) -> None:
    s = parse_settings(
        {
            "server": {"data_dir": str(tmp_path)},
            "keys": {"k": {"sha256": "0" * 64}},
            "providers": {"a": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "prices": PRICE}},
            "profiles": {"default": {"tiers": ["a"]}},
        }
    )

    async def fn(c: httpx.AsyncClient) -> Any:
        return await c.post(
            "/v1/chat/completions",
            json={"model": "a", "messages": [{"role": "user", "content": "x"}]},
            headers={"authorization": header} if header else {},
        )

    r = call(create_app(s), fn)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_admin_reload_exists_only_with_an_admin_key(tmp_path: Path) -> None:
    from thrifty.config.settings import hash_key

    async def fn(c: httpx.AsyncClient) -> Any:
        return await c.post("/admin/reload", headers={"authorization": "Bearer admin"})

    assert call(create_app(settings(tmp_path)), fn).status_code == 404
    app = create_app(settings(tmp_path, admin_sha256=hash_key("admin")))

    async def reload_twice(c: httpx.AsyncClient) -> Any:
        old = app.state.runtime.routes["thrifty/support"]
        missing = await c.post("/admin/reload", headers={"authorization": "Basic admin"})
        wrong = await c.post("/admin/reload", headers={"authorization": "Bearer nope"})
        ok = await c.post("/admin/reload", headers={"authorization": "Bearer admin"})
        health = (await c.get("/healthz")).json()
        return missing, wrong, ok, health, old is app.state.runtime.routes["thrifty/support"]

    missing, wrong, ok, health, same = call(app, reload_twice)
    assert missing.status_code == 401 and "missing admin key" in missing.json()["error"]["message"]
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert ok.status_code == 200 and ok.json()["generation"] == 2 == health["generation"]
    assert ok.json()["profiles"]["thrifty/support"] == {"tiers": ["a", "b"], "thresholds": [0.5]}
    assert not same  # a rebuilt route table
