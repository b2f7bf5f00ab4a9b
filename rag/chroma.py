"""Chroma behind the ``VectorStore`` interface (``rag.store``), in two implementations chosen by
the settings: ``EmbeddedChroma`` (``PersistentClient`` in the index directory, ``rag.chroma_embedded``)
and ``ServerChroma`` (``HttpClient`` to ``chroma run``, ``RAG_CHROMA_URL``). ``ChromaStore(settings)``
makes the right one. What both do is written once: the collection and the client each call holds
(here: ``_using``, the one place Chroma's exceptions become ``StoreError``), and the data calls on
the collection (``rag.chroma_data``).

The collection records the embedding model and dimension (and chunker settings) in its
metadata, so an index is never queried or extended with vectors from a different model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rag import chroma_data as data
from rag.errors import EmptyIndexError, RagError, StoreError
from rag.settings import Settings
from rag.store import Hit, IndexInfo, StoredChunk, check_compatible

# HNSW's search breadth. Chroma's default, 100, equals the dense depth hybrid search asks for
# (``RAG_HYBRID_DEPTH``), and then the approximate top 100 held 94.7% of the exact top 100 on average
# (gnuplot-doc's questions; 74% at worst), and which passages it missed changed from process to
# process (57 of 85 questions had another top 100 in a second run). 400: 99.4%, 4 of 85 changed,
# +0.2-0.6 ms a query (docs/benchmarks.md, "HNSW search breadth").
SEARCH_EF = 400


class _Conn:
    """One Chroma client and the collections opened through it. ``users`` counts the calls using
    it now; once retired (``ChromaStore.reopen``) it is stopped when the last of them returns."""

    def __init__(self, client: Any, system: Any) -> None:
        self.client = client
        self.system = system  # an embedded client's private chromadb System; None for a server
        self.collections: dict[str, Any] = {}
        self.loaded: set[str] = set()  # collections whose vectors this client has loaded (queried or written)
        self.versions: dict[str, int] = {}  # the index version each collection was loaded at
        self.users = 0
        self.retired = False


class ChromaStore:
    """A Chroma collection. Cosine distance; we supply all embeddings ourselves
    (Chroma's default embedding function would download a model at run time).
    ``ChromaStore(settings)`` is an ``EmbeddedChroma`` or, with ``chroma_url``, a ``ServerChroma``."""

    location: str

    def __new__(cls, settings: Settings) -> ChromaStore:
        if cls is ChromaStore:
            if settings.chroma_url:
                from rag.chroma_server import ServerChroma

                cls = ServerChroma
            else:
                from rag.chroma_embedded import EmbeddedChroma

                cls = EmbeddedChroma
        return super().__new__(cls)

    def __init__(self, settings: Settings) -> None:
        self.name = settings.collection
        self._settings = settings
        self._open()

    def _open(self) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def _hold(self) -> Iterator[_Conn]:
        """The client a call uses, held for the length of the call."""
        raise NotImplementedError
        yield  # pragma: no cover

    @property
    def client(self) -> Any:
        """The current Chroma client (a call in progress may still be using an older one)."""
        return self._current().client

    def _current(self) -> _Conn:
        raise NotImplementedError

    @contextlib.contextmanager
    def _using(self) -> Iterator[_Conn]:
        """The current client, held for the length of a call. Every call goes through here, so this
        is where Chroma's exceptions become one ``StoreError``."""
        with self._hold() as conn, self._translated():
            yield conn

    def reopen(self) -> None:
        """Forget what this process holds of the index after another process wrote it (only the
        embedded Chroma holds anything)."""

    def refresh(self, version: Callable[[], int]) -> bool:
        """Reopen if the index changed since this process loaded it (only the embedded Chroma
        needs it); returns whether it reopened."""
        return False

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except RagError:
            raise
        except Exception as exc:  # chromadb's own errors, sqlite3, OSError, HTTP errors of a server
            raise StoreError(
                f"The Chroma index at {self.location} failed ({type(exc).__name__}: {exc}). "
                "Check that the disk is writable and not full, or that the Chroma server is up."
            ) from exc

    # -- collection lifecycle -------------------------------------------------
    def _get(self, conn: _Conn) -> Any:
        col = conn.collections.get(self.name)
        if col is None:
            try:
                names = {c if isinstance(c, str) else c.name for c in conn.client.list_collections()}
                if self.name in names:
                    col = conn.collections[self.name] = conn.client.get_collection(self.name, embedding_function=None)
            except Exception as exc:
                raise StoreError(f"Cannot read the Chroma index at {self.location}: {exc}") from exc
        return col

    def info(self) -> IndexInfo | None:
        with self._using() as conn:
            return self._info(conn)

    def _info(self, conn: _Conn) -> IndexInfo | None:
        col = self._get(conn)
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
        with self._using() as conn:
            current = self._info(conn)
            if current is not None:
                check_compatible(current, info.embed_model, info.embed_dim, self.name)
                col = conn.collections[self.name]
                if (current.chunk_tokens, current.chunk_overlap) != (info.chunk_tokens, info.chunk_overlap):
                    col.modify(metadata=_info_meta(info))
                # A collection made before SEARCH_EF searched narrower; clients opened from now on search wider.
                hnsw = (getattr(col, "configuration_json", None) or {}).get("hnsw") or {}
                if int(hnsw.get("ef_search") or SEARCH_EF) < SEARCH_EF:
                    col.modify(configuration={"hnsw": {"ef_search": SEARCH_EF}})
                return
            try:
                conn.collections[self.name] = conn.client.get_or_create_collection(
                    self.name,
                    embedding_function=None,
                    configuration={"hnsw": {"space": "cosine", "ef_search": SEARCH_EF}},
                    metadata=_info_meta(info),
                )
            except Exception as exc:
                raise StoreError(f"Cannot create the collection '{self.name}' at {self.location}: {exc}") from exc

    def collections(self) -> list[str]:
        """Every collection in this Chroma (each can be a grounded model on /v1)."""
        try:
            with self._using() as conn:
                return sorted(c if isinstance(c, str) else c.name for c in conn.client.list_collections())
        except Exception as exc:
            raise StoreError(f"Cannot list the collections at {self.location}: {exc}") from exc

    def drop(self) -> None:
        with self._using() as conn:
            if self._get(conn) is not None:
                conn.client.delete_collection(self.name)
            conn.collections.pop(self.name, None)
            conn.loaded.discard(self.name)

    # -- data (Chroma's calls: rag.chroma_data) ------------------------------------------------
    def upsert(self, chunks: Sequence[StoredChunk], embeddings: Sequence[Sequence[float]] | Any) -> None:
        """Write ``chunks`` with their vectors (a sequence of vectors or an n x dim array),
        replacing any stored under the same ids."""
        with self._using() as conn:
            col = self._require(conn)
            conn.loaded.add(self.name)
            data.upsert(col, chunks, embeddings, min(self._max_batch(conn), 1000))

    def write(
        self, chunks: Sequence[StoredChunk], embeddings: Sequence[Sequence[float]] | Any, drop: Sequence[str]
    ) -> None:
        """One ingest batch: ``chunks`` upserted, then the ids in ``drop`` deleted."""
        if chunks:
            self.upsert(chunks, embeddings)
        self.delete(drop)

    def start_write(
        self, chunks: Sequence[StoredChunk], embeddings: Sequence[Sequence[float]] | Any, drop: Sequence[str]
    ) -> Callable[[], None]:
        """``write``, returning the function that waits for it: here the write is done on return;
        the writer process (``ingest.storeproc.StoreProcess``) returns at once and writes meanwhile."""
        self.write(chunks, embeddings, drop)
        return _done

    def delete(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        with self._using() as conn:
            col = self._require(conn)
            conn.loaded.add(self.name)
            data.delete(col, ids, min(self._max_batch(conn), 5000))

    @property
    def max_batch(self) -> int:
        with self._using() as conn:
            return self._max_batch(conn)

    @staticmethod
    def _max_batch(conn: _Conn) -> int:
        return max(1, int(conn.client.get_max_batch_size()))

    def get_embeddings(self, ids: Sequence[str]) -> dict[str, list[float]]:
        """Stored vectors by id (ids that are not stored are left out)."""
        with self._using() as conn:
            col = self._get(conn)
            if col is None or not ids:
                return {}
            return data.embeddings(col, ids, min(self._max_batch(conn), 1000))

    def all_ids(self) -> set[str]:
        with self._using() as conn:
            col = self._get(conn)
            return set() if col is None else data.all_ids(col)

    def get_chunks(self, ids: Sequence[str]) -> list[StoredChunk]:
        """Stored texts and metadata by id (ids that are not stored are left out)."""
        with self._using() as conn:
            col = self._get(conn)
            if col is None or not ids:
                return []
            return data.chunks(col, ids, min(self._max_batch(conn), 1000))

    def query(
        self,
        embedding: Sequence[float],
        k: int,
        *,
        sources: Sequence[str] | None = None,
        page_min: int | None = None,
        page_max: int | None = None,
        documents: bool = True,
    ) -> list[Hit]:
        """The ``k`` nearest chunks (``score`` is cosine similarity), optionally only from
        ``sources`` and pages ``page_min..page_max``. ``documents=False`` leaves text and
        metadata out: fetching them costs Chroma far more than the search itself."""
        where = data.where(sources, page_min, page_max)
        with self._using() as conn:
            col = self._get(conn)
            if col is None:
                raise self.empty_error()
            conn.loaded.add(self.name)
            hits = data.query(col, embedding, k, where, documents)
            if not hits and where is None and col.count() == 0:
                raise self.empty_error()
        return hits

    def empty_error(self) -> EmptyIndexError:
        return EmptyIndexError(
            f"The index '{self.name}' at {self.location} is empty. Run `rag ingest PATH` first "
            "(or pick another collection with --collection)."
        )

    def count(self) -> int:
        from chromadb.errors import NotFoundError

        with self._using() as conn:
            col = self._get(conn)
            try:
                return 0 if col is None else int(col.count())
            except NotFoundError:  # another process dropped it (`rag reset`), perhaps made it anew
                conn.collections.pop(self.name, None)
                col = self._get(conn)
                return 0 if col is None else int(col.count())

    def _require(self, conn: _Conn) -> Any:
        col = self._get(conn)
        if col is None:
            raise StoreError(f"The collection '{self.name}' does not exist yet; ingest something first.")
        return col


def _done() -> None:
    return None


def _info_meta(info: IndexInfo) -> dict[str, Any]:
    return {
        "embed_model": info.embed_model,
        "embed_dim": info.embed_dim,
        "chunk_tokens": info.chunk_tokens,
        "chunk_overlap": info.chunk_overlap,
    }
