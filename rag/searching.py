"""Searching: the ``k`` best chunks for a query, by dense, keyword or hybrid retrieval.

``Searcher`` is given what it reads (the vector store, the keyword index, the embedder and the
ingested files' rows, for path and type filters) and reads nothing else; ``rag.engine`` builds it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from rag.errors import InvalidRequestError
from rag.keyword import KeywordIndex, Scope
from rag.models import Embedder
from rag.retrieval import Filters, Fusion, Mode, check_mode, rank
from rag.settings import Settings
from rag.store import ChromaStore, Hit, check_compatible


def check_k(k: int | None, default: int) -> int:
    k = default if k is None else k
    if not 1 <= k <= 100:
        raise InvalidRequestError(f"k must be between 1 and 100, not {k}.")
    return k


class Searcher:
    def __init__(
        self,
        settings: Settings,
        store: ChromaStore,
        keyword: Callable[[], KeywordIndex],
        embedder: Callable[[], Embedder],
        files: Callable[[], Iterable[Any]],
    ) -> None:
        self.settings = settings
        self.store = store
        self._keyword = keyword
        self._embedder = embedder
        self._files = files  # rows with .source, .path, .kind of every file indexed ok

    def refresh(self) -> None:
        """Before every search: if any process (a CLI ingest, forget, reset) committed a change
        to this collection since this process loaded its vectors, reopen the embedded store,
        whose client would otherwise keep answering from the vectors it loaded. The check
        reads one counter (the keyword index's generation, bumped by every committed write);
        a reopen waits for no query, and one still running finishes on the old client."""
        self.store.refresh(lambda: self._keyword().generation())

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
        the mode's own: cosine similarity (dense), BM25 (keyword) or calibrated relevance (hybrid).
        Every hit carries ``relevance`` (``rag.relevance``: 0..1, comparable across queries), and
        hybrid ranks by it.
        ``embedding``: the query's vector if already computed (benchmarks time retrieval alone).
        """
        query = (query or "").strip()
        if not query:
            raise InvalidRequestError("The search query is empty.")
        s = self.settings
        k = check_k(k, s.top_k)
        how = check_mode(mode or s.search_mode)
        filters = filters or Filters()
        self.refresh()
        info = self.store.info()
        if info is None:
            raise self.store.empty_error()
        sources: list[str] | None = None
        paths: list[str] | None = None
        if filters.by_file:
            rows = [r for r in self._files() if filters.matches_file(r.source, r.path, r.kind)]
            if not rows:
                return []
            sources, paths = sorted({r.source for r in rows}), [r.path for r in rows]
        fusion = Fusion(s.hybrid_depth, s.hybrid_dense_weight)
        depth = max(k, fusion.depth) if how == "hybrid" else k
        dense: list[Hit] = []
        keyword: list[Hit] = []
        if how != "keyword":
            embedder = self._embedder()
            check_compatible(info, embedder.model, None, self.store.name)
            vector = embedder.embed_query(query) if embedding is None else embedding
            dense = self.store.query(
                vector, depth, sources=sources, page_min=filters.page_min, page_max=filters.page_max, documents=False
            )
        index = self._keyword()
        if how != "dense":
            scope = Scope(paths, filters.page_min, filters.page_max)
            keyword = index.search(query, depth, scope, texts=how == "keyword")
        ranked = rank(query, dense, keyword, index, how)
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
        found = self._keyword().fetch(bare)
        lacking = [cid for cid in bare if cid not in found]
        if lacking:
            for c in self.store.get_chunks(lacking):
                found[c.id] = Hit.of(c.id, 0.0, c.text, c.metadata)
        return [
            h if h.metadata else replace(found[h.id], score=h.score, relevance=h.relevance)
            for h in hits
            if h.metadata or h.id in found
        ]
