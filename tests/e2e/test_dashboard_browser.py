"""The dashboard in a real headless Chromium (Debian's, driven by Playwright through its executable path).

``thrifty serve`` runs on loopback with keys, an admin key and three profiles over a real fault-injecting
upstream; the official ``openai`` client sends accepted, escalated, cached, streamed, failed and
died-mid-stream requests. Every page is opened; the figures on screen must equal a recount from the
SQLite log, the escalated request's node graph must have exactly the expected nodes and edges, and no
page may log a console error. Screenshots go to the test's tmp folder (``screens/``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_upstream import FaultUpstream
from gateway_proc import GatewayProcess, toml_provider

from thrifty.ui.rollup import latency_bucket_ms

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN, ALICE, BOB, CAROL = "admin-secret-1", "sk-alice-1", "sk-bob-1", "sk-carol-1"
PRICES = {"cheap": (0.1, 0.2), "dear": (5.0, 15.0), "down": (1.0, 2.0), "trunc": (1.0, 2.0)}


def _sha(k: str) -> str:
    import hashlib

    return hashlib.sha256(k.encode()).hexdigest()


def _config(up: FaultUpstream) -> str:
    modes = {"cheap": "normal", "dear": "normal", "down": "503", "trunc": "truncated"}
    cfg = "".join(toml_provider(n, up.base_url(modes[n]), price_in=PRICES[n][0], price_out=PRICES[n][1]) for n in modes)
    cfg += '[profiles.fast]\ntiers = ["cheap", "dear"]\nthresholds = [0.0]\nbudget_usd = 5.0\nbudget_period = "day"\n'
    cfg += '[profiles.fast.cache]\nmode = "exact"\n\n'
    cfg += '[profiles.careful]\ntiers = ["cheap", "dear"]\nthresholds = [1.5]\n\n'  # above any score: always escalates
    cfg += '[profiles.broken]\ntiers = ["down"]\n\n[profiles.dies]\ntiers = ["trunc"]\n\n'
    cfg += f'[keys.alice]\nsha256 = "{_sha(ALICE)}"\nlimit_usd = 2.0\nlimit_period = "month"\n\n[keys.bob]\nsha256 = "{_sha(BOB)}"\n\n'
    cfg += f'[keys.carol]\nsha256 = "{_sha(CAROL)}"\nlimit_usd = 0.0000001\n\n'  # any request is over this budget
    return cfg


def _rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _usd(v: float) -> str:
    text = f"${abs(v):.2f}" if abs(v) >= 1 else f"${abs(v):.6f}"
    return "-" + text if v < 0 and text.strip("$0.") else text


def _send_traffic(gw: GatewayProcess) -> dict[str, str]:
    """The request mix; returns the request id of each kind."""
    from openai import APIError, OpenAI

    alice = OpenAI(base_url=gw.base_url + "/v1", api_key=ALICE, max_retries=0, timeout=30)
    bob = OpenAI(base_url=gw.base_url + "/v1", api_key=BOB, max_retries=0, timeout=30)
    ids: dict[str, str] = {}
    msg = [{"role": "user", "content": "Name a prime number."}]
    for kind in ("accepted", "cached"):
        raw = alice.chat.completions.with_raw_response.create(model="thrifty/fast", messages=msg, temperature=0)
        ids[kind] = raw.headers["x-thrifty-request-id"]
    assert raw.headers["x-thrifty-cache"] == "hit"
    raw = alice.chat.completions.with_raw_response.create(
        model="thrifty/careful", messages=[{"role": "user", "content": "Why is the sky blue?"}]
    )
    ids["escalated"] = raw.headers["x-thrifty-request-id"]
    assert raw.headers["x-thrifty-tiers"].count(",") == 1
    bob.chat.completions.create(model="thrifty/careful", messages=[{"role": "user", "content": "bob asks about tides"}])
    with alice.chat.completions.with_streaming_response.create(
        model="thrifty/fast", messages=[{"role": "user", "content": "stream me"}], stream=True
    ) as resp:
        ids["streamed"] = resp.headers["x-thrifty-request-id"]
        "".join((c.choices[0].delta.content or "") for c in resp.parse() if c.choices)
    with pytest.raises(APIError):
        bob.chat.completions.create(model="thrifty/broken", messages=[{"role": "user", "content": "this one fails"}])
    try:
        with alice.chat.completions.with_streaming_response.create(
            model="thrifty/dies", messages=[{"role": "user", "content": "die midway"}], stream=True
        ) as resp:
            ids["died"] = resp.headers["x-thrifty-request-id"]
            for _ in resp.parse():
                pass
    except APIError:
        pass
    ids["failed"] = _rows(gw.db_path, "SELECT id FROM requests WHERE profile = 'broken'")[0]["id"]
    refused = httpx.post(
        gw.base_url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {CAROL}"},
        json={"model": "thrifty/fast", "messages": [{"role": "user", "content": "over budget"}]},
    )
    assert refused.status_code == 429  # refused before any model ran: not logged
    return ids


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium is not installed (apt-get install -y chromium): the dashboard's browser tests need it")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (drives the system Chromium; no browser download)")
    pytest.importorskip("openai")
    tmp = tmp_path_factory.mktemp("dash")
    lab = tmp / "lab" / "eval-1"
    lab.mkdir(parents=True)
    (lab / "metrics.json").write_text(
        json.dumps(
            {
                "curve": [{"cost": c, "quality": q} for c, q in ((0.1, 0.5), (0.4, 0.7), (1.0, 0.8))],
                "baselines": {
                    "hull": [{"model": "a", "cost": 0.1, "quality": 0.5}, {"model": "b", "cost": 1.2, "quality": 0.78}],
                    "oracle": [{"cost": 0.1, "quality": 0.6}, {"cost": 0.5, "quality": 0.9}],
                },
            }
        )
    )
    with FaultUpstream() as up:
        cfg = f'[server]\ndata_dir = "{tmp}"\nadmin_sha256 = "{_sha(ADMIN)}"\n\n' + _config(up)
        with GatewayProcess(cfg, tmp, cli=True) as gw:
            ids = _send_traffic(gw)
            yield gw, ids, tmp


@pytest.fixture(scope="module")
def browser(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)  # Playwright gives it a fresh profile folder
        ctx = b.new_context(http_credentials={"username": "admin", "password": ADMIN}, viewport={"width": 1360, "height": 900})
        yield ctx
        ctx.close()
        b.close()


class Page:
    """One page load with its console errors collected."""

    def __init__(self, ctx: Any, url: str, shots: Path, name: str) -> None:
        self.page, self.errors = ctx.new_page(), []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        resp = self.page.goto(url, wait_until="networkidle")
        assert resp is not None and resp.status == 200, f"{url}: {resp.status if resp else 'no response'}"
        self.shots, self.name = shots, name

    def text(self, selector: str) -> str:
        return self.page.locator(selector).first.inner_text().strip()

    def done(self) -> None:
        self.shots.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(self.shots / f"{self.name}.png"), full_page=True)
        assert self.errors == [], f"console errors on {self.name}: {self.errors}"
        self.page.close()


def test_overview_figures_equal_a_recount(served, browser) -> None:
    gw, _, tmp = served
    p = Page(browser, gw.base_url + "/ui", tmp / "screens", "overview")
    rows = _rows(gw.db_path, "SELECT profile, status, cost_usd, input_tokens, output_tokens, cache, tiers_tried, latency_s FROM requests")
    ok = [r for r in rows if r["status"] < 400]
    assert p.text("#fig-requests") == str(len(rows)) == "7"
    assert p.text("#fig-errors") == str(len(rows) - len(ok)) == "2"
    assert p.text("#fig-spend") == _usd(sum(r["cost_usd"] for r in rows))
    dearest = {"fast": PRICES["dear"], "careful": PRICES["dear"], "broken": PRICES["down"], "dies": PRICES["trunc"]}
    saved = sum(
        ((r["input_tokens"] or 0) * dearest[r["profile"]][0] + (r["output_tokens"] or 0) * dearest[r["profile"]][1]) / 1e6 - r["cost_usd"]
        for r in ok
    )
    assert p.text("#fig-saved") == _usd(saved) and saved > 0
    assert p.text("#fig-escalated") == str(sum(1 for r in ok if r["tiers_tried"].count(",") >= 1)) == "2"
    hits = sum(1 for r in ok if r["cache"] in ("hit", "semantic"))
    lookups = sum(1 for r in ok if r["cache"] in ("hit", "semantic", "miss"))
    assert (p.text("#fig-cache-hits"), p.text("#fig-cache-lookups")) == (str(hits), str(lookups)) and hits == 1
    lat = sorted(latency_bucket_ms(r["latency_s"]) for r in ok)  # reported as the bound of its latency bucket
    assert p.text("#fig-p50") == f"≤ {lat[-(-len(lat) // 2) - 1]:.0f} ms"
    statuses = {str(r["status"]) for r in rows if r["status"] >= 400}
    assert {c.get_attribute("data-status") for c in p.page.locator("#errors-by-status td[data-status]").all()} == statuses
    assert "audits off" in p.text("#audit-panel")
    assert p.page.locator("#chart-requests canvas").count() == 1 and p.page.locator("#chart-spend canvas").count() == 1
    p.page.evaluate("window.thriftyRefresh()")  # the polled figures equal the server-rendered ones
    p.page.wait_for_function("document.getElementById('refreshed').textContent.startsWith('Updated')")
    assert p.text("#fig-requests") == str(len(rows)) and p.text("#fig-spend") == _usd(sum(r["cost_usd"] for r in rows))
    p.done()


def test_profiles_and_keys_pages(served, browser) -> None:
    gw, _, tmp = served
    p = Page(browser, gw.base_url + "/ui/profiles", tmp / "screens", "profiles")
    for name in ("fast", "careful", "broken", "dies"):
        n = _rows(gw.db_path, "SELECT COUNT(*) AS n FROM requests WHERE profile = ? AND status < 400", (name,))[0]["n"]
        assert p.text(f'tr[data-profile="{name}"] td[data-field="answered"]') == str(n)
    assert p.text('tr[data-profile="careful"] td[data-field="escalation"]') == "100.0%"
    spent = _rows(gw.db_path, "SELECT spent_usd FROM spend_period WHERE scope = 'profile' AND name = 'fast' AND period LIKE 'day:%'")[0][0]
    assert _usd(spent) in p.text('tr[data-profile="fast"]')
    p.done()
    p = Page(browser, gw.base_url + "/ui/profiles/careful", tmp / "screens", "profile_careful")
    assert p.page.locator("#chart-shares canvas").count() == 1
    assert "no refit history" in p.text("#refits-off")
    p.done()
    p = Page(browser, gw.base_url + "/ui/keys?range=24h", tmp / "screens", "keys")
    for key in ("alice", "bob"):
        r = _rows(
            gw.db_path,
            "SELECT COUNT(*) AS n, SUM(cost_usd) AS c, SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS e"
            " FROM requests WHERE key_name = ?",
            (key,),
        )[0]
        assert p.text(f'tr[data-key="{key}"] td[data-field="requests"]') == str(r["n"])
        assert p.text(f'tr[data-key="{key}"] td[data-field="errors"]') == str(r["e"])
        assert p.text(f'tr[data-key="{key}"] td[data-field="spend"]') == _usd(r["c"] or 0.0)
    assert "$2.00 per month" in p.text('tr[data-key="alice"]')
    assert p.text('tr[data-key="carol"] td[data-field="requests"]') == "0" and p.text("#refused") == "1"
    p.done()


def test_requests_list_filters(served, browser) -> None:
    gw, ids, tmp = served
    p = Page(browser, gw.base_url + "/ui/requests", tmp / "screens", "requests")
    listed = [r.get_attribute("data-id") for r in p.page.locator("#requests tbody tr[data-id]").all()]
    newest = [r["id"] for r in _rows(gw.db_path, "SELECT id FROM requests ORDER BY created DESC, id DESC")]
    assert listed == newest
    p.page.select_option("#f-profile", "careful")
    p.page.click("form.filters button[type=submit]")
    p.page.wait_for_load_state("networkidle")
    careful = {r["id"] for r in _rows(gw.db_path, "SELECT id FROM requests WHERE profile = 'careful'")}
    assert {r.get_attribute("data-id") for r in p.page.locator("#requests tbody tr[data-id]").all()} == careful
    p.page.goto(gw.base_url + "/ui/requests?q=TIDES&limit=25", wait_until="networkidle")
    assert [r.get_attribute("data-id") for r in p.page.locator("#requests tbody tr[data-id]").all()] == [
        r["id"] for r in _rows(gw.db_path, "SELECT id FROM requests WHERE prompt LIKE '%tides%'")
    ]
    p.page.goto(gw.base_url + "/ui/requests?limit=3", wait_until="networkidle")
    p.page.click("#next-page")
    p.page.wait_for_load_state("networkidle")
    assert [r.get_attribute("data-id") for r in p.page.locator("#requests tbody tr[data-id]").all()] == newest[3:6]
    p.done()


def _graph(page: Any) -> tuple[set[str], set[tuple[str, str]]]:
    nodes = set(page.evaluate("window.thriftyCy.nodes().map(n => n.id())"))
    edges = {tuple(e) for e in page.evaluate("window.thriftyCy.edges().map(e => [e.source().id(), e.target().id()])")}
    return nodes, edges


def test_request_graphs(served, browser) -> None:
    gw, ids, tmp = served
    p = Page(browser, gw.base_url + f"/ui/requests/{ids['escalated']}", tmp / "screens", "request_escalated")
    nodes, edges = _graph(p.page)
    assert nodes == {"request", "tier0", "tier1", "answer"}
    assert edges == {("request", "tier0"), ("tier0", "tier1"), ("tier1", "answer")}
    steps = _rows(gw.db_path, "SELECT idx, decision, answer FROM steps WHERE request_id = ? ORDER BY idx", (ids["escalated"],))
    assert [s["decision"] for s in steps] == ["escalated", "accepted"]
    p.page.click('button[data-node="tier0"]')  # keyboard-reachable list of the same nodes
    assert p.text("#node-text") == steps[0]["answer"]
    assert "escalated: score" in p.page.evaluate("window.thriftyCy.$id('tier0->tier1').data('label')")
    p.page.evaluate("window.thriftyCy.$id('request').emit('tap')")  # a click on the canvas node
    assert p.text("#node-text") == "Why is the sky blue?"
    p.page.reload(wait_until="networkidle")
    p.page.keyboard.press("Tab")  # keyboard: the skip link comes first, the node buttons answer Enter
    assert p.page.evaluate("document.activeElement.className") == "skip"
    p.page.focus('button[data-node="tier1"]')
    p.page.keyboard.press("Enter")
    assert p.text("#node-text") == steps[1]["answer"] and p.page.get_attribute('button[data-node="tier1"]', "aria-pressed") == "true"
    p.page.emulate_media(media="print")  # print: no navigation, every node's text in full
    assert not p.page.locator("header.top").is_visible() and p.page.locator(".printonly").is_visible()
    assert steps[0]["answer"] in p.text(".printonly")
    p.page.emulate_media(media="screen")
    p.done()
    p = Page(browser, gw.base_url + f"/ui/requests/{ids['cached']}", tmp / "screens", "request_cached")
    nodes, edges = _graph(p.page)
    assert (
        ("request", "cache") in edges
        and "answer" in nodes
        and p.page.evaluate("window.thriftyCy.$id('cache').data('label')") == "cache: hit"
    )
    p.done()
    p = Page(browser, gw.base_url + f"/ui/requests/{ids['died']}", tmp / "screens", "request_died")
    nodes, _ = _graph(p.page)
    assert "error" in nodes and "stopped mid-stream" in p.page.evaluate("window.thriftyCy.$id('error').data('label')")
    p.done()
    p = Page(browser, gw.base_url + f"/ui/requests/{ids['failed']}", tmp / "screens", "request_failed")
    nodes, edges = _graph(p.page)
    assert nodes == {"request", "tier0", "error"} and edges == {("request", "tier0"), ("tier0", "error")}
    p.done()


def test_lab_draws_curves_of_a_file(served, browser) -> None:
    gw, _, tmp = served
    p = Page(browser, gw.base_url + "/ui/lab", tmp / "screens", "lab")
    p.page.select_option("#lab-file", "eval-1/metrics.json")
    p.page.wait_for_function("document.getElementById('chart-lab').dataset.curves")
    assert p.page.get_attribute("#chart-lab", "data-curves") == "3"  # curve, baselines.hull, baselines.oracle
    assert p.page.input_value("#lab-x") == "cost" and p.page.input_value("#lab-y") == "quality"
    p.done()


def test_auth_and_bad_input(served) -> None:
    gw, ids, _ = served
    with httpx.Client(base_url=gw.base_url, timeout=10) as c:
        for path in ("/ui", "/ui/requests", f"/ui/requests/{ids['accepted']}", "/ui/api/overview", "/ui/api/requests", "/ui/api/keys"):
            for headers in ({}, {"authorization": f"Bearer {ALICE}"}, {"authorization": "Bearer wrong"}, {"authorization": "Basic !!"}):
                r = c.get(path, headers=headers)
                assert r.status_code == 401, (path, headers)
                assert r.json()["error"]["type"] == "authentication_error" and "basic" in r.headers["www-authenticate"].lower()
        admin = {"authorization": f"Bearer {ADMIN}"}
        assert c.get("/ui/api/overview", headers=admin).status_code == 200
        assert c.get("/ui/api/overview", auth=("anyone", ADMIN)).status_code == 200  # Basic: what the browser sends
        bad = [
            "/ui/api/overview?range=1y",
            "/ui/api/overview?start=yesterday",
            "/ui/api/overview?start=2000&end=1000",
            "/ui/api/overview?start=0&end=99999999",
            "/ui/api/overview?range=30d&bucket=minute",
            "/ui/api/overview?profile=nope",
            "/ui/api/profiles/nope",
            "/ui/api/requests?limit=100000",
            "/ui/api/requests?limit=-1",
            "/ui/api/requests?limit=x",
            "/ui/api/requests?status=teapot",
            "/ui/api/requests?cache=maybe",
            "/ui/api/requests?before=x:y",
            "/ui/api/requests/req_missing",
            "/ui/api/lab?file=../../etc/passwd.json",
            "/ui/api/lab?file=missing.json",
            "/ui/api/overview?start=2026-01-01T00:00:00Z&end=2026-12-31T00:00:00Z&bucket=hour",
        ]
        for path in bad:
            r = c.get(path, headers=admin)
            assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
            err = r.json()["error"]
            assert err["message"] and err["type"] == "invalid_request_error", (path, err)
        assert c.get("/ui/api/profiles/nope", headers=admin).status_code == 404
        assert c.get("/ui/profiles/nope", headers=admin).status_code == 404  # the page says so in HTML


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed (pip install 'thrifty[local]')")
def test_embedded_default_serves_the_dashboard(browser, tmp_path: Path) -> None:
    """`thrifty serve` with no config (the embedded local models, no keys: the dashboard is open)."""
    with GatewayProcess(f'[server]\ndata_dir = "{tmp_path}"\n', tmp_path, cli=True) as gw:
        with httpx.Client(base_url=gw.base_url, timeout=120) as c:
            r = c.post(
                "/v1/chat/completions",
                json={
                    "model": "thrifty/default",
                    "max_tokens": 12,
                    "messages": [{"role": "user", "content": "What is the capital of France?"}],
                },
            )
            assert r.status_code == 200
            rid = r.headers["x-thrifty-request-id"]
            with c.stream(
                "POST",
                "/v1/chat/completions",
                json={
                    "model": "thrifty/default",
                    "max_tokens": 12,
                    "stream": True,
                    "messages": [{"role": "user", "content": "Name a colour."}],
                },
            ) as s:
                assert s.status_code == 200 and "[DONE]" in "".join(s.iter_text())
        p = Page(browser, gw.base_url + "/ui", tmp_path / "screens", "embedded_overview")
        assert p.text("#fig-requests") == str(_rows(gw.db_path, "SELECT COUNT(*) FROM requests")[0][0]) == "2"
        p.done()
        p = Page(browser, gw.base_url + f"/ui/requests/{rid}", tmp_path / "screens", "embedded_request")
        steps = _rows(gw.db_path, "SELECT idx, decision FROM steps WHERE request_id = ? ORDER BY idx", (rid,))
        chain = ["request", *(f"tier{s['idx']}" for s in steps), "answer"]
        nodes, edges = _graph(p.page)
        assert nodes == set(chain) and edges == set(zip(chain, chain[1:]))
        p.done()
