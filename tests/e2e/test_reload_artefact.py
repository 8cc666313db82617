"""Fit → serve → refit → reload: the gateway serves a fitted artefact and picks a new fit up live.

A synthetic routing table (80 prompts; a cheap tier whose answers get better with length, a strong
tier that is always right) is fitted with ``thrifty fit`` at a low budget. The real gateway (``thrifty
serve`` subprocess) serves a profile from that artefact; both tiers are real HTTP upstreams that
replay the table's answers (``FaultUpstream`` in ``table`` mode), so the live scores are the very
scores the fit saw. Each phase sends every prompt once and reads the tier shares from the SQLite log.
Then the artefact is refitted in place at a higher budget, the gateway is reloaded (``POST
/admin/reload`` while a slow request is in flight, later ``SIGHUP``), and the shares must move to what
the new artefact predicts offline — exactly, prompt for prompt.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_upstream import FaultUpstream
from gateway_proc import GatewayProcess, read_db, toml_provider

pytest.importorskip("sklearn")

ADMIN_KEY = "admin-secret-key"
WORDS = ("gold price rose sharply after the central bank cut rates while the dollar weakened against major currencies").split()


def _table(folder: Path) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Prompts, cheap answers and strong answers; writes the routing table to ``folder``."""
    rng = random.Random(7)
    prompts, cheap, strong, outcomes = [], {}, {}, []
    for i in range(80):
        q = f"Question {i}: explain in a few words why " + " ".join(rng.sample(WORDS, 4)) + "?"
        n = 1 + (i * 7) % 24  # cheap answers of 1–24 words; quality grows with length
        cheap[q] = " ".join(rng.choice(WORDS) for _ in range(n)) + "."
        strong[q] = "Because " + " ".join(rng.choice(WORDS) for _ in range(18)) + "."
        prompts.append(q)
        outcomes.append(
            {"prompt_id": f"p{i}", "model": "cheap", "quality": round(min(1.0, n / 20), 3), "cost_usd": 0.001, "output": cheap[q]}
        )
        outcomes.append({"prompt_id": f"p{i}", "model": "strong", "quality": 1.0, "cost_usd": 0.01, "output": strong[q]})
    folder.mkdir(parents=True)
    (folder / "prompts.jsonl").write_text(
        "".join(json.dumps({"prompt_id": f"p{i}", "instruction": q}) + "\n" for i, q in enumerate(prompts))
    )
    (folder / "outcomes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in outcomes))
    return prompts, cheap, strong


def _fit(table: Path, artefact: Path, budget: float) -> None:
    from thrifty.cli.main import main

    assert main(["fit", "--data", str(table), "--max-tiers", "2", "--budget", str(budget), "--out", str(artefact)]) == 0


def _predicted_escalations(artefact: Path, prompts: list[str], cheap: dict[str, str]) -> tuple[set[str], tuple[float, ...]]:
    """The prompts the artefact's own policy sends past the cheap tier (scored offline) and its thresholds."""
    from thrifty.serving.artefact import load_artefact
    from thrifty.types import ChatRequest, Completion, Usage

    policy = load_artefact(artefact).policy()
    assert tuple(policy.tiers) == ("cheap", "strong")
    out = set()
    for q in prompts:
        req = ChatRequest(messages=({"role": "user", "content": q},), model="thrifty/qa")
        if policy.scorer.score(req, Completion(cheap[q], "cheap", Usage(10, 5)), "cheap") < policy.thresholds[0]:
            out.add(q)
    return out, tuple(policy.thresholds)


def _send_all(gw: GatewayProcess, prompts: list[str]) -> list[str]:
    ids = []
    with httpx.Client(base_url=gw.base_url, timeout=30) as c:
        for q in prompts:
            r = c.post("/v1/chat/completions", json={"model": "thrifty/qa", "messages": [{"role": "user", "content": q}], "max_tokens": 32})
            assert r.status_code == 200, r.text
            ids.append(r.headers["x-thrifty-request-id"])
    return ids


def _answered_by_strong(gw: GatewayProcess, ids: list[str]) -> set[str]:
    """From the request log: the prompts the strong tier answered (each escalated from the cheap one)."""
    rows = read_db(
        gw.db_path, f"SELECT prompt, final_model, tiers_tried FROM requests WHERE id IN ({','.join('?' * len(ids))})", tuple(ids)
    )
    assert len(rows) == len(ids)
    for _, model, tiers in rows:
        assert json.loads(tiers) == (["cheap", "strong"] if model == "strong" else ["cheap"])
    return {prompt for prompt, model, _ in rows if model == "strong"}


def test_refit_and_reload_change_the_tier_shares(tmp_path: Path) -> None:
    from thrifty.config.settings import hash_key

    prompts, cheap, strong = _table(tmp_path / "table")
    artefact = tmp_path / "artefact"
    _fit(tmp_path / "table", artefact, budget=0.004)
    low, low_thresholds = _predicted_escalations(artefact, prompts, cheap)
    assert 0 < len(low) < len(prompts)

    with FaultUpstream(answers=cheap) as up_cheap, FaultUpstream(answers=strong) as up_strong, FaultUpstream(label="slow") as up_slow:
        cfg = (
            f'[server]\ndata_dir = "{tmp_path / "gw"}"\nadmin_sha256 = "{hash_key(ADMIN_KEY)}"\n\n'
            + toml_provider("cheap", up_cheap.base_url("table"), timeout_s=10)
            + toml_provider("strong", up_strong.base_url("table"), timeout_s=10)
            + toml_provider("slow", up_slow.base_url("sleep2000-normal"), timeout_s=20)
            + f'[profiles.qa]\ntiers = ["cheap", "strong"]\nartefact = "{artefact}"\n'
        )
        with GatewayProcess(cfg, tmp_path / "gw", cli=True) as gw:
            strong_before = _answered_by_strong(gw, _send_all(gw, prompts))
            assert strong_before == low  # live routing = the artefact's offline prediction, prompt for prompt

            _fit(tmp_path / "table", artefact, budget=0.008)  # refit in place: higher budget, lower bar for escalation
            high, high_thresholds = _predicted_escalations(artefact, prompts, cheap)
            assert high_thresholds != low_thresholds and len(high) > len(low)

            with httpx.Client(base_url=gw.base_url, timeout=30) as c:
                assert c.post("/admin/reload").status_code == 401
                r = c.post("/admin/reload", headers={"authorization": "Bearer wrong"})
                assert r.status_code == 401 and r.json()["error"]["message"]

                slow: dict[str, Any] = {}

                def in_flight() -> None:  # a streamed request admitted before the reload, on the old providers
                    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
                    with httpx.Client(base_url=gw.base_url, timeout=30) as c2, c2.stream("POST", "/v1/chat/completions", json=body) as r:
                        slow["status"], slow["lines"] = r.status_code, [ln for ln in r.iter_lines() if ln]

                t = threading.Thread(target=in_flight)
                t.start()
                deadline = time.monotonic() + 10
                while up_slow.calls["sleep2000-normal"] == 0 and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert up_slow.calls["sleep2000-normal"] == 1
                r = c.post("/admin/reload", headers={"authorization": f"Bearer {ADMIN_KEY}"})
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["generation"] == 2 and body["restart_needed"] == []
                assert body["profiles"]["thrifty/qa"]["thresholds"] == pytest.approx(list(high_thresholds))
                assert t.is_alive()  # the slow answer was still on its way when the routes were swapped
                t.join(30)
                text = "".join(
                    json.loads(ln[6:])["choices"][0]["delta"].get("content") or ""
                    for ln in slow["lines"]
                    if ln.startswith("data: {") and json.loads(ln[6:])["choices"]
                )
                assert slow["status"] == 200 and slow["lines"][-1] == "data: [DONE]" and text.strip() == "answer from slow", slow
                assert up_slow.calls["sleep2000-normal"] == 1  # answered by its first call: its connection was not cut (no retry)

            strong_after = _answered_by_strong(gw, _send_all(gw, prompts))
            assert strong_after == high
            assert len(strong_after) > len(strong_before)  # the strong tier's share rose with the new artefact

            # a broken artefact: the reload is refused and the previous routes keep serving
            (artefact / "heads.pkl").write_bytes(b"tampered")
            with httpx.Client(base_url=gw.base_url, timeout=30) as c:
                r = c.post("/admin/reload", headers={"authorization": f"Bearer {ADMIN_KEY}"})
                assert r.status_code == 409 and "does not match the hash" in r.json()["error"]["message"]
                assert c.get("/healthz").json()["generation"] == 2
            assert _answered_by_strong(gw, _send_all(gw, prompts[:20])) == high & set(prompts[:20])

            # SIGHUP reloads too (single-process `thrifty serve`): back to the low-budget fit
            _fit(tmp_path / "table", artefact, budget=0.004)
            assert gw.proc is not None
            os.kill(gw.proc.pid, signal.SIGHUP)
            deadline = time.monotonic() + 20
            while httpx.get(gw.base_url + "/healthz", timeout=5).json()["generation"] != 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert httpx.get(gw.base_url + "/healthz", timeout=5).json()["generation"] == 3
            assert _answered_by_strong(gw, _send_all(gw, prompts)) == low
        assert "Traceback" not in gw.output()
