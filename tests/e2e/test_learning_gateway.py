"""The learning loop in a real gateway: audits → refit → the artefact swapped in, no restart.

A real gateway (``create_app`` under uvicorn on a loopback socket, in this process so the test can
reach ``app.state.audit_listeners``) serves a two-tier local profile (SmolLM2 → Gemma-3, in-process
GGUF) on HEADLINES-style prompts through the official ``openai`` client. Each answer is audited the
way ``match:agree`` audits do: every tier the cascade did not call is called through the gateway
(pass-through model ids), and each tier's answer is graded by agreement with the reference tier's
(Gemma) after normalisation. The real AuditOutcomes go to the listeners; with ``every = 30`` the
refit runs in the learner's worker thread, must swap a new artefact in (a ``serving`` row in the
``artefact_history`` table, its directory on disk), and the same prompts sent again must be
answered with different tier shares — with no restart.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("openai") is None
    or importlib.util.find_spec("sklearn") is None,
    reason="needs llama-cpp-python, openai and scikit-learn (pip install 'thrifty[local,lab,test]')",
)

sys.path.insert(0, str(Path(__file__).parent))
from gateway_proc import free_port, read_db  # noqa: E402

PREFIX = (
    "Say whether each headline reports the gold price going up or down.\n\n"
    "Q: gold climbs 1% as the dollar weakens\nA: up\n\nQ: gold slides to a two-week low\nA: down\n\n"
)
HEADS = ["jumps", "falls", "hits a record", "drops", "rallies", "sinks", "edges higher", "tumbles", "rises", "slips"]
WHY = ["on safe-haven buying", "as yields rise", "after the fed decision", "on strong jobs data", "in asian trade"]
HEADLINES = [f"gold {h} {w}" for w in WHY for h in HEADS][:36]


def _norm(text: str | None) -> str:
    words = re.findall(r"[a-z]+", (text or "").lower())
    return words[0] if words else ""


def _settings(data_dir: Path):
    from thrifty.config.settings import parse_settings

    price = {"input": 0.0135, "output": 0.0135}
    return parse_settings(
        {
            "server": {"data_dir": str(data_dir)},
            "providers": {
                "small": {"kind": "llamacpp", "model_path": "builtin:smollm2", "max_tokens": 3, "prices": price},
                "big": {
                    "kind": "llamacpp",
                    "model_path": "builtin:gemma3",
                    "mode": "completion",
                    "max_tokens": 3,
                    "prices": {"input": 0.027, "output": 0.027},
                },
            },
            # target 0.85, not 0.95: refits pick on the share's lower bound (share_z = 1), and on 30
            # audits no cascade into SmolLM2 can be shown to reach 0.95 — the honest pick there is
            # "always Gemma", which would leave the tier shares this test watches unchanged
            "profiles": {"hl": {"tiers": ["small", "big"], "thresholds": [0.5], "refit": {"every": 30, "target": 0.85}}},
        }
    )


def _ask(client, model: str, headline: str):
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": f"{PREFIX}Q: {headline}\nA:"}], max_tokens=3, temperature=0
    )
    return raw.headers, raw.parse()


def test_refit_swaps_the_artefact_live(tmp_path: Path) -> None:
    import uvicorn
    from openai import OpenAI

    from thrifty.calibration.audit_types import AuditOutcome, TierVerdict
    from thrifty.gateway.app import create_app

    app = create_app(_settings(tmp_path / "gw"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=120)
        listeners = app.state.audit_listeners
        learner = app.state.learners[0]
        policy_before = app.state.runtime.routes["thrifty/hl"].engine.policy
        served_before = []
        for h in HEADLINES[:30]:
            headers, body = _ask(client, "thrifty/hl", h)
            served = headers["x-thrifty-model"]
            served_before.append(served)
            answers = {served: body.choices[0].message.content}
            for tier in ("small", "big"):  # the audit: every tier the cascade did not call
                if tier not in answers:
                    answers[tier] = _ask(client, tier, h)[1].choices[0].message.content
            ref = _norm(answers["big"])
            verdicts = {
                t: TierVerdict(
                    t, float(_norm(a) == ref), _norm(a) == ref, 0.0135e-6 * 40 if t == "small" else 0.027e-6 * 40, a, reused=t == served
                )
                for t, a in answers.items()
            }
            outcome = AuditOutcome(
                headers["x-thrifty-request-id"], "hl", time.time(), served, float(headers["x-thrifty-cost-usd"]), "big", verdicts, 0.0
            )
            for listen in listeners:
                listen(outcome)
        learner.executor.submit(lambda: None).result(timeout=300)  # the refit ran in the worker thread
        kinds = [e.kind for e in learner.loop.events]
        assert "swap" in kinds, [e.to_json() for e in learner.loop.events]
        policy_after = app.state.runtime.routes["thrifty/hl"].engine.policy
        deadline = time.monotonic() + 10
        while policy_after is policy_before and time.monotonic() < deadline:  # installed on the event loop
            time.sleep(0.05)
            policy_after = app.state.runtime.routes["thrifty/hl"].engine.policy
        assert policy_after is not policy_before
        served_after = [_ask(client, "thrifty/hl", h)[0]["x-thrifty-model"] for h in HEADLINES[:30]]
        share = lambda xs: sum(x == "big" for x in xs) / len(xs)  # noqa: E731
        assert share(served_after) != share(served_before), (served_before, served_after)
        db = tmp_path / "gw" / "logs.sqlite3"
        rows = read_db(db, "SELECT version, status, path FROM artefact_history WHERE profile = ?", ("hl",))
        assert any(status == "serving" and path and (Path(path) / "manifest.json").exists() for _, status, path in rows)
    finally:
        server.should_exit = True
        thread.join(30)
