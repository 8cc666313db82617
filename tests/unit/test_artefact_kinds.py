"""Router and hybrid artefacts: `thrifty fit --policy router|hybrid` → save → load → the live policy
decides exactly as the offline replay of the same fit, prompt for prompt, at every front point.

The query embedder is ``router_fixtures:HashEmbedder`` (a real, dependency-free hashing embedder) so
that the artefact's lazy ``module:Factory`` embedder path is what runs live.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from router_fixtures import HashEmbedder, topic_table

from thrifty.cli.eval_cmd import policy_options
from thrifty.cli.main import main
from thrifty.config.settings import ProfileSettings
from thrifty.data.table_io import write_table
from thrifty.errors import ConfigError, ProviderError
from thrifty.offline.evaluate import default_knobs
from thrifty.policy.drive import drive
from thrifty.policy.hybrid import HybridPolicy
from thrifty.policy.router import RouterPolicy
from thrifty.serving.artefact import load_artefact
from thrifty.serving.profiles import profile_policy
from thrifty.types import ChatRequest, Completion

EMB = "router_fixtures:HashEmbedder"
BUDGET = 0.003


@pytest.fixture(scope="module")
def table():
    return topic_table(90, seed=3)


@pytest.fixture(scope="module")
def data_dir(table, tmp_path_factory):
    return write_table(table, tmp_path_factory.mktemp("kinds") / "data")


def _fit(kind: str, data_dir, out, *extra: str) -> dict:
    assert (
        main(["fit", "--policy", kind, "--data", str(data_dir), "--embedder", EMB, "--budget", str(BUDGET), "--out", str(out), *extra]) == 0
    )
    return json.loads((out / "manifest.json").read_text())


def _knobs(table) -> list[float]:
    return sorted(set(float(k) for k in default_knobs(table)) | {BUDGET})


def _live(policy, table) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Drive the live policy on every prompt over the recorded answers: chosen model index, tiers called."""
    chosen, called = np.full(table.n_prompts, -1), []
    for i, prompt in enumerate(table.prompts):
        paid: list[str] = []

        def call(k: int, i: int = i) -> Completion:
            m = policy.tiers[k]
            paid.append(m)
            j = table.model_index(m)
            if np.isnan(table.quality[i, j]):
                raise ProviderError("no outcome", provider=m)
            return Completion(text=table.answer(i, j) or "", model=m, cost_usd=float(table.cost[i, j]))

        d = drive(policy.plan(ChatRequest.from_prompt(prompt)), call)
        assert d.completion is not None
        chosen[i] = table.model_index(policy.tiers[d.tier])
        called.append(tuple(paid))
    return chosen, called


def test_router_artefact_live_decisions_equal_the_offline_replay(table, data_dir, tmp_path):
    from thrifty.offline.router_policy import RouterOffline

    manifest = _fit("router", data_dir, tmp_path / "r")
    assert manifest["kind"] == "router" and manifest["version"] == 2
    assert manifest["router"]["embedder"] == EMB and manifest["selected"]["train_cost"] <= BUDGET
    front = manifest["front"]
    assert len(front) >= 3 and [p["train_cost"] for p in front] == sorted(p["train_cost"] for p in front)

    replay = {p.knob: p for p in RouterOffline(embedder=HashEmbedder()).fit(table, _knobs(table)).replay(table)}
    art = load_artefact(tmp_path / "r")
    assert art.kind == "router" and art.tiers == ("small", "mid", "big")
    n_models_used = set()
    for p in front:
        pol = art.policy(budget=p["train_cost"])
        assert isinstance(pol, RouterPolicy) and pol.lam == pytest.approx(p["lam"])
        assert type(pol.predictor.encoder.embedder).__name__ == "LazyEmbedder"
        chosen, called = _live(pol, table)
        offline = replay[p["knob"]]
        np.testing.assert_array_equal(chosen, offline.chosen)  # every prompt routed to the same model
        assert all(len(c) == 1 for c in called)  # a router pays for one answer
        n_models_used |= set(chosen.tolist())
    assert n_models_used == {0, 1, 2}  # the front spans real routing, not one constant choice
    # the selected point routes by topic: chat → small more often than math → small
    chosen, _ = _live(art.policy(), table)
    topic = np.arange(table.n_prompts) % 3
    assert np.mean(chosen[topic == 0] == 0) > np.mean(chosen[topic == 2] == 0)


def test_target_mode_router_artefact_decides_live_as_the_offline_replay(table, data_dir, tmp_path):
    """calibrate=target: the front records each point's quality target; the loaded live policy uses
    the target rule and routes every prompt as the offline replay of the same fit."""
    from thrifty.offline.router_policy import RouterOffline

    manifest = _fit("router", data_dir, tmp_path / "t", "--opt", "calibrate=target")
    assert all("target" in p for p in manifest["front"])
    replay = {p.knob: p for p in RouterOffline(embedder=HashEmbedder(), calibrate="target").fit(table, _knobs(table)).replay(table)}
    art = load_artefact(tmp_path / "t")
    used = set()
    for p in manifest["front"]:
        pol = art.policy(budget=p["train_cost"])
        assert pol.target == pytest.approx(p["target"])
        chosen, _ = _live(pol, table)
        np.testing.assert_array_equal(chosen, replay[p["knob"]].chosen)
        used |= set(chosen.tolist())
    assert len(used) >= 2


def test_router_fit_by_target_quality_selects_the_cheapest_point_reaching_it(data_dir, tmp_path):
    assert (
        main(
            [
                "fit",
                "--policy",
                "router",
                "--data",
                str(data_dir),
                "--embedder",
                EMB,
                "--target-quality",
                "0.7",
                "--out",
                str(tmp_path / "q"),
            ]
        )
        == 0
    )
    m = json.loads((tmp_path / "q" / "manifest.json").read_text())
    ok = [p for p in m["front"] if p["train_quality"] >= 0.7]
    assert m["goal"] == {"target_quality": 0.7} and ok and m["selected"] == ok[0]
    assert (
        main(["fit", "--policy", "router", "--data", str(data_dir), "--embedder", EMB, "--opt", "bogus=1", "--out", str(tmp_path / "bad")])
        != 0
    )  # an unknown option is a config error, not a crash


def test_hybrid_artefact_live_decisions_equal_the_offline_replay(table, data_dir, tmp_path):
    from thrifty.offline.hybrid_policy import HybridOffline

    manifest = _fit("hybrid", data_dir, tmp_path / "h", "--max-tiers", "2")
    assert manifest["kind"] == "hybrid" and manifest["scorer"]["embed"] == "none"
    fitted = HybridOffline(embedder=HashEmbedder(), max_tiers=2, max_candidates=8, embed="none").fit(table, _knobs(table))
    replay = {p.knob: p for p in fitted.replay(table)}
    art = load_artefact(tmp_path / "h")
    finite = 0
    for p in manifest["front"]:
        pol = art.policy(budget=p["train_cost"])
        assert isinstance(pol, HybridPolicy) and list(pol.tiers) == p["tiers"]
        finite += np.isfinite(pol.lam)
        chosen, called = _live(pol, table)
        offline = replay[p["knob"]]
        np.testing.assert_array_equal(chosen, offline.chosen)
        for i, tiers in enumerate(called):  # the same tiers paid for, prompt for prompt
            assert {table.model_index(m) for m in tiers} == set(np.flatnonzero(offline.calls[i]).tolist())
    assert finite >= 1  # at least one point where the router moves the start tier


def test_old_cascade_artefacts_load_and_kinds_are_checked(data_dir, tmp_path):
    out = tmp_path / "c"
    assert main(["fit", "--data", str(data_dir), "--embed", "none", "--max-tiers", "2", "--budget", str(BUDGET), "--out", str(out)]) == 0
    mf = out / "manifest.json"
    doc = json.loads(mf.read_text())
    assert doc["kind"] == "cascade" and doc["format"] == "thrifty-artefact"
    v1 = {k: v for k, v in doc.items() if k != "kind"} | {"format": "thrifty-cascade", "version": 1}
    mf.write_text(json.dumps(v1))
    art = load_artefact(out)
    assert art.kind == "cascade" and type(art.policy()).__name__ == "CascadePolicy"
    mf.write_text(json.dumps(v1 | {"kind": "router"}))
    with pytest.raises(ConfigError, match="version 1: cascade only"):
        load_artefact(out)
    mf.write_text(json.dumps(doc | {"kind": "oracle"}))
    with pytest.raises(ConfigError, match="kind 'oracle'"):
        load_artefact(out)


def test_profiles_serve_router_artefacts_and_name_missing_extras(data_dir, tmp_path, monkeypatch):
    manifest = _fit("router", data_dir, tmp_path / "r")
    pol = profile_policy(ProfileSettings("rt", ("small", "mid", "big"), artefact=tmp_path / "r"))
    assert isinstance(pol, RouterPolicy) and pol.lam == pytest.approx(manifest["selected"]["lam"])
    with pytest.raises(ConfigError, match="does not list") as e:
        profile_policy(ProfileSettings("rt", ("small", "big"), artefact=tmp_path / "r"))
    assert e.value.key == "profiles.rt.tiers"
    # the embedder the router was fitted with is missing at serve time → ConfigError at build, with the fix
    mf = tmp_path / "r" / "manifest.json"
    mf.write_text(json.dumps(manifest | {"router": manifest["router"] | {"embedder": "minilm"}}))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sentence_transformers" else real(name, *a))
    with pytest.raises(ConfigError, match="sentence_transformers") as e:
        profile_policy(ProfileSettings("rt", ("small", "mid", "big"), artefact=tmp_path / "r"))
    assert e.value.key == "profiles.rt.artefact" and "thrifty[embed]" in (e.value.fix or "")


def test_eval_options_scope_to_one_policy():
    opts = policy_options(
        ["seed=1", "router.embedder=static", "hybrid.embed=full", "router:knn.inner_folds=5", "single:gpt-3.5-turbo.x=2"],
        ["router", "router:knn", "hybrid", "cascade", "single:gpt-3.5-turbo"],
    )
    assert opts["router"] == {"seed": 1, "embedder": "static"}
    assert opts["router:knn"] == {"seed": 1, "embedder": "static", "inner_folds": 5}
    assert opts["hybrid"] == {"seed": 1, "embed": "full"} and opts["cascade"] == {"seed": 1}
    assert opts["single:gpt-3.5-turbo"] == {"seed": 1, "x": 2}
    with pytest.raises(ConfigError, match="not among the evaluated"):
        policy_options(["hybrid.embed=full"], ["router"])


def test_eval_compares_router_cascade_hybrid_with_scoped_options(data_dir, tmp_path, capsys):
    out = tmp_path / "ev"
    rc = main(
        [
            "eval",
            "--data",
            str(data_dir),
            "--policy",
            "router",
            "--policy",
            "hybrid",
            "--folds",
            "3",
            "--bootstrap",
            "0",
            "--opt",
            f"router.embedder={EMB}",
            "--opt",
            f"hybrid.embedder={EMB}",
            "--opt",
            "hybrid.max_tiers=2",
            "--opt",
            "seed=0",
            "--no-plots",
            "--json",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    names = [p["policy"] for p in doc["policies"]]
    assert names == [f"router ({EMB} emb.)", "hybrid"]  # the scoped embedder reached the router only
    assert all(p["aiq"] is not None and len(p["points"]) >= 3 for p in doc["policies"])
    # unscoped options still reach every policy: a cascade rejects the router's option
    assert (
        main(
            [
                "eval",
                "--data",
                str(data_dir),
                "--policy",
                "cascade",
                "--folds",
                "3",
                "--bootstrap",
                "0",
                "--opt",
                f"embedder={EMB}",
                "--no-plots",
                "--out",
                str(out),
            ]
        )
        != 0
    )
    assert "embedder" in capsys.readouterr().err


def test_cascade_artefact_with_query_embeddings_keeps_its_knn_memory(table, data_dir, tmp_path, monkeypatch):
    """A cascade fitted with ``--embed query`` has a k-NN quality feature; the artefact stores the whole
    scorer, so the live policy scores with the same columns and decides as the offline replay."""
    import thrifty.scoring.embedding as embedding
    from thrifty.offline.cascade_policy import from_artefact

    monkeypatch.setattr(embedding, "get_embedder", lambda name="minilm": HashEmbedder())
    out = tmp_path / "cq"
    assert main(["fit", "--data", str(data_dir), "--embed", "query", "--max-tiers", "2", "--budget", str(BUDGET), "--out", str(out)]) == 0
    art = load_artefact(out)
    pol = art.policy()
    assert len(pol.tiers) == 2 and pol.scorer.memory is not None
    offline = from_artefact(str(out), [BUDGET]).replay(table)[0]
    chosen, _ = _live(pol, table)
    np.testing.assert_array_equal(chosen, offline.chosen)
