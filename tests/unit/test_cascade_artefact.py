"""`thrifty fit` writes a versioned artefact; loading checks version and hash; the policy runs live."""

from __future__ import annotations

import json

import pytest
from cascade_fixtures import synthetic_table

from thrifty.cli.main import main
from thrifty.data.table_io import write_table
from thrifty.errors import ConfigError
from thrifty.policy.drive import drive
from thrifty.serving.artefact import load_artefact
from thrifty.types import ChatRequest, Completion


@pytest.fixture()
def data_dir(tmp_path):
    return write_table(synthetic_table(160, seed=7), tmp_path / "data")


def test_fit_writes_a_loadable_artefact_whose_policy_drives_live(data_dir, tmp_path, capsys):
    out = tmp_path / "art"
    rc = main(["fit", "--data", str(data_dir), "--embed", "none", "--max-tiers", "2", "--budget", "0.0004", "--out", str(out), "--json"])
    assert rc == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["format"] == "thrifty-artefact" and manifest["version"] == 2 and manifest["kind"] == "cascade"
    assert manifest["data"]["n_prompts"] == 160 and len(manifest["data"]["hash"]) > 8
    assert manifest["pool"] == ["small", "mid", "big"] and manifest["goal"] == {"budget": 0.0004}
    assert manifest["selected"]["train_cost"] <= 0.0004 and len(manifest["selected"]["tiers"]) <= 2
    costs = [p["train_cost"] for p in manifest["front"]]
    assert costs == sorted(costs) and len(costs) >= 3
    assert set(manifest["training"]["heads"]) == set(manifest["scorer"]["models"])

    art = load_artefact(out)
    policy = art.policy()
    assert policy.tiers == tuple(manifest["selected"]["tiers"])
    table = synthetic_table(10, seed=99)
    answers = {m: table.answers[0, j] for j, m in enumerate(table.models)}
    paid = []

    def call(k):
        m = policy.tiers[k]
        paid.append(m)
        return Completion(text=answers[m], model=m, cost_usd=1.0)

    decision = drive(policy.plan(ChatRequest.from_prompt(table.prompts[0])), call)
    assert decision.completion is not None and decision.cost_usd == len(paid)
    # another budget from the stored front, without refitting
    cheap_tiers, _ = art.cascade_for(budget=0.0)
    assert cheap_tiers == tuple(manifest["front"][0]["tiers"])


def test_loading_rejects_unknown_versions_and_tampered_heads(data_dir, tmp_path, capsys):
    out = tmp_path / "art"
    assert main(["fit", "--data", str(data_dir), "--embed", "none", "--target-quality", "0.7", "--out", str(out)]) == 0
    assert "selected (target_quality=0.7)" in capsys.readouterr().out
    mf = out / "manifest.json"
    doc = json.loads(mf.read_text())
    doc["version"] = 99
    mf.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="version 99"):
        load_artefact(out)
    doc["version"] = 1
    mf.write_text(json.dumps(doc))
    load_artefact(out)
    (out / "heads.pkl").write_bytes(b"tampered")
    with pytest.raises(ConfigError, match="does not match"):
        load_artefact(out)
    with pytest.raises(ConfigError, match="no manifest"):
        load_artefact(tmp_path)


def test_fit_cli_rejects_bad_tier_count(data_dir, tmp_path, capsys):
    assert main(["fit", "--data", str(data_dir), "--max-tiers", "5", "--out", str(tmp_path / "x")]) != 0
    assert "max-tiers" in capsys.readouterr().err


def test_eval_policy_can_replay_a_fitted_artefact(data_dir, tmp_path, capsys):
    from thrifty.data.table_io import load_table
    from thrifty.offline.cascade_policy import CascadeOffline

    out = tmp_path / "art"
    assert main(["fit", "--data", str(data_dir), "--embed", "none", "--out", str(out)]) == 0
    table = load_table(data_dir)
    fitted = CascadeOffline(artefact=str(out)).fit(table, [1e-5, 5e-4])
    manifest = json.loads((out / "manifest.json").read_text())
    assert fitted.picks[5e-4].cost <= 5e-4
    pts = fitted.replay(table)
    assert [p.knob for p in pts] == [1e-5, 5e-4]
    # replaying the artefact on its own training prompts reproduces its training estimate of the pick
    for p in manifest["front"]:
        if p["tiers"] == [fitted.models[t] for t in fitted.picks[5e-4].tiers] and p["train_cost"] == fitted.picks[5e-4].cost:
            assert pts[1].mean_cost <= p["train_cost"] * 1.5
