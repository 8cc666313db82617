"""Agreement between cascade tiers (issue #16): features, the scorer inputs, the optimiser's first tier."""

from __future__ import annotations

import numpy as np
import pytest
from cascade_fixtures import FakeEmbedder, synthetic_table

from thrifty.errors import ConfigError
from thrifty.offline.cascade_policy import CascadeOffline
from thrifty.offline.optimise import optimise
from thrifty.scoring.agreement import agreement_features, normalise_answer, token_jaccard
from thrifty.scoring.answer_scorer import table_inputs
from thrifty.scoring.features import FEATURE_NAMES
from thrifty.types import ChatRequest, Completion


@pytest.fixture(autouse=True)
def _fake_embedder(monkeypatch):
    from thrifty.scoring import answer_scorer

    fake = FakeEmbedder()
    monkeypatch.setattr(answer_scorer, "_embedder", lambda embedder=None: embedder or fake)
    return fake


def test_lexical_agreement():
    assert token_jaccard("The cat sat", "the CAT sat down") == pytest.approx(3 / 4)
    assert token_jaccard("", None) == 1.0 and token_jaccard("up", "") == 0.0
    assert normalise_answer("  Up.\n") == "up" == normalise_answer("UP")
    assert normalise_answer("not up") != normalise_answer("up")
    f = agreement_features(["Up.", "down", "a b"], ["up", "up", "b c"])
    assert f.shape == (3, 2)
    assert f[:, 1].tolist() == [1.0, 0.0, 0.0] and f[2, 0] == pytest.approx(1 / 3)


def test_embedding_cosine_column():
    x = np.array([[1.0, 0.0], [0.0, 2.0]])
    y = np.array([[2.0, 0.0], [1.0, 0.0]])
    f = agreement_features(["a", "b"], ["a", "c"], x, y)
    assert f.shape == (2, 3) and f[:, 2].tolist() == pytest.approx([1.0, 0.0])
    with pytest.raises(ValueError):
        agreement_features(["a"], ["a", "b"])


def test_table_inputs_add_agreement_columns_for_every_model_but_the_anchor():
    t = synthetic_table(30, seed=3)
    plain = table_inputs(t, t.models, embed="none")
    agree = table_inputs(t, t.models, embed="none", agreement_with=t.models[0])
    nf = len(FEATURE_NAMES) + 1
    assert plain.n_features == nf and agree.n_features == nf + 2
    assert np.allclose(agree.X[0][:, nf:], 0.0)  # the anchor compared with nothing
    want = agreement_features([t.answers[p, 1] for p in range(30)], [t.answers[p, 0] for p in range(30)])
    assert np.allclose(agree.X[1][:, nf : nf + 2], want)
    full = table_inputs(t, t.models, embed="full", agreement_with=t.models[0])
    assert full.n_features == nf + 3  # with answer embeddings: the cosine too


def test_agreement_on_a_table_without_answers_is_a_clear_error():
    t = synthetic_table(20, seed=1, with_answers=False)
    with pytest.raises(ConfigError) as e:
        table_inputs(t, t.models, embed="none", agreement_with=t.models[0])
    assert e.value.key == "agreement" and "no answer text" in str(e.value)
    with pytest.raises(ConfigError):
        CascadeOffline(embed="none", agreement=True).fit(t, [1e-4])
    # without the option the same table still fits (query-only scorer)
    CascadeOffline(embed="none", max_tiers=2, grids=8, smooths=0, gates=0).fit(t, [1e-4])


def test_optimiser_first_tier_constraint():
    rng = np.random.default_rng(0)
    S, Q = rng.random((60, 3)), rng.random((60, 3))
    C = np.tile([1.0, 2.0, 3.0], (60, 1))
    free = optimise(S, Q, C, max_tiers=3, grid=8)
    fixed = optimise(S, Q, C, max_tiers=3, grid=8, first=1)
    assert all(p.tiers[0] == 1 for p in fixed.points if len(p.tiers) > 1)
    assert any(p.tiers[0] != 1 for p in free.points if len(p.tiers) > 1)  # the constraint binds here
    assert {p.tiers for p in fixed.points if len(p.tiers) == 1} <= {(0,), (1,), (2,)}


def test_cascade_with_agreement_fits_replays_and_refuses_live_scoring():
    t = synthetic_table(90, seed=2)
    fitted = CascadeOffline(embed="none", agreement=True, grids=8, smooths=0, gates=0).fit(t, [2e-5, 2e-4])
    anchor = fitted.info["agreement_with"]
    assert anchor == t.models[0]  # the cheapest candidate
    assert all(s.tiers[0] == 0 for s in fitted.front.points if len(s.tiers) > 1)
    pts = fitted.replay(t)
    assert len(pts) == 2 and all(np.isfinite(p.quality).all() for p in pts)
    with pytest.raises(ConfigError, match="offline"):
        fitted.scorer.score(ChatRequest.from_prompt("q"), Completion(text="a", model=t.models[1]), t.models[1])
    with pytest.raises(ConfigError):
        CascadeOffline(agreement=True, scorer="finetuned")


def test_the_hybrid_refuses_agreement_its_router_may_skip_the_first_tier():
    from thrifty.offline.hybrid_policy import HybridOffline

    with pytest.raises(ConfigError) as e:
        HybridOffline(agreement="true")
    assert e.value.key == "agreement"
    with pytest.raises(ConfigError):
        HybridOffline(start="cheapest")
