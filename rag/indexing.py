"""Indexing: ingest, forget, re-index and reset a collection, one writer at a time.

This is the one place in ``rag`` that imports ``ingest`` (the composition point between the two
packages): ``ingest`` builds on ``rag``'s core, and ``rag`` reaches ingest only through here.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ingest.chunker import Chunker
from ingest.index import Index
from ingest.lock import IndexLock
from ingest.manifest import Manifest, manifest_path
from ingest.pipeline import Ingestor
from ingest.progress import ConsoleProgress
from ingest.report import FileResult, IngestReport, ProgressSink
from ingest.tokens import HeuristicTokenCounter, default_counter
from ingest.walker import Selection
from rag.errors import InvalidRequestError
from rag.keyword import KeywordIndex
from rag.models import Embedder
from rag.settings import Settings
from rag.store import ChromaStore

__all__ = ["ConsoleProgress", "FileResult", "Indexer", "IngestReport", "Manifest", "ProgressSink", "Selection"]

Progress = ProgressSink | Callable[[FileResult], None] | None


class Indexer:
    def __init__(self, settings: Settings, store: ChromaStore, embedder: Callable[[], Embedder]) -> None:
        self.settings = settings
        self.store = store
        self._embedder = embedder
        self._manifest: Manifest | None = None
        self._keyword: KeywordIndex | None = None
        self._keyword_lock = threading.Lock()
        self._lock: IndexLock | None = None

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            s = self.settings
            self._manifest = Manifest(manifest_path(s.index_dir, s.collection, s.chroma_url))
        return self._manifest

    @property
    def index(self) -> Index:
        """The storage rule (``ingest.index``): every change to the collection goes through it."""
        return Index(self.store, self.manifest, self.settings)

    @property
    def keyword(self) -> KeywordIndex:
        """The BM25 index. Its rows are committed with the manifest's; an index built before
        the keyword index existed is filled in from the vector store on first use."""
        if self._keyword is None:
            # A server's first requests arrive together: build one index, not one per thread.
            with self._keyword_lock:
                if self._keyword is None:
                    self.index.backfill_keyword()
                    self._keyword = KeywordIndex(self.manifest.path, self.settings.keyword_memory)
        return self._keyword

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Held while this object changes the index: one writer per collection (``ingest.lock``)."""
        if self._lock is None:
            s = self.settings
            path = manifest_path(s.index_dir, s.collection, s.chroma_url).with_suffix(".lock")
            self._lock = IndexLock(path, f"collection '{s.collection}' ({self.store.location})")
        return self._lock.held()

    def ingest(
        self, paths: Sequence[str | Path], progress: Progress = None, selection: Selection | None = None
    ) -> IngestReport:
        """Index files and folders; rerunning it only does what changed. See ``ingest.pipeline``."""
        with self.exclusive():
            try:
                return self.ingestor(progress, selection).ingest([Path(p) for p in paths])
            finally:
                self._written()

    def _written(self) -> None:
        if self._keyword is not None:
            self._keyword.written()

    def ingestor(self, progress: Any = None, selection: Selection | None = None) -> Ingestor:
        s = self.settings
        # Never hand the model more than it takes: it would truncate silently or refuse.
        size = min(s.chunk_tokens, s.embed_max_tokens - 8)
        exact = s.chunk_counter == "exact" or (s.chunk_counter == "auto" and s.embed_url is None)
        counter = default_counter() if exact else HeuristicTokenCounter()
        # Exact counts are the limit; an estimate is backed by a byte cap (tokens <= bytes in any tokenizer).
        max_bytes = None if exact else s.embed_max_tokens - 8
        chunker = Chunker(counter, size, min(s.chunk_overlap, size // 2), max_bytes=max_bytes)
        return Ingestor(s, self._embedder, self.store, chunker, self.manifest, progress, selection)

    def forget(self, path: str | Path) -> list[str]:
        """Remove a file, or every file under a folder, from the index (it need not exist on disk)."""
        given = Path(os.path.abspath(Path(path).expanduser()))
        # Folders are recorded by their resolved path; one that is gone can only be matched as given.
        target = str(given.resolve() if given.exists() else given)
        with self.exclusive():
            dropped = self.index.forget(target)
            self._written()
        return dropped

    def reindex(self, progress: Progress = None) -> IngestReport:
        """Rebuild the collection from scratch with the current settings (e.g. a new
        embedding model), re-ingesting every folder ingested before, with the same selection."""
        roots = self.manifest.roots()
        if not roots:
            raise InvalidRequestError("Nothing to re-index: no folder has been ingested into this collection yet.")
        present = [(p, sel) for p, sel in roots if Path(p).exists()]
        with self.exclusive():
            self.index.clear()
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

    def reset(self) -> None:
        with self.exclusive():
            self.index.clear()
            self._written()

    def status(self) -> dict[str, Any]:
        info = self.store.info()
        counts = self.manifest.counts()
        s = self.settings
        return {
            "index": self.store.location,
            "collection": s.collection,
            "manifest": str(self.manifest.path),
            "files": counts.get("ok", 0),
            "failed": counts.get("failed", 0),
            "stale": counts.get("stale", 0) + counts.get("pending", 0),
            "chunks": self.store.count(),
            "embed_model": info.embed_model if info else None,
            "embed_dim": info.embed_dim if info else None,
            "chunk_tokens": info.chunk_tokens if info else s.chunk_tokens,
            "chunk_overlap": info.chunk_overlap if info else s.chunk_overlap,
            "chat_model": s.chat_model_name,
            "backend": s.base_url or "embedded",
            "embed_backend": s.embed_url or "embedded",
            "roots": [p for p, _ in self.manifest.roots()],
            "last_run": self.manifest.last_run(),
            "failures": [
                {"source": r.source, "root": r.root, "error": r.error} for r in self.manifest.files(status="failed")
            ],
        }

    def close(self) -> None:
        if self._keyword is not None:
            self._keyword.close()
            self._keyword = None
        if self._manifest is not None:
            self._manifest.close()
            self._manifest = None
