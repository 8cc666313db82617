"""The item-response router head and empirical-Bayes label shrinkage (issue #16, pure logic)."""

from __future__ import annotations

import numpy as np
import pytest

from thrifty.data.table import RoutingTable
from thrifty.errors import ConfigError
from thrifty.offline.label_shrink import shrink_labels, shrink_table
from thrifty.offline.router_irt import IRTFit, fit_links, pooled_traits
from thrifty.offline.router_search import make_head
from thrifty.scoring.router_irt import IRTHead, sigmoid


def _irt_data(n=600, M=4, d=16, seed=0):
    """Quality = σ(a_m·e(x) + b_m) with the easiness e linear in the embedding (binary draws)."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, d))
    u = rng.standard_normal(d)
    easy = emb @ u / np.linalg.norm(u)
    a = np.linspace(0.5, 2.0, M)
    b = np.linspace(-1.0, 1.0, M)
    p = sigmoid(easy[:, None] * a[None, :] + b[None, :])
    return emb, np.zeros((n, 1)), (rng.random((n, M)) < p).astype(float), p


def test_pooled_traits_first_is_the_standardised_row_mean_and_ignores_missing():
    Q = np.array([[1.0, 1.0, np.nan], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0], [0.0, np.nan, 1.0]])
    T = pooled_traits(Q, 2)
    e = np.array([1.0, 0.0, 2 / 3, 0.5])
    assert np.allclose(T[:, 0], (e - e.mean()) / e.std())
    assert T.shape == (4, 2) and abs(T[:, 1].mean()) < 1e-9


def test_fit_links_recovers_known_slopes_and_biases():
    rng = np.random.default_rng(1)
    t = rng.standard_normal((20000, 1))
    Q = (rng.random((20000, 2)) < sigmoid(np.array([1.5, -0.5]) * t + np.array([0.3, -1.0]))).astype(float)
    slopes, bias = fit_links(t, Q, l2=1e-3)
    assert np.allclose(slopes[:, 0], [1.5, -0.5], atol=0.08)
    assert np.allclose(bias, [0.3, -1.0], atol=0.08)


def test_irt_head_predicts_held_out_quality_better_than_the_mean():
    emb, feats, Q, p = _irt_data()
    head = make_head("irt", {"dims": 1, "alpha": 3.0}).fit(emb[:400], feats[:400], Q[:400])
    assert isinstance(head, IRTHead)
    pred = head.predict(emb[400:], feats[400:])
    assert pred.shape == (200, 4) and ((pred > 0) & (pred < 1)).all()
    # it reads the easiness from text: correlation with the true probabilities well above zero
    assert np.mean([np.corrcoef(pred[:, m], p[400:, m])[0, 1] for m in range(4)]) > 0.8
    mse_head = np.mean((pred - Q[400:]) ** 2)
    mse_mean = np.mean((Q[:400].mean(0) - Q[400:]) ** 2)
    assert mse_head < mse_mean - 0.01


def test_irt_fit_path_is_one_head_per_setting_and_equals_a_single_fit():
    emb, feats, Q, _ = _irt_data(n=200)
    grid = [{"dims": 1, "alpha": 3.0}, {"dims": 2, "alpha": 30.0}]
    heads = IRTFit().fit_path(emb, feats, Q, grid)
    assert [(h.dims, h.alpha) for h in heads] == [(1, 3.0), (2, 30.0)]
    single = IRTFit(dims=2, alpha=30.0).fit(emb, feats, Q)
    assert np.allclose(heads[1].predict(emb, feats), single.predict(emb, feats))


def test_shrink_mean_with_reliability_one_leaves_labels_and_zero_noise_too():
    Q = np.array([[0.2, 0.9], [0.8, np.nan], [0.5, 0.1]])
    s = shrink_labels(Q, "mean", noise_var=0.0)
    assert np.allclose(s.quality, Q, equal_nan=True) and (s.reliability == 1).all()


def test_shrink_mean_pulls_each_model_by_its_own_reliability():
    rng = np.random.default_rng(0)
    Q = np.column_stack([rng.normal(0.5, 0.3, 500), rng.normal(0.5, 0.1, 500)])
    s = shrink_labels(Q, "mean", noise_var=0.005)
    # the low-variance model is shrunk more: r = 1 − noise / var
    assert s.reliability[1] < s.reliability[0]
    assert np.allclose(s.reliability, 1 - 0.005 / Q.var(0), atol=1e-9)
    assert np.allclose(s.quality.mean(0), Q.mean(0))
    assert np.allclose(s.quality.std(0), s.reliability * Q.std(0))


def test_shrink_prompt_moves_towards_the_other_models_not_the_label_itself():
    Q = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    s = shrink_labels(Q, "prompt", noise_var=1e9)  # all noise: the label is replaced by its prior
    # prior of model 0 on prompt p = mean_0 + (q_p1 − mean of q_1) — the *other* model's deviation
    assert np.allclose(s.quality[:, 0], 0.5 + (Q[:, 1] - 0.5))
    assert np.allclose(s.quality[:, 1], 0.5 + (Q[:, 0] - 0.5))


def _table(Q, models=("a", "b")):
    n = len(Q)
    return RoutingTable(tuple(f"p{i}" for i in range(n)), ("x",) * n, tuple(models), Q, np.ones_like(Q))


def test_shrink_table_noise_sources_and_errors():
    rng = np.random.default_rng(2)
    binary = (rng.random((50, 2)) < 0.5).astype(float)
    _, s = shrink_table(_table(binary), "prompt")
    assert s.source.startswith("Bernoulli") and ((s.reliability >= 0) & (s.reliability <= 1)).all()
    with pytest.raises(ConfigError, match="shrink=prompt"):
        shrink_table(_table(binary), "mean")  # around the mean the Bernoulli noise is the whole variance
    graded = rng.random((50, 2))
    with pytest.raises(ConfigError) as e:
        shrink_table(_table(graded), "mean")
    assert e.value.key == "label_reliability"
    t, s = shrink_table(_table(graded), "mean", reliability=0.5)
    assert "0.5" in s.source and t.quality.std() < graded.std()
    # a replicate pair is found by name and used
    base = rng.random(60)
    rep = np.column_stack([base + rng.normal(0, 0.1, 60), base + rng.normal(0, 0.1, 60)])
    _, s = shrink_table(_table(rep, ("m", "m-togetherai")), "mean")
    assert "replicate pair m / m-togetherai" in s.source
    with pytest.raises(ConfigError):
        shrink_table(_table(graded), "mean", reliability=1.5)


class _RowEmbedder:
    """Looks a prompt's vector up by its text (the "already embedded" case)."""

    def __init__(self, texts, emb):
        self.row = {t: i for i, t in enumerate(texts)}
        self.emb = emb

    def embed(self, texts):
        return self.emb[[self.row[t] for t in texts]]


def test_router_irt_and_shrinkage_options_fit_and_the_head_pickles():
    import pickle

    from thrifty.offline.router_policy import RouterOffline

    emb, _, Q, _ = _irt_data(n=240, M=3)
    texts = tuple(f"prompt {i}" for i in range(240))
    t = RoutingTable(tuple(f"p{i}" for i in range(240)), texts, ("a", "b", "c"), Q, np.tile([1.0, 2.0, 4.0], (240, 1)))
    pol = RouterOffline(variant="irt", embedder=_RowEmbedder(texts, emb), shrink="prompt")
    assert pol.name == "router:irt (shrink=prompt)"
    fitted = pol.fit(t, [1.5, 3.0])
    head = fitted.predictor.head
    assert isinstance(head, IRTHead)
    clone = pickle.loads(pickle.dumps(head))  # what a router artefact stores
    e, f = fitted.predictor.encoder.encode(list(texts))
    assert np.allclose(clone.predict(e, f), head.predict(e, f))
    assert len(fitted.replay(t)) == 2
    with pytest.raises(ConfigError) as e:
        RouterOffline(shrink="median")
    assert e.value.key == "shrink"
