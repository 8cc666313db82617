"""A STAND-IN for the Anthropic Messages API: a real HTTP server on loopback that speaks its wire format.

No Anthropic key is reachable from the test machines, so the Anthropic adapter is tested against
this server instead. It is *not* Claude: it answers deterministically from the request, and records
every request body so tests can assert what the adapter sent (system prompt, tools, tool results…).

- ``POST /v1/messages`` with the key in ``x-api-key`` or ``Authorization: Bearer`` (recent SDKs send the
  latter) and an ``anthropic-version`` header (401 / 400 otherwise);
- the reply text is ``"stand-in reply: <last user text>"``; ``usage.input_tokens`` counts the
  words of the system prompt and messages, ``output_tokens`` the words of the reply;
- with ``tools`` and ``tool_choice`` of type ``any`` / ``tool`` it answers with a ``tool_use`` block
  (input: ``tool_input``) and ``stop_reason = "tool_use"``;
- ``"stream": true`` → the SSE event sequence message_start … message_stop;
- ``fail_next = [(status, headers), …]`` makes the next requests fail with those statuses;
- ``cache_usage = (read, written)`` adds ``cache_read_input_tokens`` / ``cache_creation_input_tokens``
  to every answer's usage (prompt caching, as Anthropic reports it: not part of ``input_tokens``).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["AnthropicStandIn"]


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    if isinstance(value, dict):
        return sum(_words(v) for k, v in value.items() if k in ("text", "content"))
    return 0


class AnthropicStandIn:
    def __init__(self, api_key: str = "test-key") -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.fail_next: list[tuple[int, dict[str, str]]] = []
        self.tool_input: dict[str, Any] = {"city": "Paris"}
        self.cache_usage: tuple[int, int] | None = None
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "AnthropicStandIn":
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                if self.path != "/v1/messages":
                    return self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})
                bearer = self.headers.get("authorization", "").removeprefix("Bearer ").strip()
                sent = self.headers.get("x-api-key") or bearer
                if standin.api_key not in (self.headers.get("x-api-key"), bearer):
                    # echoes the key it was sent, as some upstreams do: the adapter must redact it
                    return self._json(
                        401, {"type": "error", "error": {"type": "authentication_error", "message": f"invalid x-api-key {sent}"}}
                    )
                if not self.headers.get("anthropic-version"):
                    return self._json(
                        400,
                        {"type": "error", "error": {"type": "invalid_request_error", "message": "anthropic-version header is required"}},
                    )
                standin.requests.append(body)
                if standin.fail_next:
                    status, headers = standin.fail_next.pop(0)
                    return self._json(
                        status, {"type": "error", "error": {"type": "overloaded_error", "message": "stand-in failure"}}, headers
                    )
                for field in ("model", "messages", "max_tokens"):
                    if field not in body:
                        return self._json(
                            400, {"type": "error", "error": {"type": "invalid_request_error", "message": f"{field}: Field required"}}
                        )
                message = standin._answer(body)
                if body.get("stream"):
                    return self._sse(message)
                return self._json(200, message)

            def _sse(self, message: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()

                def event(kind: str, data: dict[str, Any]) -> None:
                    self.wfile.write(f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode())
                    self.wfile.flush()

                start = {**message, "content": [], "stop_reason": None, "usage": {**message["usage"], "output_tokens": 1}}
                event("message_start", {"message": start})
                for i, block in enumerate(message["content"]):
                    if block["type"] == "text":
                        event("content_block_start", {"index": i, "content_block": {"type": "text", "text": ""}})
                        words = block["text"].split(" ")
                        for j, w in enumerate(words):
                            event("content_block_delta", {"index": i, "delta": {"type": "text_delta", "text": w if j == 0 else " " + w}})
                    else:
                        event("content_block_start", {"index": i, "content_block": {**block, "input": {}}})
                        event(
                            "content_block_delta",
                            {"index": i, "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}},
                        )
                    event("content_block_stop", {"index": i})
                event(
                    "message_delta",
                    {
                        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                        "usage": {"output_tokens": message["usage"]["output_tokens"]},
                    },
                )
                event("message_stop", {})
                self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        last_user = ""
        for m in body["messages"]:
            if m["role"] == "user":
                texts = (
                    [b.get("text", "") for b in m["content"] if isinstance(b, dict) and b.get("type") == "text"]
                    if isinstance(m["content"], list)
                    else [m["content"]]
                )
                if any(texts):
                    last_user = " ".join(t for t in texts if t)
        choice = body.get("tool_choice") or {}
        in_tokens = _words(body.get("system", "")) + _words(body["messages"])
        if body.get("tools") and choice.get("type") in ("any", "tool"):
            name = choice.get("name") or body["tools"][0]["name"]
            content = [{"type": "tool_use", "id": "toolu_standin_1", "name": name, "input": self.tool_input}]
            return self._with_cache(self._message(body, content, "tool_use", in_tokens, 3))
        text = f"stand-in reply: {last_user}"
        return self._with_cache(self._message(body, [{"type": "text", "text": text}], "end_turn", in_tokens, len(text.split())))

    def _with_cache(self, message: dict[str, Any]) -> dict[str, Any]:
        if self.cache_usage is not None:
            message["usage"].update(cache_read_input_tokens=self.cache_usage[0], cache_creation_input_tokens=self.cache_usage[1])
        return message

    @staticmethod
    def _message(body: dict[str, Any], content: list[dict[str, Any]], stop: str, n_in: int, n_out: int) -> dict[str, Any]:
        return {
            "id": "msg_standin",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": n_in, "output_tokens": n_out},
        }
