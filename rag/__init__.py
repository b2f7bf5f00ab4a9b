"""Local RAG: index your documents, ask questions, get answers that cite file and page.

Names are imported on first use (PEP 562): ``import rag.errors`` or ``rag --help`` must not pay
for the engine, the model clients (openai) and Chroma.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Answer": "rag.answer",
    "AnswerStream": "rag.answer",
    "Event": "rag.answer",
    "Rag": "rag.engine",
    "ConfigError": "rag.errors",
    "EmptyIndexError": "rag.errors",
    "EngineError": "rag.errors",
    "IndexBusyError": "rag.errors",
    "IndexMismatchError": "rag.errors",
    "IndexStateError": "rag.errors",
    "InvalidRequestError": "rag.errors",
    "ModelAuthError": "rag.errors",
    "ModelNotFoundError": "rag.errors",
    "ModelServerError": "rag.errors",
    "ModelTimeoutError": "rag.errors",
    "ModelUnreachableError": "rag.errors",
    "RagError": "rag.errors",
    "StoreError": "rag.errors",
    "ChatDelta": "rag.models",
    "ChatModel": "rag.models",
    "Embedder": "rag.models",
    "OpenAIChat": "rag.models",
    "OpenAIEmbedder": "rag.models",
    "Usage": "rag.models",
    "MODES": "rag.retrieval",
    "Filters": "rag.retrieval",
    "Fusion": "rag.retrieval",
    "Settings": "rag.settings",
    "ChromaStore": "rag.store",
    "Hit": "rag.store",
}

__all__ = [
    "Answer",
    "AnswerStream",
    "ChatDelta",
    "ChatModel",
    "ChromaStore",
    "ConfigError",
    "Embedder",
    "EmptyIndexError",
    "EngineError",
    "Event",
    "Filters",
    "Fusion",
    "Hit",
    "IndexBusyError",
    "IndexMismatchError",
    "IndexStateError",
    "InvalidRequestError",
    "MODES",
    "ModelAuthError",
    "ModelNotFoundError",
    "ModelServerError",
    "ModelTimeoutError",
    "ModelUnreachableError",
    "OpenAIChat",
    "OpenAIEmbedder",
    "Rag",
    "RagError",
    "Settings",
    "StoreError",
    "Usage",
]

if TYPE_CHECKING:
    from rag.answer import Answer, AnswerStream, Event
    from rag.engine import Rag
    from rag.errors import (
        ConfigError,
        EmptyIndexError,
        EngineError,
        IndexBusyError,
        IndexMismatchError,
        IndexStateError,
        InvalidRequestError,
        ModelAuthError,
        ModelNotFoundError,
        ModelServerError,
        ModelTimeoutError,
        ModelUnreachableError,
        RagError,
        StoreError,
    )
    from rag.models import ChatDelta, ChatModel, Embedder, OpenAIChat, OpenAIEmbedder, Usage
    from rag.retrieval import MODES, Filters, Fusion
    from rag.settings import Settings
    from rag.store import ChromaStore, Hit


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rag' has no attribute {name!r}")
