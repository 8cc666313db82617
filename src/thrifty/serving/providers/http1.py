"""A minimal keep-alive HTTP/1.1 client for JSON POSTs to a plain ``http://`` upstream.

Why: on the gateway's hot path httpx costs about 0.6–0.75 ms of CPU per upstream call (URL
merging, cookies, auth and redirect layers, h11, anyio); this client costs a few tens of µs, which
is most of the difference between a few hundred and over a thousand requests per second per core.
It is used only for non-streamed calls to ``http://`` base URLs when no proxy is configured in the
environment (local vLLM / llama.cpp / Ollama servers, sidecars); TLS, proxies and streaming stay on
httpx.

What it does: one pool of idle connections per origin; ``post_json(path, body)`` sends the request
and reads the whole response (``Content-Length``, ``chunked`` or read-to-close bodies; gzip/deflate
decoded). A connection goes back to the pool only after a complete response that allows keep-alive.
Failures raise :class:`UpstreamConnectionError` (a ``ConnectionError``: the error boundary maps it to a
retryable 502). Time limits are the caller's (``asyncio.wait_for``).
"""

from __future__ import annotations

import asyncio
import os
import zlib
from typing import Mapping
from urllib.parse import urlsplit

__all__ = ["Http1Pool", "UpstreamConnectionError", "usable_for"]

_MAX_HEAD = 64 * 1024
_PROXY_ENV = ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")


class UpstreamConnectionError(ConnectionError):
    """The connection failed or closed before a complete response arrived."""


def usable_for(base_url: str) -> bool:
    """True for a plain ``http://`` URL without credentials in it and with no proxy set in the environment."""
    return (base_url.startswith("http://") and "@" not in urlsplit(base_url).netloc
            and not any(os.environ.get(v) for v in _PROXY_ENV))


class Http1Pool:
    """Keep-alive connections to the origin of ``base_url`` (which must be ``http://``)."""

    def __init__(self, base_url: str, headers: Mapping[str, str], *, max_idle: int = 32, connect_timeout: float = 10.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not a plain http URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        fixed = {"host": parts.netloc, "user-agent": "thrifty", "accept": "application/json", "accept-encoding": "gzip, deflate",
                 "content-type": "application/json"}
        fixed.update({k.lower(): v for k, v in headers.items()})
        self._head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items() if k != "content-length")
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.wait_for(asyncio.open_connection(self.host, self.port, limit=_MAX_HEAD), self.connect_timeout)
        except asyncio.TimeoutError:
            raise UpstreamConnectionError(f"connect to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise UpstreamConnectionError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc

    def _take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        while self._idle:
            reader, writer = self._idle.pop()
            if not reader.at_eof() and not writer.is_closing() and not getattr(reader, "_buffer", b""):
                return reader, writer
            writer.close()  # the server closed it while idle (or sent junk): drop it
        return None

    async def post_json(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """POST ``body`` to ``prefix + path``: (status, headers with lower-case names, decoded body)."""
        conn = self._take() or await self._connect()
        reader, writer = conn
        reusable = False
        try:
            request = f"POST {self.prefix}{path} HTTP/1.1\r\n{self._head}content-length: {len(body)}\r\n\r\n".encode("latin-1")
            writer.write(request + body)
            status, headers, data, reusable = await _read_response(reader)
            return status, headers, data
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            if isinstance(exc, UpstreamConnectionError):
                raise
            raise UpstreamConnectionError(f"upstream connection failed mid-response: {type(exc).__name__}: {exc}") from exc
        finally:
            if reusable and len(self._idle) < self.max_idle:
                self._idle.append(conn)
            else:
                writer.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes, bool]:
    while True:  # skip interim 1xx answers (100 Continue, 103 Early Hints)
        head = await reader.readuntil(b"\r\n\r\n")
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
        parts = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        data = b"".join(parts)
    elif "content-length" in headers:
        data = await reader.readexactly(int(headers["content-length"]))
    else:
        data, keep = await reader.read(), False
    encoding = headers.get("content-encoding", "").lower()
    if encoding in ("gzip", "deflate"):
        try:
            data = zlib.decompress(data, 47)  # 47: gzip or zlib header, auto-detected
        except zlib.error as exc:
            raise UpstreamConnectionError(f"bad {encoding} body: {exc}") from None
    return status, headers, data, keep
