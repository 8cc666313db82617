"""Cache replay and the joint contributions replay on small synthetic tables whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from thrifty.data.table import RoutingTable
from thrifty.errors import ConfigError
from thrifty.offline.cache_replay import cached_points, gold_grader, grade_hits, request_texts, stream_hits
from thrifty.offline.contributions import contributions, cumulative_stages
from thrifty.offline.evaluate import PooledPoint
from thrifty.serving.cache.semantic import SemanticMatcher

MODELS = ("cheap", "strong", "cheap@adapted", "student")
COST = np.array([1.0, 4.0, 2.0, 0.0])


def known_table(repeat: bool = True) -> RoutingTable:
    """8 prompts; rows 4–7 repeat rows 0–3 word for word when ``repeat``. Gold alternates u/d.

    cheap always answers "u" (right on even rows), strong / cheap@adapted / student always right;
    costs 1, 4, 2, 0 per call.
    """
    gold = ["u", "d"] * 4
    answers = np.array([["u", g, g, g] for g in gold], dtype=object)
    quality = np.array([[float(a == g) for a in row] for row, g in zip(answers, gold)])
    texts = [f"headline number {'abcd'[i % 4] if repeat else 'abcdefgh'[i]}" for i in range(8)]
    return RoutingTable(
        prompt_ids=tuple(str(i) for i in range(8)),
        prompts=tuple(texts),
        models=MODELS,
        quality=quality,
        cost=np.tile(COST, (8, 1)),
        answers=answers,
        prompt_meta={"gold": tuple(gold), "prefix": tuple(["Answer u or d.\n\n"] * 8)},
    )


class LetterEmbedder:
    """Bag-of-letters vectors: digits and case are invisible, so '$7' and '$9' embed identically."""

    def embed(self, texts):
        out = np.zeros((len(texts), 26), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t.lower():
                if "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_request_texts_apply_the_prefix():
    assert request_texts(known_table())[0] == "Answer u or d.\n\nheadline number a"


def test_exact_stream_hits_point_at_the_first_cached_request():
    src, kind, _ = stream_hits(["a", "b", "a", "c", "b", "a"], "exact")
    assert src.tolist() == [-1, -1, 0, -1, 1, 0]
    assert kind.tolist() == ["", "", "exact", "", "exact", "exact"]
    assert stream_hits(["a", "a"], "off")[0].tolist() == [-1, -1]
    with pytest.raises(ConfigError):
        stream_hits(["a"], "fuzzy")


def test_semantic_stream_serves_paraphrases_and_the_guard_refuses_another_number():
    texts = ["gold up $7 at $900", "Gold up $7 at $900!", "gold up $9 at $900", "silver slumps"]
    m = SemanticMatcher(threshold=0.9, guard="strict", embedder=LetterEmbedder())
    src, kind, rejected = stream_hits(texts, "semantic", m)
    assert src.tolist() == [-1, 0, -1, -1]  # the paraphrase hits; "$9" is refused although its cosine is 1
    assert kind.tolist() == ["", "semantic", "", ""]
    assert rejected == 1
    loose = SemanticMatcher(threshold=0.9, guard="off", embedder=LetterEmbedder())
    assert stream_hits(texts, "semantic", loose)[0].tolist() == [-1, 0, 0, -1]


def test_semantic_hits_are_graded_against_the_new_requests_gold():
    t = known_table(repeat=False)
    src = np.array([-1, 0, -1, -1, -1, -1, -1, -1])  # row 1 (gold d) is served row 0's answers
    kind = np.array(["", "semantic"] + [""] * 6, dtype=object)
    hits = grade_hits(t, src, kind, gold_grader(t))
    assert hits.served[1].tolist() == [0.0, 0.0, 0.0, 0.0]  # every model said "u" to row 0; row 1's gold is d
    assert hits.agreement == 0.0  # row 1's gold differs from its source's
    assert np.isnan(hits.served[0]).all()
    with pytest.raises(ConfigError):  # a semantic hit cannot be graded without gold
        grade_hits(t, src, kind, None)
    exact = grade_hits(t, src, np.array(["", "exact"] + [""] * 6, dtype=object), None)
    assert exact.served[1].tolist() == t.quality[0].tolist()  # identical request: the source's own grade


def test_cached_points_zero_the_cost_and_serve_the_sources_returned_answer():
    t = known_table()
    src, kind, _ = stream_hits(request_texts(t), "exact")
    hits = grade_hits(t, src, kind, gold_grader(t))
    chosen = np.array([0, 1, 0, 1, 0, 0, 0, 1])  # rows 4–7 will be served from rows 0–3 anyway
    p = PooledPoint(0.0, None, "", COST[chosen].astype(float), t.quality[np.arange(8), chosen], np.eye(4, dtype=bool)[chosen], chosen)
    (q,) = cached_points(hits, MODELS)([p])
    assert q.cost.tolist() == [1, 4, 1, 4, 0, 0, 0, 0]
    assert q.quality.tolist() == [1.0] * 8  # rows 4–7 get rows 0–3's right answers
    assert q.chosen.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert not q.calls[4:].any() and p.cost[5] == 1.0  # the input point is not modified


def test_cumulative_stages_and_groups():
    st = cumulative_stages(["a", "b"], ["a@x"], ["s"])
    assert [s.name for s in st] == ["cascade alone", "+ cache", "+ prompt adaptation", "+ student"]
    assert st[-1].pool == ("a", "b", "a@x", "s") and st[-1].cache and not st[0].cache
    assert [s.name for s in cumulative_stages(["a"], student=["s"], cache=False)] == ["cascade alone", "+ student"]
    with pytest.raises(ConfigError):
        cumulative_stages(["a"], ["a"])


def test_joint_replay_with_the_oracle_gives_the_hand_computed_numbers():
    t = known_table()
    src, kind, _ = stream_hits(request_texts(t), "exact")
    hits = grade_hits(t, src, kind, gold_grader(t))
    rep = contributions(
        t, cumulative_stages(["cheap", "strong"], ["cheap@adapted"], ["student"]), policy="oracle", hits=hits, n_folds=4, n_boot=50
    )
    assert rep.reference.model == "strong" and rep.reference.cost == 4.0
    best = {r.stage.name: r.best for r in rep.stages}
    # cheap where it is right, strong elsewhere: (4·1 + 4·4) / 8
    assert best["cascade alone"] == pytest.approx((2.5, 1.0))
    # + cache: rows 4–7 repeat rows 0–3 and are served their right answers for free
    assert best["+ cache"] == pytest.approx((1.25, 1.0))
    # + the adapted column (cost 2) replaces strong (cost 4) on the misses
    assert best["+ prompt adaptation"] == pytest.approx((0.75, 1.0))
    assert best["+ student"] == pytest.approx((0.0, 1.0))
    sav = [r.savings_at_ref_quality for r in rep.stages]
    assert sav == pytest.approx([1 - 2.5 / 4, 1 - 1.25 / 4, 1 - 0.75 / 4, 1.0])
    assert [r.hit_rate for r in rep.stages] == [0.0, 0.5, 0.5, 0.5]
    ci = rep.stages[1].ci["savings_at_ref_quality"]
    assert ci is not None and ci[0] <= ci[1]
    assert "delta_quality_at_ref_cost" in rep.stages[1].ci and "delta_quality_at_ref_cost" not in rep.stages[0].ci
    doc = rep.to_json()
    assert [s["stage"] for s in doc["stages"]] == ["cascade alone", "+ cache", "+ prompt adaptation", "+ student"]
    assert doc["cache"]["exact_hits"] == 4 and doc["reference"]["model"] == "strong"
    assert doc["cache"]["gold_agreement_on_hits"] == 1.0
    assert not any(s["savings_is_lower_bound"] for s in doc["stages"])  # every curve starts below quality 1


def test_a_cache_that_serves_wrong_answers_lowers_quality():
    t = known_table(repeat=False)
    src = np.array([-1, 0, -1, 2, -1, 4, -1, 6])  # every odd row (gold d) gets the previous row's (gold u) answers
    kind = np.array(["", "semantic"] * 4, dtype=object)
    hits = grade_hits(t, src, kind, gold_grader(t))
    rep = contributions(t, cumulative_stages(["cheap", "strong"]), policy="oracle", hits=hits, n_folds=4, n_boot=0)
    alone, cached = rep.stages
    assert alone.best == pytest.approx((2.5, 1.0))
    # the even rows are answered by cheap (cost 1, right); the odd rows get "u" for free and are all wrong
    assert cached.best == pytest.approx((0.5, 0.5))
    assert cached.savings_at_ref_quality is None  # it never reaches the reference's quality
