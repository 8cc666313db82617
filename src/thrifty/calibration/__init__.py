"""Calibration: measure and keep up quality with real answers — collect answers for a prompt set,
label them (gold or an LLM judge), audit served requests, refit and guard thresholds live, train a
student scorer, and ``thrifty simulate`` the live loop on a replay clock."""
