"""HTTP endpoints: ``POST /v1/chat/completions`` (JSON and SSE), ``GET /v1/models``, ``/healthz``, ``/metrics``
(``POST /admin/reload``: :mod:`thrifty.gateway.reload`).

One request, in order: auth (401) → body size (413) → JSON (400) → schema (400) → model (404) →
capabilities (422) → budget hold (429) → engine → log row + spend (one transaction) → answer.
Nothing is logged for a request refused before the engine ran.

SQLite work (the hold, the log row with its settlement) runs on the log store's writer thread
(:meth:`~thrifty.store.logs.LogStore.submit`), never on the event loop; an answer is sent only once
its row is committed (a 200 always has its log row, even after ``kill -9``).
"""

import asyncio
import json
import time
from dataclasses import replace
from typing import Any, AsyncIterator

from thrifty.config.settings import hash_key
from thrifty.errors import AuthError, ProviderError, RequestError
from thrifty.gateway.build import Route
from thrifty.gateway.errors import PayloadTooLarge, json_error, status_and_body
from thrifty.gateway.jobs import Job, reserve
from thrifty.gateway.metrics import refusals_exposition
from thrifty.gateway.schemas import ChatCompletionRequest, chunk_body, completion_body, models_body, to_chat_request, tool_call_deltas
from thrifty.serving.budget import max_cost_usd
from thrifty.serving.engine import aclose_quietly
from thrifty.serving.profiles import system_prompt
from thrifty.serving.trace import Routed, TextDelta, Trace, new_request_id
from thrifty.store.logs import StepRecord
from thrifty.store.refusals import refusal_totals
from thrifty.types import ChatRequest

__all__ = ["register_routes", "bearer_token"]


async def _read_body(request: Any, limit: int, timeout_s: float) -> bytes:
    """The body, at most ``limit`` bytes (413), arriving within ``timeout_s`` (408: a stalled upload
    would otherwise hold its connection forever)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(limit)
        except ValueError:
            raise RequestError("invalid Content-Length header", code="invalid_request") from None
    chunks, size = [], 0

    async def collect() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(limit)
            chunks.append(chunk)

    try:
        if hasattr(asyncio, "timeout"):  # Python ≥ 3.11: no extra task per request
            async with asyncio.timeout(timeout_s):
                await collect()
        else:  # pragma: no cover - Python 3.10
            await asyncio.wait_for(collect(), timeout=timeout_s)
    except asyncio.TimeoutError:
        raise RequestError(f"the request body did not arrive within {timeout_s:g}s", code="request_timeout") from None
    return b"".join(chunks)


def bearer_token(request: Any, what: str = "API key") -> str:
    """The token of the request's ``Authorization: Bearer <token>`` header; AuthError (401) naming
    ``what`` was expected when the header is missing, not Bearer, or empty."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(f"missing {what}: send 'Authorization: Bearer <{what}>'")
    return token.strip()


def _authenticate(rt: Any, request: Any) -> str | None:
    """The configured key's name, None when no keys are configured; AuthError otherwise."""
    if not rt.settings.auth_required:
        return None
    key = rt.settings.key_by_hash(hash_key(bearer_token(request)))
    if key is None:
        raise AuthError("unknown API key")
    return key.name


def _with_profile(route: Route, req: ChatRequest) -> ChatRequest:
    """Apply the profile's system prompt (when the client sent none) and the default max_tokens."""
    messages = req.messages
    if route.system and not any(m.get("role") in ("system", "developer") for m in messages):
        text = system_prompt(route.system, route.budget_name or "")
        messages = ({"role": "system", "content": text}, *messages)
    params = dict(req.params)
    if params.get("max_tokens") is None and params.get("max_completion_tokens") is None:
        params["max_tokens"] = max((t.max_tokens for t in route.tier_prices), default=512)
    return replace(req, messages=messages, params=params)


def _headers(
    rid: str, model: str | None, tiers: tuple[str, ...], cost: float, cache: str | None = None, adaptation: Any = None
) -> dict[str, str]:
    headers = {
        "x-thrifty-request-id": rid,
        "x-thrifty-model": model or "",
        "x-thrifty-tiers": ",".join(tiers),
        "x-thrifty-cost-usd": f"{cost:.8f}",
    }
    if cache is not None:  # the profile has a [cache]: hit | semantic | miss | bypass for the answer served
        headers["x-thrifty-cache"] = cache
    if adaptation:  # the profile's [prompt_adaptation] rewrote the prompt the answering tier got
        headers["x-thrifty-shots"] = str(adaptation["shots"])
        headers["x-thrifty-prompt-tokens-saved"] = str(adaptation["tokens_saved"])
    return headers


async def _admit(rt: Any, request: Any) -> Job:
    """Everything that can refuse a request before any model runs."""

    t0 = time.perf_counter()
    key_name = _authenticate(rt, request)
    raw = await _read_body(request, rt.settings.server.max_body_bytes, rt.settings.server.request_timeout_s)
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object", code="invalid_json")
    parsed = ChatCompletionRequest.model_validate(body)
    route = rt.routes.get(parsed.model)
    if route is None:
        raise RequestError(
            f"the model {parsed.model!r} does not exist; GET /v1/models lists what this gateway serves",
            param="model",
            code="model_not_found",
        )
    req = _with_profile(route, to_chat_request(parsed))
    if req.has_images and not route.vision:
        raise RequestError(f"{route.model_id!r} has no vision-capable tier for image content", param="messages", code="unprocessable")
    job = Job(rt, route, req, body, key_name, new_request_id(), t0)
    amount = max_cost_usd(req, route.tier_prices)
    job.enter()  # before the hold's await: a reload meanwhile must not close this route's providers
    try:
        job.reservation = await reserve(rt, key_name, route.budget_name, amount)
    except BaseException:  # refused (429) or the client left: the job never runs
        job.leave()
        raise
    request.state.request_id = job.rid
    return job


async def _complete(job: Job) -> Any:
    from fastapi.responses import JSONResponse

    try:
        trace = await job.route.engine.run(job.req, request_id=job.rid)
    except ProviderError as exc:
        status, _, _ = status_and_body(exc)
        job.finish(status, getattr(exc, "trace", None), error=str(exc))
        await job.committed()
        return json_error(exc, job.rid)
    except BaseException as exc:  # cancelled (client gone: 499) or a bug (500): log it, charge the hold
        job.finish(
            500 if isinstance(exc, Exception) else 499,
            None,
            error=f"aborted: {type(exc).__name__}",
            cost_override=job.reservation.amount_usd,
        )
        raise
    assert trace.completion is not None
    job.finish(200, trace)
    await job.committed()
    body = completion_body(job.rid.replace("req_", "chatcmpl-"), trace.model or job.route.model_id, trace.completion, int(job.created))
    return JSONResponse(
        body, headers=_headers(job.rid, trace.model, trace.tiers_tried, trace.cost_usd, trace.completion.cache, trace.completion.adaptation)
    )


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


async def _stream(job: Job) -> Any:
    from fastapi.responses import StreamingResponse

    events = job.route.engine.stream(job.req, request_id=job.rid).__aiter__()
    try:
        first = await events.__anext__()
    except ProviderError as exc:
        status, _, _ = status_and_body(exc)
        job.finish(status, getattr(exc, "trace", None), error=str(exc))
        await job.committed()
        return json_error(exc, job.rid)
    except BaseException:
        job.finish(500, None, error="internal error", cost_override=job.reservation.amount_usd)
        raise
    pending: list[Any] = [first]
    routed = first if isinstance(first, Routed) else None
    if routed is not None and routed.tier != len(job.route.engine.tiers) - 1:
        async for ev in events:  # a buffered answer: the rest is already in memory — get the exact cost
            pending.append(ev)
    trace_now = next((e for e in pending if isinstance(e, Trace)), None)
    model = routed.model if routed else (trace_now.model if trace_now else None)
    tiers = routed.tiers_tried if routed else (trace_now.tiers_tried if trace_now else ())
    cost = trace_now.cost_usd if trace_now else (routed.cost_usd if routed else 0.0)
    include_usage = bool((job.body.get("stream_options") or {}).get("include_usage"))
    cid, created = job.rid.replace("req_", "chatcmpl-"), int(job.created)

    async def body() -> AsyncIterator[bytes]:
        answered = model or job.route.model_id
        parts: list[str] = []
        trace: Trace | None = None
        yield _sse(chunk_body(cid, answered, created, delta={"role": "assistant", "content": ""}))
        try:

            async def all_events() -> AsyncIterator[Any]:
                for ev in pending:
                    yield ev
                async for ev in events:
                    yield ev

            async for ev in all_events():
                if isinstance(ev, TextDelta) and ev.text:
                    parts.append(ev.text)
                    yield _sse(chunk_body(cid, answered, created, delta={"content": ev.text}))
                elif isinstance(ev, Trace):
                    trace = ev
            assert trace is not None and trace.completion is not None
            c = trace.completion
            finish = c.finish_reason or "stop"
            if c.tool_calls:
                yield _sse(chunk_body(cid, answered, created, delta={"tool_calls": tool_call_deltas(c)}))
                finish = "tool_calls" if finish == "stop" else finish
            yield _sse(chunk_body(cid, answered, created, delta={}, finish_reason=finish))
            if include_usage:
                yield _sse(chunk_body(cid, answered, created, usage=c, usage_only=True))
            job.finish(200, trace)
            await job.committed()
            yield b"data: [DONE]\n\n"
        except ProviderError as exc:  # the upstream died mid-stream: tell the client, no [DONE]
            status, err, _ = status_and_body(exc)
            partial = "".join(parts)
            died = StepRecord(tier=routed.tier if routed else -1, model=model or "?", decision="failed", answer=partial, error=str(exc))
            job.finish(
                status,
                getattr(exc, "trace", None),
                error=str(exc),
                answer_override=partial,
                cost_override=routed.cost_usd if routed else 0.0,
                tiers_override=tuple(tiers),
                steps_override=(died,),
            )
            await job.committed()
            err["error"]["message"] = f"the upstream failed mid-stream after {len(''.join(parts))} characters: {exc}"
            yield _sse(err)
        except BaseException as exc:  # client went away (cancelled) or a bug: log it, charge the hold
            job.finish(
                499 if not isinstance(exc, Exception) else 500,
                None,
                error=f"stream aborted: {type(exc).__name__}",
                answer_override="".join(parts),
                cost_override=job.reservation.amount_usd,
            )
            if isinstance(exc, Exception):
                _, err, _ = status_and_body(exc, job.rid)
                yield _sse(err)
                return
            raise
        finally:
            await aclose_quietly(events)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={
            **_headers(
                job.rid,
                model,
                tiers,
                cost,
                *((trace_now.completion.cache, trace_now.completion.adaptation) if trace_now and trace_now.completion else ()),
            ),
            "cache-control": "no-cache",
            "x-accel-buffering": "no",
        },
    )


def register_routes(app: Any) -> Any:
    """Add the endpoints to ``app``; returns the chat-completions handler (``handler(request)``) for
    :func:`thrifty.gateway.errors.fast_route`."""
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response

    request_schema = ChatCompletionRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = request_schema.pop("$defs", {})

    def openapi() -> dict:  # FastAPI's schema plus the request body's model definitions
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(definitions)
            schemas["ChatCompletionRequest"] = request_schema
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi

    @app.post(
        "/v1/chat/completions",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}},
            }
        },
        responses={
            400: {"description": "invalid request"},
            401: {"description": "unknown key"},
            404: {"description": "unknown model"},
            413: {"description": "body too large"},
            422: {"description": "not servable"},
            429: {"description": "over budget"},
            502: {"description": "upstream failed"},
            504: {"description": "upstream timed out"},
        },
    )
    async def chat_completions(request: Request) -> Any:
        rt = request.app.state.runtime
        job = await _admit(rt, request)
        try:
            return await (_stream(job) if job.req.stream else _complete(job))
        except BaseException:
            if not job.done:  # never leave a hold behind
                job.finish(500, None, error="internal error", cost_override=job.reservation.amount_usd)
            raise

    @app.get("/v1/models")
    async def list_models(request: Request) -> Any:
        rt = request.app.state.runtime
        names = sorted(((mid, r.owner) for mid, r in rt.routes.items()), key=lambda x: (not x[0].startswith("thrifty/"), x[0]))
        return JSONResponse(models_body(names, int(rt.started_at)))

    @app.get("/healthz")
    async def healthz(request: Request) -> Any:
        rt = request.app.state.runtime
        return JSONResponse(
            {
                "status": "ok",
                "models": len(rt.routes),
                "generation": rt.generation,
                "uptime_s": round(time.time() - rt.started_at, 3),
                "artefacts": rt.artefact_versions,
                "learning": {x.profile.name: x.lease.status() for x in rt.learners if getattr(x, "lease", None) is not None},
                "store": rt.store.dialect,
                "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            }
        )

    @app.get("/metrics")
    async def metrics(request: Request) -> Any:
        rt = request.app.state.runtime
        data, ctype = rt.metrics.render()
        refused = await asyncio.to_thread(rt.store.read_only, refusal_totals)  # every replica's, from the store
        return Response(data + refusals_exposition(refused), media_type=ctype)

    return chat_completions
