"""Drive a sans-I/O plan synchronously (offline replay, tests) — the async driver is the engine."""

from __future__ import annotations

from typing import Callable

from thrifty.types import Completion, Decision, Plan

__all__ = ["drive"]


def drive(plan: Plan, call: Callable[[int], Completion]) -> Decision:
    """Run ``plan`` to its Decision, answering each ``Call(k)`` with ``call(k)``.

    An exception raised by ``call`` is sent into the plan (the policy decides what a failure means).
    """
    try:
        step = next(plan)
        while True:
            try:
                result: Completion | BaseException = call(step.tier)
            except Exception as exc:  # noqa: BLE001 - the policy sees the failure
                result = exc
            step = plan.send(result)
    except StopIteration as stop:
        decision: Decision = stop.value
        return decision
