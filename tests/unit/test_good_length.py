"""The good-answer-length feature: fitted out-of-fold, and the live score equals the table score."""

from __future__ import annotations

import numpy as np
from router_fixtures import topic_table

from thrifty.scoring.answer_scorer import fit_answer_scorer, table_inputs
from thrifty.scoring.features import answer_features
from thrifty.scoring.good_length import A_WORDS, fit_good_length
from thrifty.types import ChatRequest, Completion


def test_good_length_predicts_the_pooled_length_of_good_answers():
    rng = np.random.default_rng(0)
    n = 400
    long_q = rng.random(n) < 0.5  # long questions call for long answers
    queries = ["please write a long detailed essay about " + "topic " * 20 if lq else "what is x?" for lq in long_q]
    words = np.where(long_q, 120, 5)
    X = [np.stack([answer_features(q, "w " * int(max(1, w * f))) for q, w in zip(queries, words)]) for f in (1.0, 0.2)]
    quality = np.column_stack([np.ones(n), np.zeros(n)])  # only the first model's (right-length) answers are good
    gl, oof = fit_good_length(X, quality)
    assert np.corrcoef(oof, X[0][:, A_WORDS])[0, 1] > 0.9
    d = gl.features(X[1])[:, 0]
    assert (d[long_q] < -1).all()  # the short model's answers to long questions fall short


def test_scorer_with_good_length_scores_live_as_on_the_table():
    table = topic_table(90)
    models = table.models
    inputs = table_inputs(table, models, inputs="answer", embed="none")
    scorer, oof = fit_answer_scorer(table, inputs, embed="none", good_length=True)
    assert scorer.good_length is not None and np.isfinite(oof[~np.isnan(table.quality)]).all()
    S = scorer.score_table(inputs)
    for i in (0, 7, 33):
        for j, m in enumerate(models):
            live = scorer.score(ChatRequest.from_prompt(table.prompts[i]), Completion(table.answers[i, j] or "", model=m), m)
            assert abs(live - S[i, j]) < 1e-9
