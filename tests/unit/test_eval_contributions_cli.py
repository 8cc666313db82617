"""``thrifty eval --contributions`` end to end on a small synthetic table written with write_table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from thrifty.cli.main import main
from thrifty.data.table import RoutingTable
from thrifty.data.table_io import write_table

LABELS = ("up", "down")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """60 prompts, the last 20 repeating the first 20; gold up/down.

    cheap (cost 1e-6) is right 50% of the time, strong (1e-5) 90%, cheap@short (5e-7) 80%, student (0) 70%.
    """
    rng = np.random.default_rng(1)
    n, models = 60, ("cheap", "strong", "cheap@short", "student")
    gold = rng.choice(LABELS, size=40).tolist()
    gold += gold[:20]
    right = rng.uniform(size=(n, 4)) < np.array([0.5, 0.9, 0.8, 0.7])
    right[40:] = right[:20]  # a repeated request gets the same recorded answers
    answers = np.array([[g if ok else ("down" if g == "up" else "up") for ok in row] for row, g in zip(right, gold)], dtype=object)
    texts = [f"Q: headline {i % 40}\nA:" for i in range(n)]
    t = RoutingTable(
        prompt_ids=tuple(f"p{i}" for i in range(n)),
        prompts=tuple(texts),
        models=models,
        quality=right.astype(float),
        cost=np.tile([1e-6, 1e-5, 5e-7, 0.0], (n, 1)),
        answers=answers,
        prompt_meta={"gold": tuple(gold), "prefix": tuple(["Say up or down.\n\n"] * n)},
        prices={"cheap": (1.0, 1.0), "strong": (10.0, 10.0), "cheap@short": (1.0, 1.0), "student": (0.0, 0.0)},
    )
    return write_table(t, tmp_path_factory.mktemp("table"))


def test_contributions_table_json_and_plot(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "eval",
            "--data",
            str(data_dir),
            "--contributions",
            "--models",
            "cheap,strong",
            "--adapted",
            "cheap@short",
            "--student",
            "student",
            "--cache",
            "exact",
            "--out",
            str(out),
            "--json",
            "--bootstrap",
            "30",
            "--folds",
            "3",
        ]
    )
    assert rc == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)  # exactly one JSON object on stdout
    assert [s["stage"] for s in doc["stages"]] == ["cascade alone", "+ cache", "+ prompt adaptation", "+ student"]
    assert doc["policy"] == "cascade" and doc["reference"]["model"] == "strong"
    assert doc["stages"][-1]["pool"] == ["cheap", "strong", "cheap@short", "student"]
    assert doc["cache"]["exact_hits"] == 20 and doc["cache"]["hit_rate"] == pytest.approx(1 / 3)
    alone, cached = doc["stages"][0], doc["stages"][1]
    assert cached["cache_hit_rate"] == pytest.approx(1 / 3) and alone["cache_hit_rate"] == 0
    # the cache serves a third of the stream for free: the cheapest cached point costs at most 2/3 of the plain one
    assert min(p["cost"] for p in cached["points"]) <= min(p["cost"] for p in alone["points"]) * 2 / 3 + 1e-12
    assert all(s["ci95"] for s in doc["stages"])
    assert (out / "metrics.json").exists() and (out / "contributions.png").stat().st_size > 5000
    assert json.loads((out / "metrics.json").read_text())["files"]["png"].endswith("contributions.png")
    for text in ("each strategy's contribution", "+ prompt adaptation", "cheap@short", "cache replay (exact): 20 exact"):
        assert text in cap.err  # the table went to stderr


def test_contributions_default_pool_is_every_other_column(data_dir, tmp_path, capsys):
    rc = main(
        [
            "eval",
            "--data",
            str(data_dir),
            "--contributions",
            "--policy",
            "oracle",
            "--adapted",
            "cheap@short",
            "--cache",
            "off",
            "--out",
            str(tmp_path),
            "--bootstrap",
            "0",
            "--no-plots",
            "--folds",
            "3",
        ]
    )
    assert rc == 0
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert [s["stage"] for s in doc["stages"]] == ["cascade alone", "+ prompt adaptation"]
    assert doc["stages"][0]["pool"] == ["cheap", "strong", "student"]
    assert doc["cache"] is None and not (tmp_path / "contributions.png").exists()
    out = capsys.readouterr().out
    assert "oracle: each strategy's contribution" in out


def test_contributions_errors(data_dir, tmp_path, capsys):
    assert main(["eval", "--data", str(data_dir), "--out", str(tmp_path)]) != 0  # neither --policy nor --contributions
    assert (
        main(["eval", "--data", str(data_dir), "--contributions", "--policy", "oracle", "--policy", "random", "--out", str(tmp_path)]) != 0
    )
    assert main(["eval", "--data", str(data_dir), "--contributions", "--student", "nope", "--out", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "--contributions" in err and "nope" in err
