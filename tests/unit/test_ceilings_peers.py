"""Honest ceilings (thrifty.offline.ceilings) and paired peer comparisons (thrifty.offline.peers, thrifty eval --peers)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from thrifty.data.table import RoutingTable
from thrifty.offline import metrics as M
from thrifty.offline.baselines import oracle_curve, single_hull
from thrifty.offline.ceilings import cascade_ceiling, ceilings, denoised_oracle, find_replicate
from thrifty.offline.peers import paired_difference


def _table(n: int = 300, seed: int = 0, names=("small", "mid", "big")) -> RoutingTable:
    rng = np.random.default_rng(seed)
    m = len(names)
    skill = np.linspace(0.3, 0.8, m)
    q = (rng.random((n, m)) < skill[None, :]).astype(float)
    cost = np.tile(np.logspace(-4, -2, m), (n, 1))
    return RoutingTable(tuple(f"p{i}" for i in range(n)), tuple(f"prompt {i}" for i in range(n)), tuple(names), q, cost)


def test_cascade_ceiling_grows_with_tiers_and_starts_at_the_hull():
    t = _table()
    best = t.best_single()
    one, three = cascade_ceiling(t, 1), cascade_ceiling(t, 3)
    hull = single_hull(t.model_stats()).curve
    assert M.quality_at_best_single_cost(one, best.cost) == pytest.approx(M.quality_at_best_single_cost(hull, best.cost))
    q3 = M.quality_at_best_single_cost(three, best.cost)
    assert q3 > best.quality + 0.05  # a perfect scorer escalates exactly the failures
    assert q3 <= M.quality_at_best_single_cost(oracle_curve(t).curve, best.cost) + 1e-9  # never above the oracle


def test_denoised_oracle_sits_between_the_best_single_and_the_oracle():
    t = _table()
    best = t.best_single()
    oracle = M.quality_at_best_single_cost(oracle_curve(t).curve, best.cost)
    full = M.quality_at_best_single_cost(denoised_oracle(t, 1.0), best.cost)
    half = M.quality_at_best_single_cost(denoised_oracle(t, 0.5), best.cost)
    assert full == pytest.approx(oracle)
    assert best.quality - 1e-9 <= half < oracle
    with pytest.raises(ValueError):
        denoised_oracle(t, 0.0)


def test_replicate_pairs_are_runs_not_versions():
    t = _table(names=("m", "m-v2", "other"))
    assert find_replicate(t) is None  # "-v2" is another version
    t2 = _table(names=("m", "m-togetherai", "other"))
    q = t2.quality.copy()
    q[:, 1] = np.where(np.random.default_rng(1).random(len(q)) < 0.8, q[:, 0], 1 - q[:, 0])  # a noisy re-run of m
    a, b, r = find_replicate(replace(t2, quality=q))
    assert (a, b) == ("m", "m-togetherai") and 0.4 < r < 0.8
    c = ceilings(replace(t2, quality=q))
    assert c.reliability == pytest.approx(r) and "replicate" in c.reliability_source


def test_paired_difference_verdicts():
    rng = np.random.default_rng(0)
    base = {k: rng.normal(0.5, 0.01, 200) for k in ("quality_at_best_single_cost", "savings_at_parity", "oracle_gap_closed")}
    up = {k: v + 0.05 for k, v in base.items()}
    noisy = {k: v + rng.normal(0, 0.02, 200) for k, v in base.items()}
    assert paired_difference(up, base)["savings_at_parity"]["verdict"] == "better"
    assert paired_difference(base, up)["savings_at_parity"]["verdict"] == "worse"
    assert paired_difference(noisy, base)["quality_at_best_single_cost"]["verdict"] in ("not better", "not worse")
    undefined = {**base, "savings_at_parity": np.full(200, np.nan)}
    assert paired_difference(undefined, base)["savings_at_parity"]["verdict"] == "undefined"


def test_eval_cli_reports_ceilings_peers_and_correlation(tmp_path, capsys):
    import sys

    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from router_fixtures import topic_table

    from thrifty.cli.main import main
    from thrifty.data.table_io import write_table

    data = write_table(topic_table(120), tmp_path / "data")
    rc = main(
        [
            "eval",
            "--data",
            str(data),
            "--policy",
            "router:mf",
            "--opt",
            "embedder=router_fixtures:HashEmbedder",
            "--peers",
            "--label-reliability",
            "0.6",
            "--bootstrap",
            "50",
            "--no-plots",
            "--out",
            str(tmp_path / "out"),
            "--json",
        ]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    cl = doc["ceilings"]
    assert cl["perfect_scorer_cascade"]["max_tiers"] == 3 and cl["denoised_oracle"]["reliability"] == 0.6
    assert -1 <= doc["oof_pred_corr"] <= 1
    assert set(doc["peers"]) == {"router:knn (router_fixtures:HashEmbedder emb.) (k=50)", "frugalgpt"}
    for _peer, diff in doc["paired"].items():
        v = diff["quality_at_best_single_cost"]
        assert v["verdict"] in ("better", "worse", "not better", "not worse", "undefined")
        if v["ci95"]:
            assert v["ci95"][0] <= v["diff"] <= v["ci95"][1]
