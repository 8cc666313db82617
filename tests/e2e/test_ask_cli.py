"""``thrifty ask`` end to end on the embedded local default (real GGUF models, short answers)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from thrifty.cli.main import main

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed")


@pytest.fixture(autouse=True)
def no_config(monkeypatch):
    monkeypatch.delenv("THRIFTY_CONFIG", raising=False)


def test_ask_json_reports_the_answering_tier(capsys):
    assert main(["ask", "What is the capital of France?", "--json", "--max-tokens", "16"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"] and out["model"] == "smollm2-135m-instruct" and out["tiers_tried"] == ["smollm2-135m-instruct"]
    assert out["steps"][0]["accepted"] and 0.75 <= out["steps"][0]["score"] <= 1.0
    assert out["usage"]["output_tokens"] >= 1 and out["latency_s"] > 0
    tokens = out["usage"]["input_tokens"] + out["usage"]["output_tokens"]
    assert out["cost_usd"] == pytest.approx(tokens * 0.0135 / 1e6)  # notional price of the embedded SmolLM2


def test_ask_escalates_when_the_threshold_is_out_of_reach(capsys):
    assert main(["ask", "Name a colour.", "--threshold", "1.01", "--max-tokens", "12", "--stream"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip()  # the streamed answer
    assert "gemma-3-270m" in captured.err and "escalated" in captured.err and "answered by gemma-3-270m (tier 1)" in captured.err


def test_ask_unknown_profile_without_config_is_a_config_error(capsys):
    assert main(["ask", "hi", "--profile", "nope"]) == 3
    assert "--profile" in capsys.readouterr().err


def test_ask_empty_prompt_is_a_request_error(capsys):
    assert main(["ask", "   "]) == 2
