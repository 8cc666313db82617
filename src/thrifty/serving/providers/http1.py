"""A minimal keep-alive HTTP/1.1 client for JSON POSTs to a plain ``http://`` upstream.

Why: on the gateway's hot path httpx costs about 0.6–0.75 ms of CPU per upstream call (URL
merging, cookies, auth and redirect layers, h11, anyio); this client costs a few tens of µs, which
is most of the difference between a few hundred and over a thousand requests per second per core.
It is used only for non-streamed calls to ``http://`` base URLs when no proxy is configured in the
environment (local vLLM / llama.cpp / Ollama servers, sidecars); TLS, proxies and streaming stay on
httpx.

What it does: one pool of idle connections per origin; ``post_json(path, body)`` sends the request
and reads the whole response (``Content-Length``, ``chunked`` or read-to-close bodies; gzip/deflate
decoded). A connection goes back to the pool only after a complete response that allows keep-alive,
and is reused only if nothing arrived on it while idle. Failures raise :class:`UpstreamConnectionError`
(a ``ConnectionError``: the error boundary maps it to a retryable 502). A response body (before
decoding, and again after) larger than ``max_response_bytes`` (the provider option of that name,
default 16 MiB) raises :class:`ResponseTooLarge` (a 502 that is not retried). Time limits are the
caller's.

The connection is a plain :class:`asyncio.Protocol` over the loop's public transport API (no
``StreamReader`` internals), which also makes it cheaper per call than streams.
"""

from __future__ import annotations

import asyncio
import os
import zlib
from typing import Mapping
from urllib.parse import urlsplit

from thrifty.errors import ProviderError

__all__ = ["Http1Pool", "UpstreamConnectionError", "ResponseTooLarge", "usable_for", "DEFAULT_MAX_RESPONSE_BYTES"]

_MAX_HEAD = 64 * 1024
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_PROXY_ENV = ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")


class UpstreamConnectionError(ConnectionError):
    """The connection failed or closed before a complete response arrived."""


class ResponseTooLarge(ProviderError):
    """The upstream's answer is larger than the configured cap (not retried: it would be again)."""

    def __init__(self, limit: int, provider: str = "?") -> None:
        super().__init__(
            f"upstream response exceeds max_response_bytes = {limit} bytes "
            "(raise the provider option max_response_bytes if such answers are expected)",
            provider=provider,
            status=502,
            retryable=False,
        )
        self.limit = limit


def usable_for(base_url: str) -> bool:
    """True for a plain ``http://`` URL without credentials in it and with no proxy set in the environment."""
    return base_url.startswith("http://") and "@" not in urlsplit(base_url).netloc and not any(os.environ.get(v) for v in _PROXY_ENV)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: received bytes accumulate in ``buf``; a reader waits on ``_waiter``."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        w, self._waiter = self._waiter, None
        if w is not None and not w.done():
            w.set_result(None)

    @property
    def reusable(self) -> bool:
        """Still open, and nothing unsolicited arrived while it was idle."""
        return not self.closed and not self.buf and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def more(self) -> None:
        """Wait for more bytes; UpstreamConnectionError if the peer closed instead."""
        if self.closed:
            raise UpstreamConnectionError("the upstream closed the connection before the response was complete")
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter

    async def until(self, marker: bytes, limit: int) -> bytes:
        """Bytes up to and including ``marker`` (consumed from ``buf``)."""
        start = 0
        while True:
            i = self.buf.find(marker, start)
            if i >= 0:
                out = bytes(self.buf[: i + len(marker)])
                del self.buf[: i + len(marker)]
                return out
            if len(self.buf) > limit:
                raise UpstreamConnectionError(f"response head or chunk line longer than {limit} bytes")
            start = max(0, len(self.buf) - len(marker) + 1)
            await self.more()

    async def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self.more()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def to_close(self, limit: int) -> bytes:
        while not self.closed:
            if len(self.buf) > limit:
                raise ResponseTooLarge(limit)
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        out, self.buf = bytes(self.buf), bytearray()
        return out


class Http1Pool:
    """Keep-alive connections to the origin of ``base_url`` (which must be ``http://``)."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        max_idle: int = 32,
        connect_timeout: float = 10.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        name: str = "?",
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not a plain http URL: {base_url!r}")
        if max_response_bytes < 1:
            raise ValueError(f"max_response_bytes must be ≥ 1, got {max_response_bytes}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        fixed = {
            "host": parts.netloc,
            "user-agent": "thrifty",
            "accept": "application/json",
            "accept-encoding": "gzip, deflate",
            "content-type": "application/json",
        }
        fixed.update({k.lower(): v for k, v in headers.items()})
        self._head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items() if k != "content-length")
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.max_response_bytes = int(max_response_bytes)
        self.name = name  # the provider, named in errors
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout) if hasattr(asyncio, "timeout") else _nullcontext():
                _, conn = await loop.create_connection(_Connection, self.host, self.port)
        except (asyncio.TimeoutError, TimeoutError):
            raise UpstreamConnectionError(f"connect to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise UpstreamConnectionError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        return conn

    def _take(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.reusable:
                return conn
            conn.close()  # the server closed it while idle (or sent junk): drop it
        return None

    async def post_json(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """POST ``body`` to ``prefix + path``: (status, headers with lower-case names, decoded body)."""
        conn = self._take() or await self._connect()
        reusable = False
        try:
            request = f"POST {self.prefix}{path} HTTP/1.1\r\n{self._head}content-length: {len(body)}\r\n\r\n".encode("latin-1")
            assert conn.transport is not None
            conn.transport.write(request + body)
            status, headers, data, reusable = await _read_response(conn, self.max_response_bytes)
            return status, headers, data
        except ResponseTooLarge:
            raise ResponseTooLarge(self.max_response_bytes, self.name) from None
        except (OSError, ValueError) as exc:
            if isinstance(exc, UpstreamConnectionError):
                raise
            raise UpstreamConnectionError(f"upstream connection failed mid-response: {type(exc).__name__}: {exc}") from exc
        finally:
            if reusable and len(self._idle) < self.max_idle:
                self._idle.append(conn)
            else:
                conn.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class _nullcontext:  # pragma: no cover - Python 3.10 (no asyncio.timeout): the caller's deadline still applies
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


async def _read_response(conn: _Connection, limit: int) -> tuple[int, dict[str, str], bytes, bool]:
    while True:  # skip interim 1xx answers (100 Continue, 103 Early Hints)
        head = await conn.until(b"\r\n\r\n", _MAX_HEAD)
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1."):
            raise UpstreamConnectionError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
        status = int(rest[:3])
        if not (100 <= status < 200 and status != 101):
            break
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
    if status in (101, 204, 304):
        return status, headers, b"", keep and status != 101
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts, size_so_far = [], 0
        while True:
            size_line = await conn.until(b"\r\n", _MAX_HEAD)
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await conn.until(b"\r\n", _MAX_HEAD)) != b"\r\n":  # trailers
                    pass
                break
            size_so_far += size
            if size_so_far > limit:
                raise ResponseTooLarge(limit)
            parts.append(await conn.exactly(size))
            await conn.exactly(2)
        data = b"".join(parts)
    elif "content-length" in headers:
        n = int(headers["content-length"])
        if n > limit:
            raise ResponseTooLarge(limit)
        data = await conn.exactly(n)
    else:
        data, keep = await conn.to_close(limit), False
        if len(data) > limit:
            raise ResponseTooLarge(limit)
    encoding = headers.get("content-encoding", "").lower()
    if encoding in ("gzip", "deflate"):
        inflater = zlib.decompressobj(47)  # 47: gzip or zlib header, auto-detected
        try:
            data = inflater.decompress(data, limit + 1)  # a small body may inflate to gigabytes
        except zlib.error as exc:
            raise UpstreamConnectionError(f"bad {encoding} body: {exc}") from None
        if len(data) > limit:
            raise ResponseTooLarge(limit)
    return status, headers, data, keep
