"""A policy flagged ``blocking`` (a router that embeds the query) is advanced off the event loop."""

from __future__ import annotations

import asyncio
import threading

from thrifty.policy.cascade import CascadePolicy
from thrifty.serving.engine import Engine
from thrifty.types import ChatRequest, Completion, Usage


class ThreadRecordingScorer:
    def __init__(self) -> None:
        self.threads: list[int] = []

    def score(self, request, completion, model):  # noqa: ANN001
        self.threads.append(threading.get_ident())
        return 0.0  # always escalate


class Answering:
    def __init__(self, name: str) -> None:
        self.name = self.model = name

    async def complete(self, request):  # noqa: ANN001
        return Completion(f"{self.name} says hi", self.name, Usage(3, 4), cost_usd=0.001)


def _run(blocking: bool) -> tuple[list[int], int, object]:
    scorer = ThreadRecordingScorer()
    policy = CascadePolicy(["small", "big"], [0.5], scorer)
    policy.blocking = blocking  # type: ignore[attr-defined]
    engine = Engine(policy, {"small": Answering("small"), "big": Answering("big")})

    async def main():
        return threading.get_ident(), await engine.run(ChatRequest.from_prompt("hi"))

    loop_thread, trace = asyncio.run(main())
    return scorer.threads, loop_thread, trace


def test_blocking_policy_steps_run_in_a_worker_thread_with_the_same_decision():
    threads, loop_thread, trace = _run(blocking=True)
    assert threads and all(t != loop_thread for t in threads)
    assert trace.model == "big" and trace.cost_usd == 0.002 and [s.model for s in trace.steps] == ["small", "big"]


def test_ordinary_policy_steps_stay_on_the_event_loop():
    threads, loop_thread, trace = _run(blocking=False)
    assert threads == [loop_thread]
    assert trace.model == "big"
