"""The simulate summary's savings share: a seed that misses the target is a miss, never > 100%."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from thrifty.calibration.loop import LoopConfig  # noqa: E402
from thrifty.calibration.simulate import SeedRun, SimConfig  # noqa: E402
from thrifty.calibration.simulate_report import summarise  # noqa: E402
from thrifty.calibration.synthetic import binary_table  # noqa: E402


def _run(seed: int, P: int, cost: float, good_share: float) -> SeedRun:
    good = np.ones(P)  # the final window (the last 20%) holds every miss
    good[P - int(round((1 - good_share) * 0.2 * P)) :] = 0.0
    n = np.zeros(P)
    return SeedRun(seed, np.arange(P), np.full(P, cost), good.copy(), good, n.astype(bool), n, n.astype(int), [])


def test_a_seed_below_the_target_counts_as_a_miss_not_as_extra_savings() -> None:
    table = binary_table(1000, seed=1)
    P, M = table.n_prompts, table.n_models
    cfg = SimConfig(table.models, "large", loop=LoopConfig(target=0.95), seeds=(0, 1))
    ref_cost = 10.0
    off = {  # the ceiling saves 20% at the target; one single-tier row per model for the curve
        "cost": np.tile(np.array([[1.0], [5.0], [ref_cost]]), (1, P)),
        "quality": np.tile(np.array([[0.4], [0.6], [0.8]]), (1, P)),
        "good": np.ones((M, P)),
        "refit": {"cost": np.full(P, 8.0), "quality": np.full(P, 0.8), "good": np.full(P, 0.95)},
        "reference_cost": np.full(P, ref_cost),
    }
    met = _run(0, P, 8.5, 0.96)  # saves 15% = 75% of the ceiling's 20%, at share 0.96
    missed = _run(1, P, 7.0, 0.90)  # saves 30% = 150% of it, but by missing the target
    s = summarise(table, cfg, [met, missed], off)
    a, b = s["per_seed"]
    assert a["savings_share_of_offline"] == pytest.approx(0.75) and a["target_met_final"] and not a["target_missed_significantly"]
    assert b["savings_share_of_offline"] == pytest.approx(1.5) and not b["target_met_final"] and b["target_missed_significantly"]
    assert a["savings_share_of_offline_if_met"] == pytest.approx(0.75) and b["savings_share_of_offline_if_met"] == 0.0
    assert s["savings_share_of_offline_if_met"] == pytest.approx(0.375)
    assert s["savings_share_of_offline"] == pytest.approx(1.125)  # the raw mean, kept for comparison
    assert s["seeds_target_met_final"] == 1 and s["savings_share_of_offline_range"] == pytest.approx([0.75, 1.5])
