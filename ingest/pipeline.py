"""Ingest: walk, load, chunk, embed through /v1/embeddings, store in Chroma.

Per file the work is all-or-nothing: new chunks are upserted before stale ones
are deleted, so a file is never missing from the index while it is updated, and
stable chunk ids mean a rerun never duplicates anything. Unchanged files (same
content hash and chunker settings) are skipped without embedding.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.chunker import Chunk, Chunker
from ingest.loaders import LoadError, load
from ingest.walker import Candidate, walk
from rag.errors import RagError
from rag.models import Embedder
from rag.settings import Settings
from rag.store import ChromaStore, IndexInfo, StoredChunk, check_compatible


@dataclass
class FileResult:
    source: str
    status: str  # added | updated | unchanged | failed | skipped | removed
    chunks: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "status": self.status, "chunks": self.chunks, "error": self.error}


@dataclass
class IngestReport:
    roots: list[str] = field(default_factory=list)
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def chunks(self) -> int:
        return sum(f.chunks for f in self.files if f.status in ("added", "updated"))

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "roots": self.roots,
            "summary": {s: self.count(s) for s in ("added", "updated", "unchanged", "removed", "failed", "skipped")},
            "chunks_embedded": self.chunks,
            "seconds": round(self.seconds, 3),
            "files": [f.to_dict() for f in self.files],
        }


Progress = Callable[[FileResult], None]


def chunk_id(root: str, source: str, chunk: Chunk, chunk_hash: str) -> str:
    key = "\0".join([root, source, str(chunk.page or 0), str(chunk.start), str(chunk.end), chunk_hash])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


class Ingestor:
    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        store: ChromaStore,
        chunker: Chunker,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.store = store
        self.chunker = chunker
        self.progress = progress or (lambda result: None)
        self._dim: int | None = None

    def ingest(self, targets: Sequence[Path]) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport()
        current = self.store.info()
        if current is not None:
            # Refuse before embedding anything rather than after the first file.
            check_compatible(current, self.embedder.model, None, self.store.name)
            self._dim = current.embed_dim
        for target in targets:
            if not target.exists() and not target.is_symlink():
                raise RagError(f"No such file or folder: {target}", code="not_found", status=404)
            root, candidates = walk(target)
            report.roots.append(str(root))
            seen: set[str] = set()
            for cand in candidates:
                seen.add(cand.source)
                result = self._one(cand)
                report.files.append(result)
                self.progress(result)
            if target.resolve().is_dir():
                for result in self._remove_missing(str(root), seen):
                    report.files.append(result)
                    self.progress(result)
        report.seconds = time.perf_counter() - started
        return report

    def _one(self, cand: Candidate) -> FileResult:
        source, root = cand.source, str(cand.root)
        if cand.kind is None:
            return FileResult(source, "skipped", error=f"unsupported file type '{cand.path.suffix or cand.path.name}'")
        try:
            data = cand.path.read_bytes()
        except OSError as exc:
            return FileResult(source, "failed", error=f"cannot read: {exc.strerror or exc}")
        file_hash = hashlib.sha256(data).hexdigest()
        existing = self.store.get_metadata({"$and": [{"root": root}, {"source": source}]})
        if existing and all(
            m.get("file_hash") == file_hash
            and m.get("chunk_tokens") == self.chunker.max_tokens
            and m.get("chunk_overlap") == self.chunker.overlap
            for m in existing.values()
        ):
            return FileResult(source, "unchanged", chunks=len(existing))
        if not data.strip():
            result = FileResult(source, "failed", error="empty file")
        else:
            try:
                result = self._index(cand, file_hash, existing)
            except LoadError as exc:
                result = FileResult(source, "failed", error=str(exc))
        if result.status == "failed" and existing:
            self.store.delete(list(existing))  # the old content no longer exists on disk
        return result

    def _index(self, cand: Candidate, file_hash: str, existing: dict[str, dict[str, Any]]) -> FileResult:
        source, root = cand.source, str(cand.root)
        doc = load(cand.path)
        stored: list[StoredChunk] = []
        for unit in doc.units:
            for chunk in self.chunker.chunk(unit, code=doc.kind == "code"):
                chash = hashlib.sha256(chunk.text.encode("utf-8")).hexdigest()
                meta = {
                    "root": root,
                    "source": source,
                    "kind": doc.kind,
                    "page": chunk.page or 0,
                    "heading": chunk.heading,
                    "start": chunk.start,
                    "end": chunk.end,
                    "tokens": chunk.tokens,
                    "file_hash": file_hash,
                    "chunk_hash": chash,
                    "chunk_tokens": self.chunker.max_tokens,
                    "chunk_overlap": self.chunker.overlap,
                }
                stored.append(StoredChunk(chunk_id(root, source, chunk, chash), chunk.text, meta))
        if not stored:
            return FileResult(source, "failed", error="no text found")
        vectors = self.embedder.embed_documents([c.text for c in stored])
        self._ensure_collection(len(vectors[0]))
        self.store.upsert(stored, vectors)
        new_ids = {c.id for c in stored}
        self.store.delete([i for i in existing if i not in new_ids])
        return FileResult(source, "updated" if existing else "added", chunks=len(stored))

    def _ensure_collection(self, dim: int) -> None:
        if self._dim is None or self.store.info() is None:
            self.store.ensure(IndexInfo(self.embedder.model, dim, self.chunker.max_tokens, self.chunker.overlap))
            self._dim = dim
        elif dim != self._dim:
            check_compatible(IndexInfo(self.embedder.model, self._dim, 0, 0), self.embedder.model, dim, self.store.name)

    def _remove_missing(self, root: str, seen: set[str]) -> list[FileResult]:
        by_source: dict[str, list[str]] = {}
        for cid, meta in self.store.get_metadata({"root": root}).items():
            by_source.setdefault(str(meta.get("source")), []).append(cid)
        results = []
        for source, ids in sorted(by_source.items()):
            if source not in seen:
                self.store.delete(ids)
                results.append(FileResult(source, "removed", chunks=len(ids)))
        return results
