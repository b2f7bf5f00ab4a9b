"""The read-and-chunk stage of an ingest, run by the parse threads: a file's bytes hashed, a file
whose content is unchanged only touched, PDFs parsed in a worker process (``ingest.pdfworker``),
other text decoded and chunked (``ingest.jobs``), and vectors reused for chunk texts the index
already holds."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable

from ingest.chunker import Chunker
from ingest.jobs import Job, chunk_file, hash_file, read_limited
from ingest.loaders import LoadError
from ingest.manifest import Manifest
from ingest.pdfworker import PdfWorker
from ingest.storeproc import StoreProcess
from ingest.walker import Candidate, os_error_reason
from rag.settings import Settings
from rag.store import ChromaStore

# Priority of the parse threads and PDF workers (nice value) relative to the embedder.
BACKGROUND_NICE = 10


class ParseStage:
    """``parse(job)`` from any number of threads; each thread gets a PDF worker of its own on
    first need, and ``close`` stops them all. ``vectors`` gives the store to read reused vectors
    from (it changes when the writer process starts)."""

    def __init__(
        self,
        settings: Settings,
        chunker: Chunker,
        manifest: Manifest,
        vectors: Callable[[], ChromaStore | StoreProcess],
        before_read: Callable[[Candidate], None] | None = None,
    ) -> None:
        self.settings = settings
        self.chunker = chunker
        self.manifest = manifest
        self._vectors = vectors
        self.before_read = before_read
        self._local = threading.local()
        self._workers: list[PdfWorker] = []
        self._workers_lock = threading.Lock()

    def parse(self, job: Job) -> None:
        if not getattr(self._local, "niced", False):
            # Reading and chunking only have to stay ahead of the embedder, which is the
            # bottleneck when it runs on this machine: let it have the CPU first (Linux: per thread).
            with contextlib.suppress(OSError, AttributeError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
            self._local.niced = True
        if job.state != "index":
            return
        cand = job.cand
        if self.before_read is not None:
            self.before_read(cand)
        if cand.size == 0:
            job.state = "empty"
            return
        try:
            if cand.kind == "pdf":
                job.file_hash = hash_file(cand.path)
            else:
                data = read_limited(cand.path, self.settings.max_file_mb)
                job.file_hash = hashlib.sha256(data).hexdigest()
            row = job.row
            same_settings = row is not None and row.chunker == self.chunker.signature
            if row is not None and row.status == "ok" and row.hash == job.file_hash and same_settings:
                job.state = "touch"
                return
            if cand.kind == "pdf":
                units = self._pdf_worker().load(cand.path)
                chunk_file(job, self.chunker, units, None)
            else:
                chunk_file(job, self.chunker, None, data)
        except FileNotFoundError:
            job.state = "gone"
            return
        except LoadError as exc:
            job.fail(str(exc))
            return
        except OSError as exc:
            job.fail(os_error_reason(cand.path, exc), kind="io")
            return
        if job.state == "index":
            self._reuse(job)

    def _pdf_worker(self) -> PdfWorker:
        worker: PdfWorker | None = getattr(self._local, "pdf", None)
        if worker is None:
            s = self.settings
            worker = PdfWorker(
                s.pdf_timeout, s.pdf_memory_mb, nice=BACKGROUND_NICE, seconds_per_page=s.pdf_seconds_per_page
            )
            self._local.pdf = worker
            with self._workers_lock:
                self._workers.append(worker)
        return worker

    def _reuse(self, job: Job) -> None:
        """Vectors for chunk texts already in the index (renamed, copied or partly edited files)."""
        by_hash = self.manifest.find_by_chunk_hash(c.metadata["chunk_hash"] for c in job.chunks)
        if not by_hash:
            return
        try:
            vectors = self._vectors().get_embeddings(sorted(set(by_hash.values())))
        except Exception:  # reuse is an optimisation; embedding again is always correct
            return
        for i, chunk in enumerate(job.chunks):
            cid = by_hash.get(chunk.metadata["chunk_hash"])
            if cid is not None and cid in vectors and job.vectors[i] is None:
                job.vectors[i] = vectors[cid]
                job.missing -= 1
                job.reused += 1

    def close(self) -> None:
        with self._workers_lock:
            workers, self._workers = self._workers, []
        for w in workers:
            w.close()
