"""``thrifty simulate``: determinism, and parity with the gateway's learner (same seed → same swaps)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("sklearn")

from thrifty.calibration.loop import LoopConfig  # noqa: E402
from thrifty.calibration.simulate import SimConfig, simulate, simulate_seed  # noqa: E402
from thrifty.calibration.synthetic import binary_table  # noqa: E402


@pytest.fixture(scope="module")
def table():
    return binary_table(500, seed=5)


def _cfg(table, **kw) -> SimConfig:
    return SimConfig(table.models, "large", rate=0.4, loop=LoopConfig(every=50, target=0.9), seeds=(0, 1), **kw)


def _signature(run) -> list:
    return [(e.kind, e.audits, e.version, e.evidence.get("rule"), e.evidence.get("action")) for e in run.events]


def test_same_seed_same_stream(table) -> None:
    a, b = simulate(table, _cfg(table)), simulate(table, _cfg(table))
    for ra, rb in zip(a, b):
        assert np.array_equal(ra.rows, rb.rows) and np.array_equal(ra.cost, rb.cost) and np.array_equal(ra.audited, rb.audited)
        assert _signature(ra) == _signature(rb)
    assert not np.array_equal(a[0].rows, a[1].rows)  # seeds differ
    kinds = {e.kind for r in a for e in r.events}
    assert "swap" in kinds  # the loop learned something from the cold start


@pytest.mark.parametrize("sampling", ["uniform", "near_or_above_threshold"])
def test_gateway_learner_makes_the_same_swaps(table, tmp_path, sampling) -> None:
    """Feed the AuditOutcomes simulate produced to the gateway's ProfileLearner (real SQLite store):
    the same swaps, refusals and guardrail moves, and the history rows match."""
    from thrifty.calibration.loop import LearningLoop
    from thrifty.calibration.simulate import cold_policy
    from thrifty.config.settings import RefitConfig, ServerSettings
    from thrifty.gateway.learning import ProfileLearner
    from thrifty.store import LogStore, artefacts
    from thrifty.store.logs import RequestRecord

    cfg = _cfg(table, sampling=sampling)
    run = simulate_seed(table, cfg, 0)
    assert run.fed, "simulate records what it fed the loop"
    probs = {o.sample_prob for o, _ in run.fed}
    assert probs == {None} if sampling == "uniform" else (None not in probs and len(probs) > 10)
    store = LogStore(tmp_path / "logs.sqlite3")
    for o, prompt in run.fed:
        store.record(RequestRecord(o.request_id, o.created, "thrifty/p", {}, 200, profile="p", prompt=prompt))
    from dataclasses import replace

    loop = LearningLoop("p", cfg.tiers, replace(cfg.loop, seed=cfg.loop.seed + 1000 * 0), cold_policy(cfg))
    rt = SimpleNamespace(store=store, settings=SimpleNamespace(server=ServerSettings(data_dir=tmp_path)), artefact_versions={})
    event_loop = asyncio.new_event_loop()  # swaps are scheduled on it; nothing to install here
    learner = ProfileLearner(rt, SimpleNamespace(name="p", refit=RefitConfig()), "thrifty/p", loop, event_loop)
    events = []
    for o, _ in run.fed:
        events += learner.handle(replace(o, profile="p"))
    learner.close()
    event_loop.close()
    assert _signature(SimpleNamespace(events=events)) == _signature(run)
    rows = store.run_in_transaction(artefacts.history, "p")
    refits = [e for e in run.events if e.kind in ("swap", "refuse", "refit_failed")]
    assert [r.status for r in reversed(rows)] == ["serving" if e.kind == "swap" else "refused" for e in refits]
    for r in rows:
        if r.status == "serving":
            assert (tmp_path / "artefacts" / "p" / f"v{r.version}" / "manifest.json").exists()
    store.close()


def test_tables_without_answer_text_and_with_missing_pairs(table) -> None:
    """Generality: query-only tables (no answer text) and missing (prompt, model) pairs run through."""
    from dataclasses import replace

    from thrifty.calibration.simulate_report import offline_heldout, summarise

    rng = np.random.default_rng(0)
    q, c = table.quality.copy(), table.cost.copy()
    holes = rng.random(q.shape) < 0.1
    holes[:, 2] = False  # the reference answers every prompt
    q[holes], c[holes] = np.nan, np.nan
    bare = replace(table, quality=q, cost=c, answers=None, input_tokens=None, output_tokens=None)
    cfg = SimConfig(bare.models, "large", rate=0.5, loop=LoopConfig(every=60, target=0.9), seeds=(0,))
    runs = simulate(bare, cfg)
    assert np.isfinite(runs[0].cost).all() and runs[0].audited.sum() > 200
    assert any(e.kind in ("swap", "refuse") for e in runs[0].events)
    summary = summarise(bare, cfg, runs, offline_heldout(bare, cfg, n_folds=3, n_knobs=8))
    assert summary["requests"] == 500 and np.isfinite(summary["gap_to_offline"])
