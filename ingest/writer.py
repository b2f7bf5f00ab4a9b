"""The ingest's writer thread: finished files, in batches, into the store and then the manifest.

Every batch follows the manifest's protocol (see ``ingest.manifest``): its files are marked
pending, their chunks written and their old chunks deleted, and only then committed. A process
killed at any moment leaves pending marks, which the next run repairs.

Batches overlap: while the store writes batch N (in the writer process, ``ingest.storeproc``),
this thread commits batch N-1 to the manifest and reports its files. When embeddings are fast the
store is the bottleneck, and this way it never waits for the manifest (measured: the commits were
~3 s of a 42 s run, spent with the store idle).
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable
from typing import Any

from ingest.chunker import Chunker
from ingest.jobs import Job, file_result
from ingest.manifest import Committed, Manifest
from ingest.report import FileResult
from ingest.storeproc import StoreProcess
from rag.errors import IndexMismatchError, RagError, StoreError
from rag.store import ChromaStore, IndexInfo

# How long the writer waits for more finished files to fill a store batch.
WRITE_LINGER_S = 0.25


class Writer:
    """Consumes finished jobs from a queue (``None`` ends it); ``error`` is set if a write failed,
    after which the remaining jobs are left for the next run."""

    def __init__(
        self,
        manifest: Manifest,
        store: Callable[[], ChromaStore | StoreProcess],
        chunker: Chunker,
        model: str,
        dim: int | None,
        batch: int,
        emit: Callable[[FileResult], None],
    ) -> None:
        self.manifest = manifest
        self._store = store
        self.chunker = chunker
        self.model = model
        self.dim = dim
        self.batch = batch
        self._emit = emit
        self._ensured = False
        self.error: BaseException | None = None

    def run(self, q: queue.Queue[Job | None]) -> None:
        finish: Callable[[], None] | None = None  # the last written batch, not yet committed
        done = False
        while not done:
            item = q.get()
            if item is None:
                break
            group, size = [item], len(item.chunks)
            # Stores write fewer, larger batches much faster; wait a moment to fill one.
            deadline = time.monotonic() + WRITE_LINGER_S
            while size < self.batch:
                try:
                    nxt = q.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    done = True
                    break
                group.append(nxt)
                size += len(nxt.chunks)
            if self.error is None:
                try:
                    finish, previous = None, finish
                    finish = self._write(group, previous)
                except BaseException as exc:  # handed to the main thread, which raises it
                    self.error = exc
        if finish is not None:
            try:
                finish()
            except BaseException as exc:
                self.error = self.error or exc

    def _write(self, group: list[Job], previous: Callable[[], None] | None) -> Callable[[], None]:
        """Mark ``group`` pending and write it; ``previous`` (the last batch's commit) runs while
        the store works. Returns this batch's commit."""
        m, store = self.manifest, self._store()
        stored = [j for j in group if j.state == "index"]
        dropping = [j for j in group if j.state in ("failed", "gone", "empty") and j.row is not None]
        old = {i for j in stored + dropping for i in m.chunk_ids(j.cand.key)}
        m.mark_pending(
            [(j.cand.key, str(j.cand.root), j.source, [c.id for c in j.chunks]) for j in stored]
            + [(j.cand.key, str(j.cand.root), j.source, []) for j in dropping]
        )
        chunks = [c for j in stored for c in j.chunks]
        vectors = [v for j in stored for v in j.vectors if v is not None]
        drop = sorted(old - {c.id for c in chunks})
        wait: Callable[[], Any] = _nothing
        try:
            if chunks:
                self._ensure_collection(store, len(vectors[0]))
            wait = store.start_write(chunks, vectors, drop)  # the writer process returns before it is done
        except BaseException as exc:
            if previous is not None:  # that batch is written: commit it all the same
                with contextlib.suppress(Exception):
                    previous()
            if isinstance(exc, RagError) or not isinstance(exc, Exception):
                raise
            raise StoreError(f"Writing to the index at {store.location} failed: {exc}") from exc
        try:
            if previous is not None:
                previous()
        finally:
            wait()
        return lambda: self._commit(group, stored)

    def _commit(self, group: list[Job], stored: list[Job]) -> None:
        m, chunker = self.manifest, self.chunker
        m.commit(
            [
                Committed(
                    j.cand.key,
                    str(j.cand.root),
                    j.source,
                    j.kind,
                    j.cand.size,
                    j.cand.mtime_ns,
                    j.file_hash,
                    chunker.signature,
                    [(c.id, c.metadata["chunk_hash"]) for c in j.chunks],
                    j.chunks,
                )
                for j in stored
            ]
        )
        for j in group:
            if j.state == "failed":
                m.record_failure(
                    j.cand.key,
                    str(j.cand.root),
                    j.source,
                    j.cand.kind,
                    j.cand.size,
                    j.cand.mtime_ns,
                    j.error or "failed",
                    j.error_kind,
                )
            elif j.state in ("gone", "empty"):
                m.forget([j.cand.key])
            elif j.state == "touch":
                m.touch(j.cand.key, j.cand.size, j.cand.mtime_ns)
        for j in group:
            self._emit(file_result(j))
            j.release()  # the run keeps every Job; it must not keep their texts and vectors

    def _ensure_collection(self, store: ChromaStore | StoreProcess, dim: int) -> None:
        if self.dim is not None and dim != self.dim:
            raise IndexMismatchError(
                f"The embedding server returned {dim}-dimensional vectors for '{self.model}', but the index "
                f"holds {self.dim}-dimensional ones. Run `rag reindex` to rebuild it with the current model."
            )
        if not self._ensured:  # once per run: creates the collection, or records new chunk settings
            store.ensure(IndexInfo(self.model, dim, self.chunker.max_tokens, self.chunker.overlap))
            self.dim, self._ensured = dim, True


def _nothing() -> None:
    return None
