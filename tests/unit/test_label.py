"""Exact graders, judge-verdict parsing, folder labelling and label noise."""

from __future__ import annotations

import numpy as np
import pytest

from thrifty.calibration.judge import parse_preference, parse_rating
from thrifty.calibration.label import label_folder, make_grader, parse_choice, parse_number
from thrifty.data.outcomes_log import OutcomeLog
from thrifty.data.table import RoutingTable
from thrifty.data.table_io import load_table
from thrifty.errors import ConfigError, DataError
from thrifty.offline.noise import is_binary, perturb_labels


@pytest.mark.parametrize(
    "answer, gold, q",
    [
        ("Paris.", "paris", 1.0),
        ('  "PARIS" ', "Paris", 1.0),
        ("Paris, France", "Paris", 0.0),
        ("", "x", 0.0),
    ],
)
def test_exact(answer, gold, q):
    assert make_grader("exact").grade(answer, gold)[0] == q


@pytest.mark.parametrize(
    "answer, gold, q",
    [
        ("The answer is 1,234.5 dollars", "1234.5", 1.0),
        ("3 apples then 7", "7", 1.0),
        ("#### -2", "-2", 1.0),
        ("it costs $3", "3", 1.0),
        ("no number here", "3", 0.0),
        ("answer is 12, not 13", "12", 1.0),
        ("50%", "50", 1.0),
    ],
)
def test_numeric(answer, gold, q):
    assert make_grader("numeric").grade(answer, gold)[0] == q


def test_numeric_bad_gold_is_a_data_error():
    with pytest.raises(DataError, match="not a number"):
        make_grader("numeric").grade("3", "three", where="prompt 'p1'")


def test_regex():
    g = make_grader("regex")
    assert g.grade("The capital is PARIS", r"\bparis\b")[0] == 1.0
    assert g.grade("Lyon", r"^paris$")[0] == 0.0
    with pytest.raises(DataError, match="invalid regular expression"):
        g.grade("x", "(unclosed")


def test_choice_picks_the_first_label_word():
    labels = ["up", "down", "neutral", "none"]
    assert parse_choice(" down\n\nQ: gold up", labels) == "down"
    assert parse_choice("The price went UP.", labels) == "up"
    assert parse_choice("upward trend", labels) is None  # whole words only
    assert parse_choice("none of these; neutral", labels) == "none"
    g = make_grader("choice", golds=["up", "down", "none", "up"])
    assert g.grade("Up", "up") == (1.0, "up")
    assert g.grade("down, not up", "up") == (0.0, "down")
    assert g.grade("sideways", "up") == (0.0, "")


def test_unknown_match_is_a_config_error():
    with pytest.raises(ConfigError):
        make_grader("fuzzy")


def test_parse_number_edge_cases():
    assert parse_number("x = .5") == 0.5
    assert parse_number("nothing") is None


@pytest.mark.parametrize(
    "raw, want",
    [
        ("Rating: [[7]]", 7.0),
        ("[[10]]", 10.0),
        ("I'd say 8/10.", 8.0),
        ("Rating: 3", 3.0),
        ("9", 9.0),
        ("7]]\n[Question]", 7.0),
        (" 8.5]]", 8.5),
        ("The answer is good. 6", None),
        ("2 + 2 = 4.", None),
        ("Rating: [[42]]", None),
        ("no idea", None),
    ],
)
def test_parse_rating(raw, want):
    assert parse_rating(raw) == want


@pytest.mark.parametrize(
    "raw, want",
    [
        ("[[A]]", "A"),
        ("Verdict: [[B]]", "B"),
        ("[[C]]", "C"),
        ("Answer B is better.", "B"),
        ("A", "A"),
        ("B]]\n", "B"),
        ("It's a tie.", "C"),
        ("hmm", None),
        ("A spider has eight legs.", None),
    ],
)
def test_parse_preference(raw, want):
    assert parse_preference(raw) == want


def _folder(tmp_path, answers, golds):
    out = tmp_path / "f"
    log = OutcomeLog(out)
    log.merge_prompts([{"prompt_id": str(i), "instruction": f"q{i}", "gold": g} for i, g in enumerate(golds)])
    for i, (m, a) in enumerate(answers):
        log.append({"prompt_id": str(i % len(golds)), "model": m, "output": a, "cost_usd": 0.0})
    log.close()
    return out


def test_label_folder_writes_quality_and_provenance(tmp_path):
    out = _folder(tmp_path, [("m", "up"), ("m", "Down."), ("m", "maybe")], ["up", "up", "none"])
    s = label_folder(out, gold="gold", match="choice", choices=["up", "down", "neutral", "none"])
    assert (s.labelled, s.skipped) == (3, 0)
    rows = OutcomeLog(out).outcomes()
    assert [r["quality"] for r in rows] == [1.0, 0.0, 0.0]
    assert [r["label_verdict"] for r in rows] == ["up", "down", ""]
    assert all(r["label_method"] == "choice" for r in rows)
    assert s.by_model["m"] == (3, pytest.approx(1 / 3))
    table = load_table(out)  # the labelled folder is a valid routing table
    assert table.quality.shape == (3, 1)
    # a second run labels nothing new; --force relabels everything
    assert label_folder(out, match="choice").labelled == 0
    assert label_folder(out, match="exact", force=True).labelled == 3


def test_label_folder_unknown_gold_column(tmp_path):
    out = _folder(tmp_path, [("m", "x")], ["x"])
    with pytest.raises(ConfigError, match="no column 'answer'"):
        label_folder(out, gold="answer", match="exact")


def _table(q):
    q = np.asarray(q, dtype=float)
    return RoutingTable(
        tuple(str(i) for i in range(q.shape[0])), (None,) * q.shape[0], tuple(f"m{j}" for j in range(q.shape[1])), q, np.zeros_like(q)
    )


def test_label_noise_binary_flips_at_rate_p_and_is_seeded():
    rng = np.random.default_rng(1)
    q = (rng.random((4000, 2)) < 0.6).astype(float)
    q[0, 0] = np.nan
    t = _table(q)
    noisy = perturb_labels(t, 0.2, seed=3)
    flipped = (noisy.quality != q) & ~np.isnan(q)
    assert is_binary(noisy.quality)
    assert np.isnan(noisy.quality[0, 0])
    assert 0.18 < flipped.sum() / (~np.isnan(q)).sum() < 0.22
    assert np.array_equal(perturb_labels(t, 0.2, seed=3).quality, noisy.quality, equal_nan=True)
    assert not np.array_equal(perturb_labels(t, 0.2, seed=4).quality, noisy.quality, equal_nan=True)
    assert perturb_labels(t, 0.0) is t
    inverted = perturb_labels(t, 1.0).quality
    known = ~np.isnan(q)
    assert np.array_equal(inverted[known], 1 - q[known])


def test_label_noise_continuous_mixes_with_uniform():
    q = np.full((5000, 1), 0.9)
    noisy = perturb_labels(_table(q), 0.5, seed=0).quality
    changed = noisy != 0.9
    assert 0.47 < changed.mean() < 0.53
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    assert abs(noisy[changed].mean() - 0.5) < 0.03  # replaced values are U(0, 1)
    with pytest.raises(ConfigError):
        perturb_labels(_table(q), 1.5)


def test_noisy_labels_policy_perturbs_training_only():
    from thrifty.offline.noise import NoisyLabels

    seen = []

    class Spy:
        name = "spy"

        def fit(self, train, knobs):
            seen.append(train.quality.copy())
            return "fitted"

    q = np.ones((200, 2))
    t = _table(q)
    pol = NoisyLabels(Spy(), 0.3, seed=1)
    assert pol.name == "spy (label noise 0.3)" and pol.fit(t, [1.0]) == "fitted" and pol.fit(t, [1.0]) == "fitted"
    assert 0.2 < (seen[0] == 0).mean() < 0.4  # the training labels the policy saw were flipped
    assert not np.array_equal(seen[0], seen[1])  # fresh noise per fold
    assert np.all(t.quality == 1.0)  # the caller's table (used for held-out replay) is untouched
    with pytest.raises(ConfigError):
        NoisyLabels(Spy(), -0.1)
