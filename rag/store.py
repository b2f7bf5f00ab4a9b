"""The vector store: Chroma, embedded (``PersistentClient``) or a server (``HttpClient``).

The collection records the embedding model and dimension (and chunker
settings) in its metadata, so an index is never queried or extended with
vectors from a different model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlparse

from rag.errors import EmptyIndexError, IndexMismatchError, StoreError
from rag.settings import Settings


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "score": round(self.score, 6),
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

    def delete(self, ids: Sequence[str]) -> None: ...

    @property
    def max_batch(self) -> int: ...

    def get_embeddings(self, ids: Sequence[str]) -> dict[str, list[float]]: ...

    def all_ids(self) -> set[str]: ...

    def get_metadata(self, where: dict[str, Any]) -> dict[str, dict[str, Any]]: ...

    def get_chunks(self, ids: Sequence[str]) -> list[StoredChunk]: ...

    def query(
        self, embedding: Sequence[float], k: int, where: dict[str, Any] | None = None, *, documents: bool = True
    ) -> list[Hit]: ...

    def empty_error(self) -> EmptyIndexError: ...

    def count(self) -> int: ...

    def drop(self) -> None: ...


def _page(meta: dict[str, Any]) -> int | None:
    page = meta.get("page", 0)
    return int(page) if page else None


class ChromaStore:
    """A Chroma collection. Cosine distance; we supply all embeddings ourselves
    (Chroma's default embedding function would download a model at run time)."""

    def __init__(self, settings: Settings) -> None:
        self.name = settings.collection
        self._settings = settings
        self._collection: Any = None
        self._open()

    def _open(self) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        settings = self._settings
        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        try:
            if settings.chroma_url:
                url = urlparse(settings.chroma_url)
                self.client = chromadb.HttpClient(
                    host=url.hostname or "127.0.0.1",
                    port=url.port or (443 if url.scheme == "https" else 8000),
                    ssl=url.scheme == "https",
                    settings=chroma_settings,
                )
                self.location = settings.chroma_url
            else:
                settings.index_dir.mkdir(parents=True, exist_ok=True)
                self.client = chromadb.PersistentClient(
                    path=str(settings.index_dir / "chroma"), settings=chroma_settings
                )
                self.location = str(settings.index_dir)
        except Exception as exc:
            raise StoreError(
                f"Cannot open the Chroma index at {settings.chroma_url or settings.index_dir}: {exc}"
            ) from exc
        self._collection = None

    def reopen(self) -> None:
        """Forget what this process holds of the embedded index, after another process wrote it.

        A PersistentClient keeps the HNSW index it has loaded and does not see other processes'
        writes to it (measured: new vectors were missing from its queries); Chroma shares one
        client per path within a process, so that shared instance is dropped too. A server
        (``chroma_url``) holds nothing here."""
        if self._settings.chroma_url:
            return
        from chromadb.api.shared_system_client import SharedSystemClient

        ident = getattr(self.client, "_identifier", None)
        if ident is not None:
            SharedSystemClient._identifier_to_system.pop(ident, None)
            SharedSystemClient._identifier_to_refcount.pop(ident, None)
        self._open()

    # -- collection lifecycle -------------------------------------------------
    def _get(self) -> Any:
        if self._collection is None:
            try:
                names = {c if isinstance(c, str) else c.name for c in self.client.list_collections()}
                if self.name in names:
                    self._collection = self.client.get_collection(self.name, embedding_function=None)
            except Exception as exc:
                raise StoreError(f"Cannot read the Chroma index at {self.location}: {exc}") from exc
        return self._collection

    def info(self) -> IndexInfo | None:
        col = self._get()
        if col is None:
            return None
        meta = col.metadata or {}
        if "embed_model" not in meta:
            return None
        return IndexInfo(
            embed_model=str(meta["embed_model"]),
            embed_dim=int(meta["embed_dim"]),
            chunk_tokens=int(meta.get("chunk_tokens", 0)),
            chunk_overlap=int(meta.get("chunk_overlap", 0)),
        )

    def ensure(self, info: IndexInfo) -> None:
        """Create the collection for ``info``, or check an existing one matches it."""
        current = self.info()
        if current is not None:
            check_compatible(current, info.embed_model, info.embed_dim, self.name)
            if (current.chunk_tokens, current.chunk_overlap) != (info.chunk_tokens, info.chunk_overlap):
                self._collection.modify(metadata=_info_meta(info))
            return
        try:
            self._collection = self.client.get_or_create_collection(
                self.name,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
                metadata=_info_meta(info),
            )
        except Exception as exc:
            raise StoreError(f"Cannot create the collection '{self.name}' at {self.location}: {exc}") from exc

    def collections(self) -> list[str]:
        """Every collection in this Chroma (each can be a grounded model on /v1)."""
        try:
            return sorted(c if isinstance(c, str) else c.name for c in self.client.list_collections())
        except Exception as exc:
            raise StoreError(f"Cannot list the collections at {self.location}: {exc}") from exc

    def drop(self) -> None:
        if self._get() is not None:
            self.client.delete_collection(self.name)
        self._collection = None

    # -- data -------------------------------------------------------------------
    def upsert(self, chunks: Sequence[StoredChunk], embeddings: Sequence[Sequence[float]] | Any) -> None:
        """Write ``chunks`` with their vectors (a sequence of vectors or an n x dim array),
        replacing any stored under the same ids."""
        import numpy as np

        col = self._require()
        vectors = np.asarray(embeddings, dtype=np.float32)
        step = min(self.max_batch, 1000)
        for i in range(0, len(chunks), step):
            part = chunks[i : i + step]
            ids = [c.id for c in part]
            # upsert costs ~18% more than add (measured, 10k records); ask which ids exist (~3-18 ms
            # per 1,000) and add the rest. Only ids already stored are upserted.
            stored = set(col.get(ids=ids, include=[])["ids"])
            new = [j for j, cid in enumerate(ids) if cid not in stored]
            old = [j for j, cid in enumerate(ids) if cid in stored]
            for write, rows in ((col.add, new), (col.upsert, old)):
                if rows:
                    write(
                        ids=[ids[j] for j in rows],
                        documents=[part[j].text for j in rows],
                        metadatas=[part[j].metadata for j in rows],
                        embeddings=vectors[i : i + step][rows],
                    )

    def write(
        self, chunks: Sequence[StoredChunk], embeddings: Sequence[Sequence[float]] | Any, drop: Sequence[str]
    ) -> None:
        """One ingest batch: ``chunks`` upserted, then the ids in ``drop`` deleted."""
        if chunks:
            self.upsert(chunks, embeddings)
        self.delete(drop)

    def delete(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        col = self._require()
        step = min(self.max_batch, 5000)
        for i in range(0, len(ids), step):
            col.delete(ids=list(ids[i : i + step]))

    @property
    def max_batch(self) -> int:
        return max(1, int(self.client.get_max_batch_size()))

    def get_embeddings(self, ids: Sequence[str]) -> dict[str, list[float]]:
        """Stored vectors by id (ids that are not stored are left out)."""
        col = self._get()
        if col is None or not ids:
            return {}
        out: dict[str, list[float]] = {}
        step = min(self.max_batch, 1000)
        for i in range(0, len(ids), step):
            got = col.get(ids=list(ids[i : i + step]), include=["embeddings"])
            for cid, vec in zip(got["ids"], got["embeddings"] if got["embeddings"] is not None else [], strict=False):
                out[cid] = [float(x) for x in vec]
        return out

    def all_ids(self) -> set[str]:
        col = self._get()
        if col is None:
            return set()
        ids: set[str] = set()
        page = 5000
        offset = 0
        while True:
            got = col.get(include=[], limit=page, offset=offset)
            ids.update(got["ids"])
            if len(got["ids"]) < page:
                return ids
            offset += page

    def get_metadata(self, where: dict[str, Any]) -> dict[str, dict[str, Any]]:
        col = self._get()
        if col is None:
            return {}
        got = col.get(where=where or None, include=["metadatas"])
        return {i: dict(m or {}) for i, m in zip(got["ids"], got["metadatas"] or [], strict=False)}

    def get_chunks(self, ids: Sequence[str]) -> list[StoredChunk]:
        """Stored texts and metadata by id (ids that are not stored are left out)."""
        col = self._get()
        if col is None or not ids:
            return []
        out: list[StoredChunk] = []
        step = min(self.max_batch, 1000)
        for i in range(0, len(ids), step):
            got = col.get(ids=list(ids[i : i + step]), include=["documents", "metadatas"])
            for cid, doc, meta in zip(got["ids"], got["documents"] or [], got["metadatas"] or [], strict=False):
                out.append(StoredChunk(cid, doc or "", dict(meta or {})))
        return out

    def query(
        self, embedding: Sequence[float], k: int, where: dict[str, Any] | None = None, *, documents: bool = True
    ) -> list[Hit]:
        """The ``k`` nearest chunks (``score`` is cosine similarity), optionally only those
        whose metadata matches ``where`` (a Chroma filter). ``documents=False`` leaves text and
        metadata out: fetching them costs Chroma far more than the search itself."""
        col = self._get()
        if col is None:
            raise self.empty_error()
        include = ["documents", "metadatas", "distances"] if documents else ["distances"]
        res = col.query(query_embeddings=[list(embedding)], n_results=k, where=where or None, include=include)
        ids = res["ids"][0]
        if not ids and where is None and col.count() == 0:
            raise self.empty_error()
        docs = res["documents"][0] if documents else [""] * len(ids)
        metas = res["metadatas"][0] if documents else [{}] * len(ids)
        hits = []
        for cid, doc, meta, dist in zip(ids, docs, metas, res["distances"][0], strict=False):
            meta = dict(meta or {})
            hits.append(
                Hit(
                    id=cid,
                    score=1.0 - float(dist),
                    source=str(meta.get("source", "")),
                    page=_page(meta),
                    text=doc or "",
                    metadata=meta,
                )
            )
        return hits

    def empty_error(self) -> EmptyIndexError:
        return EmptyIndexError(
            f"The index '{self.name}' at {self.location} is empty. Run `rag ingest PATH` first "
            "(or pick another collection with --collection)."
        )

    def count(self) -> int:
        col = self._get()
        return 0 if col is None else int(col.count())

    def _require(self) -> Any:
        col = self._get()
        if col is None:
            raise StoreError(f"The collection '{self.name}' does not exist yet; ingest something first.")
        return col


def _info_meta(info: IndexInfo) -> dict[str, Any]:
    return {
        "embed_model": info.embed_model,
        "embed_dim": info.embed_dim,
        "chunk_tokens": info.chunk_tokens,
        "chunk_overlap": info.chunk_overlap,
    }


def check_compatible(current: IndexInfo, model: str, dim: int | None, collection: str) -> None:
    if current.embed_model != model or (dim is not None and current.embed_dim != dim):
        raise IndexMismatchError(
            f"The collection '{collection}' was built with embedding model '{current.embed_model}' "
            f"({current.embed_dim} dimensions), but RAG_EMBED_MODEL is now '{model}'"
            + (f" ({dim} dimensions)" if dim else "")
            + ". Run `rag reindex` to re-embed everything with the new model, "
            "or keep both with `--collection NEW_NAME`."
        )
