"""Model providers: one small adapter per wire format, each a :class:`~thrifty.types.Provider`.

- ``openai_compat.OpenAICompatProvider`` — any OpenAI-compatible HTTP endpoint (OpenAI, vLLM,
  llama.cpp server, Ollama, Together, OpenRouter, Groq, …).
- ``anthropic.AnthropicProvider`` — Anthropic Messages API through the official SDK.
- ``llamacpp.LlamaCppProvider`` — in-process GGUF model through llama-cpp-python.

Modules import their optional libraries lazily; importing this package is cheap.
"""
