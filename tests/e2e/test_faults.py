"""Every upstream fault, through the real gateway (uvicorn subprocess) with the official ``openai`` client.

Setup: a fault-injecting upstream (``fault_upstream.py``) serves each fault on its own path; a second,
healthy upstream answers normally. For every fault mode the gateway has

- ``p_<mode>``: a two-tier profile ``[f_<mode>, healthy]`` (threshold 0: any answer of tier 0 would do);
- ``s_<mode>``: a pass-through provider that only has the faulty upstream.

Properties checked: with a healthy next tier the client gets a 200 from it (the faulty tier was
retried when the fault is retryable, within the deadline); with no healthy tier the client gets an
OpenAI-style error — 502 (504 for time-outs, 429 for upstream rate limits) naming what happened —
never a raw 500, never a hang (the client's own timeout would fire); every outcome is a log row.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import openai
import pytest
from fault_upstream import FaultUpstream
from gateway_proc import GatewayProcess, read_db, toml_provider

pytestmark = pytest.mark.slow  # ~30 s: every fault is retried to exhaustion, hangs wait out their time-outs

DEADLINE_S = 4.0  # server.request_timeout_s: the whole request, every tier and retry included
CALL_TIMEOUT_S = 0.5  # providers.*.timeout_s: one upstream call
CLIENT_TIMEOUT_S = DEADLINE_S + 6.0  # the client gives up well after the gateway must have answered

# mode → (expected calls to the faulty upstream when retried to exhaustion, status without a fallback, words in the error)
FAULTS: dict[str, tuple[int | None, int, tuple[str, ...]]] = {
    "500": (3, 502, ("500",)),
    "502": (3, 502, ("502",)),
    "503": (3, 502, ("503",)),
    "429-ra1": (None, 429, ("rate limit",)),
    "malformed": (None, 502, ("json", "answer")),
    "nochoices": (None, 502, ("choices",)),
    "truncated": (3, 502, ("connection",)),
    "reset": (3, 502, ("connection",)),
    "hang": (None, 504, ("timed out",)),
    "drip": (None, 504, ("timed out", "deadline")),
}
MODES = list(FAULTS)


def _name(mode: str) -> str:
    return mode.replace("-", "_")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, FaultUpstream, FaultUpstream]]:
    faulty = FaultUpstream(label="faulty", hang_s=30, drip_interval=0.2).start()
    healthy = FaultUpstream(label="healthy").start()
    cfg = f'[server]\nrequest_timeout_s = {DEADLINE_S}\ndata_dir = "{{data}}"\n\n'
    cfg += toml_provider("healthy", healthy.base_url("normal"), timeout_s=CALL_TIMEOUT_S)
    for mode in MODES:
        n = _name(mode)
        cfg += toml_provider(f"f_{n}", faulty.base_url(f"{mode}~cascade"), timeout_s=CALL_TIMEOUT_S)
        cfg += toml_provider(f"s_{n}", faulty.base_url(f"{mode}~solo"), timeout_s=CALL_TIMEOUT_S)
        cfg += f'[profiles.p_{n}]\ntiers = ["f_{n}", "healthy"]\nthresholds = [0.0]\n\n'
    data = tmp_path_factory.mktemp("faults")
    gw = GatewayProcess(cfg.replace("{data}", str(data)), data).start()
    try:
        yield gw, faulty, healthy
    finally:
        gw.stop()
        faulty.stop()
        healthy.stop()


def _client(gw: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key="unused", max_retries=0, timeout=CLIENT_TIMEOUT_S)


def _row(gw: GatewayProcess, rid: str) -> dict:
    cols = ["status", "final_model", "tiers_tried", "error", "answer", "cost_usd"]
    rows = read_db(gw.db_path, f"SELECT {', '.join(cols)} FROM requests WHERE id = ?", (rid,))
    assert rows, f"request {rid} is not in the log"
    row = dict(zip(cols, rows[0]))
    row["steps"] = read_db(gw.db_path, "SELECT tier, model, decision, error FROM steps WHERE request_id = ? ORDER BY idx", (rid,))
    return row


MSG = [{"role": "user", "content": "Name a primary colour and say why it is primary."}]


@pytest.mark.parametrize("mode", MODES)
def test_fault_falls_to_next_tier(env, mode: str) -> None:
    gw, faulty, healthy = env
    expected_calls = FAULTS[mode][0]
    before = healthy.calls["normal"]
    t0 = time.monotonic()
    raw = _client(gw).chat.completions.with_raw_response.create(model=f"thrifty/p_{_name(mode)}", messages=MSG)
    elapsed = time.monotonic() - t0
    completion = raw.parse()
    assert raw.http_response.status_code == 200
    assert completion.choices[0].message.content == "answer from healthy"
    assert raw.headers["x-thrifty-model"] == "healthy"
    assert raw.headers["x-thrifty-tiers"] == f"f_{_name(mode)},healthy"
    assert elapsed < DEADLINE_S + 1.0, f"took {elapsed:.1f}s, deadline is {DEADLINE_S}s"
    calls = faulty.calls[f"{mode}~cascade"]
    if expected_calls is not None:
        assert calls == expected_calls, f"faulty tier called {calls} times"  # retried: the fault is transient-looking
    else:
        assert calls >= 1
    assert healthy.calls["normal"] == before + 1
    row = _row(gw, raw.headers["x-thrifty-request-id"])
    assert row["status"] == 200 and row["final_model"] == "healthy"
    assert json.loads(row["tiers_tried"]) == [f"f_{_name(mode)}", "healthy"]
    assert [(s[0], s[2]) for s in row["steps"]] == [(0, "failed"), (1, "accepted")]
    assert row["steps"][0][3], "the failed step records its error"


@pytest.mark.parametrize("mode", MODES)
def test_fault_without_fallback_is_an_openai_error(env, mode: str) -> None:
    gw, faulty, _ = env
    _, status, words = FAULTS[mode]
    t0 = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        _client(gw).chat.completions.create(model=f"s_{_name(mode)}", messages=MSG)
    elapsed = time.monotonic() - t0
    err = info.value
    assert err.status_code == status, f"{mode}: got {err.status_code}: {err.response.text}"
    body = err.response.json()
    assert set(body) == {"error"} and {"message", "type", "code"} <= set(body["error"])
    message = body["error"]["message"].lower()
    assert any(w in message for w in words), f"{mode}: the error does not say what happened: {message}"
    assert "traceback" not in err.response.text.lower()
    assert elapsed < DEADLINE_S + 1.0, f"took {elapsed:.1f}s, deadline is {DEADLINE_S}s"
    assert faulty.calls[f"{mode}~solo"] >= 1
    row = _row(gw, err.response.headers["x-thrifty-request-id"])
    assert row["status"] == status and row["final_model"] is None and row["error"]
    assert row["steps"] and row["steps"][0][2] == "failed"


def test_flaky_upstream_recovers_by_retry(tmp_path: Path) -> None:
    """Two 503s then a good answer: the gateway's retries hide the blip (same tier answers)."""
    with FaultUpstream() as up:
        cfg = toml_provider("flaky", up.base_url("flaky2-503"), timeout_s=CALL_TIMEOUT_S)
        cfg += '[profiles.default]\ntiers = ["flaky"]\n'  # (without a profile the embedded local default is built)
        with GatewayProcess(f'[server]\nrequest_timeout_s = {DEADLINE_S}\ndata_dir = "{tmp_path}"\n\n' + cfg, tmp_path) as gw:
            raw = _client(gw).chat.completions.with_raw_response.create(model="flaky", messages=MSG)
            assert raw.http_response.status_code == 200
            assert up.calls["flaky2-503"] == 3
            assert _row(gw, raw.headers["x-thrifty-request-id"])["status"] == 200


def test_stream_falls_to_next_tier(env) -> None:
    gw, _, _ = env
    with _client(gw).chat.completions.with_streaming_response.create(model="thrifty/p_503", messages=MSG, stream=True) as resp:
        assert resp.http_response.status_code == 200
        text = "".join((c.choices[0].delta.content or "") for c in resp.parse() if c.choices)
        rid = resp.headers["x-thrifty-request-id"]
    assert text.strip() == "answer from healthy"
    row = _row(gw, rid)
    assert row["status"] == 200 and row["final_model"] == "healthy"


def test_stream_dies_midway_client_sees_error_and_log_has_partial(env) -> None:
    """The last tier streams live; it dies after sending text: the client gets an error event, not [DONE]."""
    gw, _, _ = env
    got: list[str] = []
    with _client(gw).chat.completions.with_streaming_response.create(model="s_truncated", messages=MSG, stream=True) as resp:
        assert resp.http_response.status_code == 200  # headers went out with the first token
        rid = resp.headers["x-thrifty-request-id"]
        with pytest.raises(openai.APIError) as info:
            for chunk in resp.parse():
                if chunk.choices:
                    got.append(chunk.choices[0].delta.content or "")
    assert "mid-stream" in str(info.value).lower()
    assert "".join(got).strip() == "partial"
    row = _row(gw, rid)
    assert row["status"] == 502 and row["answer"].strip() == "partial"


@pytest.mark.parametrize("mode,status", [("503", 502), ("hang", 504), ("reset", 502), ("429-ra1", 429)])
def test_stream_without_fallback_before_first_token_is_a_clean_error(env, mode: str, status: int) -> None:
    gw, _, _ = env
    t0 = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        for _ in _client(gw).chat.completions.create(model=f"s_{_name(mode)}", messages=MSG, stream=True):
            pass
    assert time.monotonic() - t0 < DEADLINE_S + 1.0
    assert info.value.status_code == status
    assert info.value.response.json()["error"]["message"]
    assert _row(gw, info.value.response.headers["x-thrifty-request-id"])["status"] == status


def test_gateway_still_healthy_after_faults(env) -> None:
    gw, _, _ = env
    out = _client(gw).chat.completions.create(model="healthy", messages=MSG)
    assert out.choices[0].message.content == "answer from healthy"
    # no internal error ever reached a client, and the server logged no traceback
    assert read_db(gw.db_path, "SELECT COUNT(*) FROM requests WHERE status = 500")[0][0] == 0
    assert "Traceback" not in gw.output()
