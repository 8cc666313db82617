"""Budget race: 200 concurrent requests under one key never overspend its limit.

The gateway runs with two uvicorn worker *processes* sharing one SQLite log, so the check-and-hold
must be atomic across processes, not just across coroutines. The upstream answers instantly with
fixed usage (10 prompt + 5 completion tokens). Invariant, read from the log DB after the storm:

    total spend of the key  ≤  B + the largest single request's maximum cost

and the ledger agrees with the request rows; refused requests are 429 ``insufficient_quota`` JSON.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest
from fault_upstream import FaultUpstream
from gateway_proc import GatewayProcess, read_db, toml_provider

from thrifty.config.settings import hash_key
from thrifty.serving.budget import TierPrice, max_cost_usd
from thrifty.types import ChatRequest

pytestmark = pytest.mark.slow

KEY = "sk-race-test-key-0123456789abcdef"
BUDGET = 0.5
PRICE_IN, PRICE_OUT, MAX_TOKENS = 1000.0, 2000.0, 16  # USD per 1M tokens; dear, so the budget binds fast
N = 200
MSG = [{"role": "user", "content": "Say OK."}]


async def _storm(base_url: str) -> list[tuple[int, dict | None]]:
    client = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=KEY, max_retries=0, timeout=60)

    async def one() -> tuple[int, dict | None]:
        try:
            await client.chat.completions.create(model="fast", messages=MSG)
            return 200, None
        except openai.APIStatusError as exc:
            return exc.status_code, exc.response.json()

    try:
        return await asyncio.gather(*(one() for _ in range(N)))
    finally:
        await client.close()


def test_concurrent_requests_never_overspend(tmp_path: Path) -> None:
    with FaultUpstream() as up:
        cfg = (
            f'[server]\ndata_dir = "{tmp_path}"\nrequest_timeout_s = 30\n\n'
            + toml_provider("fast", up.base_url("normal"), price_in=PRICE_IN, price_out=PRICE_OUT, timeout_s=10, max_tokens=MAX_TOKENS)
            + '[profiles.default]\ntiers = ["fast"]\n\n'
            + f'[keys.racer]\nsha256 = "{hash_key(KEY)}"\nlimit_usd = {BUDGET}\n'
        )
        with GatewayProcess(cfg, tmp_path, workers=2) as gw:
            results = asyncio.run(_storm(gw.base_url))
            upstream_calls = up.calls["normal"]
            # then one at a time until refused: the holds were released, so the rest of the budget is usable
            client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=KEY, max_retries=0, timeout=30)
            after = 0
            for _ in range(60):
                try:
                    client.chat.completions.create(model="fast", messages=MSG)
                    after += 1
                except openai.RateLimitError:
                    break
            else:
                pytest.fail("the budget never ran out")

    statuses = [s for s, _ in results]
    ok = statuses.count(200)
    refused = [body for s, body in results if s == 429]
    assert set(statuses) <= {200, 429}, f"unexpected statuses: {sorted(set(statuses))}"
    assert ok >= 1 and refused, f"the storm should both succeed and hit the limit: {ok} ok, {len(refused)} refused"
    assert all(b["error"]["type"] == "insufficient_quota" for b in refused)
    assert upstream_calls == ok, "a refused request must not reach the upstream"
    ok += after

    spent_rows = read_db(gw.db_path, "SELECT COALESCE(SUM(cost_usd), 0), COUNT(*) FROM requests WHERE key_name = 'racer'")
    total, logged = float(spent_rows[0][0]), int(spent_rows[0][1])
    ledger = read_db(gw.db_path, "SELECT spent_usd FROM spend WHERE scope = 'key' AND name = 'racer'")
    worst_single = max_cost_usd(
        ChatRequest(messages=tuple(MSG), model="fast", params={"max_tokens": MAX_TOKENS}), [TierPrice(PRICE_IN, PRICE_OUT, MAX_TOKENS)]
    )
    assert logged == ok, "every answered request is logged, refused ones are not"
    assert total <= BUDGET + worst_single + 1e-9, f"overspent: {total} > {BUDGET} + {worst_single}"
    assert ledger and abs(float(ledger[0][0]) - total) < 1e-9, "ledger and request rows disagree"
    # no hold is left behind once every request has finished
    assert read_db(gw.db_path, "SELECT COUNT(*) FROM reservations")[0][0] == 0
    # and the budget was really usable up to its limit (one call costs 0.02 USD; the last refusal
    # came when spent + the next request's worst case exceeded B)
    assert total >= BUDGET - worst_single - 1e-9
