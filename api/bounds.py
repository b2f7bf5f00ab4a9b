"""What a request may ask for, checked before any work (issue 15: one long request must not take
the service down; client mistakes are 400s, never 500s or 502s).

- Lengths (``RAG_MAX_QUERY_CHARS`` for questions, queries, history turns and embeddings inputs, also
  bounded in estimated tokens, since the embedded embedder's time grows with the square of its input;
  ``RAG_MAX_TEXT_CHARS`` for ``/verify``; ``RAG_MAX_HISTORY_TURNS`` and ``RAG_MAX_HISTORY_CHARS``).
- Text that cannot be encoded (a lone surrogate, ``"\\ud800"``, is valid JSON but not UTF-8).
- ``/v1`` parameters of the wrong type or range (``max_tokens: "x"`` or ``0``, a ``stream_options``
  that is not an object), for grounded and pass-through models alike, as OpenAI's API refuses them.

Each check raises :class:`~rag.errors.InvalidRequestError` (400; OpenAI's shape on ``/v1``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from api.openai_wire import OpenAIError
from rag.errors import InvalidRequestError
from rag.settings import Settings
from rag.text import estimate_tokens

MAX_EMBED_INPUTS = 2048  # OpenAI's own limit on inputs per /v1/embeddings request
POSITIVE_INTS = ("max_tokens", "max_completion_tokens", "n")
NUMBERS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


def check_encodable(name: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequestError(f"'{name}' holds text that is not valid Unicode (a lone surrogate).") from None


def check_text(settings: Settings, name: str, text: str, limit: int | None = None) -> str:
    """``text`` if it is at most ``limit`` characters (default ``RAG_MAX_QUERY_CHARS``) and a
    quarter as many estimated tokens, and valid Unicode; else the 400."""
    limit = limit or settings.max_query_chars
    if len(text) > limit or estimate_tokens(text) > max(1, limit // 4):
        raise InvalidRequestError(
            f"'{name}' is too long ({len(text)} characters, about {estimate_tokens(text)} tokens): at most "
            f"{limit} characters and {max(1, limit // 4)} tokens (RAG_MAX_QUERY_CHARS)."
        )
    check_encodable(name, text)
    return text


def check_history(settings: Settings, contents: Iterable[str]) -> None:
    """A conversation's earlier turns: at most ``RAG_MAX_HISTORY_TURNS`` messages and
    ``RAG_MAX_HISTORY_CHARS`` characters."""
    texts = list(contents)
    if len(texts) > settings.max_history_turns:
        raise InvalidRequestError(
            f"The conversation has {len(texts)} earlier messages: at most {settings.max_history_turns} "
            "(RAG_MAX_HISTORY_TURNS); start a new one or leave out the oldest."
        )
    total = sum(len(t) for t in texts)
    if total > settings.max_history_chars:
        raise InvalidRequestError(
            f"The conversation's history is {total} characters: at most {settings.max_history_chars} "
            "(RAG_MAX_HISTORY_CHARS); leave out the oldest turns."
        )
    for t in texts:
        check_encodable("history", t)


def check_embeddings_input(settings: Settings, body: dict[str, Any]) -> None:
    """``input`` of ``/v1/embeddings``: a string, or a list of strings (or token lists), each
    bounded like a query, at most :data:`MAX_EMBED_INPUTS` of them."""
    value = body.get("input")
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise OpenAIError(400, "'input' must be a string or a non-empty list of strings.", param="input")
    if len(items) > MAX_EMBED_INPUTS:
        raise OpenAIError(400, f"'input' has {len(items)} items: at most {MAX_EMBED_INPUTS}.", param="input")
    for item in items:
        if isinstance(item, str):
            check_text(settings, "input", item)
        elif isinstance(item, int) and not isinstance(item, bool):
            continue  # one token list, given flat
        elif isinstance(item, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in item):
            if len(item) > max(1, settings.max_query_chars // 4):
                raise OpenAIError(400, "An 'input' token list is too long.", param="input")
        else:
            raise OpenAIError(400, "'input' must hold strings or lists of token ids.", param="input")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_openai_params(body: dict[str, Any]) -> None:
    """The common ``/v1`` parameters: the right JSON types and ranges, or OpenAI's 400 naming them."""
    for name in POSITIVE_INTS:
        if body.get(name) is not None and not _positive_int(body[name]):
            raise OpenAIError(400, f"'{name}' must be a whole number of at least 1.", param=name)
    for name in NUMBERS:
        if body.get(name) is not None and not _number(body[name]):
            raise OpenAIError(400, f"'{name}' must be a number.", param=name)
    if body.get("seed") is not None and not (isinstance(body["seed"], int) and not isinstance(body["seed"], bool)):
        raise OpenAIError(400, "'seed' must be a whole number.", param="seed")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise OpenAIError(400, "'stream' must be true or false.", param="stream")
    if body.get("stream_options") is not None and not isinstance(body["stream_options"], dict):
        raise OpenAIError(400, "'stream_options' must be an object.", param="stream_options")
    if body.get("messages") is not None and not isinstance(body["messages"], list):
        raise OpenAIError(400, "'messages' must be a list.", param="messages")


def check_json_encodable(body: Any) -> None:
    """A parsed body that will go on as JSON (to a backend, or into a prompt) must be valid Unicode."""
    try:
        json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise OpenAIError(400, "The body holds text that is not valid Unicode (a lone surrogate).") from None
    except (RecursionError, ValueError):
        raise OpenAIError(400, "The body is nested too deeply or holds values JSON cannot carry.") from None
