"""A distilled student at tier 0 of a gateway profile, end to end: trained here, served by the real
gateway process, escalating to a real local LLM (SmolLM2) when the student is unsure."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("sentence_transformers") is None,
    reason="needs llama-cpp-python and sentence-transformers (pip install 'thrifty[local,embed]')",
)

sys.path.insert(0, str(Path(__file__).parent))
from gateway_proc import GatewayProcess  # noqa: E402

UP = [
    "gold rises 2% on weak dollar",
    "gold climbs to record high",
    "gold prices surge as investors seek safety",
    "gold jumps $20 an ounce",
    "bullion gains on inflation fears",
    "gold futures end the week higher",
]
DOWN = [
    "gold falls 2% as dollar strengthens",
    "gold slips to three-week low",
    "gold prices drop on profit taking",
    "gold tumbles $30 an ounce",
    "bullion loses ground as yields rise",
    "gold futures end the week lower",
]


def test_student_tier_answers_confident_requests_and_escalates_the_rest(tmp_path):
    from thrifty.calibration.student import StudentProvider, train_student

    student = train_student(UP + DOWN, ["up"] * len(UP) + ["down"] * len(DOWN), c=10.0)
    path = student.save(tmp_path / "student.json")
    prov = StudentProvider(student)
    sure_text, unsure_text = "gold soars to a record high on safe-haven buying", "What is a good name for a cat?"
    _, sure, _ = prov.answer(sure_text)
    _, unsure, _ = prov.answer(unsure_text)
    assert sure > unsure
    threshold = (sure + unsure) / 2
    toml = (
        f'[providers.student]\nkind = "student"\nmodel_path = "{path}"\n\n'
        '[providers.small]\nkind = "llamacpp"\nmodel_path = "builtin:smollm2"\nmax_tokens = 8\n\n'
        f'[profiles.headlines]\ntiers = ["student", "small"]\nthresholds = [{threshold}]\n'
        'scorer = "thrifty.calibration.student:ConfidenceScorer"\n'
    )
    with GatewayProcess(toml, tmp_path / "gw") as gw:

        def ask(text: str) -> httpx.Response:
            r = httpx.post(
                gw.base_url + "/v1/chat/completions",
                timeout=120,
                json={"model": "thrifty/headlines", "messages": [{"role": "user", "content": text}], "max_tokens": 8},
            )
            assert r.status_code == 200, r.text
            return r

        r = ask(sure_text)
        assert r.headers["x-thrifty-model"] == "student" and r.headers["x-thrifty-tiers"] == "student"
        assert r.json()["choices"][0]["message"]["content"] == "up"
        assert float(r.headers["x-thrifty-cost-usd"]) == 0.0
        r = ask(unsure_text)
        assert r.headers["x-thrifty-tiers"] == "student,small"  # the unsure student escalated
        assert r.headers["x-thrifty-model"] == "small"
        assert r.json()["choices"][0]["message"]["content"] not in ("up", "down")
