"""The live path, hardened — against real servers on loopback:

- ``thrifty serve`` (the user's command, a subprocess) runs on uvloop with httptools, one worker too;
- an upstream that reports no ``usage``: the counts are flagged as estimated in the log and /metrics;
- Anthropic prompt-cache reads/writes are priced at the cache prices (Messages-API stand-in);
- the lean HTTP/1.1 client refuses a response over its size cap with a clear, non-retryable 502.
"""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import json
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from anthropic_standin import AnthropicStandIn  # noqa: E402
from fault_upstream import FaultUpstream  # noqa: E402
from gateway_proc import GatewayProcess, read_db, toml_provider  # noqa: E402

from thrifty.errors import ProviderError  # noqa: E402
from thrifty.types import ChatRequest  # noqa: E402

HAVE_FAST = importlib.util.find_spec("uvloop") is not None and importlib.util.find_spec("httptools") is not None


@pytest.mark.skipif(not HAVE_FAST, reason="uvloop/httptools not installed (pip install 'thrifty[serve]')")
def test_thrifty_serve_single_worker_runs_on_uvloop_and_httptools(tmp_path: Path) -> None:
    with FaultUpstream() as up:
        cfg = toml_provider("a", up.base_url("normal")) + '[profiles.default]\ntiers = ["a"]\n'
        with GatewayProcess(cfg, tmp_path / "gw", cli=True) as gw:
            health = httpx.get(gw.base_url + "/healthz", timeout=5).json()
            r = httpx.post(
                gw.base_url + "/v1/chat/completions",
                timeout=10,
                json={"model": "thrifty/default", "messages": [{"role": "user", "content": "hi"}]},
            )
            output = gw.output()
    assert health["event_loop"] == "uvloop"
    assert "uvloop event loop, httptools HTTP parser" in output
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "answer from normal"


def test_estimated_token_counts_are_flagged_in_the_log_and_metrics(tmp_path: Path) -> None:
    with FaultUpstream() as up:
        cfg = (
            toml_provider("counted", up.base_url("normal"))
            + toml_provider("guessed", up.base_url("nousage"))
            + '[profiles.default]\ntiers = ["guessed"]\n'
        )
        with GatewayProcess(cfg, tmp_path / "gw") as gw:
            for model in ("thrifty/default", "counted"):
                r = httpx.post(
                    gw.base_url + "/v1/chat/completions",
                    timeout=10,
                    json={"model": model, "messages": [{"role": "user", "content": "a question of some length"}]},
                )
                assert r.status_code == 200, r.text
            metrics = httpx.get(gw.base_url + "/metrics", timeout=5).text
            rows = dict(read_db(gw.db_path, "SELECT final_model, tokens_estimated FROM requests"))
            steps = dict(read_db(gw.db_path, "SELECT model, tokens_estimated FROM steps"))
    assert rows == {"guessed": 1, "counted": 0} and steps == {"guessed": 1, "counted": 0}
    estimated = [ln for ln in metrics.splitlines() if ln.startswith("thrifty_tokens_estimated_total{")]
    assert any('model="thrifty/default"' in ln and 'direction="output"' in ln and float(ln.split()[-1]) > 0 for ln in estimated)
    assert not any('model="counted"' in ln for ln in estimated)


def test_anthropic_cache_reads_and_writes_are_priced_as_such() -> None:
    from thrifty.serving.providers.anthropic import AnthropicProvider

    with AnthropicStandIn(api_key="sk-standin") as standin:
        standin.cache_usage = (1000, 200)  # read from the prompt cache, written to it
        # genai-prices knows claude-3-5-haiku: $0.80 in, $4 out, cache read $0.08, cache write $1 per 1M tokens
        provider = AnthropicProvider("claude", "claude-3-5-haiku-latest", api_key="sk-standin", base_url=standin.base_url, timeout_s=10)
        c = asyncio.run(provider.complete(ChatRequest.from_prompt("Name a colour", max_tokens=16)))
        configured = AnthropicProvider(
            "claude", "claude-3-5-haiku-latest", api_key="sk-standin", base_url=standin.base_url, timeout_s=10, price_in=2.0, price_out=10.0
        )
        c2 = asyncio.run(configured.complete(ChatRequest.from_prompt("Name a colour", max_tokens=16)))
    fresh = c.usage.input_tokens - 1200
    assert (c.usage.cache_read_tokens, c.usage.cache_write_tokens) == (1000, 200) and fresh == 3
    assert provider.cache_prices == pytest.approx((0.08, 1.0))
    assert c.cost_usd == pytest.approx((fresh * 0.8 + 1000 * 0.08 + 200 * 1.0 + c.usage.output_tokens * 4.0) / 1e6)
    # configured prices: Anthropic's multipliers of the configured input price (0.1× read, 1.25× write)
    assert c2.cost_usd == pytest.approx((fresh * 2.0 + 1000 * 0.2 + 200 * 2.5 + c2.usage.output_tokens * 10.0) / 1e6)


async def _oversize_server() -> tuple[asyncio.AbstractServer, int]:
    big = json.dumps({"text": "x" * 5000}).encode()

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(n)
                mode = head.split(b" ")[1].decode().rsplit("/", 1)[1]
                if mode == "length":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big) + big)
                elif mode == "chunked":
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    for i in range(0, len(big), 700):
                        writer.write(b"%x\r\n%s\r\n" % (len(big[i : i + 700]), big[i : i + 700]))
                    writer.write(b"0\r\n\r\n")
                elif mode == "bomb":  # 400 bytes on the wire, 5 MB once inflated
                    z = gzip.compress(b" " * 5_000_000)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(z) + z)
                elif mode == "close":
                    writer.write(b"HTTP/1.0 200 OK\r\n\r\n" + big)
                    await writer.drain()
                    break
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_http1_response_over_the_cap_is_a_clear_non_retryable_error() -> None:
    from thrifty.serving.providers.http1 import Http1Pool, ResponseTooLarge

    async def go() -> list[object]:
        server, port = await _oversize_server()
        pool = Http1Pool(f"http://127.0.0.1:{port}", {}, max_response_bytes=4096, name="local")
        out: list[object] = []
        try:
            for mode in ("length", "chunked", "bomb", "close", "small"):
                try:
                    out.append((await pool.post_json(f"/{mode}", b"{}"))[0])
                except ProviderError as exc:
                    out.append(exc)
        finally:
            await pool.aclose()
            server.close()
        return out

    *too_big, small = asyncio.run(go())
    assert small == 200  # a fresh connection after the refused ones still works
    for err in too_big:
        assert isinstance(err, ResponseTooLarge), err
        assert err.status == 502 and not err.retryable and err.provider == "local"
        assert "max_response_bytes = 4096" in str(err)


def test_max_response_bytes_is_a_provider_option(tmp_path: Path) -> None:
    with FaultUpstream() as up:  # its answer is ~250 bytes
        cfg = (
            f'[providers.a]\nkind = "openai"\nbase_url = "{up.base_url("normal")}"\nprices = {{ input = 1, output = 1 }}\n'
            'options = { max_response_bytes = 200 }\n\n[profiles.default]\ntiers = ["a"]\n'
        )
        with GatewayProcess(cfg, tmp_path / "gw") as gw:
            r = httpx.post(
                gw.base_url + "/v1/chat/completions",
                timeout=10,
                json={"model": "thrifty/default", "messages": [{"role": "user", "content": "hi"}]},
            )
    assert r.status_code == 502 and "max_response_bytes = 200" in r.json()["error"]["message"]
