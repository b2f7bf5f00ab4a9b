"""The context a chat server says it runs a model with, where it says it: prompts are fitted to it
(``rag.fit``) unless ``RAG_CHAT_CONTEXT`` is set.

- vLLM lists ``max_model_len`` on each ``/v1/models`` entry; LM Studio ``loaded_context_length``
  (or ``context_length``); others may use ``context_window`` or ``max_context_length``;
- llama.cpp's server answers ``GET /props`` with ``default_generation_settings.n_ctx`` (per slot);
- Ollama's ``/v1`` says nothing about the context it actually runs with (its ``num_ctx`` default,
  whatever the model could do), so it is never asked: the caller uses Ollama's default.

A server that says nothing, or cannot be reached quickly, gives ``None``; the answer then uses the
default (``rag.fit.chat_context``), and the request itself reports any real failure.
"""

from __future__ import annotations

from typing import Any

import httpx

FIELDS = ("max_model_len", "loaded_context_length", "context_length", "context_window", "max_context_length")


def reported_context(base_url: str, model: str, api_key: str | None = None, timeout: float = 3.0) -> int | None:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    base = base_url.rstrip("/")
    try:
        with httpx.Client(timeout=timeout, headers=headers) as client:
            found = _from_models(client, base, model)
            if found is None:
                root = base[: -len("/v1")] if base.endswith("/v1") else base
                found = _from_props(client, root)
            return found
    except (httpx.HTTPError, ValueError):
        return None


def _from_models(client: httpx.Client, base: str, model: str) -> int | None:
    resp = client.get(base + "/models")
    if resp.status_code != 200:
        return None
    entries = [e for e in (resp.json().get("data") or []) if isinstance(e, dict)]
    mine = [e for e in entries if e.get("id") == model] or (entries if len(entries) == 1 else [])
    for entry in mine:
        for name in FIELDS:
            value = _positive(entry.get(name))
            if value:
                return value
    return None


def _from_props(client: httpx.Client, root: str) -> int | None:
    resp = client.get(root + "/props")
    if resp.status_code != 200:
        return None
    settings: Any = resp.json().get("default_generation_settings") or {}
    return _positive(settings.get("n_ctx")) if isinstance(settings, dict) else None


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
