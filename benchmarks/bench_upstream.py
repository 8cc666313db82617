"""A benchmark upstream: an OpenAI-compatible responder that answers every request instantly.

It is not a model. It exists so that load benchmarks measure the gateway, not the upstream: a bare
asyncio protocol (uvloop when installed) that parses just enough HTTP/1.1 (request line, headers,
``Content-Length``, keep-alive, pipelining) and answers

- ``POST …/chat/completions`` with a fixed chat completion (SSE chunks when the body asks ``"stream": true``),
- ``GET …/models`` with a one-model list, anything else with 404.

Run: ``python benchmarks/bench_upstream.py --port 9100`` (prints ``READY <port>`` once listening).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

__all__ = ["serve", "main"]

_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "bench-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "OK."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
    }
).encode()
_MODELS = json.dumps({"object": "list", "data": [{"id": "bench-model", "object": "model", "owned_by": "bench"}]}).encode()


def _sse() -> bytes:
    def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
        doc = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "bench-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage:
            doc["usage"] = usage
        return b"data: " + json.dumps(doc).encode() + b"\n\n"

    return (
        chunk({"role": "assistant", "content": ""})
        + chunk({"content": "OK."})
        + chunk({}, "stop", {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14})
        + b"data: [DONE]\n\n"
    )


def _response(status: str, body: bytes, ctype: str = "application/json", keep_alive: bool = True) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode() + body


_SSE = _sse()


class _Responder(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            lines = head.split("\r\n")
            length, keep_alive = 0, True
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip() or 0)
                elif name == "connection" and value.strip().lower() == "close":
                    keep_alive = False
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            method, _, rest = lines[0].partition(" ")
            path = rest.partition(" ")[0].split("?")[0].rstrip("/")
            assert self.transport is not None
            if method == "POST" and path.endswith("/chat/completions"):
                if b'"stream":true' in body.replace(b" ", b""):
                    out = _response("200 OK", _SSE, "text/event-stream", keep_alive)
                else:
                    out = _response("200 OK", _COMPLETION, keep_alive=keep_alive)
            elif method == "GET" and path.endswith("/models"):
                out = _response("200 OK", _MODELS, keep_alive=keep_alive)
            else:
                out = _response("404 Not Found", b'{"error": {"message": "not found"}}', keep_alive=keep_alive)
            self.transport.write(out)
            if not keep_alive:
                self.transport.close()
                return


async def serve(host: str = "127.0.0.1", port: int = 0) -> asyncio.AbstractServer:
    """Start the responder on ``host:port`` (0 = a free port) and return the server."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(_Responder, host, port, backlog=4096)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--no-uvloop", action="store_true", help="use the stock asyncio loop")
    args = ap.parse_args(argv)

    async def run() -> None:
        server = await serve(args.host, args.port)
        print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
        async with server:
            await server.serve_forever()

    if not args.no_uvloop:
        try:
            import uvloop

            uvloop.run(run())
            return 0
        except ImportError:
            pass
    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
