"""A refit swapped in by one replica's learner is served by another replica, through the store's
version row; ``thrifty artefacts rollback`` moves both back.

Two real ``thrifty serve`` replicas (uvicorn subprocesses, their own data dirs) share one
PostgreSQL (initdb + pg_ctl, started here) and one artefact folder (``[server] artefact_dir``).
The tiers are two loopback upstreams replaying a table (``FaultUpstream`` ``table`` mode): the
strong tier answers yes/no, the cheap one agrees with it on a third of the prompts. The profile
starts with ``thresholds = [0.0]`` (the cheap answer is always accepted) and has
``[profiles.qa.audit] rate = 1.0, judge = "match:agree"`` and ``[profiles.qa.refit] every = 30,
target = 0.95``: the policy in service misses the target by far, so the refit on replica A swaps
a candidate in (the rule: only the candidate meets the target, or its share is higher).

- Only replica A gets traffic at first; its audit worker and learner refit and swap;
- replica B (no audits, no refit of its own yet) serves A's artefact within a few poll intervals:
  ``/healthz`` shows the same version and digest, its log names the shared folder, and the same
  prompts are answered by the same tiers on A and B;
- a config reload on B (``POST /admin/reload``) keeps serving the learned policy;
- ``thrifty artefacts rollback --store URL`` (the CLI) publishes the config file's policy: both
  replicas move to a new version and answer from the cheap tier again, with no restart.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from db_servers import PostgresServer
from fault_upstream import FaultUpstream
from gateway_proc import GatewayProcess, toml_provider

pytest.importorskip("psycopg", reason="the PostgreSQL store needs psycopg (pip install 'thrifty[postgres]')")
pytest.importorskip("sklearn", reason="the refit needs scikit-learn (pip install 'thrifty[lab]')")
pytestmark = pytest.mark.slow

EVERY = 30
ADMIN_KEY = "admin-secret-key"
POLL_S = 0.5


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


def _table() -> tuple[list[str], dict[str, str], dict[str, str]]:
    rng = random.Random(3)
    prompts = [
        f"Is claim {i} about the {rng.choice(['river', 'market', 'comet', 'harbour'])} true? Answer yes or no." for i in range(EVERY)
    ]
    strong = {q: rng.choice(["yes", "no"]) for q in prompts}
    cheap = {q: (a if i % 3 == 0 else {"yes": "no", "no": "yes"}[a]) for i, (q, a) in enumerate(strong.items())}
    return prompts, cheap, strong


def _health(gw: GatewayProcess) -> dict[str, Any]:
    return httpx.get(gw.base_url + "/healthz", timeout=10).json()


def _served(gw: GatewayProcess, prompts: list[str]) -> list[str]:
    out = []
    with httpx.Client(base_url=gw.base_url, timeout=30) as c:
        for q in prompts:
            r = c.post("/v1/chat/completions", json={"model": "thrifty/qa", "messages": [{"role": "user", "content": q}], "max_tokens": 4})
            assert r.status_code == 200, r.text
            out.append(r.headers["x-thrifty-model"])
    return out


def _until(what: str, check: Any, timeout_s: float, gws: list[GatewayProcess]) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    logs = "\n".join(g.output()[-2500:] for g in gws)
    raise AssertionError(f"{what} within {timeout_s}s:\n{logs}")


def test_a_learned_swap_on_replica_a_is_served_by_replica_b_and_a_rollback_moves_both(tmp_path: Path, pg: PostgresServer) -> None:
    from thrifty.cli.main import main
    from thrifty.config.settings import hash_key
    from thrifty.store.versions import artefact_digest

    prompts, cheap, strong = _table()
    store = pg.create_database()
    shared = tmp_path / "shared-artefacts"
    with FaultUpstream(answers=cheap) as up_cheap, FaultUpstream(answers=strong) as up_strong:
        cfg = (
            f'[server]\nstore = "{store}"\nartefact_poll_s = {POLL_S}\nartefact_dir = "{shared}"\nrequest_timeout_s = 30\n'
            f'admin_sha256 = "{hash_key(ADMIN_KEY)}"\n\n'
            + toml_provider("cheap", up_cheap.base_url("table"), price_in=1.0, price_out=2.0, timeout_s=10)
            + toml_provider("strong", up_strong.base_url("table"), price_in=10.0, price_out=20.0, timeout_s=10)
            + '[profiles.qa]\ntiers = ["cheap", "strong"]\nthresholds = [0.0]\n\n'
            + '[profiles.qa.audit]\nrate = 1.0\njudge = "match:agree"\n\n'
            + f"[profiles.qa.refit]\nevery = {EVERY}\ntarget = 0.95\n"
        )
        a = GatewayProcess(cfg, tmp_path / "replica-a", env=pg.env())
        b = GatewayProcess(cfg, tmp_path / "replica-b", env=pg.env())
        gws = [a, b]
        a.start()
        b.start()
        try:
            assert "qa" not in _health(a)["artefacts"] and "qa" not in _health(b)["artefacts"]
            assert set(_served(a, prompts)) == {"cheap"}  # thresholds [0.0]: the cheap answer is always accepted
            # A's audit worker audits all 30; its learner refits and swaps, and publishes the version row
            swapped = _until("a swap on replica A", lambda: _health(a)["artefacts"].get("qa"), 120, gws)
            t0 = time.monotonic()
            on_b = _until("replica B following A's swap", lambda: _health(b)["artefacts"].get("qa"), 30, gws)
            took = time.monotonic() - t0
            assert on_b == swapped
            folders = [p for p in shared.joinpath("qa").iterdir() if not p.name.startswith(".")]
            assert len(folders) == 1 and (folders[0] / "manifest.json").is_file()
            assert swapped["sha256"] == artefact_digest(folders[0])[:12]
            assert f"now serving version {swapped['version']} ({folders[0]}, published by refit|" in b.output()
            assert not list((tmp_path / "replica-b").glob("artefacts"))  # B wrote nothing: it reads the shared folder

            again = prompts[:10]  # fewer than `every` per replica: no second refit meanwhile
            on_a_tiers, on_b_tiers = _served(a, again), _served(b, again)
            assert on_a_tiers == on_b_tiers and "strong" in on_b_tiers, (on_a_tiers, on_b_tiers)
            assert _health(a)["generation"] == _health(b)["generation"] == 1  # no reload, no restart
            # a config reload on B rebuilds its routes from the file, then puts the learned policy back
            r = httpx.post(b.base_url + "/admin/reload", headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=60)
            assert r.status_code == 200 and r.json()["generation"] == 2, r.text
            assert _served(b, again[:5]) == on_b_tiers[:5]

            os.environ.update(pg.env())
            assert main(["artefacts", "--store", store, "rollback", "qa"]) == 0
            back = _until(
                "both replicas on the config policy after the rollback",
                lambda: all(_health(g)["artefacts"]["qa"]["version"] > swapped["version"] for g in gws),
                30,
                gws,
            )
            assert back
            assert _served(a, prompts[:5]) == _served(b, prompts[:5]) == ["cheap"] * 5
        finally:
            for g in gws:
                g.stop()
    print(f"replica B served A's learned artefact {took:.2f}s after A published it (poll {POLL_S}s)")
