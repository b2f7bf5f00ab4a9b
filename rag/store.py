"""The vector store's interface and the types it speaks: ``VectorStore``, ``StoredChunk`` (what is
written), ``Hit`` (what a search returns), ``IndexInfo`` (the model an index was built with).

The implementations are Chroma's, embedded or a server (``rag.chroma``); ``ChromaStore`` is
re-exported here. Another vector engine would be one more module implementing ``VectorStore``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rag.errors import EmptyIndexError, IndexMismatchError


@dataclass
class StoredChunk:
    id: str
    text: str
    metadata: dict[str, Any]
    terms: str | None = None  # keyword-index analysis, computed early (parse threads) when known


@dataclass
class Hit:
    id: str
    score: float
    source: str
    page: int | None
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # Calibrated relevance (rag.relevance): the probability, 0..1, that the passage is relevant to
    # the query; comparable across queries (what a refusal threshold compares), unlike ``score``,
    # which is the mode's own (cosine, BM25, or relevance again in hybrid). 0 until ranked.
    relevance: float = 0.0

    @classmethod
    def of(cls, cid: str, score: float, text: str, meta: dict[str, Any]) -> Hit:
        """A hit for a stored chunk: source and page come from its metadata."""
        return cls(cid, score, str(meta.get("source", "")), _page(meta), text, meta)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "score": round(self.score, 6),
            "relevance": round(self.relevance, 4),
            "source": self.source,
            "page": self.page,
            "heading": self.metadata.get("heading") or None,
            "start": self.metadata.get("start"),
            "end": self.metadata.get("end"),
            "text": self.text,
        }


@dataclass
class IndexInfo:
    embed_model: str
    embed_dim: int
    chunk_tokens: int
    chunk_overlap: int


class VectorStore(Protocol):
    name: str
    location: str

    def info(self) -> IndexInfo | None: ...

    def ensure(self, info: IndexInfo) -> None: ...

    def upsert(self, chunks: Sequence[StoredChunk], embeddings: Sequence[Sequence[float]]) -> None: ...

    def write(
        self, chunks: Sequence[StoredChunk], embeddings: Sequence[Sequence[float]], drop: Sequence[str]
    ) -> None: ...

    def start_write(
        self, chunks: Sequence[StoredChunk], embeddings: Sequence[Sequence[float]], drop: Sequence[str]
    ) -> Callable[[], None]: ...

    def delete(self, ids: Sequence[str]) -> None: ...

    @property
    def max_batch(self) -> int: ...

    def get_embeddings(self, ids: Sequence[str]) -> dict[str, list[float]]: ...

    def all_ids(self) -> set[str]: ...

    def get_chunks(self, ids: Sequence[str]) -> list[StoredChunk]: ...

    def query(
        self,
        embedding: Sequence[float],
        k: int,
        *,
        sources: Sequence[str] | None = None,
        page_min: int | None = None,
        page_max: int | None = None,
        documents: bool = True,
    ) -> list[Hit]: ...

    def empty_error(self) -> EmptyIndexError: ...

    def count(self) -> int: ...

    def drop(self) -> None: ...


def _page(meta: dict[str, Any]) -> int | None:
    page = meta.get("page", 0)
    return int(page) if page else None


def check_compatible(current: IndexInfo, model: str, dim: int | None, collection: str) -> None:
    if current.embed_model != model or (dim is not None and current.embed_dim != dim):
        raise IndexMismatchError(
            f"The collection '{collection}' was built with embedding model '{current.embed_model}' "
            f"({current.embed_dim} dimensions), but RAG_EMBED_MODEL is now '{model}'"
            + (f" ({dim} dimensions)" if dim else "")
            + ". Run `rag reindex` to re-embed everything with the new model, "
            "or keep both with `--collection NEW_NAME`."
        )


from rag.chroma import ChromaStore  # noqa: E402 - the implementations import the types above

__all__ = ["ChromaStore", "Hit", "IndexInfo", "StoredChunk", "VectorStore", "check_compatible"]
