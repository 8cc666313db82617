"""End to end: `thrifty serve` (a real uvicorn process) in front of real GGUF models, called with the
official ``openai`` client over a loopback socket.

Services started here (nothing is mocked):
- a ``python -m llama_cpp.server`` process serving SmolLM2 on a free loopback port (the target of the
  pass-through provider ``remote``);
- ``thrifty serve --config <tmp>/thrifty.toml`` on another free port, with in-process GGUF tiers
  ``small`` (SmolLM2-135M-Instruct, chat) and ``big`` (Gemma-3-270M base, transcript completion).
Generations are at most 16 tokens; llama.cpp runs one thread per model.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("llama_cpp", reason="needs llama-cpp-python: pip install 'thrifty[local]'")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from thrifty.config.settings import hash_key  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ALICE, POOR = "sk-e2e-alice-0123456789", "sk-e2e-poor-9876543210"
MAX_BODY = 20_000
Q = [{"role": "user", "content": "What is the capital of France?"}]


def _weights_or_skip() -> Path:
    from thrifty.errors import ConfigError
    from thrifty.serving.local import gemma3_path, smollm2_path

    try:
        gemma3_path()
        return smollm2_path()
    except ConfigError as exc:
        pytest.skip(f"local GGUF weights unavailable: {exc}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    smol = _weights_or_skip()
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(smol),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_threads",
            "1",
            "--n_threads_batch",
            "1",
            "--n_ctx",
            "1024",
            "--model_alias",
            "smollm2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, llama_server: str) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("gateway")
    port = free_port()
    cfg = tmp / "thrifty.toml"
    cfg.write_text(
        f"""
[server]
port = {port}
max_body_bytes = {MAX_BODY}

[providers.small]
kind = "llamacpp"
model_path = "builtin:smollm2"
mode = "chat"
max_tokens = 16

[providers.big]
kind = "llamacpp"
model_path = "builtin:gemma3"
mode = "completion"
max_tokens = 16

[providers.remote]
kind = "openai"
base_url = "{llama_server}"
model = "smollm2"
prices = {{ input = 0.0, output = 0.0 }}
max_tokens = 16

[providers.pricey]
kind = "llamacpp"
model_path = "builtin:smollm2"
prices = {{ input = 1000.0, output = 1000.0 }}
max_tokens = 16

[profiles.default]
tiers = ["small", "big"]
thresholds = [0.75]
scorer = "heuristic"

[profiles.force]
tiers = ["small", "big"]
thresholds = [1.5]   # scores are in [0, 1]: tier 0 is never accepted, every request escalates

[keys.alice]
sha256 = "{hash_key(ALICE)}"

[keys.poor]
sha256 = "{hash_key(POOR)}"
limit_usd = 0.001
""",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("THRIFTY_CONFIG", None)
    log = (tmp / "serve.log").open("w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from thrifty.cli.main import entry; entry()",
            "serve",
            "--config",
            str(cfg),
            "--data-dir",
            str(tmp / "data"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", proc)
        yield {"base": base, "db": tmp / "data" / "logs.sqlite3", "log": tmp / "serve.log", "cold_start_s": time.perf_counter() - t0}
    finally:
        stop(proc)
        log.close()


def client(gw: dict, key: str = ALICE) -> "openai.OpenAI":
    return openai.OpenAI(base_url=gw["base"] + "/v1", api_key=key, max_retries=0, timeout=120)


def rows(gw: dict, sql: str, *params: object) -> list[tuple]:
    conn = sqlite3.connect(gw["db"])
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def n_logged(gw: dict) -> int:
    return rows(gw, "SELECT COUNT(*) FROM requests")[0][0]


def test_plain_answer_with_headers_and_log_row(gateway: dict) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(model="thrifty/default", messages=Q, max_tokens=16)
    r = raw.parse()
    h = raw.headers
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content and r.usage.completion_tokens <= 16
    assert h["x-thrifty-model"] in ("small", "big") and h["x-thrifty-model"] == r.model
    tiers = h["x-thrifty-tiers"].split(",")
    assert tiers[0] == "small" and tiers[-1] == h["x-thrifty-model"]
    assert float(h["x-thrifty-cost-usd"]) == 0.0  # local tiers are priced at 0
    rid = h["x-thrifty-request-id"]
    ((final, tried, status, key, answer),) = rows(
        gateway, "SELECT final_model, tiers_tried, status, key_name, answer FROM requests WHERE id = ?", rid
    )
    assert final == h["x-thrifty-model"] and json.loads(tried) == tiers and status == 200
    assert key == "alice" and answer == r.choices[0].message.content
    steps = rows(gateway, "SELECT model, decision, score FROM steps WHERE request_id = ? ORDER BY idx", rid)
    assert [s[0] for s in steps] == tiers and steps[-1][1] == "accepted"
    assert steps[0][2] is not None  # tier 0 was scored


def test_streamed_answer_is_one_coherent_stream(gateway: dict) -> None:
    with client(gateway).chat.completions.with_streaming_response.create(
        model="thrifty/default", messages=Q, max_tokens=16, stream=True, stream_options={"include_usage": True}
    ) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        rid = resp.headers["x-thrifty-request-id"]
        answered = resp.headers["x-thrifty-model"]
        chunks = list(resp.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text and finishes == [finishes[-1]] and finishes[-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 16
    assert all(c.id == chunks[0].id for c in chunks)
    ((final, answer, stream),) = rows(gateway, "SELECT final_model, answer, stream FROM requests WHERE id = ?", rid)
    assert final == answered and answer == text and stream == 1


def test_threshold_forces_escalation_to_both_tiers(gateway: dict) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(model="thrifty/force", messages=Q, max_tokens=16)
    assert raw.headers["x-thrifty-tiers"] == "small,big"
    assert raw.headers["x-thrifty-model"] == "big" and raw.parse().model == "big"
    rid = raw.headers["x-thrifty-request-id"]
    steps = rows(gateway, "SELECT model, decision, threshold, answer FROM steps WHERE request_id = ? ORDER BY idx", rid)
    assert [(s[0], s[1]) for s in steps] == [("small", "escalated"), ("big", "accepted")]
    assert steps[0][2] == 1.5 and steps[0][3]  # the rejected answer is kept in the log
    # the streamed variant escalates the same way and says so at stream start
    with client(gateway).chat.completions.with_streaming_response.create(
        model="thrifty/force", messages=Q, max_tokens=8, stream=True
    ) as resp:
        assert resp.headers["x-thrifty-tiers"] == "small,big" and resp.headers["x-thrifty-model"] == "big"
        assert any(c.choices and c.choices[0].delta.content for c in resp.parse())


def test_plain_model_name_passes_through_to_that_provider(gateway: dict) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(model="remote", messages=Q, max_tokens=16)
    assert raw.headers["x-thrifty-model"] == "remote" and raw.headers["x-thrifty-tiers"] == "remote"
    assert raw.parse().choices[0].message.content
    ((profile, final),) = rows(gateway, "SELECT profile, final_model FROM requests WHERE id = ?", raw.headers["x-thrifty-request-id"])
    assert profile is None and final == "remote"
    listed = {m.id for m in client(gateway).models.list()}
    assert {"thrifty/default", "thrifty/force", "small", "big", "remote"} <= listed


def test_budget_refuses_with_429_and_logs_nothing(gateway: dict) -> None:
    before = n_logged(gateway)
    with pytest.raises(openai.RateLimitError) as info:
        client(gateway, POOR).chat.completions.create(model="pricey", messages=Q, max_tokens=16)
    assert info.value.status_code == 429
    assert info.value.body["code"] == "budget_exceeded" and info.value.body["type"] == "insufficient_quota"
    assert n_logged(gateway) == before


def test_unknown_key_is_401(gateway: dict) -> None:
    before = n_logged(gateway)
    with pytest.raises(openai.AuthenticationError) as info:
        client(gateway, "sk-not-a-key").chat.completions.create(model="thrifty/default", messages=Q, max_tokens=4)
    assert info.value.status_code == 401 and info.value.body["type"] == "authentication_error"
    assert n_logged(gateway) == before
    text = gateway["log"].read_text() + gateway["db"].read_bytes().decode("latin-1")
    assert ALICE not in text and "sk-not-a-key" not in text  # keys never reach the log or the DB


@pytest.mark.parametrize(
    "body, status, param",
    [
        (b'{"model": "thrifty/default", "messages": [', 400, None),
        (json.dumps({"model": "no-such-model", "messages": Q}).encode(), 404, "model"),
        (json.dumps({"model": "thrifty/default", "messages": []}).encode(), 400, "messages"),
        (json.dumps({"model": "thrifty/default"}).encode(), 400, "messages"),
        (json.dumps({"model": "thrifty/default", "messages": Q, "max_tokens": "16"}).encode(), 400, "max_tokens"),
        (json.dumps({"model": "thrifty/default", "messages": [{"role": "user", "content": 5}]}).encode(), 400, "messages[0].content"),
        (json.dumps({"model": "thrifty/default", "messages": [{"role": "user", "content": "x" * (MAX_BODY + 10)}]}).encode(), 413, None),
        (json.dumps(["not", "an", "object"]).encode(), 400, None),
    ],
)
def test_bad_input_is_4xx_openai_error_json_and_not_logged(gateway: dict, body: bytes, status: int, param: str | None) -> None:
    before = n_logged(gateway)
    r = httpx.post(
        gateway["base"] + "/v1/chat/completions",
        content=body,
        headers={"authorization": f"Bearer {ALICE}", "content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == status
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    if param:
        assert (err["param"] or "").startswith(param)
    assert "Traceback" not in r.text
    assert n_logged(gateway) == before


def test_metrics_count_requests_and_escalations(gateway: dict) -> None:
    client(gateway).chat.completions.create(model="thrifty/force", messages=Q, max_tokens=4)
    text = httpx.get(gateway["base"] + "/metrics", timeout=10).text
    assert 'thrifty_requests_total{model="thrifty/force",status="200"}' in text
    esc = [ln for ln in text.splitlines() if ln.startswith('thrifty_escalations_total{model="thrifty/force"}')]
    assert esc and float(esc[0].split()[-1]) >= 1
    assert "thrifty_request_latency_seconds_bucket" in text and "thrifty_cost_saved_usd" in text


def test_logs_cli_shows_and_exports(gateway: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from thrifty.cli.main import main
    from thrifty.data.table_io import load_table

    db = str(gateway["db"])
    assert main(["logs", "--db", db, "list", "--json"]) == 0
    ((rid,),) = rows(gateway, "SELECT id FROM requests WHERE model_requested = 'remote' AND status = 200 LIMIT 1")
    assert main(["logs", "--db", db, "show", rid]) == 0
    capsys.readouterr()
    assert main(["logs", "--db", db, "label", rid, "0.25"]) == 0  # the pass-through answer: unscored, now labelled
    assert f"labelled request {rid!r}: quality 0.25" in capsys.readouterr().err
    assert main(["logs", "--db", db, "label", "req_missing", "1"]) != 0
    out = tmp_path / "table"
    assert main(["logs", "--db", db, "export", "--out", str(out)]) == 0
    table = load_table(out)
    assert {"small", "remote"} <= set(table.models) and table.n_prompts >= 2
    assert table.quality[table.prompt_ids.index(rid), table.models.index("remote")] == 0.25
