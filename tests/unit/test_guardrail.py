"""The quality guardrail: bounded steps, the ratchet, and settling on simulated audit streams."""

from __future__ import annotations

import numpy as np
import pytest

from thrifty.calibration.guardrail import Guardrail, GuardrailConfig, wilson


def test_wilson_matches_known_values() -> None:
    lo, hi = wilson(95, 100)
    assert lo == pytest.approx(0.8883, abs=1e-3) and hi == pytest.approx(0.9785, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(20, 20)
    assert hi == 1.0 and 0.83 < lo < 0.85


def _stream(g, cfg: GuardrailConfig, n: int, seed: int) -> tuple[Guardrail, list[float], list]:
    """Feed ``n`` audits whose good-enough probability at offset δ is ``g(δ)``."""
    rng = np.random.default_rng(seed)
    ctl = Guardrail(cfg)
    offsets, moves = [], []
    for _ in range(n):
        m = ctl.observe(bool(rng.random() < g(ctl.offset)))
        if m is not None:
            moves.append(m)
        offsets.append(ctl.offset)
    return ctl, offsets, moves


@pytest.mark.parametrize("seed", range(6))
def test_settles_at_a_setting_that_meets_the_target(seed: int) -> None:
    cfg = GuardrailConfig(target=0.95, step=0.05, max_up=1.0, max_down=0.3, min_audits=20)
    g = lambda d: float(np.clip(0.80 + 0.5 * d, 0, 1))  # noqa: E731 - meets 0.95 from δ = 0.3
    ctl, offsets, moves = _stream(g, cfg, 20_000, seed)
    # bounded steps: every move is exactly one step, inside [-max_down, max_up]
    for m in moves:
        assert abs(m.offset_after - m.offset_before) == pytest.approx(cfg.step)
        assert -cfg.max_down - 1e-9 <= m.offset_after <= cfg.max_up + 1e-9
    # finitely many moves (the ratchet bound) and none in the second half of the stream: settled
    bound = 2 * (cfg.max_up + cfg.max_down) / cfg.step + 1
    assert len(moves) <= bound
    assert len(set(offsets[10_000:])) == 1
    # where it settled meets the target, and is not wastefully high (at most a few steps above)
    assert g(ctl.offset) >= 0.95 - 1e-9
    assert ctl.offset <= 0.3 + 3 * cfg.step + 1e-9


def test_escalates_when_missed_and_saves_when_well_above() -> None:
    cfg = GuardrailConfig(target=0.9, step=0.1, min_audits=30, max_down=0.5)
    ctl = Guardrail(cfg)
    moves = [ctl.observe(i % 2 == 0) for i in range(30)]  # 50% good: clearly below 0.9
    assert moves[-1] is not None and moves[-1].action == "escalate" and ctl.offset == pytest.approx(0.1)
    assert ctl.floor == pytest.approx(0.1) and ctl.window == (0, 0)
    for _ in range(29):
        assert ctl.observe(True) is None  # not enough audits of the new setting yet
    assert all(ctl.observe(True) is None for _ in range(60))  # 100% good would allow saving; the floor keeps δ: the ratchet
    ctl.reset()  # a new artefact: back to δ = 0, no floor
    moves = [ctl.observe(True) for _ in range(60)]
    n = next(i for i, m in enumerate(moves) if m is not None) + 1
    assert n == 60  # all good: the Wilson lower bound n / (n + 1.96²) exceeds 0.92 from n = 45; checkpoints every 30
    m = moves[n - 1]
    assert m.action == "save" and m.offset_after == pytest.approx(-0.1) and m.interval[0] > cfg.target + cfg.slack


def test_disabled_without_target() -> None:
    ctl = Guardrail(GuardrailConfig(target=None))
    assert all(ctl.observe(False) is None for _ in range(100)) and ctl.offset == 0.0


def test_default_checkpoint_ignores_a_few_early_misses_at_a_setting_on_target() -> None:
    # 3 misses in the first 20 audits (Wilson hi 0.948 < 0.95) are likely (~6%) at a share of
    # 0.955 and used to escalate a freshly validated setting; the default checkpoint waits for 40
    ctl = Guardrail(GuardrailConfig(target=0.95))
    assert ctl.config.min_audits == 40
    flags = [False] * 3 + [True] * 37
    assert all(ctl.observe(f) is None for f in flags) and ctl.offset == 0.0
    ctl = Guardrail(GuardrailConfig(target=0.95))
    flags = [False] * 8 + [True] * 32  # 80% good: the target is clearly missed at the checkpoint
    moves = [ctl.observe(f) for f in flags]
    assert moves[-1] is not None and moves[-1].action == "escalate"
