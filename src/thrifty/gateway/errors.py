"""The one place where errors become HTTP answers: OpenAI-style JSON, never a raw 500 or traceback.

::

    RequestError / invalid JSON / validation  → 400 invalid_request_error (unknown model → 404)
    body over server.max_body_bytes           → 413 invalid_request_error
    body not received within the deadline     → 408 invalid_request_error
    request valid but not servable here       → 422 (RequestError with code "unprocessable")
    AuthError                                 → 401 authentication_error
    BudgetExceeded                            → 429 insufficient_quota
    ProviderError                             → 502 upstream_error, 504 when it timed out,
                                                400 when every tier refused the request (4xx),
                                                429 rate_limit_error when the upstream kept limiting
    ConfigError at request time / anything else → 500 server_error with a generic message naming the
                                                request id (logged with its traceback) — a bug in a
                                                provider adapter too: only known upstream failures
                                                become 502/504/429

Body: ``{"error": {"message", "type", "param", "code"}}`` — what the ``openai`` client parses.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from thrifty.errors import AuthError, BudgetExceeded, ConfigError, ProviderError, RequestError, ThriftyError

__all__ = ["error_body", "status_and_body", "install_handlers", "PayloadTooLarge", "fast_route"]

log = logging.getLogger("thrifty.gateway")


class PayloadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"request body exceeds {limit} bytes")


def error_body(message: str, type_: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _validation_message(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """First pydantic error as 'messages[0].role: …' and its param path."""
    if not errors:
        return "invalid request body", None
    e = errors[0]
    loc = [str(p) for p in e.get("loc", ()) if p not in ("body",)]
    param = ""
    for p in loc:
        if p.isdigit():
            param += f"[{p}]"
        elif p in ("str", "list[dict[str,any]]", "function-after[_parts(), union[str,list[dict[str,any]]]]") or "[" in p:
            continue  # pydantic's union-branch labels
        else:
            param += ("." if param else "") + p
    msg = e.get("msg", "invalid value")
    extra = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return (f"{param}: {msg}" if param else msg) + extra, param or None


def status_and_body(exc: BaseException, request_id: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    """HTTP status, OpenAI error body and extra headers for any exception (``request_id``: named in a 500)."""
    from pydantic import ValidationError

    if isinstance(exc, PayloadTooLarge):
        return 413, error_body(str(exc), "invalid_request_error", code="request_too_large"), {}
    if isinstance(exc, ValidationError):
        msg, param = _validation_message(exc.errors(include_url=False))
        return 400, error_body(msg, "invalid_request_error", param=param, code="invalid_value"), {}
    if isinstance(exc, RequestError):
        if exc.code == "model_not_found":
            return 404, error_body(str(exc), "invalid_request_error", param=exc.param, code=exc.code), {}
        if exc.code == "request_timeout":
            return 408, error_body(str(exc), "invalid_request_error", code=exc.code), {"connection": "close"}
        if exc.code == "unprocessable":
            return 422, error_body(str(exc), "invalid_request_error", param=exc.param, code=exc.code), {}
        return 400, error_body(str(exc), "invalid_request_error", param=exc.param, code=exc.code), {}
    if isinstance(exc, AuthError):
        return 401, error_body(str(exc), "authentication_error", code="invalid_api_key"), {"www-authenticate": "Bearer"}
    if isinstance(exc, BudgetExceeded):
        return 429, error_body(str(exc), "insufficient_quota", code="budget_exceeded"), {}
    if isinstance(exc, ProviderError):
        if exc.status == 429:
            extra = {"retry-after": str(max(1, int(exc.retry_after)))} if exc.retry_after else {}
            return 429, error_body(f"upstream rate limit: {exc}", "rate_limit_error", code="upstream_rate_limited"), extra
        if exc.status is not None and 400 <= exc.status < 500 and exc.status != 408:
            return 400, error_body(f"the upstream refused the request: {exc}", "invalid_request_error", code="upstream_rejected"), {}
        status = 504 if exc.status == 504 else 502
        code = "upstream_timeout" if status == 504 else "upstream_error"
        return status, error_body(str(exc), "upstream_error", code=code), {}
    if isinstance(exc, ConfigError):
        log.error("configuration error while serving: %s", exc)
        return 500, error_body(f"server misconfigured: {exc}", "server_error", code="config_error"), {}
    rid = request_id or "-"
    log.error("unexpected error while serving request %s: %s: %s", rid, type(exc).__name__, exc, exc_info=exc)
    where = f"request {request_id}: " if request_id else ""
    return 500, error_body(f"internal error ({where}details are in the server log)", "server_error", code="internal_error"), {}


def json_error(exc: BaseException, request_id: str | None = None) -> Any:
    from fastapi.responses import JSONResponse

    status, body, headers = status_and_body(exc, request_id)
    if request_id:
        headers = {**headers, "x-thrifty-request-id": request_id}
    return JSONResponse(body, status_code=status, headers=headers)


def _count_refusal(request: Any, status: int) -> None:
    """Refusals (requests never admitted) show up in /metrics too."""
    rt = getattr(request.app.state, "runtime", None)
    if rt is not None:
        rt.metrics.requests.labels("-", str(status)).inc()


def _error_response(request: Any, exc: BaseException) -> Any:
    rid = getattr(request.state, "request_id", None)
    response = json_error(exc, rid)
    if rid is None:  # admitted requests are counted by the route
        _count_refusal(request, response.status_code)
    return response


def fast_route(handler: Any) -> Any:
    """An ASGI app for ``handler(request)`` (the chat-completions endpoint) without FastAPI's
    per-request routing, dependency solving and middleware layers (≈ a fifth of the gateway's CPU
    per request); every exception is answered exactly as :func:`install_handlers` would."""
    from starlette.requests import Request

    async def app(scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except Exception as exc:  # noqa: BLE001 - answered as OpenAI-style JSON; a bug is logged with its traceback
            response = _error_response(request, exc)
        await response(scope, receive, send)

    return app


def install_handlers(app: Any) -> None:
    """Route every exception the app can raise through :func:`status_and_body`."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    count = _count_refusal

    async def on_any(request: Any, exc: Exception) -> Any:
        return _error_response(request, exc)

    async def on_http(request: Any, exc: StarletteHTTPException) -> Any:
        from fastapi.responses import JSONResponse

        type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(
            error_body(str(exc.detail), type_, code=code), status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    async def on_validation(request: Any, exc: RequestValidationError) -> Any:
        from fastapi.responses import JSONResponse

        msg, param = _validation_message(list(exc.errors()))
        count(request, 400)
        return JSONResponse(error_body(msg, "invalid_request_error", param=param, code="invalid_value"), status_code=400)

    from pydantic import ValidationError

    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    for exc_type in (ThriftyError, ValidationError, PayloadTooLarge):
        app.add_exception_handler(exc_type, on_any)
    # the unexpected: Starlette answers with our JSON, then re-raises so the server log has the traceback
    app.add_exception_handler(Exception, on_any)
