"""The lean HTTP/1.1 client (``thrifty.serving.providers.http1``) against a real loopback server that answers
in every framing an upstream may use: Content-Length, chunked (with trailers), read-to-close, gzip;
keep-alive reuse, a server that closes idle connections, and failures mid-response."""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest

from thrifty.serving.providers.http1 import Http1Pool, UpstreamConnectionError, usable_for

DOC = {"ok": True, "text": "héllo " * 50}
RAW = json.dumps(DOC).encode()


async def _serve(handler) -> tuple[asyncio.AbstractServer, int, list[int]]:
    conns: list[int] = []

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await reader.readexactly(n)
                path = head.split(b" ")[1].decode()
                if not await handler(path, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], conns


async def _handler(path: str, body: bytes, w: asyncio.StreamWriter) -> bool:
    """True: keep the connection open for the next request."""
    mode = path.rsplit("/", 1)[1]
    if mode == "length":
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(RAW) + RAW)
    elif mode == "chunked":
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(RAW), 37):
            part = RAW[i : i + 37]
            w.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
        w.write(b"0\r\nX-Trailer: 1\r\n\r\n")
    elif mode == "gzip":
        z = gzip.compress(RAW)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(z) + z)
    elif mode == "close":
        w.write(b"HTTP/1.0 200 OK\r\n\r\n" + RAW)
        await w.drain()
        return False
    elif mode == "interim":
        w.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(RAW) + RAW)
    elif mode == "echo":
        w.write(b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\nX-Multi: a\r\nX-Multi: b\r\n\r\n" % len(body) + body)
    elif mode == "error":
        msg = b'{"error": {"message": "nope"}}'
        w.write(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: %d\r\n\r\n" % len(msg) + msg)
    elif mode == "short":
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n" + RAW[:10])
        await w.drain()
        return False
    elif mode == "garbage":
        w.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await w.drain()
        return False
    elif mode == "oneshot":  # answers, then closes the idle connection a moment later
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(RAW) + RAW)
        await w.drain()
        await asyncio.sleep(0.05)
        return False
    await w.drain()
    return True


def test_framings_keepalive_and_failures() -> None:
    async def main() -> None:
        server, port, conns = await _serve(_handler)
        pool = Http1Pool(f"http://127.0.0.1:{port}/v1", {"Authorization": "Bearer x"})
        try:
            for mode in ("length", "chunked", "gzip", "close", "length", "interim"):
                status, _, data = await pool.post_json(f"/{mode}", b"{}")
                assert status == 200 and json.loads(data) == DOC, mode
            status, headers, data = await pool.post_json("/echo", b'{"a": 1}')
            assert (status, data, headers["x-multi"]) == (201, b'{"a": 1}', "a, b")
            status, headers, data = await pool.post_json("/error", b"{}")
            assert status == 503 and headers["retry-after"] == "2" and b"nope" in data
            # keep-alive: the length/chunked/gzip/echo/error answers shared connections; "close" forced a new one
            assert len(conns) == 2, conns
            for mode in ("short", "garbage"):
                with pytest.raises(UpstreamConnectionError):
                    await pool.post_json(f"/{mode}", b"{}")
            # a pooled connection the server closed while idle is not reused
            await pool.post_json("/oneshot", b"{}")
            await asyncio.sleep(0.2)
            status, _, _ = await pool.post_json("/length", b"{}")
            assert status == 200
        finally:
            await pool.aclose()
            server.close()
            await server.wait_closed()
        with pytest.raises(UpstreamConnectionError):
            await Http1Pool(f"http://127.0.0.1:{port}/v1", {}).post_json("/length", b"{}")  # refused: nobody listens

    asyncio.run(main())


def test_used_only_for_plain_http_without_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    assert usable_for("http://127.0.0.1:8000/v1")
    assert not usable_for("https://api.openai.com/v1")
    assert not usable_for("http://user:secret@127.0.0.1:8000/v1")  # basic auth stays with httpx
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
    assert not usable_for("http://127.0.0.1:8000/v1")
