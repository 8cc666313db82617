"""The lab's fast paths equal the slow reference they replace (batch router replay, memoised features)."""

from __future__ import annotations

import numpy as np
import pytest

from thrifty.data.table import RoutingTable
from thrifty.offline.router_policy import replay_router, replay_router_live
from thrifty.policy.router import RouterPolicy, preference_order, preference_orders
from thrifty.scoring.query_features import query_feature_matrix, query_features


@pytest.mark.parametrize("target", [None, 0.5])
@pytest.mark.parametrize("lam", [0.0, 3.0, -2.0])
def test_preference_orders_equal_the_live_order_row_by_row(lam, target):
    rng = np.random.default_rng(1)
    pred = np.round(rng.random((300, 4)), 1)  # rounded: many ties, so the tie-breaks are exercised
    cost = np.array([0.1, 0.3, 0.3, 0.05])
    batch = preference_orders(pred, cost, lam, target)
    for i in range(len(pred)):
        assert list(batch[i]) == preference_order(pred[i], cost, lam, target)


def _gappy_table(n: int = 200, m: int = 3, seed: int = 0) -> RoutingTable:
    rng = np.random.default_rng(seed)
    quality = rng.random((n, m))
    quality[rng.random((n, m)) < 0.25] = np.nan  # missing pairs force fallbacks
    quality[np.isnan(quality).all(axis=1), 0] = 0.5
    cost = np.where(np.isnan(quality), np.nan, np.array([0.01, 0.02, 0.05])[None, :m] * (1 + rng.random((n, m))))
    return RoutingTable(
        tuple(f"p{i}" for i in range(n)), tuple(f"prompt {i}" for i in range(n)), tuple(f"m{j}" for j in range(m)), quality, cost
    )


@pytest.mark.parametrize("lam,target,attempts", [(0.0, None, None), (5.0, None, None), (1.0, 0.6, None), (0.0, None, 1)])
def test_batch_router_replay_equals_driving_the_live_policy(lam, target, attempts):
    table = _gappy_table()
    pred = np.random.default_rng(2).random((table.n_prompts, table.n_models))
    pol = RouterPolicy(table.models, None, [0.01, 0.02, 0.05], lam=lam, target=target, max_attempts=attempts)
    if attempts == 1 and not all(
        table.available[i, preference_order(pred[i], pol.expected_cost, lam, target)[0]] for i in range(table.n_prompts)
    ):
        with pytest.raises(ValueError, match="no outcome"):
            replay_router(table, pred, pol, 1.0, "x")
        with pytest.raises(ValueError, match="no outcome"):
            replay_router_live(table, pred, pol, 1.0, "x")
        return
    fast, live = replay_router(table, pred, pol, 1.0, "x"), replay_router_live(table, pred, pol, 1.0, "x")
    assert fast.params["fallbacks"] == live.params["fallbacks"] > 0
    for name in ("cost", "quality", "calls", "chosen"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(live, name))


def test_memoised_query_feature_matrix_equals_the_per_text_features():
    texts = ["What is 17*23?", "Écris un poème", None, "def f(x):\n    return x ** 2", "What is 17*23?", "ÄÖÜ ²³ 123 ABC"]
    mat = query_feature_matrix(texts)
    again = query_feature_matrix(texts)
    np.testing.assert_array_equal(mat, again)
    for row, t in zip(mat, texts):
        np.testing.assert_array_equal(row, query_features(t))
    assert mat[5][list(range(14))].shape == (14,)
    assert mat[1][11] > 0 and mat[0][12] > 0  # non-ASCII share, digit share


@pytest.mark.parametrize(
    "tiers,thresholds", [(("m0", "m1", "m2"), (0.5, 0.4)), (("m1", "m2"), (0.7,)), (("m2",), ()), (("m0", "m2"), (2.0,))]
)
def test_batch_cascade_replay_equals_driving_the_live_cascade(tiers, thresholds):
    from thrifty.offline.batch_replay import cascade_batch
    from thrifty.offline.cascade_policy import lookup_requests, replay_policy
    from thrifty.policy.cascade import CascadePolicy

    table = _gappy_table(seed=4)
    S = np.round(np.random.default_rng(5).random((table.n_prompts, 3)), 1)  # ties in the "best so far" rule
    requests, lookup = lookup_requests(table, S, table.models)
    live = replay_policy(table, requests, CascadePolicy(tiers, thresholds, lookup if len(tiers) > 1 else None))
    start = np.random.default_rng(6).integers(0, len(tiers), table.n_prompts)
    for st in (None, start):
        fast = cascade_batch(table, S, table.models, tiers, thresholds, st)
        ref = (
            live
            if st is None
            else replay_policy(
                table, requests, CascadePolicy(tiers, thresholds, lookup if len(tiers) > 1 else None), lambda i: {"start": int(start[i])}
            )
        )
        for name in ("cost", "quality", "calls", "chosen", "start"):
            np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name), err_msg=name)
    assert (live.chosen == -1).any() or len(tiers) > 1  # gaps reach the no-answer and fallback paths


def test_batch_start_tiers_equal_the_live_start_rule():
    from thrifty.policy.hybrid import start_tier, start_tiers

    rng = np.random.default_rng(7)
    pred = np.round(rng.random((400, 4)), 1)
    router_cost = np.array([0.01, 0.02, 0.04, 0.08])
    for lam, tier_cost in ((0.0, [0.01, 0.04]), (5.0, [0.02, 0.04, 0.08]), (20.0, [0.005, 0.01]), (float("inf"), [0.01, 0.08])):
        batch = start_tiers(pred, router_cost, lam, tier_cost)
        assert [int(x) for x in batch] == [start_tier(p, router_cost, lam, tier_cost) for p in pred]
