"""The one boundary where known upstream failures (httpx, SDKs, llama.cpp) become :class:`ProviderError`
(anything else is a bug and propagates: the gateway answers 500 and logs the traceback).

Status codes for failures without an HTTP status: 504 for timeouts, 502 for connection errors and
malformed upstream answers, 400 for requests the model cannot take (e.g. prompt beyond context).
``retryable`` is True for timeouts, connection errors and HTTP 408/409/425/429/5xx/529.
``retry_after`` (seconds) comes from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from email.utils import parsedate_to_datetime
from typing import Iterable, Iterator, Mapping

from thrifty.errors import ProviderError, ThriftyError

__all__ = ["known_failure", "translate", "provider_errors", "redact", "status_error", "retry_after_from", "RETRYABLE_STATUS"]

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


def retry_after_from(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``retry-after`` (delta seconds or HTTP date)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _status_error(provider: str, status: int, headers: Mapping[str, str] | None, body: str, exc: BaseException) -> ProviderError:
    detail = (body or str(exc)).strip().replace("\n", " ")[:300]
    return ProviderError(
        f"upstream answered HTTP {status}: {detail}",
        provider=provider,
        status=status,
        retryable=status in RETRYABLE_STATUS,
        retry_after=retry_after_from(headers),
    )


def status_error(provider: str, status: int, headers: Mapping[str, str] | None, body: str) -> ProviderError:
    """The ProviderError for an upstream HTTP error answer (``headers`` with lower-case names)."""
    return _status_error(provider, status, headers, body, Exception(f"HTTP {status}"))


def known_failure(exc: BaseException, provider: str) -> ProviderError | None:
    """The :class:`ProviderError` for a *known* upstream failure, or None for anything else.

    Known: thrifty's own ProviderError, timeouts, connection/socket errors, HTTP status errors,
    the Anthropic SDK's errors, an upstream body that is not valid JSON/UTF-8, and a prompt that does
    not fit the model's context. Anything else (a KeyError or TypeError in adapter code, say) is a
    bug: the caller lets it propagate, so the gateway answers 500 and logs the traceback instead of
    quietly moving to the next tier.
    """
    if isinstance(exc, ProviderError):
        return exc
    import httpx  # core dependency

    if isinstance(exc, httpx.HTTPStatusError):
        try:
            body = exc.response.text
        except Exception:  # noqa: BLE001 - a streamed body may be unread
            body = ""
        return _status_error(provider, exc.response.status_code, exc.response.headers, body, exc)
    if isinstance(exc, (httpx.TimeoutException, asyncio.TimeoutError, TimeoutError)):
        return ProviderError(f"timed out: {exc or type(exc).__name__}", provider=provider, status=504, retryable=True)
    if isinstance(exc, (httpx.TransportError, OSError)):  # ConnectionError, socket.gaierror, …
        return ProviderError(f"connection failed: {type(exc).__name__}: {exc}", provider=provider, status=502, retryable=True)

    anthropic = sys.modules.get("anthropic")  # only translate SDK errors if the SDK is in use
    if anthropic is not None:
        if isinstance(exc, anthropic.APIStatusError):
            return _status_error(provider, exc.status_code, exc.response.headers, getattr(exc, "message", ""), exc)
        if isinstance(exc, anthropic.APITimeoutError):
            return ProviderError(f"timed out: {exc}", provider=provider, status=504, retryable=True)
        if isinstance(exc, anthropic.APIConnectionError):
            return ProviderError(f"connection failed: {exc}", provider=provider, status=502, retryable=True)
        if isinstance(exc, anthropic.APIError):
            return ProviderError(f"bad upstream answer: {exc}", provider=provider, status=502, retryable=False)

    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return ProviderError(f"bad upstream answer: {type(exc).__name__}: {exc}", provider=provider, status=502)
    if isinstance(exc, ValueError) and ("context" in str(exc).lower() or "exceed" in str(exc).lower()):
        return ProviderError(f"request does not fit the model: {exc}", provider=provider, status=400)
    return None


def translate(exc: BaseException, provider: str) -> ProviderError:
    """:func:`known_failure`, or — for anything else — a generic 502 (tools that must always get a
    ProviderError; the live path uses :func:`known_failure` and lets bugs through)."""
    known = known_failure(exc, provider)
    return known if known is not None else ProviderError(f"{type(exc).__name__}: {exc}", provider=provider, status=502)


def redact(err: ProviderError, secrets: Iterable[str | None]) -> ProviderError:
    """``err`` with every secret (an upstream API key) replaced by ``[redacted]`` in its message.

    Some upstreams repeat the key they were sent in their error body; that text would otherwise
    reach the client's error message and the log.
    """
    text = str(err)
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "[redacted]")
    if text != str(err):
        err.args = (text,)
    return err


@contextlib.contextmanager
def provider_errors(provider: str, secrets: Iterable[str | None] = (), *, known: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Re-raise a known upstream failure from the block as ``ProviderError(...) from exc``.

    Cancellation, thrifty's own errors (ProviderError, ConfigError, …) and unknown exceptions (bugs,
    see :func:`known_failure`) pass through untouched. Works around ``await`` too.
    ``secrets`` (the provider's API key) are redacted from the message (see :func:`redact`).
    ``known``: further exception types that mean "this call failed" for this adapter (llama.cpp
    reports a failed decode as RuntimeError) — a 502, not retried.
    """
    try:
        yield
    except (asyncio.CancelledError, KeyboardInterrupt, GeneratorExit, ThriftyError):
        raise
    except Exception as exc:  # noqa: BLE001 - this IS the translation boundary
        err = known_failure(exc, provider)
        if err is None and isinstance(exc, known):
            err = ProviderError(f"{type(exc).__name__}: {exc}", provider=provider, status=502)
        if err is None:
            raise
        raise redact(err, secrets) from exc
