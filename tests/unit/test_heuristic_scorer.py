"""HeuristicScorer: each penalty fires on the answers it is meant for, and only on those."""

from __future__ import annotations

import pytest

from thrifty.scoring.heuristic import HeuristicScorer
from thrifty.types import ChatRequest, Completion

S = HeuristicScorer()
Q = ChatRequest.from_prompt("What is the capital of France?")
LONG_Q = ChatRequest.from_prompt("Explain in a few sentences why the sky looks blue during the day but red and orange at sunset, please.")


def score(text, request=Q, **kw):
    return S.score(request, Completion(text, "m", **kw), "m")


def test_good_answers_score_one():
    assert score("The capital of France is Paris.") == 1.0
    assert score("Paris.") == 1.0  # a short question may get a one-word answer
    assert (
        score(
            "Sunlight scatters off air molecules; blue light scatters most, so the sky looks blue. "
            "At sunset light crosses more air, so reds and oranges remain.",
            LONG_Q,
        )
        == 1.0
    )


@pytest.mark.parametrize("text", ["", "   \n "])
def test_empty_answer_scores_zero(text):
    assert score(text) == 0.0


def test_missing_completion_scores_zero():
    assert S.score(Q, None, "m") == 0.0


def test_tool_call_without_text_is_not_empty():
    call = ({"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}},)
    assert score("", tool_calls=call) == pytest.approx(0.9)


@pytest.mark.parametrize(
    "text",
    ["I'm sorry, but I cannot help with that.", "As an AI, I don't know the answer.", "I’m not sure what you mean by that question."],
)
def test_refusals_are_penalised(text):
    assert score(text) <= 0.3


def test_repetition_loops_are_penalised_in_proportion():
    loop = " ".join(["Paris is the capital."] * 12)
    varied = (
        "Paris is the capital of France. It lies on the Seine, has about two million residents "
        "and is famous for the Louvre and the Eiffel Tower."
    )
    assert score(loop) < 0.1
    assert score(varied) == 1.0
    assert score("Paris\nParis\nParis\nParis") <= 0.5  # the same line over and over


def test_junk_characters_are_penalised():
    assert score("\ufffd\ufffd\ufffd \ufffd\ufffd Par\ufffd \x07\ufffd\ufffd \ufffd\ufffd\ufffd\x1b\ufffd") < 0.2
    assert score("Paris 🇫🇷") >= 0.9  # a little decoration is fine


def test_echoing_the_prompt_is_penalised():
    assert score("What is the capital of France?") == pytest.approx(0.2)
    assert score("what is the capital of france? Paris") == pytest.approx(0.2)


def test_too_short_for_a_long_question():
    assert score("Blue.", LONG_Q) < 0.5
    assert score("Because of Rayleigh scattering by air molecules.", LONG_Q) > score("Rayleigh scattering.", LONG_Q)


def test_truncation_and_transcript_continuation():
    assert score("The capital of France is Paris.", finish_reason="length") == pytest.approx(0.8)
    assert score("Paris.\nUser: and of Spain?\nAssistant: Madrid.") == pytest.approx(0.6)


def test_deterministic_and_bounded():
    texts = ["", "x", "Paris.", "the " * 100, "\x00\x01\x02", "I cannot " * 30]
    first = [score(t) for t in texts]
    assert first == [score(t) for t in texts]
    assert all(0.0 <= v <= 1.0 for v in first)


def test_explain_multiplies_to_score():
    c = Completion("I'm sorry. " * 10, "m", finish_reason="length")
    factors = S.explain(Q, c)
    product = 1.0
    for v in factors.values():
        product *= v
    assert S.score(Q, c, "m") == pytest.approx(product, abs=1e-4)
    assert factors["refusal"] == 0.3 and factors["truncated"] == 0.8


def test_answer_in_another_script_is_penalised_unless_translation_was_asked():
    hebrew = "עוברי בישלג, למשכנה מתאצק את הדספרך. This is a classic Israeli dish."
    assert score(hebrew) < 0.75
    assert score("Москва — столица России.", ChatRequest.from_prompt("Какая столица России?")) == 1.0
    assert score("東京", ChatRequest.from_prompt("Translate 'Tokyo' into Japanese.")) == 1.0
    assert score("The capital is Paris (Paris, 巴黎 in Chinese).") == 1.0  # a few foreign letters are fine
