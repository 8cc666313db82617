"""judge_folder mechanics with a scripted judge: provenance, both pairwise orders, exported-log folders."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from thrifty.calibration.judge import judge_folder
from thrifty.calibration.label import label_folder
from thrifty.data.outcomes_log import OutcomeLog
from thrifty.data.table import RoutingTable
from thrifty.data.table_io import load_table, write_table
from thrifty.errors import ConfigError, DataError
from thrifty.types import ChatRequest, Completion


class ScriptedJudge:
    """Replies from a function of the judge prompt; records every prompt it saw."""

    name = "scripted"

    def __init__(self, reply):
        self.reply = reply
        self.prompts: list[str] = []

    async def complete(self, request: ChatRequest) -> Completion:
        self.prompts.append(request.prompt_text)
        return Completion(text=self.reply(request.prompt_text), model="scripted")


def _folder(tmp_path):
    log = OutcomeLog(tmp_path / "f")
    log.merge_prompts([{"prompt_id": "p0", "instruction": "Capital of France?"}, {"prompt_id": "p1", "instruction": "2+2?"}])
    for pid, good, bad in (("p0", "Paris", "Lyon"), ("p1", "4", "5")):
        log.append({"prompt_id": pid, "model": "good", "output": good, "cost_usd": 0.0})
        log.append({"prompt_id": pid, "model": "bad", "output": bad, "cost_usd": 0.0})
    log.close()
    return tmp_path / "f"


def test_absolute_rubric_scales_and_keeps_provenance(tmp_path):
    folder = _folder(tmp_path)
    judge = ScriptedJudge(lambda p: "10]]" if ("Paris" in p or "[Answer]\n4" in p) else "Rating: [[1]] — wrong")
    s = judge_folder(folder, judge, judge_name="scripted")
    assert (s.labelled, s.unparseable) == (4, 0)
    rows = {(r["prompt_id"], r["model"]): r for r in OutcomeLog(folder).outcomes()}
    assert rows[("p0", "good")]["quality"] == 1.0 and rows[("p0", "bad")]["quality"] == 0.0
    r = rows[("p0", "bad")]
    assert (r["judge"], r["rubric_version"], r["label_method"]) == ("scripted", "absolute-v1", "judge:absolute")
    assert r["judge_raw"] == "Rating: [[1]] — wrong" and r["label_verdict"] == "1"
    assert all("Capital of France?" in p or "2+2?" in p for p in judge.prompts)
    assert load_table(folder).quality.shape == (2, 2)
    # nothing left to label; a rerun makes no calls
    judge.prompts.clear()
    assert judge_folder(folder, judge, judge_name="scripted").labelled == 0 and judge.prompts == []


def test_unparseable_verdicts_stay_unlabelled_unless_filled(tmp_path):
    folder = _folder(tmp_path)
    s = judge_folder(folder, ScriptedJudge(lambda p: "I cannot say"), judge_name="scripted")
    assert (s.labelled, s.unparseable) == (0, 4)
    rows = OutcomeLog(folder).outcomes()
    assert all("quality" not in r and r["label_error"] == "unparseable verdict" and r["judge_raw"] == "I cannot say" for r in rows)
    s = judge_folder(folder, ScriptedJudge(lambda p: "no"), judge_name="scripted", unparseable=0.5)
    assert s.labelled == 4 and all(r["quality"] == 0.5 for r in OutcomeLog(folder).outcomes())


def test_pairwise_asks_both_orders_and_cancels_position_bias(tmp_path):
    folder = _folder(tmp_path)
    always_first = ScriptedJudge(lambda p: "A]]")  # a judge with pure position bias
    judge_folder(folder, always_first, judge_name="scripted", rubric="pairwise", reference="good")
    rows = {(r["prompt_id"], r["model"]): r for r in OutcomeLog(folder).outcomes()}
    assert len(always_first.prompts) == 4  # 2 candidate answers × 2 orders; the reference is not judged
    assert rows[("p0", "bad")]["quality"] == 0.5 and rows[("p0", "bad")]["label_verdict"] == "A,A"
    assert rows[("p0", "good")]["label_verdict"] == "reference" and rows[("p0", "good")]["quality"] == 0.5
    # a judge that prefers the right answer wherever it is shown
    folder2 = _folder(tmp_path / "x")

    def prefers_right(p: str) -> str:
        first = p.split("[Answer A]\n")[1].split("\n")[0]
        return "A]]" if first in ("Paris", "4") else "B]]"

    fair = ScriptedJudge(prefers_right)
    judge_folder(folder2, fair, judge_name="scripted", rubric="pairwise", reference="good")
    assert all(r["quality"] == 0.0 for r in OutcomeLog(folder2).outcomes() if r["model"] == "bad")
    with pytest.raises(ConfigError, match="reference"):
        judge_folder(folder2, fair, judge_name="scripted", rubric="pairwise")
    with pytest.raises(ConfigError, match="no answers of reference"):
        judge_folder(folder2, fair, judge_name="scripted", rubric="pairwise", reference="nobody", force=True)


def test_exported_log_folder_pending_and_scored_rows_get_labelled(tmp_path, monkeypatch):
    """The layout of `thrifty logs export`: gzip files, live-score qualities, pending answers."""
    import thrifty.data.outcomes_log as ol

    reads: list[str] = []
    real = ol.read_jsonl
    monkeypatch.setattr(ol, "read_jsonl", lambda path, **kw: reads.append(path.name) or real(path, **kw))
    out = tmp_path / "export"
    q = np.array([[0.8, np.nan], [0.3, 1.0]])
    t = RoutingTable(
        ("r1", "r2"),
        ("Capital of France?", "2+2?"),
        ("small", "big"),
        q,
        np.array([[1e-6, np.nan], [1e-6, 1e-5]]),
        answers=np.array([["Paris", None], ["5", "4"]], dtype=object),
    )
    write_table(t, out)
    rows = [json.loads(x) for x in gzip.open(out / "outcomes.jsonl.gz", "rt")]
    for r in rows:
        r["quality_source"] = "label" if r["model"] == "big" else "score"
    with gzip.open(out / "outcomes.jsonl.gz", "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    with gzip.open(out / "pending.jsonl.gz", "wt") as fh:
        fh.write(
            json.dumps(
                {
                    "prompt_id": "r3",
                    "model": "big",
                    "output": "Blue",
                    "prompt": "Colour of the sky?",
                    "cost_usd": 2e-5,
                    "input_tokens": 9,
                    "output_tokens": 1,
                }
            )
            + "\n"
        )
    judge = ScriptedJudge(lambda p: "10]]" if any(a in p for a in ("Paris", "[Answer]\n4", "Blue")) else "1]]")
    s = judge_folder(out, judge, judge_name="scripted")
    assert s.labelled == 3  # two live-score estimates + one pending answer; the human label is kept
    assert reads.count("pending.jsonl.gz") == 1  # the pending answers are read once
    assert not (out / "pending.jsonl.gz").exists() and not (out / "outcomes.jsonl").exists()
    table = load_table(out)
    assert table.n_prompts == 3 and set(table.models) == {"small", "big"}
    got = {
        (table.prompt_ids[p], table.models[m]): table.quality[p, m] for p in range(3) for m in range(2) if not np.isnan(table.quality[p, m])
    }
    assert got == {("r1", "small"): 1.0, ("r2", "small"): 0.0, ("r2", "big"): 1.0, ("r3", "big"): 1.0}
    assert any("Colour of the sky?" in p for p in judge.prompts)


def test_exact_label_needs_gold_for_every_prompt(tmp_path):
    folder = _folder(tmp_path)
    log = OutcomeLog(folder)
    rows = log.prompts()
    rows[0]["gold"] = "Paris"
    from thrifty.data.outcomes_log import write_jsonl_atomic

    write_jsonl_atomic(log.prompts_path, rows)
    with pytest.raises(DataError, match="has no 'gold' value"):
        label_folder(folder, match="exact")


def test_a_folder_with_nothing_to_label_is_a_data_error_for_both_labellers(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for label in (lambda: label_folder(empty, match="exact"), lambda: judge_folder(empty, ScriptedJudge(lambda p: "5]]"), judge_name="s")):
        with pytest.raises(DataError, match=r"outcomes.jsonl: no outcomes to label \(expected run thrifty collect first\)"):
            label()


def test_an_answer_whose_prompt_is_missing_is_not_judged_blind(tmp_path):
    folder = _folder(tmp_path)
    with OutcomeLog(folder) as log:
        log.append({"prompt_id": "p9", "model": "good", "output": "42", "cost_usd": 0.0})
    judge = ScriptedJudge(lambda p: "5]]")
    with pytest.raises(DataError, match=r"prompts.jsonl: field 'prompt_id': prompt 'p9' has an answer but no prompt text"):
        judge_folder(folder, judge, judge_name="scripted")
    assert judge.prompts == []
