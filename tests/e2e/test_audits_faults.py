"""Sampled audits under faults: real gateway processes (``thrifty serve``) against fault-injecting
upstreams on loopback, the official openai client, the SQLite log read from outside.

- a judge that times out or answers 5xx leaves a recorded, retryable audit error (status + attempts),
  retried until ``max_attempts``; serving is never affected;
- ``kill -9`` while audits are pending or running: the restart loses no acknowledged row and runs
  every pending audit (the interrupted one on its second attempt);
- the audit budget spent: audits stop (counted), serving goes on;
- a full audit queue drops the audit (counted) and never the answer.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable

import openai
import pytest
from fault_upstream import FaultUpstream
from gateway_proc import GatewayProcess, read_db, toml_provider

pytestmark = pytest.mark.slow

MSG = [{"role": "user", "content": "Is gold up today?"}]


def _config(tmp: Path, up: FaultUpstream, judge_url: str, audit: str, *, judge_timeout_s: float = 5.0) -> str:
    return (
        f'[server]\ndata_dir = "{tmp}"\nrequest_timeout_s = 20\n\n'
        + toml_provider("cheap", up.base_url("normal"), price_in=1.0, price_out=2.0, timeout_s=5)
        + toml_provider("strong", up.base_url("normal"), price_in=10.0, price_out=20.0, timeout_s=5)
        + toml_provider("judge", judge_url, price_in=0.5, price_out=0.5, timeout_s=judge_timeout_s, max_tokens=16)
        + '[profiles.support]\ntiers = ["cheap", "strong"]\nthresholds = [0.5]\n\n[profiles.support.audit]\n'
        + audit
    )


def _ask(gw: GatewayProcess, n: int) -> list[str]:
    """``n`` requests through the official client; every one answered 200; their request ids."""
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key="unused", max_retries=0, timeout=15)
    ids = []
    for _ in range(n):
        raw = client.chat.completions.with_raw_response.create(model="thrifty/support", messages=MSG, max_tokens=8)
        assert raw.http_response.status_code == 200
        assert raw.parse().choices[0].message.content == "answer from normal"  # the client's answer, unchanged
        ids.append(raw.headers["x-thrifty-request-id"])
    return ids


def _wait(what: Callable[[], Any], timeout_s: float = 60.0, message: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {message or what}")


def _audits(gw: GatewayProcess) -> dict[str, tuple[Any, ...]]:
    rows = read_db(gw.db_path, "SELECT request_id, status, attempts, error, audit_cost_usd FROM audits")
    return {r[0]: r[1:] for r in rows}


def _metric(gw: GatewayProcess, name: str, **labels: str) -> float:
    import httpx

    text = httpx.get(gw.base_url + "/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total += float(m.group(2))
    return total


def test_judge_timeouts_leave_retryable_errors_until_max_attempts(tmp_path: Path) -> None:
    with FaultUpstream() as up, FaultUpstream(label="[[7]]", hang_s=30) as judge:
        cfg = _config(
            tmp_path,
            up,
            judge.base_url("hang"),
            'rate = 1.0\njudge = "judge"\nrubric = "absolute"\nmax_attempts = 2\n',
            judge_timeout_s=0.5,
        )
        with GatewayProcess(cfg, tmp_path, cli=True) as gw:
            ids = _ask(gw, 3)
            assert set(_audits(gw)) == set(ids)  # each answered request has its audit row already
            done = _wait(
                lambda: (a := _audits(gw)) and all(v[0] == "error" and v[1] == 2 for v in a.values()) and a, 90, "every audit to fail twice"
            )
            for _status, _attempts, error, cost in done.values():
                assert "judge failed" in error and ("deadline" in error or "timed out" in error.lower() or "504" in error), error
                assert cost > 0  # the reference was called and paid for by the audit, before the judge failed
            _wait(lambda: _metric(gw, "thrifty_audits_total", profile="support", outcome="error") == 6, 5, "6 errors counted")
            time.sleep(2.5)  # a final error is not retried again
            assert {v[1] for v in _audits(gw).values()} == {2}
            # the reference answers obtained before the judge failed are kept (for the retry)
            kept = read_db(
                gw.db_path, "SELECT COUNT(*) FROM audit_answers WHERE model = 'strong' AND answer IS NOT NULL AND quality IS NULL"
            )
            assert kept == [(3,)]
            _ask(gw, 1)  # serving goes on


def test_judge_5xx_is_retried_and_then_succeeds(tmp_path: Path) -> None:
    with FaultUpstream() as up, FaultUpstream(label="[[7]]") as judge:
        cfg = _config(tmp_path, up, judge.base_url("flaky2-503"), 'rate = 1.0\njudge = "judge"\nrubric = "absolute"\n')
        with GatewayProcess(cfg, tmp_path, cli=True) as gw:
            ids = _ask(gw, 2)
            _wait(lambda: all(v[0] == "done" for v in _audits(gw).values()), 60, "both audits done")
            audits = _audits(gw)
            first = read_db(gw.db_path, "SELECT request_id FROM audits ORDER BY created LIMIT 1")[0][0]
            assert audits[first][1] == 2 and audits[first][2] is None  # failed once (two 503s), done on attempt 2
            assert all(audits[r][1] == 1 for r in ids if r != first)
            _wait(lambda: _metric(gw, "thrifty_audits_total", profile="support", outcome="done") == 2, 5, "2 done counted")
            assert _metric(gw, "thrifty_audits_total", profile="support", outcome="error") == 1
            assert judge.calls["flaky2-503"] == 2 + 2 * 2  # 2 failed calls, then 2 ratings per audit
        rows = read_db(gw.db_path, "SELECT model, quality, at_least_as_good, verdict, judge_raw FROM audit_answers")
        assert {r[3] for r in rows} == {"7"} and all(r[1] == pytest.approx(6 / 9) and r[2] == 1 for r in rows)
        assert all(r[4] == "answer from [[7]]" for r in rows)


def test_kill_9_mid_audit_loses_nothing_and_requeues(tmp_path: Path) -> None:
    with FaultUpstream() as up, FaultUpstream(label="[[7]]") as judge:
        slow = _config(tmp_path, up, judge.base_url("sleep4000-normal"), 'rate = 1.0\njudge = "judge"\nrubric = "absolute"\n')
        gw = GatewayProcess(slow, tmp_path, cli=True).start()
        try:
            ids = _ask(gw, 4)
            # the answers came back while the audits were still to do: the client never waits for one
            assert {v[0] for v in _audits(gw).values()} == {"pending"} and set(_audits(gw)) == set(ids)
            _wait(lambda: any(v[1] == 1 for v in _audits(gw).values()), 20, "an audit to start")
            gw.kill()  # SIGKILL while the judge is thinking
        finally:
            gw.kill()
        before = _audits(gw)
        assert set(before) == set(ids) and {v[0] for v in before.values()} == {"pending"}
        assert read_db(gw.db_path, "SELECT COUNT(*) FROM requests WHERE status = 200") == [(4,)]
        fast = _config(tmp_path, up, judge.base_url("normal"), 'rate = 1.0\njudge = "judge"\nrubric = "absolute"\n')
        with GatewayProcess(fast, tmp_path, cli=True) as gw2:
            after = _wait(lambda: (a := _audits(gw2)) and all(v[0] == "done" for v in a.values()) and a, 60, "the re-queued audits")
            assert _metric(gw2, "thrifty_audits_total", profile="support", outcome="requeued") == 4  # counted before they ran
        interrupted = [r for r, v in before.items() if v[1] == 1]
        assert len(interrupted) == 1 and after[interrupted[0]][1] == 2  # it ran again, on its second attempt
        assert read_db(gw2.db_path, "PRAGMA integrity_check") == [("ok",)]
        assert read_db(gw2.db_path, "SELECT COUNT(*) FROM audit_answers") == [(8,)]  # 2 tiers × 4 audits


def test_audit_budget_exhausted_stops_audits_and_serving_goes_on(tmp_path: Path) -> None:
    with FaultUpstream() as up:
        cfg = _config(
            tmp_path, up, up.base_url("normal"), 'rate = 1.0\njudge = "match:agree"\nbudget_usd = 0.000001\nbudget_period = "day"\n'
        )
        with GatewayProcess(cfg, tmp_path, cli=True) as gw:
            _ask(gw, 4)
            _wait(lambda: (a := _audits(gw)) and all(v[0] in ("done", "skipped") for v in a.values()), 30, "audits to settle")
            _ask(gw, 3)  # serving goes on
            _wait(lambda: all(v[0] in ("done", "skipped") for v in _audits(gw).values()), 30, "audits to settle")
            audits = _audits(gw)
            assert [v[0] for v in audits.values()].count("done") == 1  # the one audit that ran used up the budget
            assert sum(v[3] for v in audits.values()) > 0.000001
            assert all("audit budget exhausted" in v[2] for v in audits.values() if v[0] == "skipped")
            # every other request was skipped: with a row (queued before the budget ran out) or at once, counted
            _wait(lambda: _metric(gw, "thrifty_audits_total", profile="support", outcome="skipped_budget") == 6, 5, "6 skipped counted")
            assert read_db(gw.db_path, "SELECT COUNT(*) FROM requests WHERE status = 200") == [(7,)]


def test_a_full_queue_drops_the_audit_and_counts_it(tmp_path: Path) -> None:
    with FaultUpstream() as up, FaultUpstream(label="[[7]]") as judge:
        cfg = _config(
            tmp_path, up, judge.base_url("sleep1500-normal"), 'rate = 1.0\njudge = "judge"\nrubric = "absolute"\nqueue_size = 1\n'
        )
        with GatewayProcess(cfg, tmp_path, cli=True) as gw:
            _ask(gw, 4)  # the first audit holds the only slot (its judge is slow); the other three are dropped
            assert len(_audits(gw)) == 1
            assert _metric(gw, "thrifty_audits_total", profile="support", outcome="dropped_queue_full") == 3
            _wait(lambda: all(v[0] == "done" for v in _audits(gw).values()), 30, "the first audit")
            time.sleep(0.5)  # the worker frees the slot right after committing
            _ask(gw, 1)  # the slot is free again
            assert len(_audits(gw)) == 2
