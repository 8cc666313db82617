"""``thrifty simulate`` and ``thrifty artefacts`` end to end, on files (a synthetic routing table, a SQLite log)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


def test_simulate_writes_json_plot_and_is_reproducible(tmp_path, capsys) -> None:
    from thrifty.calibration.synthetic import binary_table
    from thrifty.cli.main import main
    from thrifty.data.table_io import write_table

    data = write_table(binary_table(400, seed=2), tmp_path / "table")
    args = ["simulate", "--data", str(data), "--seeds", "2", "--every", "30", "--rate", "0.3", "--target", "0.9", "--no-progress"]
    assert main(args + ["--json", "--out", str(tmp_path / "a.json"), "--png", str(tmp_path / "a.png")]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "a.json").read_text())
    for key in (
        "requests",
        "audits",
        "audit_cost_share",
        "final_window",
        "offline_heldout_at_same_cost",
        "gap_to_offline",
        "target",
        "target_met_share_of_windows",
        "seeds",
    ):
        assert key in printed and printed[key] == saved[key]
    assert printed["requests"] == 400 and printed["seeds"] == 2 and printed["target"] == 0.9
    assert set(printed["final_window"]) >= {"quality", "cost_usd"}
    fw, seeds = saved["final_window"], saved["per_seed"]
    assert fw["quality"] == pytest.approx(sum(s["final_window"]["quality"] for s in seeds) / 2)
    assert saved["gap_to_offline"] == pytest.approx(
        sum(s["offline_heldout_at_same_cost"] - s["final_window"]["quality"] for s in seeds) / 2
    )
    assert 0 < saved["audits"] < 400 and saved["audit_cost_share"] > 0
    assert (tmp_path / "a.png").stat().st_size > 10_000
    assert main(args + ["--out", str(tmp_path / "b.json")]) == 0  # the rich table; the same numbers again
    table = capsys.readouterr().out
    assert "thrifty simulate" in table
    again = json.loads((tmp_path / "b.json").read_text())
    assert again["per_seed"] == saved["per_seed"]
    # the per-seed columns: final share, met at the end (yes/no), savings share with a miss as 0
    first = saved["per_seed"][0]
    ratio = first["savings_share_of_offline_if_met"]
    line = f"seed 0: {first['final_window']['good_share']:.3f} / {'yes' if first['target_met_final'] else 'no'} / "
    assert line + ("—" if ratio is None else f"{ratio:.0%}") in table
    assert f"met the target in {saved['seeds_target_met_final']}/2 seeds" in table
    # audits sampled near the thresholds: same mean rate, and the summary says how audits were sampled
    assert main(args + ["--sampling", "near_threshold", "--json"]) == 0
    weighted = json.loads(capsys.readouterr().out)
    assert weighted["sampling"] == "near_threshold" and 0.15 * 400 < weighted["audits"] < 0.45 * 400


@pytest.mark.parametrize(
    ("flag", "value", "key"),
    [
        ("--every", "0", "--every"),
        ("--target", "1.5", "--target"),
        ("--rate", "0", "--rate"),
        ("--reference", "nobody", "--reference"),
        ("--share-z", "9", "--share-z"),
    ],
)
def test_simulate_bad_input_names_the_flag(tmp_path, capsys, flag: str, value: str, key: str) -> None:
    from thrifty.calibration.synthetic import binary_table
    from thrifty.cli.main import main
    from thrifty.data.table_io import write_table

    data = write_table(binary_table(50, seed=1), tmp_path / "table")
    assert main(["simulate", "--data", str(data), "--no-progress", flag, value]) != 0
    assert key in capsys.readouterr().err


def test_artefacts_list_show_rollback(tmp_path, capsys) -> None:
    from thrifty.cli.main import main
    from thrifty.store import LogStore, artefacts

    db = tmp_path / "logs.sqlite3"
    store = LogStore(db)
    ev = {
        "kind": "swap",
        "evidence": {
            "rule": "only the candidate meets the target",
            "candidate_cv": {"quality": 0.8, "cost_usd": 0.001, "good_share": 0.96},
            "serving_cv": {"quality": 0.6, "cost_usd": 0.0005, "good_share": 0.7},
        },
    }
    store.run_in_transaction(artefacts.record, "support", "serving", ev, str(tmp_path / "v1"))
    store.run_in_transaction(
        artefacts.record, "support", "refused", {"kind": "refuse", "evidence": {"rule": "the candidate misses the target"}}
    )
    store.close()
    assert main(["artefacts", "--db", str(db), "list"]) == 0
    out = capsys.readouterr().out
    assert "v2" in out and "refused" in out and "v1" in out and "serving" in out and "only the candidate meets the target" in out
    assert main(["artefacts", "--db", str(db), "show", "support", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["evidence"]["evidence"]["candidate_cv"]["good_share"] == 0.96
    assert main(["artefacts", "--db", str(db), "rollback", "support"]) == 0
    assert "rolled back support v1" in capsys.readouterr().out
    assert main(["artefacts", "--db", str(db), "list", "--json"]) == 0
    assert [r["status"] for r in json.loads(capsys.readouterr().out)] == ["refused", "rolled_back"]
    assert main(["artefacts", "--db", str(db), "rollback", "support"]) != 0  # nothing learned in service any more
    assert "no learned artefact in service" in capsys.readouterr().err
    assert main(["artefacts", "--db", str(db), "show", "support", "9"]) != 0
