"""``thrifty eval`` end to end on a small synthetic table written with write_table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from thrifty.cli.main import main
from thrifty.data.table import RoutingTable
from thrifty.data.table_io import write_table


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    n, models = 40, ("tiny", "mid", "big", "huge")
    price = np.array([1e-5, 1e-4, 1e-3, 1e-2])
    skill = np.array([0.2, 0.45, 0.6, 0.7])
    quality = np.clip(skill + rng.normal(0, 0.25, size=(n, 4)), 0, 1)
    cost = price * rng.uniform(0.5, 1.5, size=(n, 1))
    quality[3, 0] = np.nan  # a missing pair
    cost[3, 0] = np.nan
    t = RoutingTable(
        prompt_ids=tuple(str(i) for i in range(n)),
        prompts=tuple(f"question {i}" for i in range(n)),
        models=models,
        quality=quality,
        cost=cost,
        prices={m: (p * 1e6, p * 1e6) for m, p in zip(models, price)},
    )
    return write_table(t, tmp_path_factory.mktemp("table"))


def test_json_single_policy_and_files(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["eval", "--data", str(data_dir), "--policy", "oracle", "--out", str(out), "--json", "--bootstrap", "50"])
    assert rc == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)  # exactly one JSON object on stdout
    assert doc["policy"] == "oracle"
    assert doc["pool"] == ["tiny", "mid", "big", "huge"]
    assert doc["best_single"]["model"] == "huge"
    for key in (
        "quality_at_best_single_cost",
        "savings_at_parity",
        "oracle_gap_closed",
        "aiq",
        "points",
        "budget_violations",
        "baselines",
        "ci95",
        "timing",
    ):
        assert key in doc
    assert doc["oracle_gap_closed"] == pytest.approx(1.0, abs=0.01)
    assert doc["quality_at_best_single_cost"] > doc["best_single"]["quality"]
    assert all({"cost", "quality", "knob", "target_budget"} <= set(p) for p in doc["points"])
    assert {s["model"] for s in doc["baselines"]["singles"]} == set(doc["pool"])
    assert doc["baselines"]["hull"][0]["model"] == "tiny"
    assert (out / "metrics.json").exists() and (out / "plot.png").stat().st_size > 1000
    assert "plotly" in (out / "plot.html").read_text()[:200_000].lower()
    assert json.loads((out / "metrics.json").read_text())["policy"] == "oracle"
    assert "held-out metrics" in cap.err  # the table went to stderr


def test_several_policies_side_by_side(data_dir, tmp_path, capsys):
    rc = main(
        [
            "eval",
            "--data",
            str(data_dir),
            "--policy",
            "random",
            "--policy",
            "single:big",
            "--out",
            str(tmp_path),
            "--json",
            "--bootstrap",
            "0",
            "--no-plots",
        ]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["policy"] for p in doc["policies"]] == ["random", "single:big"]
    big = doc["policies"][1]
    assert len(big["points"]) == 1 and big["savings_at_parity"] is None  # big never reaches huge's quality
    assert not (tmp_path / "plot.png").exists()


def test_pair_gives_apgr_and_cpt(data_dir, tmp_path, capsys):
    rc = main(
        [
            "eval",
            "--data",
            str(data_dir),
            "--policy",
            "random",
            "--strong",
            "huge",
            "--weak",
            "mid",
            "--out",
            str(tmp_path),
            "--json",
            "--bootstrap",
            "0",
            "--no-plots",
        ]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["pool"] == ["mid", "huge"]
    assert doc["apgr"] == pytest.approx(0.5)
    assert doc["cpt50"] == pytest.approx(0.5) and doc["cpt80"] == pytest.approx(0.8)


def test_exclude_models_and_text_output(data_dir, tmp_path, capsys):
    rc = main(
        ["eval", "--data", str(data_dir), "--policy", "oracle", "--exclude", "^h", "--out", str(tmp_path), "--bootstrap", "0", "--no-plots"]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "best single model big" in text and "oracle" in text
    assert json.loads((tmp_path / "metrics.json").read_text())["pool"] == ["tiny", "mid", "big"]


def test_opt_passes_policy_options(data_dir, tmp_path, capsys):
    rc = main(
        [
            "eval",
            "--data",
            str(data_dir),
            "--policy",
            "oracle",
            "--opt",
            "n_lambdas=20",
            "--out",
            str(tmp_path),
            "--json",
            "--bootstrap",
            "0",
            "--no-plots",
        ]
    )
    assert rc == 0
    assert len(json.loads(capsys.readouterr().out)["points"]) == 22  # 20 + λ = 0 and ∞


@pytest.mark.parametrize(
    "argv, code",
    [
        (["--policy", "nope"], 3),
        (["--policy", "single:nope"], 3),
        (["--policy", "oracle", "--strong", "huge"], 3),
        (["--policy", "oracle", "--opt", "novalue"], 3),
        (["--policy", "oracle", "--opt", "bogus=1"], 3),
    ],
)
def test_errors_map_to_exit_codes(data_dir, tmp_path, capsys, argv, code):
    assert main(["eval", "--data", str(data_dir), "--out", str(tmp_path), "--bootstrap", "0", "--no-plots", *argv]) == code
    assert "thrifty: error:" in capsys.readouterr().err


def test_bad_data_is_exit_code_4(tmp_path, capsys):
    (tmp_path / "outcomes.jsonl").write_text('{"prompt_id": 1, "model": "m", "quality": 2, "cost_usd": 1}\n')
    assert main(["eval", "--data", str(tmp_path), "--policy", "oracle", "--out", str(tmp_path / "o")]) == 4
    err = capsys.readouterr().err
    assert "outcomes.jsonl:1" in err and "quality" in err
