"""``Rag``: the one object that ingests, searches and answers.

import rag
r = rag.Rag()                      # Settings() from RAG_* variables
r.ingest(["data/"])
print(r.ask("How long is the warranty on the X200?").text)
for event in r.stream("..."):      # sources, token..., done | error
    ...

``Rag`` is a facade: the work is done by an ``Indexer`` (``rag.indexing``: ingest, forget,
re-index, reset, status), a ``Searcher`` (``rag.searching``) and an ``Answerer``
(``rag.answering``), and this module is where they and their backends are chosen from
``Settings`` (``compose``), each built on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.answer import Answer, AnswerStream, Event
from rag.answering import Answerer
from rag.embed_cache import CachedEmbedder
from rag.embedded import EmbeddedEngines, EngineChat, EngineEmbedder
from rag.models import ChatModel, Embedder, OpenAIChat, OpenAIEmbedder
from rag.retrieval import Filters, Mode
from rag.searching import Searcher, check_k
from rag.settings import Settings
from rag.store import ChromaStore, Hit

if TYPE_CHECKING:  # rag.indexing imports ingest: loaded when an index is written or inspected
    from rag.claims import Claim
    from rag.indexing import FileResult, Indexer, IngestReport, Manifest, ProgressSink, Selection
    from rag.keyword import KeywordIndex


def make_embedder(settings: Settings, engines: Callable[[], EmbeddedEngines]) -> Embedder:
    """The configured embeddings server, or the embedded engine's when none is configured."""
    s = settings
    client: dict[str, Any] = {"timeout": s.request_timeout, "max_retries": s.max_retries}
    if s.embed_url is None:
        return EngineEmbedder(engines().embeddings, s.embed_model_name, batch_size=s.embed_batch_size, **client)
    key = s.embed_api_key or s.api_key
    return OpenAIEmbedder(s.embed_url, s.embed_model_name, api_key=key, batch_size=s.embed_batch_size, **client)


def make_chat(settings: Settings, engines: Callable[[], EmbeddedEngines]) -> ChatModel:
    """The configured chat server, or the embedded engine when none is configured."""
    s = settings
    client: dict[str, Any] = {"timeout": s.request_timeout, "max_retries": s.max_retries}
    if s.base_url is None:
        return EngineChat(engines().chat, s.chat_model_name, **client)
    return OpenAIChat(s.base_url, s.chat_model_name, api_key=s.api_key, **client)


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
        self._indexer: Indexer | None = None
        self._searcher: Searcher | None = None
        self._answerer: Answerer | None = None
        self._cached: CachedEmbedder | None = None

    # -- composition: backends and parts, each built on first use ----------------------------
    @property
    def engines(self) -> EmbeddedEngines:
        """The embedded default's model servers (child processes, started on first use)."""
        if self._engines is None:
            self._engines = EmbeddedEngines(self.settings)
        return self._engines

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = make_embedder(self.settings, lambda: self.engines)
        return self._embedder

    @property
    def cached_embedder(self) -> CachedEmbedder:
        """The embedder of searching, answering and verifying: it remembers vectors by text
        (``rag.embed_cache``), so passage sentences are not embedded again for every answer."""
        if self._cached is None:
            self._cached = CachedEmbedder(self.embedder)
        return self._cached

    @property
    def chat(self) -> ChatModel:
        if self._chat is None:
            self._chat = make_chat(self.settings, lambda: self.engines)
        return self._chat

    @property
    def store(self) -> ChromaStore:
        if self._store is None:
            self._store = ChromaStore(self.settings)
        return self._store

    @property
    def indexer(self) -> Indexer:
        if self._indexer is None:
            from rag.indexing import Indexer

            self._indexer = Indexer(self.settings, self.store, lambda: self.embedder)
        return self._indexer

    @property
    def searcher(self) -> Searcher:
        if self._searcher is None:
            self._searcher = Searcher(
                self.settings,
                self.store,
                lambda: self.keyword,
                lambda: self.cached_embedder,
                lambda: self.manifest.files(status="ok"),
            )
        return self._searcher

    @property
    def answerer(self) -> Answerer:
        if self._answerer is None:
            self._answerer = Answerer(self.settings, self.searcher, lambda: self.chat, lambda: self.cached_embedder)
        return self._answerer

    @property
    def manifest(self) -> Manifest:
        return self.indexer.manifest

    @property
    def keyword(self) -> KeywordIndex:
        return self.indexer.keyword

    @property
    def backend_url(self) -> str:
        """The OpenAI-compatible base URL answering chat (the embedded engine if none is configured)."""
        return self.settings.base_url or self.engines.chat.url()

    @property
    def embed_backend_url(self) -> str:
        return self.settings.embed_url or self.engines.embeddings.url()

    # -- indexing ----------------------------------------------------------------------------
    def ingest(
        self,
        paths: Sequence[str | Path],
        progress: ProgressSink | Callable[[FileResult], None] | None = None,
        selection: Selection | None = None,
    ) -> IngestReport:
        """Index files and folders; rerunning it only does what changed. See ``ingest.pipeline``."""
        return self.indexer.ingest(paths, progress, selection)

    def forget(self, path: str | Path) -> list[str]:
        """Remove a file, or every file under a folder, from the index (it need not exist on disk)."""
        return self.indexer.forget(path)

    def reindex(self, progress: ProgressSink | Callable[[FileResult], None] | None = None) -> IngestReport:
        """Rebuild the collection from scratch with the current settings, re-ingesting every
        folder ingested before, with the same selection."""
        return self.indexer.reindex(progress)

    def reset(self) -> None:
        self.indexer.reset()

    def _ingestor(self, progress: Any = None, selection: Selection | None = None) -> Any:
        return self.indexer.ingestor(progress, selection)

    # -- searching and answering ------------------------------------------------------------
    def _refresh(self) -> None:
        self.searcher.refresh()

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
        """The ``k`` best chunks for ``query``; see ``Searcher.search``."""
        return self.searcher.search(query, k, mode=mode, filters=filters, min_score=min_score, embedding=embedding)

    def start(self, question: str, k: int | None = None, **options: Any) -> AnswerStream:
        """Retrieve, then open the answer stream; see ``Answerer.start`` for the options."""
        return self.answerer.start(question, k, **options)

    def stream(self, question: str, k: int | None = None, **options: Any) -> Iterator[Event]:
        """``start`` as events; errors become an ``error`` event."""
        return self.answerer.stream(question, k, **options)

    def ask(self, question: str, k: int | None = None, **options: Any) -> Answer:
        """The whole answer at once."""
        return self.answerer.ask(question, k, **options)

    def verify(self, text: str, k: int | None = None, **options: Any) -> list[Claim]:
        """Check any text (an answer from any model) against the documents: each sentence is
        searched for (``k`` passages, options as for ``search``) and checked against what is found
        (``rag.claims``); each claim carries its best supporting passages."""
        from rag.claims import verify

        k = check_k(k, self.settings.top_k)
        return verify(text, lambda sentence: self.search(sentence, k, **options), embedder=self.cached_embedder)

    # -- housekeeping ------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return self.indexer.status()

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

    def close(self) -> None:
        if self._indexer is not None:
            self._indexer.close()
            self._indexer = None
            self._searcher = None
            self._answerer = None
        if self._engines is not None:
            self._engines.close()
            self._engines = None

    def __enter__(self) -> Rag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
