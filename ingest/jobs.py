"""One file's way through the pipeline: read, chunk, vectors, outcome."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.chunker import Chunk, Chunker
from ingest.loaders import LoadError, Unit, decode_text, parse_text
from ingest.manifest import FileRow
from ingest.report import FileResult
from ingest.walker import Candidate
from rag.store import StoredChunk
from rag.text import terms as keyword_terms


@dataclass
class Job:
    cand: Candidate
    row: FileRow | None
    # index: to be written | touch: same content, new mtime | failed | gone: vanished | empty
    state: str = "index"
    kind: str = ""
    file_hash: str = ""
    chunks: list[StoredChunk] = field(default_factory=list)
    vectors: list[list[float] | None] = field(default_factory=list)
    missing: int = 0
    reused: int = 0
    warning: str | None = None
    error: str | None = None
    error_kind: str = "load"
    sent: bool = False

    @property
    def source(self) -> str:
        # A file keeps the name it was first indexed under, even if found again from another root.
        return self.row.source if self.row is not None else self.cand.source

    @property
    def root(self) -> str:
        return self.row.root if self.row is not None else str(self.cand.root)

    def release(self) -> None:
        self.chunks, self.vectors = [], []

    def fail(self, error: str, kind: str = "load") -> None:
        self.state, self.error, self.error_kind = "failed", error, kind


def chunk_id(key: str, chunk: Chunk, chunk_hash: str) -> str:
    """Stable: the same file content at the same path always gives the same ids."""
    parts = [key, str(chunk.page or 0), str(chunk.start), str(chunk.end), chunk_hash]
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:32]


def hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def read_limited(path: Path, max_mb: float) -> bytes:
    limit = int(max_mb * 1024 * 1024)
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        size = path.stat().st_size
        raise LoadError(
            f"too large: {size / 1024 / 1024:.1f} MB (the limit for non-PDF files is "
            f"RAG_MAX_FILE_MB={max_mb:g}; raise it, or exclude the file)"
        )
    return data


def chunk_file(job: Job, chunker: Chunker, units: list[Unit] | None, data: bytes | None) -> None:
    """Fill ``job.chunks`` from a PDF's pages (``units``) or another file's bytes."""
    cand = job.cand
    kind = cand.kind or "text"
    if units is None:
        if not (data or b"").strip():
            job.state = "empty"
            return
        text, job.warning = decode_text(data or b"")
        if not text.strip():
            job.state = "empty"
            return
        units = parse_text(kind, text).units
    job.kind = kind
    for unit in units:
        for chunk in chunker.chunk(unit, code=kind == "code"):
            chash = hashlib.sha256(chunk.text.encode("utf-8")).hexdigest()
            meta = {
                "root": job.root,
                "source": job.source,
                "kind": kind,
                "page": chunk.page or 0,
                "heading": chunk.heading,
                "start": chunk.start,
                "end": chunk.end,
                "tokens": chunk.tokens,
                "file_hash": job.file_hash,
                "chunk_hash": chash,
                "chunk_tokens": chunker.max_tokens,
                "chunk_overlap": chunker.overlap,
            }
            # The keyword analysis is done here, in the parse threads, not in the writer's transaction.
            analysed = " ".join(keyword_terms(chunk.text))
            job.chunks.append(StoredChunk(chunk_id(cand.key, chunk, chash), chunk.text, meta, analysed))
    if not job.chunks:
        job.fail("no text found")
        return
    job.vectors = [None] * len(job.chunks)
    job.missing = len(job.chunks)


def file_result(job: Job) -> FileResult:
    def result(status: str, **extra: Any) -> FileResult:
        return FileResult(job.source, status, bytes=job.cand.size, root=job.root, **extra)

    had = job.row is not None and job.row.status != "failed" and job.row.chunks > 0
    if job.state == "index":
        embedded = len(job.chunks) - job.reused
        status = "updated" if had else "added"
        return result(status, chunks=len(job.chunks), warning=job.warning, embedded=embedded, reused=job.reused)
    if job.state == "touch":
        return result("unchanged", chunks=job.row.chunks if job.row else 0)
    if job.state == "failed":
        return result("failed", error=job.error)
    if job.state == "gone":
        return result("removed" if had else "skipped", error="deleted while the run was in progress")
    return result("skipped", error="empty file" + (" (its old chunks were removed)" if had else ""))
