"""In-process GGUF models through llama-cpp-python (``pip install 'thrifty[local]'``).

Three modes:

- ``"chat"`` — the prompt is the model's own chat template (read from the GGUF metadata), for
  instruction-tuned models such as SmolLM2-Instruct (ChatML).
- ``"completion"`` — a plain transcript (``preamble``, optional few-shot ``examples``, then ``User: …`` /
  ``Assistant: …`` lines ending in ``Assistant:``) with stop sequences, for *base* models such as Gemma-3-270M, which produce junk
  through a chat template but continue a transcript sensibly.
- ``"raw"`` — the messages' text, joined by blank lines, *is* the prompt, sent as is (no template,
  no transcript, no preamble): for few-shot prompts that are already written out to be continued,
  such as FrugalGPT's HEADLINES prompt ending in ``Answer:``. Only ``stop`` (and the request's
  ``stop``) end the answer.

Each model file is loaded once per process (lazily, on first use or :meth:`warm`) with
``n_threads=1, n_threads_batch=1`` by default, and guarded by one lock: llama.cpp contexts are not
re-entrant. Generation runs in a worker thread so the event loop stays free; a cancelled call
(deadline, client gone) stops generation at the next token. Tokens are reported exactly (prompt
tokens from the tokenizer, output tokens generated); cost = tokens × configured price (default 0).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Mapping, Sequence

from thrifty.errors import ConfigError, ProviderError
from thrifty.serving.providers._errors import provider_errors
from thrifty.serving.providers.base import StreamItem, cost_usd, param
from thrifty.types import ChatRequest, Completion, Usage, message_text

__all__ = ["LlamaCppProvider", "transcript_prompt", "raw_prompt", "MODES", "DEFAULT_PREAMBLE"]

MODES = ("chat", "completion", "raw")

DEFAULT_PREAMBLE = "A conversation between a User and a helpful, knowledgeable Assistant who answers correctly and briefly."
_TRANSCRIPT_STOPS = ("\nUser:", "\nAssistant:", "User:", "\n\n\n")
_PASS_PARAMS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "presence_penalty", "frequency_penalty", "seed")


def transcript_prompt(
    messages: Sequence[Mapping[str, Any]],
    preamble: str = DEFAULT_PREAMBLE,
    examples: Sequence[tuple[str, str]] = (),
    user: str = "User",
    assistant: str = "Assistant",
) -> str:
    """A base-model prompt: the system text (or ``preamble``), few-shot ``examples`` as (question, answer)
    turns, then the conversation as ``User:`` / ``Assistant:`` lines, ending with ``Assistant:``."""
    system = "\n".join(message_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer")).strip()
    lines = [(system or preamble).strip() + "\n\n"]
    for question, answer in examples:
        lines.append(f"{user}: {question}\n{assistant}: {answer}\n")
    for m in messages:
        role, text = m.get("role"), message_text(m.get("content")).strip()
        if role == "user":
            lines.append(f"{user}: {text}\n")
        elif role == "assistant" and text:
            lines.append(f"{assistant}: {text}\n")
        elif role == "tool":
            lines.append(f"{user}: (tool result) {text}\n")
    return "".join(lines) + f"{assistant}:"


def raw_prompt(messages: Sequence[Mapping[str, Any]]) -> str:
    """The ``"raw"`` mode prompt: every message's text verbatim, joined by a blank line."""
    return "\n\n".join(message_text(m.get("content")) for m in messages)


@dataclass
class _Loaded:
    """One model file loaded once per process, with the lock that serialises its use."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    llm: Any = None
    formatter: Any = None
    load_s: float = 0.0


_MODELS: dict[tuple[str, int, int, int], _Loaded] = {}
_MODELS_LOCK = threading.Lock()
_exit_hook_registered = False  # on the first load, not at import time


def _close_models_at_exit() -> None:
    """Free the loaded models while the interpreter is still whole. Left to llama-cpp-python's own
    ``__del__``, they are freed during teardown, after the C bindings it calls are gone, and every
    process that loaded one prints "Exception ignored … TypeError" as it exits. A model still busy
    in a daemon thread after a second is left alone (freeing it under that thread would crash)."""
    with _MODELS_LOCK:
        slots = list(_MODELS.values())
    for slot in slots:
        if slot.llm is None or not slot.lock.acquire(timeout=1.0):
            continue
        try:
            llm, slot.llm = slot.llm, None
            with contextlib.suppress(Exception):  # best effort at exit: nothing is left to report to
                llm.close()
        finally:
            slot.lock.release()


def _import_llama() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ConfigError(
            "llama-cpp-python is not installed, so local GGUF models cannot run",
            key="tiers.provider",
            fix="pip install 'thrifty[local]' (compiles llama.cpp, about 4 minutes)",
        ) from exc
    return llama_cpp


_LOAD_LOCK = threading.Lock()  # see _load_locked
_NATIVE_LOG: list[Any] = []  # keeps the ctypes callback alive


def _route_native_logs(llama_cpp: Any) -> None:
    """Send llama.cpp's native log lines to the ``thrifty.llamacpp`` logger (DEBUG) instead of stderr.

    The binding prints some warnings (e.g. about the SWA cache) to stderr even with ``verbose=False``;
    thrifty reports failures as exceptions, so these lines only matter when debugging.
    """
    if _NATIVE_LOG:
        return
    import ctypes

    log = logging.getLogger("thrifty.llamacpp")

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]  # a ctypes callback factory, no stubs
    def callback(level: int, text: bytes, user_data: Any) -> None:
        log.debug(text.decode("utf-8", "replace").rstrip())

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    _NATIVE_LOG.append(callback)


class LlamaCppProvider:
    """A GGUF model file served in-process. ``defaults`` are sampling params used unless the request sets them."""

    streams = True
    tools = False
    vision = False

    def __init__(
        self,
        name: str,
        model_path: str | os.PathLike[str],
        *,
        model: str | None = None,
        mode: str = "chat",
        n_ctx: int = 2048,
        n_threads: int = 1,
        n_threads_batch: int = 1,
        price_in: float = 0.0,
        price_out: float = 0.0,
        preamble: str = DEFAULT_PREAMBLE,
        examples: Sequence[tuple[str, str]] = (),
        stop: Sequence[str] = (),
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}", key=f"{name}.mode")
        self.name = name
        self.model = model or name
        self.model_path = os.fspath(model_path)
        self.mode = mode
        self.n_ctx, self.n_threads, self.n_threads_batch = int(n_ctx), int(n_threads), int(n_threads_batch)
        self.price_in, self.price_out = float(price_in), float(price_out)
        self.preamble = preamble
        self.examples = tuple((str(q), str(a)) for q, a in examples)
        self.stop = tuple(stop) or (_TRANSCRIPT_STOPS if mode == "completion" else ())
        self.defaults = {"max_tokens": 256, "temperature": 0.2, **dict(defaults or {})}

    def __repr__(self) -> str:
        return f"LlamaCppProvider(name={self.name!r}, mode={self.mode!r}, path={self.model_path!r})"

    # -- loading --------------------------------------------------------------------------------
    def _slot(self) -> _Loaded:
        key = (os.path.realpath(self.model_path), self.n_ctx, self.n_threads, self.n_threads_batch)
        with _MODELS_LOCK:
            return _MODELS.setdefault(key, _Loaded())

    def _load_locked(self, slot: _Loaded) -> _Loaded:
        """Load the model into ``slot`` (caller holds ``slot.lock``)."""
        if slot.llm is not None:
            return slot
        if not os.path.isfile(self.model_path):
            raise ConfigError(f"model file not found: {self.model_path}", key=f"{self.name}.model_path")
        llama_cpp = _import_llama()
        _route_native_logs(llama_cpp)
        t0 = time.perf_counter()
        # llama-cpp-python silences loading by swapping the process's stdout/stderr file descriptors;
        # two loads in parallel threads restore each other's swapped fds and leave the process
        # writing to /dev/null. One load at a time per process.
        with _LOAD_LOCK:
            llm = llama_cpp.Llama(
                model_path=self.model_path,
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads_batch,
                verbose=False,
            )
        formatter = None
        if self.mode == "chat":
            template = llm.metadata.get("tokenizer.chat_template")
            if not template:
                raise ConfigError(f"{self.model_path} has no chat template", key=f"{self.name}.mode", fix="use mode = 'completion'")
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            eos, bos = llm.token_eos(), llm.token_bos()

            def text(t: int) -> str:
                return str(llm.detokenize([t], special=True).decode("utf-8", "ignore")) if t >= 0 else ""

            formatter = Jinja2ChatFormatter(template=template, eos_token=text(eos), bos_token=text(bos), stop_token_ids=[eos])
        slot.llm, slot.formatter, slot.load_s = llm, formatter, time.perf_counter() - t0
        global _exit_hook_registered
        with _MODELS_LOCK:
            if not _exit_hook_registered:
                atexit.register(_close_models_at_exit)
                _exit_hook_registered = True
        return slot

    def load(self) -> float:
        """Load the model now (blocking); returns the seconds it took (0 if already loaded)."""
        slot = self._slot()
        with slot.lock:
            was_loaded = slot.llm is not None
            with provider_errors(self.name):
                self._load_locked(slot)
        return 0.0 if was_loaded else slot.load_s

    async def warm(self) -> float:
        """Load the model in a worker thread; seconds taken."""
        return await asyncio.to_thread(self.load)

    async def aclose(self) -> None:
        """Nothing to release per request: the model stays loaded for the process."""

    # -- generation -----------------------------------------------------------------------------
    def _prepare(self, slot: _Loaded, request: ChatRequest) -> tuple[list[int], dict[str, Any], list[Callable[..., bool]]]:
        llm = slot.llm
        messages = [dict(m) for m in request.messages]
        extra_stop: list[Callable[..., bool]] = []
        if self.mode == "chat":
            formatted = slot.formatter(messages=messages)
            tokens = llm.tokenize(formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True)
            stops = list(self.stop) + [s for s in ([formatted.stop] if isinstance(formatted.stop, str) else formatted.stop or []) if s]
            if formatted.stopping_criteria:
                extra_stop.extend(formatted.stopping_criteria)
        else:
            text = raw_prompt(messages) if self.mode == "raw" else transcript_prompt(messages, self.preamble, self.examples)
            tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
            stops = list(self.stop)
        user_stop = param(request, "stop")
        if user_stop:
            stops += [user_stop] if isinstance(user_stop, str) else list(user_stop)
        kwargs: dict[str, Any] = {k: v for k, v in self.defaults.items() if k in _PASS_PARAMS or k == "max_tokens"}
        kwargs.update({k: v for k, v in (request.params or {}).items() if k in _PASS_PARAMS and v is not None})
        max_tokens = param(request, "max_completion_tokens", "max_tokens", default=self.defaults["max_tokens"])
        room = self.n_ctx - len(tokens)
        if room <= 0:
            raise ProviderError(
                f"prompt of {len(tokens)} tokens does not fit the {self.n_ctx}-token context", provider=self.name, status=400
            )
        kwargs["max_tokens"] = max(1, min(int(max_tokens), room))
        kwargs["stop"] = stops
        return tokens, kwargs, extra_stop

    def _generate(self, request: ChatRequest, cancel: threading.Event, emit: Callable[[str], None] | None) -> Completion:
        """Blocking generation (worker thread). ``emit`` receives text deltas when streaming."""
        llama_cpp = _import_llama()
        started = time.perf_counter()
        slot = self._slot()
        with slot.lock, provider_errors(self.name, known=(RuntimeError,)):  # the binding's decode failures
            self._load_locked(slot)
            tokens, kwargs, extra_stop = self._prepare(slot, request)
            calls = [0]

            def cancelled(ids: Any, logits: Any) -> bool:  # called once per sampled token, plus once at the end
                calls[0] += 1
                return cancel.is_set()

            criteria = llama_cpp.StoppingCriteriaList([cancelled, *extra_stop])
            parts: list[str] = []
            finish = "stop"
            for chunk in slot.llm.create_completion(prompt=tokens, stream=True, stopping_criteria=criteria, **kwargs):
                choice = chunk["choices"][0]
                if choice.get("text"):
                    parts.append(choice["text"])
                    if emit is not None:
                        emit(choice["text"])
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
                if cancel.is_set():
                    break
        text = "".join(parts)
        if self.mode != "chat":  # a continuation starts with the space after "Assistant:" / "Answer:"
            text = text.strip()
        # sampled tokens (an end-of-generation token included); the final bookkeeping call is not one
        usage = Usage(len(tokens), max(calls[0] - 1, 1 if text else 0))
        return Completion(
            text=text,
            model=self.model,
            usage=usage,
            cost_usd=cost_usd(usage, self.price_in, self.price_out),
            latency_s=time.perf_counter() - started,
            finish_reason=finish,
        )

    async def complete(self, request: ChatRequest) -> Completion:
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(self._generate, request, cancel, None)
        finally:
            cancel.set()  # on cancellation the worker stops at its next token

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        lstrip = self.mode != "chat"  # a continuation starts after "Assistant:" / "Answer:" — drop the leading space

        def emit(text: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, text)

        worker = asyncio.ensure_future(asyncio.to_thread(self._generate, request, cancel, emit))
        worker.add_done_callback(lambda _f: queue.put_nowait(None))
        try:
            started = False
            while True:
                item = await queue.get()
                if item is None:
                    break
                if lstrip and not started:
                    item = item.lstrip()
                    if not item:
                        continue
                started = True
                yield item
            completion = await worker
            yield completion
        finally:
            cancel.set()
            if not worker.done():
                worker.cancel()
