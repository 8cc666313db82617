"""/metrics with several worker processes: every scrape reports the sum over all workers.

``thrifty serve --workers 2`` (the user's command) in front of an instant upstream; 60 requests
spread over both workers by the shared socket; then /metrics is scraped on fresh connections
(which worker answers is up to the kernel): each scrape must count all 60, not one worker's share.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import openai
import pytest
from fault_upstream import FaultUpstream
from gateway_proc import GatewayProcess, toml_provider

pytestmark = pytest.mark.slow

N = 60


async def _burst(base_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=30)
    try:
        await asyncio.gather(
            *(client.chat.completions.create(model="fast", messages=[{"role": "user", "content": f"hi {i}"}]) for i in range(N))
        )
    finally:
        await client.close()


def _requests_total(text: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(r'^thrifty_requests_total\{[^}]*model="fast"[^}]*\} (\S+)$', text, re.M))


def test_every_scrape_sums_all_workers(tmp_path: Path) -> None:
    with FaultUpstream() as up:
        cfg = toml_provider("fast", up.base_url("normal"), price_in=1.0, price_out=2.0, timeout_s=10, max_tokens=16)
        with GatewayProcess(cfg, tmp_path, workers=2, cli=True) as gw:
            asyncio.run(_burst(gw.base_url))
            totals = []
            for _ in range(12):
                with httpx.Client(timeout=10) as fresh:  # a new connection each time: any worker may answer
                    r = fresh.get(gw.base_url + "/metrics")
                assert r.status_code == 200
                totals.append(_requests_total(r.text))
                assert "thrifty_cost_usd_total" in r.text
    assert totals == [float(N)] * len(totals), totals
