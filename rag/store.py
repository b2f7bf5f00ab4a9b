"""The vector store: Chroma, embedded (``PersistentClient``) or a server (``HttpClient``).

The collection records the embedding model and dimension (and chunker
settings) in its metadata, so an index is never queried or extended with
vectors from a different model.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlparse

from rag.errors import EmptyIndexError, IndexMismatchError, RagError, StoreError
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

    @classmethod
    def of(cls, cid: str, score: float, text: str, meta: dict[str, Any]) -> Hit:
        """A hit for a stored chunk: source and page come from its metadata."""
        return cls(cid, score, str(meta.get("source", "")), _page(meta), text, meta)

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

    def start_write(
        self, chunks: Sequence[StoredChunk], embeddings: Sequence[Sequence[float]], drop: Sequence[str]
    ) -> Callable[[], None]: ...

    def delete(self, ids: Sequence[str]) -> None: ...

    @property
    def max_batch(self) -> int: ...

    def get_embeddings(self, ids: Sequence[str]) -> dict[str, list[float]]: ...

    def all_ids(self) -> set[str]: ...

    def get_metadata(self, where: dict[str, Any]) -> dict[str, dict[str, Any]]: ...

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


class _Embedded:
    """The embedded Chroma at one path, shared by every ``ChromaStore`` of this process that
    opens it (as Chroma shares one client per path): the current ``_Conn`` and the lock that
    swaps it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conn: _Conn | None = None


_embedded: dict[str, _Embedded] = {}
_embedded_lock = threading.Lock()


def _private_client(path: str, chroma_settings: Any) -> _Conn:
    """A PersistentClient with a System of its own. Chroma hands out one System per path per
    process; ours is taken out of its cache, so that a reopen gets a new one and stopping ours
    never stops a client someone else made."""
    import chromadb
    from chromadb.api.shared_system_client import SharedSystemClient as Shared

    with _embedded_lock:
        client = None
        ident = path  # Chroma's key for it: the path as given
        # Another client at this path (not ours): set it aside while ours is made.
        theirs = Shared._identifier_to_system.pop(ident, None), Shared._identifier_to_refcount.pop(ident, None)
        try:
            client = chromadb.PersistentClient(path=path, settings=chroma_settings)
        finally:
            mine = getattr(client, "_identifier", ident)
            system = Shared._identifier_to_system.pop(mine, None)
            Shared._identifier_to_refcount.pop(mine, None)
            if theirs[0] is not None:
                Shared._identifier_to_system[ident] = theirs[0]
            if theirs[1] is not None:
                Shared._identifier_to_refcount[ident] = theirs[1]
    return _Conn(client, system)


class ChromaStore:
    """A Chroma collection. Cosine distance; we supply all embeddings ourselves
    (Chroma's default embedding function would download a model at run time).

    Thread-safe: every call holds the client it started with, so ``reopen`` in another
    thread never pulls the client out from under a query (the old client is stopped, and its
    files closed, when the last call using it returns)."""

    def __init__(self, settings: Settings) -> None:
        self.name = settings.collection
        self._settings = settings
        self._shared: _Embedded | None = None
        self._remote: _Conn | None = None
        self._open()

    def _open(self) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        settings = self._settings
        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        try:
            if settings.chroma_url:
                url = urlparse(settings.chroma_url)
                client = chromadb.HttpClient(
                    host=url.hostname or "127.0.0.1",
                    port=url.port or (443 if url.scheme == "https" else 8000),
                    ssl=url.scheme == "https",
                    settings=chroma_settings,
                )
                self._remote = _Conn(client, None)
                self.location = settings.chroma_url
            else:
                settings.index_dir.mkdir(parents=True, exist_ok=True)
                path = str(settings.index_dir / "chroma")
                with _embedded_lock:
                    self._shared = _embedded.setdefault(os.path.realpath(path), _Embedded())
                with self._shared.lock:
                    if self._shared.conn is None:
                        self._shared.conn = _private_client(path, chroma_settings)
                self.location = str(settings.index_dir)
        except Exception as exc:
            raise StoreError(
                f"Cannot open the Chroma index at {settings.chroma_url or settings.index_dir}: {exc}"
            ) from exc

    @property
    def client(self) -> Any:
        """The current Chroma client (a call in progress may still be using an older one)."""
        return self._current().client

    def _current(self) -> _Conn:
        conn = self._remote or (self._shared.conn if self._shared else None)
        assert conn is not None
        return conn

    @contextlib.contextmanager
    def _using(self) -> Iterator[_Conn]:
        """The current client, held for the length of a call (see ``reopen``). Every call goes
        through here, so this is where Chroma's exceptions become one ``StoreError``."""
        shared = self._shared
        if shared is None:
            with self._translated():
                yield self._current()
            return
        with shared.lock:
            conn = shared.conn
            assert conn is not None
            conn.users += 1
        try:
            with self._translated():
                yield conn
        finally:
            with shared.lock:
                conn.users -= 1
                done = conn.retired and conn.users == 0
            if done:
                _stop(conn)

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

    def reopen(self) -> None:
        """Forget what this process holds of the embedded index, after another process wrote it.

        A PersistentClient keeps the HNSW index it has loaded and does not see other processes'
        writes to it (measured: new vectors were missing from its queries). Every store of this
        process at the same path moves to the new client; calls still running on the old one
        finish on it, and the last of them stops it. A server (``chroma_url``) holds nothing here."""
        shared = self._shared
        if shared is None:
            return
        with shared.lock:
            self._reopen_locked(shared)

    def _reopen_locked(self, shared: _Embedded) -> _Conn:
        from chromadb.config import Settings as ChromaSettings

        old = shared.conn
        path = str(self._settings.index_dir / "chroma")
        try:
            conn = _private_client(path, ChromaSettings(anonymized_telemetry=False))
        except Exception as exc:
            raise StoreError(f"Cannot reopen the Chroma index at {self.location}: {exc}") from exc
        shared.conn = conn
        if old is not None:
            old.retired = True
            if old.users == 0:
                _stop(old)  # nothing runs on it (stopping under the lock: a new caller waits a moment)
        return conn

    def refresh(self, version: Callable[[], int]) -> bool:
        """Reopen the embedded index if it changed since this process loaded it: ``version()``
        reads a counter every committed write of this collection bumps, by any process (the
        keyword index's generation). When nothing changed this is a dict lookup after reading it.
        Returns whether it reopened. A Chroma server needs none of this."""
        shared = self._shared
        if shared is None:
            return False
        current = version()  # read before looking: a write committed after it is caught next time
        conn = shared.conn
        if conn is not None and conn.versions.get(self.name) == current:
            return False
        with shared.lock:
            conn = shared.conn
            assert conn is not None
            seen = conn.versions.get(self.name)
            if seen == current:
                return False
            # A client that has not loaded this collection's vectors yet will load them as they are now.
            reopened = seen is not None or self.name in conn.loaded
            if reopened:
                conn = self._reopen_locked(shared)
            conn.versions[self.name] = current
        return reopened

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
                if (current.chunk_tokens, current.chunk_overlap) != (info.chunk_tokens, info.chunk_overlap):
                    conn.collections[self.name].modify(metadata=_info_meta(info))
                return
            try:
                conn.collections[self.name] = conn.client.get_or_create_collection(
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

    # -- data -------------------------------------------------------------------
    def upsert(self, chunks: Sequence[StoredChunk], embeddings: Sequence[Sequence[float]] | Any) -> None:
        """Write ``chunks`` with their vectors (a sequence of vectors or an n x dim array),
        replacing any stored under the same ids."""
        import numpy as np

        with self._using() as conn:
            col = self._require(conn)
            conn.loaded.add(self.name)
            vectors = np.asarray(embeddings, dtype=np.float32)
            step = min(self._max_batch(conn), 1000)
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
            step = min(self._max_batch(conn), 5000)
            for i in range(0, len(ids), step):
                col.delete(ids=list(ids[i : i + step]))

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
            out: dict[str, list[float]] = {}
            step = min(self._max_batch(conn), 1000)
            for i in range(0, len(ids), step):
                got = col.get(ids=list(ids[i : i + step]), include=["embeddings"])
                vectors = got["embeddings"] if got["embeddings"] is not None else []
                for cid, vec in zip(got["ids"], vectors, strict=False):
                    out[cid] = [float(x) for x in vec]
            return out

    def all_ids(self) -> set[str]:
        with self._using() as conn:
            col = self._get(conn)
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
        with self._using() as conn:
            col = self._get(conn)
            if col is None:
                return {}
            got = col.get(where=where or None, include=["metadatas"])
            return {i: dict(m or {}) for i, m in zip(got["ids"], got["metadatas"] or [], strict=False)}

    def get_chunks(self, ids: Sequence[str]) -> list[StoredChunk]:
        """Stored texts and metadata by id (ids that are not stored are left out)."""
        with self._using() as conn:
            col = self._get(conn)
            if col is None or not ids:
                return []
            out: list[StoredChunk] = []
            step = min(self._max_batch(conn), 1000)
            for i in range(0, len(ids), step):
                got = col.get(ids=list(ids[i : i + step]), include=["documents", "metadatas"])
                for cid, doc, meta in zip(got["ids"], got["documents"] or [], got["metadatas"] or [], strict=False):
                    out.append(StoredChunk(cid, doc or "", dict(meta or {})))
            return out

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
        where = _where(sources, page_min, page_max)
        with self._using() as conn:
            col = self._get(conn)
            if col is None:
                raise self.empty_error()
            conn.loaded.add(self.name)
            include = ["documents", "metadatas", "distances"] if documents else ["distances"]
            res = col.query(query_embeddings=[list(embedding)], n_results=k, where=where or None, include=include)
            ids = res["ids"][0]
            if not ids and where is None and col.count() == 0:
                raise self.empty_error()
        docs = res["documents"][0] if documents else [""] * len(ids)
        metas = res["metadatas"][0] if documents else [{}] * len(ids)
        hits = []
        for cid, doc, meta, dist in zip(ids, docs, metas, res["distances"][0], strict=False):
            hits.append(Hit.of(cid, 1.0 - float(dist), doc or "", dict(meta or {})))
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


def _where(sources: Sequence[str] | None, page_min: int | None, page_max: int | None) -> dict[str, Any] | None:
    """The Chroma filter for a search's sources and page range (None: everything)."""
    conds: list[dict[str, Any]] = []
    if sources is not None:
        conds.append({"source": {"$in": list(sources)}})
    if page_min is not None:
        conds.append({"page": {"$gte": page_min}})
    if page_max is not None:
        conds.append({"page": {"$lte": page_max}})
    if not conds:
        return None
    return conds[0] if len(conds) == 1 else {"$and": conds}


def _done() -> None:
    return None


def _stop(conn: _Conn) -> None:
    """Stop a retired embedded client: its SQLite connections and loaded indexes are closed."""
    if conn.system is not None:
        with contextlib.suppress(Exception):
            conn.system.stop()


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
