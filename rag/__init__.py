"""Local RAG: index your documents, ask questions, get answers that cite file and page."""

from rag.engine import Answer, AnswerStream, Event, Rag
from rag.errors import (
    ConfigError,
    EmptyIndexError,
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

__all__ = [
    "Answer",
    "AnswerStream",
    "ChatDelta",
    "ChatModel",
    "ChromaStore",
    "ConfigError",
    "Embedder",
    "EmptyIndexError",
    "Event",
    "Filters",
    "Fusion",
    "Hit",
    "IndexBusyError",
    "IndexMismatchError",
    "IndexStateError",
    "MODES",
    "InvalidRequestError",
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
