"""``Rag``: the one object that ingests, searches and answers.

import rag
r = rag.Rag()                      # Settings() from RAG_* variables
r.ingest(["data/"])
print(r.ask("How long is the warranty on the X200?").text)
for event in r.stream("..."):      # sources, token..., done | error
    ...
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.answer import Answer, AnswerStream, Event
from rag.embedded import EmbeddedEngines, EngineChat, EngineEmbedder
from rag.errors import InvalidRequestError, RagError
from rag.keyword import KeywordIndex, Scope
from rag.models import ChatModel, Embedder, OpenAIChat, OpenAIEmbedder, check_question
from rag.prompt import build_messages
from rag.retrieval import Filters, Fusion, Mode, check_mode, fuse
from rag.settings import Settings
from rag.store import ChromaStore, Hit, check_compatible

if TYPE_CHECKING:  # ingest imports rag; import it lazily at run time
    from ingest.lock import IndexLock
    from ingest.manifest import Manifest
    from ingest.report import FileResult, IngestReport, ProgressSink
    from ingest.walker import Selection


class Rag:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        embedder: Embedder | None = None,
        chat: ChatModel | None = None,
        store: ChromaStore | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._embedder = embedder
        self._chat = chat
        self._store = store
        self._engines: EmbeddedEngines | None = None
        self._manifest: Manifest | None = None
        self._keyword: KeywordIndex | None = None
        self._keyword_lock = threading.Lock()
        self._lock: IndexLock | None = None

    # -- components, built on first use ------------------------------------------------
    @property
    def engines(self) -> EmbeddedEngines:
        """The embedded default's model servers (child processes, started on first use)."""
        if self._engines is None:
            self._engines = EmbeddedEngines(self.settings)
        return self._engines

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            s = self.settings
            client: dict[str, Any] = {"timeout": s.request_timeout, "max_retries": s.max_retries}
            url = s.embed_url
            if url is None:
                self._embedder = EngineEmbedder(
                    self.engines.embeddings, s.embed_model_name, batch_size=s.embed_batch_size, **client
                )
            else:
                key = s.embed_api_key or s.api_key
                self._embedder = OpenAIEmbedder(
                    url, s.embed_model_name, api_key=key, batch_size=s.embed_batch_size, **client
                )
        return self._embedder

    @property
    def backend_url(self) -> str:
        """The OpenAI-compatible base URL answering chat (the embedded engine if none is configured)."""
        return self.settings.base_url or self.engines.chat.url()

    @property
    def embed_backend_url(self) -> str:
        s = self.settings
        return s.embed_url or self.engines.embeddings.url()

    @property
    def chat(self) -> ChatModel:
        if self._chat is None:
            s = self.settings
            client: dict[str, Any] = {"timeout": s.request_timeout, "max_retries": s.max_retries}
            if s.base_url is None:
                self._chat = EngineChat(self.engines.chat, s.chat_model_name, **client)
            else:
                self._chat = OpenAIChat(s.base_url, s.chat_model_name, api_key=s.api_key, **client)
        return self._chat

    @property
    def store(self) -> ChromaStore:
        if self._store is None:
            self._store = ChromaStore(self.settings)
        return self._store

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            from ingest.manifest import Manifest, manifest_path

            s = self.settings
            self._manifest = Manifest(manifest_path(s.index_dir, s.collection, s.chroma_url))
        return self._manifest

    def _exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Held while this object changes the index: one writer per collection (``ingest.lock``)."""
        if self._lock is None:
            from ingest.lock import IndexLock
            from ingest.manifest import manifest_path

            s = self.settings
            path = manifest_path(s.index_dir, s.collection, s.chroma_url).with_suffix(".lock")
            self._lock = IndexLock(path, f"collection '{s.collection}' ({self.store.location})")
        return self._lock.held()

    # -- the three jobs -------------------------------------------------------------------
    def ingest(
        self,
        paths: Sequence[str | Path],
        progress: ProgressSink | Callable[[FileResult], None] | None = None,
        selection: Selection | None = None,
    ) -> IngestReport:
        """Index files and folders; rerunning it only does what changed. See ``ingest.pipeline``."""
        with self._exclusive():
            try:
                return self._ingestor(progress, selection).ingest([Path(p) for p in paths])
            finally:
                self._written()

    def _written(self) -> None:
        if self._keyword is not None:
            self._keyword.written()

    def _ingestor(self, progress: Any = None, selection: Selection | None = None) -> Any:
        from ingest.chunker import Chunker
        from ingest.pipeline import Ingestor
        from ingest.tokens import HeuristicTokenCounter, default_counter

        s = self.settings
        # Never hand the model more than it takes: it would truncate silently or refuse.
        size = min(s.chunk_tokens, s.embed_max_tokens - 8)
        exact = s.chunk_counter == "exact" or (s.chunk_counter == "auto" and s.embed_url is None)
        counter = default_counter() if exact else HeuristicTokenCounter()
        # Exact counts are the limit; an estimate is backed by a byte cap (tokens <= bytes in any tokenizer).
        max_bytes = None if exact else s.embed_max_tokens - 8
        chunker = Chunker(counter, size, min(s.chunk_overlap, size // 2), max_bytes=max_bytes)
        return Ingestor(s, lambda: self.embedder, self.store, chunker, self.manifest, progress, selection)

    def forget(self, path: str | Path) -> list[str]:
        """Remove a file, or every file under a folder, from the index (it need not exist on disk)."""
        from ingest.pipeline import forget

        given = Path(os.path.abspath(Path(path).expanduser()))
        # Folders are recorded by their resolved path; one that is gone can only be matched as given.
        target = str(given.resolve() if given.exists() else given)
        with self._exclusive():
            dropped = forget(self.manifest, self.store, target)
            self.manifest.forget_root(target)
            self._written()
        return dropped

    def reindex(self, progress: ProgressSink | Callable[[FileResult], None] | None = None) -> IngestReport:
        """Rebuild the collection from scratch with the current settings (e.g. a new
        embedding model), re-ingesting every folder ingested before, with the same selection."""
        from ingest.walker import Selection

        roots = self.manifest.roots()
        if not roots:
            raise InvalidRequestError("Nothing to re-index: no folder has been ingested into this collection yet.")
        present = [(p, sel) for p, sel in roots if Path(p).exists()]
        with self._exclusive():
            self.store.drop()
            self.manifest.clear(roots=True)
            if not present:
                missing = ", ".join(p for p, _ in roots)
                raise InvalidRequestError("None of the ingested folders exists any more: " + missing)
            report: IngestReport | None = None
            for path, sel in present:
                part = self.ingest([path], progress, Selection(**sel))
                if report is None:
                    report = part
                else:
                    report.roots += part.roots
                    report.files += part.files
                    report.seconds += part.seconds
        assert report is not None
        return report

    @property
    def keyword(self) -> KeywordIndex:
        """The BM25 index. Its rows are committed with the manifest's; an index built before
        the keyword index existed is filled in from the vector store on first use."""
        if self._keyword is None:
            # A server's first requests arrive together: build one index, not one per thread.
            with self._keyword_lock:
                if self._keyword is None:
                    missing = self.manifest.keyword_missing()
                    for i in range(0, len(missing), 1000):
                        part = dict(missing[i : i + 1000])
                        found = self.store.get_chunks(list(part))
                        self.manifest.add_keyword([(part[c.id], c) for c in found])
                    self._keyword = KeywordIndex(self.manifest.path, self.settings.keyword_memory)
        return self._keyword

    def _refresh(self) -> None:
        """Before every search: if any process (a CLI ingest, forget, reset) committed a change
        to this collection since this process loaded its vectors, reopen the embedded store,
        whose client would otherwise keep answering from the vectors it loaded. The check
        reads one counter (the keyword index's generation, bumped by every committed write);
        a reopen waits for no query, and one still running finishes on the old client."""
        self.store.refresh(lambda: self.keyword.generation())

    def search(
        self,
        query: str,
        k: int | None = None,
        *,
        mode: Mode | str | None = None,
        filters: Filters | None = None,
        min_score: float | None = None,
        embedding: Sequence[float] | None = None,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``.

        ``mode``: dense, keyword or hybrid (default ``RAG_SEARCH_MODE``, hybrid). ``filters``:
        source paths/globs, file types, page range. ``min_score`` drops weaker hits; the score is
        the mode's own: cosine similarity (dense), BM25 (keyword) or the fused 0-1 score (hybrid).
        ``embedding``: the query's vector if already computed (benchmarks time retrieval alone).
        """
        query = (query or "").strip()
        if not query:
            raise InvalidRequestError("The search query is empty.")
        k = self._k(k)
        s = self.settings
        how = check_mode(mode or s.search_mode)
        filters = filters or Filters()
        self._refresh()
        info = self.store.info()
        if info is None:
            raise self.store.empty_error()
        sources: list[str] | None = None
        paths: list[str] | None = None
        if filters.by_file:
            rows = [r for r in self.manifest.files(status="ok") if filters.matches_file(r.source, r.path, r.kind)]
            if not rows:
                return []
            sources, paths = sorted({r.source for r in rows}), [r.path for r in rows]
        fusion = Fusion(s.hybrid_depth, s.hybrid_dense_weight)
        depth = max(k, fusion.depth) if how == "hybrid" else k
        dense: list[Hit] = []
        keyword: list[Hit] = []
        if how != "keyword":
            check_compatible(info, self.embedder.model, None, self.store.name)
            vector = self.embedder.embed_query(query) if embedding is None else embedding
            dense = self.store.query(
                vector, depth, sources=sources, page_min=filters.page_min, page_max=filters.page_max, documents=False
            )
        if how != "dense":
            scope = Scope(paths, filters.page_min, filters.page_max)
            keyword = self.keyword.search(query, depth, scope, texts=how == "keyword")
        if how == "hybrid":
            ranked = fuse(dense, keyword, len(dense) + len(keyword), fusion)
        else:
            ranked = dense if how == "dense" else keyword
        if min_score is not None:
            ranked = [h for h in ranked if h.score >= min_score]
        return self._best(ranked, k)

    def _best(self, ranked: list[Hit], k: int) -> list[Hit]:
        """The first ``k`` of ``ranked`` still in the index, completed. A hit can be gone since
        its list was made (after another process's forget, the keyword side answers from its
        previous build while it rebuilds): the next one takes its place, so it does not leave
        the answer short, or empty."""
        out: list[Hit] = []
        done = 0
        while len(out) < k and done < len(ranked):
            part = ranked[done : done + k - len(out)]
            done += len(part)
            out += self._complete(part)
        return out

    def _complete(self, hits: list[Hit]) -> list[Hit]:
        """Fill in text and metadata of dense hits: from the keyword index's copy, or from the
        store for chunks it lacks (a Chroma server ingested from another machine)."""
        bare = [h.id for h in hits if not h.metadata]
        if not bare:
            return hits
        found = self.keyword.fetch(bare)
        lacking = [cid for cid in bare if cid not in found]
        if lacking:
            for c in self.store.get_chunks(lacking):
                found[c.id] = Hit.of(c.id, 0.0, c.text, c.metadata)
        return [h if h.metadata else replace(found[h.id], score=h.score) for h in hits if h.metadata or h.id in found]

    def start(
        self,
        question: str,
        k: int | None = None,
        *,
        mode: Mode | str | None = None,
        filters: Filters | None = None,
        min_score: float | None = None,
        history: list[dict[str, Any]] | None = None,
        params: dict[str, Any] | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> AnswerStream:
        """Retrieve, then open the answer stream. ``history``: earlier conversation turns, put
        before the grounded question; ``params``: chat parameters for the backend (temperature,
        seed, stop, ...), over the configured defaults; ``attachments``: OpenAI content parts (images)
        sent with the grounded question."""
        question = check_question(question)
        t0 = time.perf_counter()
        hits = self.search(question, k, mode=mode, filters=filters, min_score=min_score)
        if not hits:
            raise InvalidRequestError(
                "No indexed passage matches the filters"
                + (" and minimum score" if min_score is not None else "")
                + "; widen them (`rag search` shows what matches)."
            )
        t1 = time.perf_counter()
        s = self.settings
        chat_params = {"temperature": s.temperature, "max_tokens": s.max_tokens, "seed": s.seed} | (params or {})
        messages = build_messages(question, hits, history)
        if attachments:
            messages[-1]["content"] = [{"type": "text", "text": messages[-1]["content"]}, *attachments]
        deltas = self.chat.stream(messages, **chat_params)
        return AnswerStream(question, hits, deltas, t0, t1)

    def stream(self, question: str, k: int | None = None, **options: Any) -> Iterator[Event]:
        """``start`` as events; errors become an ``error`` event. Options as for ``search``."""
        try:
            answer = self.start(question, k, **options)
        except RagError as exc:
            yield Event("error", exc.to_dict() | {"status": exc.status})
            return
        yield from answer

    def ask(self, question: str, k: int | None = None, **options: Any) -> Answer:
        """The whole answer at once. Options (mode, filters, min_score) as for ``search``."""
        stream = self.start(question, k, **options)
        for _ in stream:
            pass
        if stream.error is not None:
            raise stream.error
        assert stream.answer is not None
        return stream.answer

    # -- housekeeping ------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        info = self.store.info()
        counts = self.manifest.counts()
        return {
            "index": self.store.location,
            "collection": self.settings.collection,
            "manifest": str(self.manifest.path),
            "files": counts.get("ok", 0),
            "failed": counts.get("failed", 0),
            "stale": counts.get("stale", 0) + counts.get("pending", 0),
            "chunks": self.store.count(),
            "embed_model": info.embed_model if info else None,
            "embed_dim": info.embed_dim if info else None,
            "chunk_tokens": info.chunk_tokens if info else self.settings.chunk_tokens,
            "chunk_overlap": info.chunk_overlap if info else self.settings.chunk_overlap,
            "chat_model": self.settings.chat_model_name,
            "backend": self.settings.base_url or "embedded",
            "embed_backend": self.settings.embed_url or "embedded",
            "roots": [p for p, _ in self.manifest.roots()],
            "last_run": self.manifest.last_run(),
            "failures": [
                {"source": r.source, "root": r.root, "error": r.error} for r in self.manifest.files(status="failed")
            ],
        }

    def count(self) -> int:
        """Chunks in the collection."""
        return self.store.count()

    def roots(self) -> list[str]:
        """The files and folders ingested into this collection (what `rag reindex` re-ingests)."""
        return [p for p, _ in self.manifest.roots()]

    def collections(self) -> list[str]:
        """Every collection of this index (each is a grounded model on /v1)."""
        return self.store.collections()

    @property
    def location(self) -> str:
        """Where the vectors live: the index directory, or the Chroma server's URL."""
        return self.store.location

    def sources(self) -> list[tuple[str, int]]:
        """(source, chunks) for every ingested file."""
        return list(self.manifest.iter_sources())

    def reset(self) -> None:
        with self._exclusive():
            self.store.drop()
            self.manifest.clear(roots=True)
            self._written()

    def _k(self, k: int | None) -> int:
        k = self.settings.top_k if k is None else k
        if not 1 <= k <= 100:
            raise InvalidRequestError(f"k must be between 1 and 100, not {k}.")
        return k

    def close(self) -> None:
        if self._keyword is not None:
            self._keyword.close()
            self._keyword = None
        if self._manifest is not None:
            self._manifest.close()
            self._manifest = None
        if self._engines is not None:
            self._engines.close()
            self._engines = None

    def __enter__(self) -> Rag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
