"""Serve a fitted router (and a hybrid) through a real ``thrifty serve``: the model that answers each
prompt is the one the artefact chooses offline.

A two-model topic table (``small`` good on chat prompts, ``big`` on everything) is fitted with
``thrifty fit --policy router`` and ``--policy hybrid``. The gateway subprocess serves both artefacts
as profiles over two stand-in upstreams (``FaultUpstream`` in ``table`` mode: real HTTP servers that
replay the table's answers). The query embedder named in the artefacts is the dependency-free
``router_fixtures:HashEmbedder`` (rebuilt lazily inside the gateway, found on its PYTHONPATH), so the
test needs no torch. Every prompt is sent once per profile with the official ``openai`` client; the
``x-thrifty-model`` / ``x-thrifty-tiers`` headers and the request log must equal the artefact's
offline choice, prompt for prompt.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fault_upstream import FaultUpstream
from gateway_proc import ROOT, GatewayProcess, read_db, toml_provider

openai = pytest.importorskip("openai")
pytest.importorskip("sklearn")

UNIT = ROOT / "tests" / "unit"
if str(UNIT) not in sys.path:
    sys.path.insert(0, str(UNIT))

from router_fixtures import topic_table  # noqa: E402

EMB = "router_fixtures:HashEmbedder"


def _fit(kind: str, data: Path, out: Path, budget: float) -> None:
    from thrifty.cli.main import main

    assert (
        main(
            [
                "fit",
                "--policy",
                kind,
                "--data",
                str(data),
                "--embedder",
                EMB,
                "--budget",
                str(budget),
                "--max-tiers",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )


def _offline(artefact: Path, prompts: list[str], answers: dict[str, dict[str, str]]) -> list[tuple[str, list[str]]]:
    """Per prompt: (answering model, tiers called) of the artefact's live policy driven in-process."""
    from thrifty.policy.drive import drive
    from thrifty.serving.artefact import load_artefact
    from thrifty.types import ChatRequest, Completion, Usage

    policy = load_artefact(artefact).policy()
    out = []
    for q in prompts:
        called: list[str] = []

        def call(k: int) -> Completion:
            m = policy.tiers[k]
            called.append(m)
            return Completion(answers[m][q], m, Usage(10, 5))

        d = drive(policy.plan(ChatRequest(messages=({"role": "user", "content": q},), model="x")), call)
        out.append((policy.tiers[d.tier], called))
    return out


def test_gateway_routes_each_prompt_as_the_router_artefact_chose_offline(tmp_path: Path) -> None:
    table = topic_table(60, seed=5).select_models(["small", "big"])
    from thrifty.data.table_io import write_table

    data = write_table(table, tmp_path / "table")
    _fit("router", data, tmp_path / "router", budget=0.005)
    _fit("hybrid", data, tmp_path / "hybrid", budget=0.0065)
    prompts = list(table.prompts)
    answers = {m: {q: table.answers[i, j] for i, q in enumerate(prompts)} for j, m in enumerate(table.models)}
    want_router = _offline(tmp_path / "router", prompts, answers)
    want_hybrid = _offline(tmp_path / "hybrid", prompts, answers)
    routed = [m for m, _ in want_router]
    assert 0 < routed.count("small") < len(prompts)  # the router really splits the traffic
    starts = [called[0] for _, called in want_hybrid]
    assert 0 < starts.count("big") < len(prompts)  # the hybrid's router skips the cheap tier on some prompts

    with FaultUpstream(answers=answers["small"]) as up_small, FaultUpstream(answers=answers["big"]) as up_big:
        cfg = (
            f'[server]\ndata_dir = "{tmp_path / "gw"}"\n\n'
            + toml_provider("small", up_small.base_url("table"), timeout_s=10)
            + toml_provider("big", up_big.base_url("table"), timeout_s=10)
            + f'[profiles.rt]\ntiers = ["small", "big"]\nartefact = "{tmp_path / "router"}"\n\n'
            + f'[profiles.hy]\ntiers = ["small", "big"]\nartefact = "{tmp_path / "hybrid"}"\n'
        )
        env = {"PYTHONPATH": f"{ROOT / 'src'}:{UNIT}"}
        with GatewayProcess(cfg, tmp_path / "gw", cli=True, env=env) as gw:
            client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key="unused", max_retries=0, timeout=30)
            for profile, want in (("rt", want_router), ("hy", want_hybrid)):
                ids = []
                for q, (model, called) in zip(prompts, want):
                    raw = client.chat.completions.with_raw_response.create(
                        model=f"thrifty/{profile}", messages=[{"role": "user", "content": q}], max_tokens=32
                    )
                    body = raw.parse()
                    assert raw.headers["x-thrifty-model"] == model, (profile, q)
                    assert raw.headers["x-thrifty-tiers"].split(",") == called, (profile, q)
                    assert body.choices[0].message.content == answers[model][q]
                    ids.append(raw.headers["x-thrifty-request-id"])
                rows = dict(
                    read_db(gw.db_path, f"SELECT id, final_model FROM requests WHERE id IN ({','.join('?' * len(ids))})", tuple(ids))
                )
                assert [rows[i] for i in ids] == [m for m, _ in want]
            assert up_small.calls["table"] == sum(len([t for t in c if t == "small"]) for _, c in (*want_router, *want_hybrid))
        assert "Traceback" not in gw.output()
