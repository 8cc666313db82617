"""Security basics of ``thrifty serve`` (the real command, a subprocess on loopback).

- Client API keys are stored hashed: neither the config, the log DB (and its WAL) nor the server's
  output nor any error body contains a plaintext key — the accepted one, a rejected one, or the
  upstream provider's key (even when the upstream echoes it back in an error).
- The request body is limited: over ``server.max_body_bytes`` → 413 OpenAI-style JSON, with or
  without a ``Content-Length`` header, and nothing is logged for it.
- The server binds 127.0.0.1 unless told otherwise.
- CORS headers are absent unless ``server.cors_origins`` is configured, and then only for those origins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx
import openai
import pytest
from fault_upstream import FaultUpstream
from gateway_proc import GatewayProcess, read_db, toml_provider

from thrifty.config.settings import ServerSettings, hash_key

pytestmark = pytest.mark.slow

CLIENT_KEY = "sk-thrifty-client-SECRET-4f9a2b7c1d"
WRONG_KEY = "sk-thrifty-wrong-SECRET-88e1d0c3aa"
UPSTREAM_KEY = "sk-upstream-provider-SECRET-a1b2c3d4"
MAX_BODY = 4096
MSG = [{"role": "user", "content": "Say OK."}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    data = tmp_path_factory.mktemp("security")
    with FaultUpstream() as up:
        cfg = (
            f'[server]\ndata_dir = "{data}"\nmax_body_bytes = {MAX_BODY}\nrequest_timeout_s = 5\n\n'
            + toml_provider("fast", up.base_url("normal"), timeout_s=2)
            + toml_provider("echoer", up.base_url("echo401"), timeout_s=2).replace(
                "[providers.echoer]\n", '[providers.echoer]\napi_key_env = "SECURITY_TEST_UPSTREAM_KEY"\n'
            )
            + '[profiles.default]\ntiers = ["fast"]\n\n'
            + f'[keys.alice]\nsha256 = "{hash_key(CLIENT_KEY)}"\nlimit_usd = 10.0\n'
        )
        proc = GatewayProcess(cfg, data, cli=True, env={"SECURITY_TEST_UPSTREAM_KEY": UPSTREAM_KEY}, extra_args=("--log-level", "debug"))
        with proc:
            yield proc


def _secrets_absent(gw: GatewayProcess, *texts: str) -> None:
    blobs = {p.name: p.read_bytes() for p in gw.data_dir.iterdir() if p.is_file()}
    blobs["<responses>"] = "\n".join(texts).encode()
    for secret in (CLIENT_KEY, WRONG_KEY, UPSTREAM_KEY):
        for name, blob in blobs.items():
            assert secret.encode() not in blob, f"plaintext key {secret[:14]}… found in {name}"
            assert secret.split("-SECRET-")[1].encode() not in blob, f"part of key {secret[:14]}… found in {name}"


def test_keys_never_stored_or_echoed(gw: GatewayProcess) -> None:
    texts: list[str] = []
    ok = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)
    raw = ok.chat.completions.with_raw_response.create(model="thrifty/default", messages=MSG)
    assert raw.http_response.status_code == 200
    texts.append(raw.http_response.text)
    with pytest.raises(openai.AuthenticationError) as bad:
        openai.OpenAI(base_url=gw.base_url + "/v1", api_key=WRONG_KEY, max_retries=0, timeout=10).chat.completions.create(
            model="thrifty/default", messages=MSG
        )
    texts.append(bad.value.response.text)
    assert bad.value.response.json()["error"]["type"] == "authentication_error"
    # the upstream repeats the provider key in its 401: the client's error and the log must not
    with pytest.raises(openai.APIStatusError) as upstream:
        ok.chat.completions.create(model="echoer", messages=MSG)
    texts.append(upstream.value.response.text)
    assert upstream.value.status_code in (400, 401, 502)
    rows = read_db(gw.db_path, "SELECT key_name FROM requests")
    assert ("alice",) in rows, "requests are attributed to the key's name"
    texts.append(gw.config_path.read_text())
    assert hash_key(CLIENT_KEY) in gw.config_path.read_text()
    _secrets_absent(gw, *texts, gw.output())


def test_body_limit_is_413(gw: GatewayProcess) -> None:
    before = read_db(gw.db_path, "SELECT COUNT(*) FROM requests")[0][0]
    big = {"model": "thrifty/default", "messages": [{"role": "user", "content": "x" * (MAX_BODY + 100)}]}
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    r = httpx.post(gw.base_url + "/v1/chat/completions", json=big, headers=headers, timeout=10)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: a chunked upload that keeps going
        yield b'{"model": "thrifty/default", "messages": [{"role": "user", "content": "'
        for _ in range(64):
            yield b"y" * 1024
        yield b'"}]}'

    r2 = httpx.post(
        gw.base_url + "/v1/chat/completions", content=chunks(), headers={**headers, "content-type": "application/json"}, timeout=10
    )
    assert r2.status_code == 413
    assert r2.json()["error"]["type"] == "invalid_request_error"
    assert read_db(gw.db_path, "SELECT COUNT(*) FROM requests")[0][0] == before, "a refused body is not logged"
    # just under the limit still works
    ok = {"model": "thrifty/default", "messages": [{"role": "user", "content": "z" * (MAX_BODY - 200)}]}
    assert httpx.post(gw.base_url + "/v1/chat/completions", json=ok, headers=headers, timeout=10).status_code == 200


def _listen_addresses(port: int) -> set[str]:
    """Local addresses in LISTEN state for ``port``, from /proc/net/tcp{,6}."""
    out = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            addr, p = parts[1].rsplit(":", 1)
            if int(p, 16) == port and parts[3] == "0A":
                out.add(addr)
    return out


def test_binds_loopback_by_default(gw: GatewayProcess) -> None:
    assert ServerSettings().host == "127.0.0.1"
    addrs = _listen_addresses(gw.port)
    if not addrs:
        pytest.skip("/proc/net/tcp not readable here")
    assert addrs == {"0100007F"}, f"listening on {addrs}, expected only 127.0.0.1"


def test_cors_off_unless_configured(gw: GatewayProcess, tmp_path: Path) -> None:
    origin = {"origin": "https://evil.example"}
    pre = httpx.options(
        gw.base_url + "/v1/chat/completions",
        headers={**origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type"},
    )
    assert not any(h.startswith("access-control-") for h in pre.headers), dict(pre.headers)
    get = httpx.get(gw.base_url + "/v1/models", headers={**origin, "authorization": f"Bearer {CLIENT_KEY}"})
    assert get.status_code == 200 and "access-control-allow-origin" not in get.headers

    with FaultUpstream() as up:
        cfg = (
            f'[server]\ndata_dir = "{tmp_path}"\ncors_origins = ["https://app.example"]\n\n'
            + toml_provider("fast", up.base_url("normal"))
            + '[profiles.default]\ntiers = ["fast"]\n'
        )
        with GatewayProcess(cfg, tmp_path) as gw2:
            good = httpx.options(
                gw2.base_url + "/v1/chat/completions", headers={"origin": "https://app.example", "access-control-request-method": "POST"}
            )
            assert good.headers.get("access-control-allow-origin") == "https://app.example"
            evil = httpx.get(gw2.base_url + "/v1/models", headers=origin)
            assert "access-control-allow-origin" not in evil.headers


def test_stalled_body_upload_is_cut_off(gw: GatewayProcess) -> None:
    """A client that sends headers and then stalls (slowloris) gets a 408 within the request deadline,
    instead of holding a connection and a coroutine forever."""
    import socket
    import time

    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {CLIENT_KEY}\r\n".encode()
            + b'Content-Length: 500\r\n\r\n{"model": '
        )
        t0 = time.monotonic()
        reply = s.recv(65536)
        elapsed = time.monotonic() - t0
        while chunk := s.recv(65536):  # headers and body may arrive in separate segments; the server closes
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b'"error"' in reply and elapsed < 5 + 3  # server.request_timeout_s = 5 in this fixture
