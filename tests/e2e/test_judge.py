"""The LLM-judge path with a real local model (Gemma-3-270M, 1 thread) judging a handful of answers.

The model is far too small to be a *good* judge (it rates nearly everything 10 and prefers whichever
answer comes first); the test checks the mechanism: rubric, verdict parsing, provenance, both orders.
"""

from __future__ import annotations

import importlib.util

import pytest

from thrifty.cli.main import main
from thrifty.data.outcomes_log import OutcomeLog
from thrifty.data.table_io import load_table

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed (pip install 'thrifty[local]')"
)

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
    rc = main(["label", str(folder), "--judge", "gemma3-270m", "--rubric", "absolute", "--models", "good,bad", "--concurrency", "1"])
    rows = OutcomeLog(folder).outcomes()
    assert len(rows) == 6
    for r in rows:
        assert r["judge"] == "gemma3-270m" and r["rubric_version"] == "absolute-v1" and r["label_method"] == "judge:absolute"
        assert isinstance(r["judge_raw"], str) and r["judge_raw"].strip(), r  # the raw verdict is kept
    assert all("label_error" not in r for r in rows), [r["judge_raw"] for r in rows]  # every verdict parsed
    for r in rows:
        rating = float(r["label_verdict"])
        assert 1 <= rating <= 10 and r["quality"] == pytest.approx((rating - 1) / 9)
        assert r["judge_raw"].lstrip().startswith(r["label_verdict"].removesuffix(".0"))  # parsed from the raw reply
    assert rc == 0
    table = load_table(folder)
    assert table.quality.shape == (3, 2)


def test_pairwise_judge_against_a_reference(tmp_path):
    folder = _folder(tmp_path)
    rc = main(["label", str(folder), "--judge", "gemma3-270m", "--rubric", "pairwise", "--reference", "good", "--concurrency", "1"])
    assert rc == 0
    rows = OutcomeLog(folder).outcomes()
    ref = [r for r in rows if r["model"] == "good"]
    other = [r for r in rows if r["model"] == "bad"]
    assert all(r["quality"] == 0.5 and r["label_verdict"] == "reference" for r in ref)
    for r in other:
        assert r["rubric_version"] == "pairwise-v1" and " ||| " in r["judge_raw"]  # both orders' raw replies
        v1, v2 = r["label_verdict"].split(",")
        assert v1 in "ABC" and v2 in "ABC"  # both orders parsed
        win1 = {"A": 1.0, "C": 0.5, "B": 0.0}[v1]  # candidate shown first
        win2 = {"B": 1.0, "C": 0.5, "A": 0.0}[v2]  # candidate shown second
        assert r["quality"] == pytest.approx((win1 + win2) / 2)
    table = load_table(folder)
    assert table.models == ("good", "bad")
