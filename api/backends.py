"""What each kind of chat backend can honour, from a table.

A parameter the backend would silently ignore (Ollama) or cannot do (the embedded model) is
refused with a 400 instead. Which kind answers comes from the settings: no ``base_url`` is the
embedded engine; otherwise ``RAG_BACKEND`` (``ollama`` or ``openai-compatible``) says it, and only
when it is ``auto`` (the default) is the kind guessed from the URL: Ollama's port ``:11434`` or
``ollama`` in the URL means Ollama, anything else is a generic OpenAI-compatible server.
"""

from __future__ import annotations

from typing import Any, Literal

from api.openai_wire import OpenAIError
from rag.settings import Settings

BackendKind = Literal["embedded", "ollama", "openai-compatible"]

# What each kind of backend cannot honour; ``image`` stands for image parts in the messages.
# The embedded engine (llama.cpp's server) honours n, logit_bias and response_format itself; its
# 135M model cannot call tools, and it has no image projector (llama.cpp would answer 500).
# A generic OpenAI-compatible server gets everything and answers for itself.
UNSUPPORTED: dict[BackendKind, frozenset[str]] = {
    "embedded": frozenset({"tools", "tool_choice", "functions", "function_call", "image"}),
    "ollama": frozenset({"n", "logit_bias", "presence_penalty", "frequency_penalty"}),
    "openai-compatible": frozenset(),
}


def backend_kind(settings: Settings) -> BackendKind:
    """The kind of the chat backend (``Settings.backend_kind``)."""
    return settings.backend_kind


def check_supported(settings: Settings, params: dict[str, Any], images: bool) -> None:
    """Raise the 400 for a parameter (or image parts) this kind of backend cannot honour, if any.
    ``n`` = 1 is always fine."""
    kind = backend_kind(settings)
    refused = UNSUPPORTED[kind]
    if images and "image" in refused:
        raise OpenAIError(400, f"The chat backend ({kind}) cannot read images.", param="messages", code="unsupported")
    for name, value in params.items():
        if name in refused and value is not None and not (name == "n" and value == 1):
            raise OpenAIError(
                400,
                f"The chat backend ({kind}) cannot honour '{name}'; leave it out.",
                param=name,
                code="unsupported_parameter",
            )


def check_model_served(settings: Settings, model: str, *, embeddings: bool) -> None:
    """Raise the 404 for a model the embedded engines do not serve (they would answer any name).
    A configured backend answers for its own model names."""
    if embeddings and settings.embed_url:
        return
    if not embeddings and settings.base_url:
        return
    known = settings.embed_model_name if embeddings else settings.chat_model_name
    if model == known:
        return
    raise OpenAIError(
        404, f"The model '{model}' does not exist: the embedded backend serves '{known}'.", code="model_not_found"
    )
