"""The ingest's writer thread: finished files, in batches, into the index.

Every batch goes through ``ingest.index.Index``, which owns the storage rule: its files are marked
pending, their chunks written and their old chunks deleted, and only then committed. A process
killed at any moment leaves pending marks, which the next run repairs.

Batches overlap: while the store writes batch N (in the writer process, ``ingest.storeproc``),
this thread commits batch N-1 and reports its files. When embeddings are fast the store is the
bottleneck, and this way it never waits for the manifest (measured: the commits were ~3 s of a
42 s run, spent with the store idle).
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable
from typing import Any

from ingest.chunker import Chunker
from ingest.index import Batch, Index
from ingest.jobs import Job, file_result
from ingest.report import FileResult
from ingest.schema import Committed, Failed
from rag.errors import RagError, StoreError

# How long the writer waits for more finished files to fill a store batch.
WRITE_LINGER_S = 0.25


class Writer:
    """Consumes finished jobs from a queue (``None`` ends it); ``error`` is set if a write failed,
    after which the remaining jobs are left for the next run."""

    def __init__(self, index: Index, chunker: Chunker, batch: int, emit: Callable[[FileResult], None]) -> None:
        self.index = index
        self.chunker = chunker
        self.batch = batch
        self._emit = emit
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
        """Mark ``group`` pending and start writing it; ``previous`` (the last batch's commit) runs
        while the store works. Returns this batch's commit."""
        batch = self._batch(group)
        wait: Callable[[], Any] = _nothing
        try:
            wait = self.index.start(batch)  # the writer process returns before it is done
        except BaseException as exc:
            if previous is not None:  # that batch is written: commit it all the same
                with contextlib.suppress(Exception):
                    previous()
            if isinstance(exc, RagError) or not isinstance(exc, Exception):
                raise
            raise StoreError(f"Writing to the index at {self.index.vectors.location} failed: {exc}") from exc
        try:
            if previous is not None:
                previous()
        finally:
            wait()
        return lambda: self._commit(group, batch)

    def _batch(self, group: list[Job]) -> Batch:
        signature = self.chunker.signature
        b = Batch()
        for j in group:
            c, path, root = j.cand, j.cand.key, str(j.cand.root)
            if j.state == "index":
                ids = [(ch.id, ch.metadata["chunk_hash"]) for ch in j.chunks]
                b.stored.append(
                    Committed(path, root, j.source, j.kind, c.size, c.mtime_ns, j.file_hash, signature, ids, j.chunks)
                )
                b.vectors += [v for v in j.vectors if v is not None]
                continue
            if j.state in ("failed", "gone", "empty") and j.row is not None:
                b.emptied.append((path, root, j.source))
            if j.state == "failed":
                error = j.error or "failed"
                b.failed.append(Failed(path, root, j.source, c.kind, c.size, c.mtime_ns, error, j.error_kind))
            elif j.state in ("gone", "empty"):
                b.removed.append(path)
            elif j.state == "touch":
                b.touched.append((path, c.size, c.mtime_ns))
        return b

    def _commit(self, group: list[Job], batch: Batch) -> None:
        self.index.commit(batch)
        for j in group:
            self._emit(file_result(j))
            j.release()  # the run keeps every Job; it must not keep their texts and vectors


def _nothing() -> None:
    return None
