"""Serving: the engine that drives a policy live against providers, with the pieces around a call —
providers, the exact/semantic cache, budgets, traces, prompt adaptation, and artefact loading."""
