"""Crash safety: ``kill -9`` the gateway under load, restart it on the same data directory.

Every request whose client received a 200 (for a stream: the whole stream up to ``[DONE]``) must
have its log row after the restart, and SQLite's ``PRAGMA integrity_check`` must say ``ok``. The
load is 8 client threads (plain and streamed requests) against a fast upstream; the kill lands
while requests are in flight.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from fault_upstream import FaultUpstream
from gateway_proc import GatewayProcess, read_db, toml_provider

pytestmark = pytest.mark.slow

MSG = [{"role": "user", "content": "Say OK."}]


def _load(base_url: str, stop: threading.Event, acked: list[str], errors: list[str], stream: bool) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        while not stop.is_set():
            body = {"model": "thrifty/default", "messages": MSG, "stream": stream}
            try:
                if stream:
                    with client.stream("POST", "/v1/chat/completions", json=body) as r:
                        lines = [ln for ln in r.iter_lines() if ln]
                        if r.status_code == 200 and lines and lines[-1] == "data: [DONE]":
                            acked.append(r.headers["x-thrifty-request-id"])
                else:
                    r = client.post("/v1/chat/completions", json=body)
                    if r.status_code == 200:
                        json.loads(r.content)  # the whole body arrived
                        acked.append(r.headers["x-thrifty-request-id"])
                    else:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
            except (httpx.HTTPError, json.JSONDecodeError):
                if stop.is_set():
                    return
                time.sleep(0.01)  # the server is gone: keep trying until told to stop


def test_kill_9_under_load_loses_no_acknowledged_row(tmp_path: Path) -> None:
    with FaultUpstream() as up:
        cfg = (
            f'[server]\ndata_dir = "{tmp_path}"\nrequest_timeout_s = 10\n\n'
            + toml_provider("fast", up.base_url("normal"), timeout_s=5)
            + '[profiles.default]\ntiers = ["fast"]\n'
        )
        gw = GatewayProcess(cfg, tmp_path).start()
        stop = threading.Event()
        acked: list[str] = []
        errors: list[str] = []
        threads = [threading.Thread(target=_load, args=(gw.base_url, stop, acked, errors, i % 2 == 1), daemon=True) for i in range(8)]
        try:
            for t in threads:
                t.start()
            t0 = time.monotonic()
            while len(acked) < 150 and time.monotonic() - t0 < 20:
                time.sleep(0.05)
            gw.kill()  # SIGKILL while the clients are still sending
            killed_at = len(acked)
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join(15)
            gw.kill()
        assert not errors, errors[:3]
        assert killed_at >= 50, f"too little load before the kill: {killed_at} answered"

        # restart on the same data directory: the log opens, migrations are a no-op, it serves again
        gw2 = GatewayProcess(cfg, tmp_path).start()
        try:
            r = httpx.post(gw2.base_url + "/v1/chat/completions", json={"model": "thrifty/default", "messages": MSG}, timeout=10)
            assert r.status_code == 200
        finally:
            gw2.stop()

    assert read_db(gw.db_path, "PRAGMA integrity_check") == [("ok",)]
    logged = {row[0] for row in read_db(gw.db_path, "SELECT id FROM requests WHERE status = 200")}
    missing = [rid for rid in acked if rid not in logged]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged requests have no log row, e.g. {missing[:3]}"
    # every logged request has its steps (one transaction: request row and steps together)
    orphans = read_db(gw.db_path, "SELECT COUNT(*) FROM requests r WHERE NOT EXISTS (SELECT 1 FROM steps s WHERE s.request_id = r.id)")
    assert orphans == [(0,)]
    assert read_db(gw.db_path, "PRAGMA foreign_key_check") == []


def test_budget_holds_of_a_killed_gateway_are_released_on_restart(tmp_path: Path) -> None:
    """Requests in flight hold their worst-case cost against the key's budget; after ``kill -9`` and a
    restart those holds belong to a dead process and must not keep refusing the key (429)."""
    from thrifty.config.settings import hash_key

    key = "sk-crash-budget-0123456789"
    with FaultUpstream(hang_s=60) as up:
        cfg = (
            f'[server]\ndata_dir = "{tmp_path}"\nrequest_timeout_s = 60\n\n'
            + toml_provider("slow", up.base_url("hang"), timeout_s=50, price_in=1000, price_out=2000, max_tokens=16)
            + toml_provider("fast", up.base_url("normal"), timeout_s=5, price_in=1000, price_out=2000, max_tokens=16)
            + '[profiles.default]\ntiers = ["fast"]\n\n'
            + f'[keys.k]\nsha256 = "{hash_key(key)}"\nlimit_usd = 0.15\n'
        )  # room for one request's worst case (~0.08)
        gw = GatewayProcess(cfg, tmp_path).start()
        headers = {"authorization": f"Bearer {key}"}

        def in_flight() -> None:
            try:
                httpx.post(gw.base_url + "/v1/chat/completions", headers=headers, json={"model": "slow", "messages": MSG}, timeout=30)
            except httpx.HTTPError:
                pass  # the gateway is killed under it

        hung = threading.Thread(target=in_flight, daemon=True)
        try:
            hung.start()
            t0 = time.monotonic()
            while read_db(gw.db_path, "SELECT COUNT(*) FROM reservations")[0][0] < 1 and time.monotonic() - t0 < 10:
                time.sleep(0.05)
            assert read_db(gw.db_path, "SELECT COUNT(*) FROM reservations")[0][0] == 1, "the hung request holds its cost"
            blocked = httpx.post(gw.base_url + "/v1/chat/completions", headers=headers, json={"model": "fast", "messages": MSG}, timeout=10)
            assert blocked.status_code == 429, "while it is in flight the budget is held"
            gw.kill()
        finally:
            gw.kill()
        with GatewayProcess(cfg, tmp_path) as gw2:
            r = httpx.post(gw2.base_url + "/v1/chat/completions", headers=headers, json={"model": "fast", "messages": MSG}, timeout=10)
            assert r.status_code == 200, f"the dead process's hold still blocks the key: {r.text[:300]}"
        assert read_db(gw.db_path, "SELECT COUNT(*) FROM reservations")[0][0] == 0


def test_hold_owner_liveness() -> None:
    """A hold's owner token: alive for this process, dead once its process exited, alive if from another host."""
    import os
    import subprocess
    import sys

    from thrifty.serving.budget import _owner_alive, _process_token

    assert _owner_alive(_process_token(os.getpid()))
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    token = _process_token(child.pid)
    child.wait()
    assert not _owner_alive(token)
    assert _owner_alive("some-other-host|1|123")
    me = _process_token(os.getpid())
    assert not _owner_alive(me.rsplit("|", 1)[0] + "|1"), "same pid, different start time: the pid was reused"
