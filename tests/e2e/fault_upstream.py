"""A fault-injecting OpenAI-compatible upstream for tests: a real HTTP server on loopback that misbehaves on purpose.

The fault is chosen by the first path segment, so each gateway tier can point its ``base_url`` at a
different behaviour of the same server::

    http://127.0.0.1:PORT/<mode>/v1/chat/completions

(an ``X-Fault: <mode>`` request header overrides the path). Modes:

==================  ===============================================================================
``normal``          200 with a valid chat completion (SSE chunks when the request has ``stream``)
``hang``            reads the request, never answers (until the server stops)
``500|502|503``     that status with an OpenAI-style error body
``429``             429 with ``Retry-After: 1`` (``429-ra<N>`` for N seconds)
``malformed``       200, ``application/json``, body is not JSON
``truncated``       stream: two SSE chunks then the connection closes (no ``[DONE]``);
                    JSON: ``Content-Length`` promises more than is sent before the close
``reset``           reads the request, then closes with a TCP RST (SO_LINGER 0)
``drip``            200, then the body one byte every ``drip_interval`` seconds
``nochoices``       200 with valid JSON that has no ``choices``
``nousage``         200 with a valid chat completion that reports no ``usage`` (as some servers do)
``echo401``         401 whose message repeats the ``Authorization`` header it got (as careless vendors do)
``flaky<N>-<mode>`` the first N calls of this path get ``<mode>``, later calls ``normal``
``sleep<MS>-<mode>`` waits MS milliseconds, then behaves as ``<mode>`` (a slow but healthy upstream)
``table``           200 whose answer is ``answers[<last user message>]`` (a recorded routing table
                    replayed over HTTP); 404 for a prompt it has no answer for
==================  ===============================================================================

A ``~tag`` suffix (``503~solo``) selects the same mode but is counted separately.

``calls[path_spec]`` counts requests per path segment (thread-safe), so tests can assert retries.
Use as a context manager: ``with FaultUpstream() as up: up.base_url("503")``.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FaultUpstream", "completion_body"]


def completion_body(model: str, text: str, *, prompt_tokens: int = 10, completion_tokens: int = 5) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None, usage: dict | None = None) -> bytes:
    doc: dict[str, Any] = {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        doc["usage"] = usage
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # ---- helpers -------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str = "application/json", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"error": {"message": message, "type": "server_error", "code": status}}).encode()
        self._send(status, body, headers=headers)

    def _read_body(self) -> dict[str, Any]:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            doc = json.loads(raw or b"{}")
        except ValueError:
            doc = {}
        return doc if isinstance(doc, dict) else {}

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

    # ---- routes --------------------------------------------------------------------------------
    def do_GET(self) -> None:
        spec, _, rest = self.path.lstrip("/").partition("/")
        if self.path.rstrip("/").endswith("/v1/models"):
            self._send(200, json.dumps({"object": "list", "data": [{"id": "fault-model", "object": "model"}]}).encode())
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        spec, _, rest = self.path.lstrip("/").partition("/")
        body = self._read_body()
        spec = self.headers.get("X-Fault") or spec
        mode = self.server.record(spec)
        model = str(body.get("model") or "fault-model")
        stream = bool(body.get("stream"))
        if not rest.rstrip("/").endswith("chat/completions"):
            self._error(404, f"no route {self.path}")
            return
        self.server.bodies.append(body)
        if mode == "table":
            messages = [m for m in body.get("messages") or () if isinstance(m, dict) and m.get("role") == "user"]
            prompt = messages[-1].get("content") if messages else None
            answer = self.server.answers.get(prompt) if isinstance(prompt, str) else None
            if answer is None:
                self._error(404, f"no recorded answer for {str(prompt)[:60]!r}")
            else:
                self._send(200, json.dumps(completion_body(model, answer)).encode())
            return
        try:
            self._serve(mode, model, stream)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def _serve(self, mode: str, model: str, stream: bool) -> None:
        text = f"answer from {self.server.label or mode}"
        if mode == "normal":
            if stream:
                self._stream(model, text)
            else:
                self._send(200, json.dumps(completion_body(model, text)).encode())
        elif mode == "nousage":
            doc = completion_body(model, text)
            del doc["usage"]
            self._send(200, json.dumps(doc).encode())
        elif mode == "hang":
            self.server.stopping.wait(self.server.hang_s)
            self.close_connection = True
        elif mode in ("500", "502", "503"):
            self._error(int(mode), f"injected {mode}")
        elif mode.startswith("429"):
            secs = mode[len("429-ra") :] if mode.startswith("429-ra") else "1"
            self._error(429, "injected rate limit", headers={"Retry-After": secs})
        elif mode == "echo401":
            self._error(401, f"Incorrect API key provided: {self.headers.get('Authorization', '')}")
        elif mode == "nochoices":
            self._send(200, json.dumps({"id": "chatcmpl-fault", "object": "chat.completion", "choices": []}).encode())
        elif mode == "malformed":
            self._send(200, b'{"id": "chatcmpl-fault", "choices": [{"message": ')
        elif mode == "truncated":
            if stream:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                self.wfile.write(_chunk(model, {"role": "assistant", "content": ""}))
                self.wfile.write(_chunk(model, {"content": "partial "}))
                self.wfile.flush()
            else:
                full = json.dumps(completion_body(model, text)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(full)))
                self.end_headers()
                self.wfile.write(full[: len(full) // 2])
                self.wfile.flush()
            self._reset()
        elif mode == "reset":
            self._reset()
        elif mode == "drip":
            full = json.dumps(completion_body(model, text)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(full)))
            self.end_headers()
            self.wfile.flush()
            for i in range(len(full)):
                if self.server.stopping.wait(self.server.drip_interval):
                    break
                self.wfile.write(full[i : i + 1])
                self.wfile.flush()
            self.close_connection = True
        else:
            self._error(400, f"unknown fault mode {mode!r}")

    def _stream(self, model: str, text: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(_chunk(model, {"role": "assistant", "content": ""}))
        for word in text.split(" "):
            self.wfile.write(_chunk(model, {"content": word + " "}))
        self.wfile.write(_chunk(model, {}, finish="stop", usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # listen backlog: load tests open many connections at once

    def __init__(
        self, addr: tuple[str, int], label: str, hang_s: float, drip_interval: float, answers: dict[str, str] | None = None
    ) -> None:
        super().__init__(addr, _Handler)
        self.label = label
        self.answers = dict(answers or {})
        self.hang_s = hang_s
        self.drip_interval = drip_interval
        self.stopping = threading.Event()
        self.calls: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, spec: str) -> str:
        """Count a call to ``spec`` and return the mode that applies to this call."""
        with self._lock:
            self.calls[spec] += 1
            n = self.calls[spec]
        mode = spec.split("~", 1)[0]
        if mode.startswith("flaky"):
            head, _, inner = mode.partition("-")
            return inner if n <= int(head[len("flaky") :] or 1) else "normal"
        if mode.startswith("sleep"):
            head, _, inner = mode.partition("-")
            self.stopping.wait(int(head[len("sleep") :] or 0) / 1000)
            return inner or "normal"
        return mode


class FaultUpstream:
    """A fault-injecting OpenAI-compatible server on 127.0.0.1 (free port), run in a daemon thread."""

    def __init__(self, *, label: str = "", hang_s: float = 30.0, drip_interval: float = 0.3, answers: dict[str, str] | None = None) -> None:
        self._server = _Server(("127.0.0.1", 0), label, hang_s, drip_interval, answers)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def calls(self) -> Counter[str]:
        return self._server.calls

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return self._server.bodies

    def base_url(self, mode: str = "normal") -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/v1"

    def start(self) -> "FaultUpstream":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FaultUpstream":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
