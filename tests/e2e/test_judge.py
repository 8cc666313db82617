"""The LLM-judge path with a real local model (SmolLM2, 1 thread) judging a handful of answers."""

from __future__ import annotations

import importlib.util

import pytest

from thrifty.cli.main import main
from thrifty.outcomes_log import OutcomeLog
from thrifty.table_io import load_table

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                reason="llama-cpp-python not installed (pip install 'thrifty[local]')")

ITEMS = [
    ("q1", "What is the capital of France?", {"good": "The capital of France is Paris.", "bad": "Bananas are yellow."}),
    ("q2", "What is 2 + 2?", {"good": "2 + 2 = 4.", "bad": "It is 22, obviously."}),
    ("q3", "Which planet is known as the Red Planet?", {"good": "Mars is the Red Planet.", "bad": "I do not know."}),
]


def _folder(tmp_path):
    log = OutcomeLog(tmp_path / "j")
    log.merge_prompts([{"prompt_id": pid, "instruction": q} for pid, q, _ in ITEMS])
    for pid, _, answers in ITEMS:
        for model, text in answers.items():
            log.append({"prompt_id": pid, "model": model, "output": text, "cost_usd": 0.0, "input_tokens": 10, "output_tokens": 8})
    log.close()
    return tmp_path / "j"


def test_absolute_judge_stores_verdicts_with_provenance(tmp_path):
    folder = _folder(tmp_path)
    rc = main(["label", str(folder), "--judge", "smollm2", "--rubric", "absolute", "--models", "good,bad", "--concurrency", "1"])
    rows = OutcomeLog(folder).outcomes()
    assert len(rows) == 6
    for r in rows:
        assert r["judge"] == "smollm2" and r["rubric_version"] == "absolute-v1" and r["label_method"] == "judge:absolute"
        assert isinstance(r["judge_raw"], str) and r["judge_raw"].strip(), r  # the raw verdict is kept
    parsed = [r for r in rows if "label_error" not in r]
    assert len(parsed) >= 4, [r["judge_raw"] for r in rows]  # a tiny judge, but its replies must mostly parse
    for r in parsed:
        rating = float(r["label_verdict"])
        assert 1 <= rating <= 10 and r["quality"] == pytest.approx((rating - 1) / 9)
    if len(parsed) == len(rows):
        assert rc == 0
        table = load_table(folder)
        assert table.quality.shape == (3, 2)
    else:
        assert rc == 4  # unparseable verdicts leave rows unlabelled and say so


def test_pairwise_judge_against_a_reference(tmp_path):
    folder = _folder(tmp_path)
    rc = main(["label", str(folder), "--judge", "smollm2", "--rubric", "pairwise", "--reference", "good",
               "--unparseable", "0.5", "--concurrency", "1"])
    assert rc == 0
    rows = OutcomeLog(folder).outcomes()
    ref = [r for r in rows if r["model"] == "good"]
    other = [r for r in rows if r["model"] == "bad"]
    assert all(r["quality"] == 0.5 and r["label_verdict"] == "reference" for r in ref)
    for r in other:
        assert r["rubric_version"] == "pairwise-v1" and " ||| " in r["judge_raw"]  # both orders' raw replies
        assert 0.0 <= r["quality"] <= 1.0
        v1, v2 = r["label_verdict"].split(",")
        assert v1 in "ABC?" and v2 in "ABC?"
    table = load_table(folder)
    assert table.models == ("good", "bad")
