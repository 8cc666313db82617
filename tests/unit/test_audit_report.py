"""Audit storage and the report's statistics: every figure equals a recount from the rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from audit_fixtures import TIERS
from audit_fixtures import fill_audits as _fill

from thrifty.calibration.audit_report import audit_report, bootstrap_saving, newcombe_difference, wilson
from thrifty.store import audits as db
from thrifty.store.logs import LogStore, RequestRecord


def test_wilson_and_newcombe_match_published_values() -> None:
    # Newcombe (1998), Statistics in Medicine 17:857-872, Table II / example (a): 56/70 vs 48/80
    a, b = wilson(56, 70), wilson(48, 80)
    assert (round(a["low"], 4), round(a["high"], 4)) == (0.6918, 0.8770)
    assert (round(b["low"], 4), round(b["high"], 4)) == (0.4905, 0.7004)
    d = newcombe_difference(48, 80, 56, 70)  # p2 − p1 = 0.8 − 0.6
    assert d["difference"] == pytest.approx(0.2)
    assert (round(d["low"], 4), round(d["high"], 4)) == (0.0524, 0.3339)
    assert wilson(0, 0)["share"] is None and wilson(0, 10)["low"] == 0.0 and wilson(10, 10)["high"] == 1.0


def test_bootstrap_saving_is_seeded_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(1)
    ref = rng.uniform(1, 2, 200)
    paid = ref * rng.uniform(0.2, 0.6, 200)
    s1, s2 = bootstrap_saving(paid, ref), bootstrap_saving(paid, ref)
    assert s1 == s2
    assert s1["saving"] == pytest.approx(1 - paid.sum() / ref.sum())
    assert s1["low"] < s1["saving"] < s1["high"] and s1["high"] - s1["low"] < 0.1
    assert bootstrap_saving([], [])["saving"] is None and bootstrap_saving([1.0], [0.0])["saving"] is None
    big = bootstrap_saving(np.tile(paid, 30), np.tile(ref, 30), resamples=300)  # 6,000 requests: resampled in chunks
    assert big["saving"] == pytest.approx(s1["saving"]) and big["high"] - big["low"] < s1["high"] - s1["low"]


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    s = LogStore(tmp_path / "logs.sqlite3")
    _fill(s, 300)
    yield s
    s.close()


def test_report_numbers_equal_a_recount(store: LogStore) -> None:
    rep = audit_report(store, windows=4)["profiles"]
    assert set(rep) == {"p", "q"}
    conn = store.connection
    for name, p in rep.items():
        done = conn.execute(
            "SELECT request_id, served_model, served_cost_usd, audit_cost_usd FROM audits WHERE profile = ? AND status = 'done'"
            " ORDER BY created, request_id",
            (name,),
        ).fetchall()
        assert p["audited"] == len(done)
        ans = {
            (r[0], r[1]): r
            for r in conn.execute("SELECT request_id, model, at_least_as_good, cost_usd, quality FROM audit_answers").fetchall()
        }
        served_ok = [bool(ans[(r[0], r[1])][2]) for r in done]
        assert p["served"]["n"] == len(served_ok) and p["served"]["k"] == sum(served_ok)
        assert p["served"]["share"] == pytest.approx(sum(served_ok) / len(served_ok))
        ref_cost = [ans[(r[0], "big")][3] for r in done]
        assert p["saving"]["saving"] == pytest.approx(1 - sum(r[2] for r in done) / sum(ref_cost))
        assert p["saving"]["low"] <= p["saving"]["saving"] <= p["saving"]["high"]
        serving = conn.execute("SELECT SUM(cost_usd), COUNT(*) FROM requests WHERE profile = ?", (name,)).fetchone()
        spent = conn.execute("SELECT SUM(audit_cost_usd) FROM audits WHERE profile = ?", (name,)).fetchone()[0]
        assert p["requests"] == serving[1]
        assert p["audit_spend_share"] == pytest.approx(spent / serving[0])
        counts = dict(conn.execute("SELECT status, COUNT(*) FROM audits WHERE profile = ? GROUP BY status", (name,)).fetchall())
        assert {k: v for k, v in p["status"].items() if v} == counts
        small = [ans[(r[0], "small")] for r in done]
        assert p["tiers"]["small"]["n"] == len(small)
        assert p["tiers"]["small"]["at_least_as_good"]["k"] == sum(1 for x in small if x[2])
        assert p["tiers"]["small"]["mean_quality"] == pytest.approx(sum(x[4] for x in small) / len(small))
        assert p["tiers"]["small"]["saving_if_always"]["saving"] == pytest.approx(1 - sum(x[3] for x in small) / sum(ref_cost))
        assert p["tiers"]["big"]["at_least_as_good"]["share"] == 1.0
        assert p["tiers"]["small"]["served"] + p["tiers"]["big"]["served"] == len(done)
        by_small = [bool(ans[(r[0], "small")][2]) for r in done if r[1] == "small"]
        assert p["tiers"]["small"]["served_at_least_as_good"]["k"] == sum(by_small)
        assert p["tiers"]["small"]["served_at_least_as_good"]["n"] == len(by_small)
        # drift: equal-count windows in time order, last minus first
        chunks = np.array_split(np.array(served_ok), 4)
        assert p["drift"]["first"]["k"] == int(chunks[0].sum()) and p["drift"]["last"]["n"] == len(chunks[-1])
        assert p["drift"]["difference"] == pytest.approx(chunks[-1].mean() - chunks[0].mean())
        assert p["drift"]["low"] <= p["drift"]["difference"] <= p["drift"]["high"]


def test_since_and_profile_filter(store: LogStore) -> None:
    rep = audit_report(store, "p", since=1200.0)["profiles"]
    assert list(rep) == ["p"]
    n = store.connection.execute("SELECT COUNT(*) FROM audits WHERE profile = 'p' AND status = 'done' AND created >= 1200").fetchone()[0]
    assert rep["p"]["audited"] == n


def test_due_audits_and_attempts(store: LogStore) -> None:
    due = db.due_audits(store, max_attempts=3)
    states = {r["status"] for r in due}
    assert states <= {"pending", "error"} and states
    assert db.due_audits(store, max_attempts=1) == [r for r in due if r["status"] == "pending"]
    rid = next(r["request_id"] for r in due if r["status"] == "error")
    assert store.run_in_transaction(db.start_in, rid, 5000.0, owner="me", attempts=0) == 0  # stale view: someone else ran it
    assert store.run_in_transaction(db.start_in, rid, 5000.0, owner="me", attempts=1) == 2
    assert store.run_in_transaction(db.start_in, rid, 5000.0, owner="other", attempts=1) == 0  # one process wins
    assert db.load_audit(store, rid)["owner"] == "me"
    done = store.connection.execute("SELECT request_id, attempts FROM audits WHERE status = 'done' LIMIT 1").fetchone()
    assert store.run_in_transaction(db.start_in, done[0], 5000.0, owner="me", attempts=done[1]) == 0  # a done audit never runs again
    row = db.load_audit(store, rid)
    assert row["request"]["messages"][0]["content"] == "x" and row["tiers"] == list(TIERS) and row["prompt"].startswith("headline")


def test_audited_table_is_a_routing_table(store: LogStore) -> None:
    t = db.audited_table(store, "p")
    done = store.connection.execute("SELECT COUNT(*) FROM audits WHERE profile = 'p' AND status = 'done'").fetchone()[0]
    assert t.models == TIERS and t.n_prompts == done
    assert t.prompt_ids[0].startswith("req_") and t.prompts[0].startswith("headline")
    j = t.prompt_ids.index(t.prompt_ids[3])
    q, c = store.connection.execute(
        "SELECT quality, cost_usd FROM audit_answers WHERE request_id = ? AND model = 'small'", (t.prompt_ids[j],)
    ).fetchone()
    assert t.quality[j, 0] == q and t.cost[j, 0] == pytest.approx(c)
    assert not np.isnan(t.quality).any() and t.answers[j, 1] in ("up", "down")
    assert set(t.prompt_meta["served_model"]) <= set(TIERS)


def test_audit_rows_survive_with_their_request(tmp_path: Path) -> None:
    """The pending row is committed with its request, or not at all (one transaction)."""
    s = LogStore(tmp_path / "l.sqlite3")
    rec = RequestRecord(id="req_1", created=1.0, model_requested="thrifty/p", request={}, status=200, profile="p")
    bad = db.PendingAudit("req_1", "p", 1.0, {"messages": [object()]}, TIERS, "big", "match:agree", None, "v", "all", "small", 0.0)

    def boom(conn):
        db.insert_pending_in(conn, bad)
        raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        s.record(rec, also=boom)
    assert s.count() == 0 and s.connection.execute("SELECT COUNT(*) FROM audits").fetchone()[0] == 0
    s.close()


def test_weighted_report_recounts_with_inverse_probabilities(store: LogStore) -> None:
    """Audits sampled with unequal probabilities: every share and saving is weighted by 1/p."""
    conn = store.connection
    conn.execute("UPDATE audits SET sample_prob = CASE WHEN served_model = 'small' THEN 0.4 ELSE 0.05 END")
    conn.commit()
    plain = audit_report(store, windows=4)["profiles"]["p"]
    assert plain["sampling"] == "weighted"
    done = conn.execute(
        "SELECT a.request_id, a.served_model, a.served_cost_usd, a.sample_prob FROM audits a WHERE profile = 'p' AND status = 'done'"
    ).fetchall()
    ans = {(r[0], r[1]): r for r in conn.execute("SELECT request_id, model, at_least_as_good, cost_usd FROM audit_answers").fetchall()}
    w = np.array([1 / r[3] for r in done])
    ok = np.array([float(ans[(r[0], r[1])][2]) for r in done])
    assert plain["served"]["share"] == pytest.approx(float((w * ok).sum() / w.sum()))
    assert plain["served"]["share"] != pytest.approx(float(ok.mean()))  # the unweighted share differs here
    assert plain["served"]["n"] == len(done) and plain["served"]["n_eff"] > 0
    paid, ref = np.array([r[2] for r in done]), np.array([ans[(r[0], "big")][3] for r in done])
    assert plain["saving"]["saving"] == pytest.approx(1 - (w * paid).sum() / (w * ref).sum())
    assert plain["served"]["low"] <= plain["served"]["share"] <= plain["served"]["high"]
