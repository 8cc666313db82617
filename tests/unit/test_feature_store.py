"""The evaluation-scoped feature store: every (query, answer) row computed once, the same numbers."""

from __future__ import annotations

import numpy as np

from thrifty.scoring.answer_scorer import _features
from thrifty.scoring.feature_store import FeatureStore, active_store, table_feature_scope
from thrifty.scoring.features import answer_features, feature_matrix

QUERIES = ["What is 2+2?", "Write a python function", "Explain tides.", "What is 2+2?"]
ANSWERS = ["4", "```python\ndef f():\n    return 1\n```", "", "2 + 2 = 4."]


def test_rows_equal_the_feature_matrix_and_are_computed_once():
    calls = []

    def counting(q, a, part):
        calls.append((q, a))
        return answer_features(q, a, part)

    store = FeatureStore(counting)
    want = feature_matrix(QUERIES, ANSWERS)
    np.testing.assert_array_equal(store.rows(QUERIES, ANSWERS), want)
    np.testing.assert_array_equal(store.rows(QUERIES[::-1], ANSWERS[::-1]), want[::-1])
    assert len(calls) == len(store) == 4  # the second pass computed nothing
    many = [f"q{i}" for i in range(3000)]  # grows past the first block of rows
    np.testing.assert_array_equal(store.rows(many, many), feature_matrix(many, many))
    assert store.rows([], []).shape == (0, want.shape[1])


def test_scope_is_used_by_the_scorer_features_nests_and_is_freed():
    assert active_store() is None
    with table_feature_scope() as outer:
        with table_feature_scope() as inner:
            assert inner is outer  # a nested evaluation shares the outer store
        np.testing.assert_array_equal(_features(QUERIES, ANSWERS), feature_matrix(QUERIES, ANSWERS))
        assert len(outer) == 4
    assert active_store() is None
    np.testing.assert_array_equal(_features(QUERIES, ANSWERS), feature_matrix(QUERIES, ANSWERS))


def test_fast_word_split_equals_the_word_regex():
    import random
    import re

    from thrifty.scoring.features import _words

    rng = random.Random(0)
    alphabet = [chr(i) for i in range(128)] + ["é", "ſ", "²", "_", "\u00a0", "\u2028", "日"]
    for n in range(3000):
        text = "".join(rng.choice(alphabet if n % 3 == 0 else alphabet[:128]) for _ in range(rng.randint(0, 50)))
        assert _words(text) == re.findall(r"\w+", text), repr(text)
