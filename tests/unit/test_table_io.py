"""The routing-table loader: formats, missing pairs, pool selection, and every DataError case."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from thrifty.data.table import RoutingTable
from thrifty.data.table_io import load_table, write_table
from thrifty.errors import ConfigError, DataError

PROMPTS = [{"prompt_id": 0, "instruction": "Say hi", "dataset": "a"}, {"prompt_id": 1, "instruction": "Add 2+2", "dataset": "b"}]
MODELS = [("small", 0.1, 0.2), ("big", 10, 30), ("FuseChat-x", 0.3, 0.3)]


def outcomes() -> list[dict]:
    rows = []
    for p in (0, 1):
        for name, _, _ in MODELS:
            rows.append(
                {
                    "prompt_id": p,
                    "model": name,
                    "quality": 0.1 + 0.2 * p + (0.5 if name == "big" else 0.0),
                    "output": f"{name} answer {p}",
                    "input_tokens": 10,
                    "output_tokens": 100 + p,
                }
            )
    return rows


def write_folder(folder: Path, rows: list[dict] | None = None, *, fmt: str = "jsonl", models=MODELS, prompts=PROMPTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = outcomes() if rows is None else rows
    if fmt == "jsonl":
        (folder / "outcomes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "jsonl.gz":
        with gzip.open(folder / "outcomes.jsonl.gz", "wt", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    elif fmt in ("csv", "csv.gz"):
        keys = sorted({k for r in rows for k in r})
        opener = gzip.open if fmt.endswith(".gz") else open
        with opener(folder / f"outcomes.{fmt}", "wt", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), folder / "outcomes.parquet")
    with open(folder / "models.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "usd_per_1m_input", "usd_per_1m_output"])
        w.writerows(models)
    if prompts is not None:
        (folder / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts), encoding="utf-8")
    return folder


def expect_error(folder: Path, file: str, line: int | None, field: str | None) -> DataError:
    with pytest.raises(DataError) as ei:
        load_table(folder)
    e = ei.value
    assert Path(e.file).name == file
    assert e.line == line
    assert e.field == field
    text = str(e)
    assert file in text and (line is None or f":{line}" in text) and (field is None or field in text)
    return e


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "csv", "csv.gz", "parquet"])
def test_formats_load_the_same_table(tmp_path, fmt):
    t = load_table(write_folder(tmp_path / fmt, fmt=fmt))
    assert t.models == ("small", "big", "FuseChat-x")
    assert t.prompt_ids == ("0", "1")
    assert t.prompts == ("Say hi", "Add 2+2")
    assert t.quality[1].tolist() == pytest.approx([0.3, 0.8, 0.3])
    # cost from tokens × prices: big on prompt 1 = (10*10 + 101*30) / 1e6
    assert t.cost[1, 1] == pytest.approx((10 * 10 + 101 * 30) / 1e6)
    assert t.answer(0, 0) == "small answer 0"
    assert t.prompt_meta["dataset"] == ("a", "b")


def test_cost_usd_column_overrides_prices(tmp_path):
    rows = outcomes()
    for r in rows:
        r["cost_usd"] = 0.5
    t = load_table(write_folder(tmp_path, rows))
    assert np.all(t.cost == 0.5)


def test_missing_pairs_are_allowed_and_not_routable(tmp_path):
    rows = [r for r in outcomes() if not (r["prompt_id"] == 1 and r["model"] == "small")]
    t = load_table(write_folder(tmp_path, rows))
    assert np.isnan(t.quality[1, 0]) and np.isnan(t.cost[1, 0])
    assert t.available.tolist() == [[True, True, True], [False, True, True]]
    assert t.model_stats()[0].n == 1 and t.model_stats()[0].quality == pytest.approx(0.1)


def test_pool_selection_exclude_and_models(tmp_path):
    folder = write_folder(tmp_path)
    assert load_table(folder, exclude="FuseChat").models == ("small", "big")
    t = load_table(folder, models=["big", "small"])
    assert t.models == ("big", "small")
    assert t.quality[:, 0].tolist() == pytest.approx([0.6, 0.8])
    with pytest.raises(ConfigError):
        load_table(folder, models=["nope"])
    with pytest.raises(ConfigError):
        load_table(folder, exclude=".")  # empty pool
    with pytest.raises(ConfigError):
        load_table(folder, exclude="(")  # bad regex


def test_round_trip_with_write_table(tmp_path):
    t = load_table(write_folder(tmp_path / "a"))
    t2 = load_table(write_table(t, tmp_path / "b"))
    assert t2.models == t.models and t2.prompt_ids == t.prompt_ids
    assert np.array_equal(t2.quality, t.quality) and np.allclose(t2.cost, t.cost)


def test_splits_json_gives_the_folds(tmp_path):
    folder = write_folder(tmp_path)
    (folder / "splits.json").write_text(json.dumps({"folds": [[1], [0]]}))
    t = load_table(folder)
    assert [f.tolist() for f in t.folds] == [[1], [0]]
    assert [rows.tolist() for _, _, _, rows in t.splits()] == [[1], [0]]


# ---- every DataError names file, line and field ------------------------------------------------


def test_missing_column(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "quality"} for r in outcomes()]
    expect_error(write_folder(tmp_path, rows), "outcomes.jsonl", 1, "quality")


def test_missing_column_csv(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "model"} for r in outcomes()]
    expect_error(write_folder(tmp_path, rows, fmt="csv"), "outcomes.csv", 2, "model")


@pytest.mark.parametrize("bad", [float("nan"), 1.5, -0.1, "good"])
def test_bad_quality(tmp_path, bad):
    rows = outcomes()
    rows[3]["quality"] = bad
    e = expect_error(write_folder(tmp_path, rows), "outcomes.jsonl", 4, "quality")
    assert "[0, 1]" in str(e)


def test_nan_quality_in_csv(tmp_path):
    rows = outcomes()
    rows[2]["quality"] = "nan"
    expect_error(write_folder(tmp_path, rows, fmt="csv"), "outcomes.csv", 4, "quality")  # header is line 1


def test_duplicate_pair(tmp_path):
    rows = outcomes()
    rows.append(dict(rows[1]))
    e = expect_error(write_folder(tmp_path, rows), "outcomes.jsonl", 7, "model")
    assert "duplicate" in str(e) and "line 2" in str(e)


def test_model_without_price(tmp_path):
    models = [("small", 0.1, 0.2), ("big", "", ""), ("FuseChat-x", 0.3, 0.3)]
    e = expect_error(write_folder(tmp_path, models=models), "models.csv", 3, "usd_per_1m_input/usd_per_1m_output")
    assert "big" in str(e)


def test_model_not_in_models_file(tmp_path):
    models = [("small", 0.1, 0.2), ("big", 10, 30)]
    e = expect_error(write_folder(tmp_path, models=models), "outcomes.jsonl", 3, "model")
    assert "FuseChat-x" in str(e)


def test_unknown_prompt_id(tmp_path):
    rows = outcomes()
    rows[4]["prompt_id"] = 7
    e = expect_error(write_folder(tmp_path, rows), "outcomes.jsonl", 5, "prompt_id")
    assert "'7'" in str(e)


def test_bad_json_line(tmp_path):
    folder = write_folder(tmp_path)
    lines = (folder / "outcomes.jsonl").read_text().splitlines()
    lines[2] = lines[2][:-5]
    (folder / "outcomes.jsonl").write_text("\n".join(lines) + "\n")
    e = expect_error(folder, "outcomes.jsonl", 3, None)
    assert "invalid JSON" in str(e)


def test_no_cost_and_no_tokens(tmp_path):
    rows = outcomes()
    del rows[0]["output_tokens"]
    expect_error(write_folder(tmp_path, rows), "outcomes.jsonl", 1, "cost_usd")


def test_unknown_prompt_in_splits(tmp_path):
    folder = write_folder(tmp_path)
    (folder / "splits.json").write_text(json.dumps({"folds": [[0], [9]]}))
    e = expect_error(folder, "splits.json", None, "folds")
    assert "'9'" in str(e)


def test_not_a_folder(tmp_path):
    with pytest.raises(DataError):
        load_table(tmp_path / "missing")
    with pytest.raises(DataError, match="outcomes"):
        load_table(tmp_path)


def test_table_shape_checks():
    with pytest.raises(ValueError):
        RoutingTable(prompt_ids=("a",), prompts=(None,), models=("m",), quality=np.zeros((2, 1)), cost=np.zeros((1, 1)))
