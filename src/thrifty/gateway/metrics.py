"""Prometheus metrics of one gateway app (its own registry: no process globals).

- ``thrifty_requests_total{model,status}``         requests answered, by requested model and HTTP status
- ``thrifty_tokens_total{model,direction}``        tokens of the returned answers (input/output)
- ``thrifty_cost_usd_total{model}``                USD paid upstream (every tier called)
- ``thrifty_baseline_cost_usd_total{model}``       USD the profile's most expensive tier would have
  cost for the same tokens (counterfactual: same input and output token counts)
- ``thrifty_cost_saved_usd{model}``                baseline − paid (a gauge: it can go negative)
- ``thrifty_escalations_total{model}``             requests that called more than one tier
- ``thrifty_tier_answers_total{model,tier,decision}`` steps by outcome (accepted/escalated/failed)
- ``thrifty_request_latency_seconds{model}``       request latency histogram
- ``thrifty_tier_latency_seconds{tier}``           per-tier call latency histogram
- ``thrifty_budget_refusals_total{key,profile,scope}`` requests a budget refused (429), read from the
  log store at each scrape: every replica's refusals, so each replica reports the same figure
  (aggregate with ``max``, not ``sum``); ``scope`` is the limit that refused (key | profile)

With several worker processes (``thrifty serve --workers N``) the supervisor sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start; each worker then writes its values to files
there (prometheus_client's multiprocess mode) and ``/metrics`` — whichever worker answers it —
reports the sum over all workers, not one process's share.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["Metrics", "multiprocess_dir", "refusals_exposition"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("thrifty_requests", "Requests answered", ["model", "status"], registry=r)
        self.tokens = Counter("thrifty_tokens", "Tokens of returned answers", ["model", "direction"], registry=r)
        self.tokens_estimated = Counter(
            "thrifty_tokens_estimated", "Of thrifty_tokens: estimated, the upstream reported no usage", ["model", "direction"], registry=r
        )
        self.cost = Counter("thrifty_cost_usd", "USD paid upstream, every tier called", ["model"], registry=r)
        self.baseline = Counter("thrifty_baseline_cost_usd", "USD the profile's most expensive tier would have cost", ["model"], registry=r)
        # "sum": across worker processes (multiprocess mode) the saving adds up, dead workers included
        self.saved = Gauge("thrifty_cost_saved_usd", "Baseline cost minus cost paid", ["model"], registry=r, multiprocess_mode="sum")
        self.escalations = Counter("thrifty_escalations", "Requests that called more than one tier", ["model"], registry=r)
        self.steps = Counter("thrifty_tier_answers", "Tier calls by decision", ["model", "tier", "decision"], registry=r)
        self.latency = Histogram("thrifty_request_latency_seconds", "Request latency", ["model"], buckets=_BUCKETS, registry=r)
        self.tier_latency = Histogram("thrifty_tier_latency_seconds", "Tier call latency", ["tier"], buckets=_BUCKETS, registry=r)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: prometheus_client validates and locks on every
        ``labels()`` call (a visible share of the gateway's CPU per request). The children are the
        registry's own; their number is bounded by the configured models, tiers and statuses."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(
        self, *, model: str, status: int, latency_s: float, trace: Any = None, baseline_price: tuple[float, float] | None = None
    ) -> None:
        """Record one finished request (``trace``: the engine's Trace, if any tier was called)."""
        child = self._child
        child(self.requests, model, str(status)).inc()
        child(self.latency, model).observe(max(0.0, latency_s))
        if trace is None:
            return
        paid = float(trace.cost_usd)
        child(self.cost, model).inc(paid)
        if trace.escalated:
            child(self.escalations, model).inc()
        for s in trace.steps:
            child(self.steps, model, s.model, s.decision).inc()
            if s.latency_s:
                child(self.tier_latency, s.model).observe(s.latency_s)
        c = trace.completion
        if c is not None:
            child(self.tokens, model, "input").inc(c.usage.input_tokens)
            child(self.tokens, model, "output").inc(c.usage.output_tokens)
            if c.usage.estimated:
                child(self.tokens_estimated, model, "input").inc(c.usage.input_tokens)
                child(self.tokens_estimated, model, "output").inc(c.usage.output_tokens)
            if baseline_price is not None:
                base = (c.usage.input_tokens * baseline_price[0] + c.usage.output_tokens * baseline_price[1]) / 1e6
                child(self.baseline, model).inc(base)
                child(self.saved, model).inc(base - paid)

    def render(self) -> tuple[bytes, str]:
        """The exposition text: this registry's, or every worker's summed in multiprocess mode."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if multiprocess_dir():
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def multiprocess_dir() -> str | None:
    """The folder of prometheus_client's multiprocess mode, when the supervisor set one."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def refusals_exposition(rows: list[tuple[str, str, str, int]]) -> bytes:
    """``thrifty_budget_refusals_total`` in the text exposition format, from the store's
    ``(key, profile, scope, count)`` rows ('' key or profile: none)."""
    lines = [
        "# HELP thrifty_budget_refusals_total Requests refused by a budget, every replica's (from the log store)",
        "# TYPE thrifty_budget_refusals_total counter",
    ]
    lines += [f'thrifty_budget_refusals_total{{key="{_label(k)}",profile="{_label(p)}",scope="{_label(s)}"}} {n}' for k, p, s, n in rows]
    return ("\n".join(lines) + "\n").encode()
