"""``thrifty serve --workers 2`` on one SQLite file: one learner for the profile, on both workers' audits.

The same table-replaying loopback upstreams as ``test_learner_leader_pg.py`` (the cheap tier agrees
with the strong one on a third of the prompts, ``thresholds = [0.0]``), audits at rate 1.0 and
``[profiles.qa.refit] every = 30``. Thirty requests on fresh connections, several at a time, are
spread over the two workers by the shared socket (each audit row records the worker that ran it).
Neither worker audits 30 on its own, yet exactly one refit happens, on all 30 audits, by the worker
holding the lease; nothing else refits.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_upstream import FaultUpstream
from gateway_proc import GatewayProcess, read_db, toml_provider

pytest.importorskip("sklearn", reason="the refit needs scikit-learn (pip install 'thrifty[lab]')")
pytestmark = pytest.mark.slow

EVERY = 30


def _ask(base_url: str, q: str) -> str:
    with httpx.Client(timeout=30) as fresh:  # a new connection: either worker may take it
        r = fresh.post(
            base_url + "/v1/chat/completions", json={"model": "thrifty/qa", "messages": [{"role": "user", "content": q}], "max_tokens": 4}
        )
    assert r.status_code == 200, r.text
    return r.headers["x-thrifty-model"]


def _until(what: str, check: Any, timeout_s: float, gw: GatewayProcess) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout_s}s:\n{gw.output()[-4000:]}")


def test_two_workers_on_one_sqlite_file_refit_once_on_both_workers_audits(tmp_path: Path) -> None:
    rng = random.Random(5)
    prompts = [f"Is claim {i} about the {rng.choice(['river', 'comet'])} true? Answer yes or no." for i in range(EVERY)]
    strong = {q: rng.choice(["yes", "no"]) for q in prompts}
    cheap = {q: (a if i % 3 == 0 else {"yes": "no", "no": "yes"}[a]) for i, (q, a) in enumerate(strong.items())}
    with FaultUpstream(answers=cheap) as up_cheap, FaultUpstream(answers=strong) as up_strong:
        cfg = (
            f'[server]\ndata_dir = "{tmp_path}"\nartefact_poll_s = 0.5\nhold_lease_s = 3\n\n'
            + toml_provider("cheap", up_cheap.base_url("table"), price_in=1.0, price_out=2.0, timeout_s=10)
            + toml_provider("strong", up_strong.base_url("table"), price_in=10.0, price_out=20.0, timeout_s=10)
            + '[profiles.qa]\ntiers = ["cheap", "strong"]\nthresholds = [0.0]\n\n'
            + '[profiles.qa.audit]\nrate = 1.0\njudge = "match:agree"\n\n'
            + f"[profiles.qa.refit]\nevery = {EVERY}\ntarget = 0.95\n"
        )
        with GatewayProcess(cfg, tmp_path, workers=2, cli=True) as gw:
            db = gw.db_path

            def done() -> int:
                return int(read_db(db, "SELECT COUNT(*) FROM audits WHERE profile = 'qa' AND status = 'done'")[0][0])

            with ThreadPoolExecutor(6) as pool:
                served = list(pool.map(lambda q: _ask(gw.base_url, q), prompts))
            assert set(served) == {"cheap"}
            _until("30 audits done", lambda: done() == EVERY, 120, gw)
            by_worker = dict(read_db(db, "SELECT owner, COUNT(*) FROM audits WHERE status = 'done' GROUP BY owner"))
            assert len(by_worker) == 2 and max(by_worker.values()) < EVERY, by_worker  # spread: neither reached `every` alone
            rows = _until("one refit", lambda: read_db(db, "SELECT version, status, evidence FROM artefact_history"), 120, gw)
            assert len(rows) == 1 and rows[0][1] == "serving" and '"audits": 30' in rows[0][2], rows
            holder = read_db(db, "SELECT holder, term FROM learner_leases WHERE profile = 'qa'")
            assert len(holder) == 1 and holder[0][0] in by_worker, (holder, by_worker)
            source = read_db(db, "SELECT source FROM artefact_versions WHERE profile = 'qa'")[0][0]
            assert source == "refit|" + "|".join(holder[0][0].split("|")[:2])  # published by the leading worker
            time.sleep(2.0)
            assert len(read_db(db, "SELECT version FROM artefact_history")) == 1  # the other worker did not refit
            assert gw.output().count("this process leads the learning") == 1
