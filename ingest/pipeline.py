"""Ingest: walk, read and chunk, embed through /v1/embeddings, write to Chroma.

Three stages overlap: files are read, parsed (PDFs in a limited worker process)
and chunked by ``parse_workers`` threads; chunks needing vectors are batched
across files into ``embed_batch_size`` requests, ``embed_concurrency`` at a
time; a writer thread stores finished files in groups of up to ``write_batch``
chunks. Memory stays bounded: each stage has a bounded queue in front of it.
A request that fails after the client's retries is sent again one file at a time,
so that one input a server refuses fails only its own file.

Every store write follows the manifest's protocol (pending, write, commit), so
the process can be killed at any moment; see ``ingest.manifest``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ingest.chunker import Chunker
from ingest.embedstage import ABORT_AFTER_FAILED_BATCHES, EmbedStage, fatal
from ingest.jobs import Job, chunk_file, hash_file, read_limited
from ingest.loaders import LoadError
from ingest.manifest import FileRow, Manifest
from ingest.pdfworker import PdfWorker
from ingest.report import FileResult, IngestReport, ProgressSink, as_sink
from ingest.storeproc import StoreProcess
from ingest.walker import Candidate, Selection, os_error_reason, walk
from ingest.writer import Writer
from rag.errors import (
    RagError,
)
from rag.models import Embedder
from rag.settings import Settings
from rag.store import ChromaStore, check_compatible

# Priority of the parse threads and PDF workers (nice value) relative to the embedder.
BACKGROUND_NICE = 10
# RAG_WRITE_PROCESS=auto writes from a child process when this much is to be indexed. The child
# costs ~1 s to start (Python and Chroma imports); writing in-process costs the GIL time of every
# other stage, ~30% of Chroma's own, which passes 1 s at ~3,000 chunks (1-2 MB of files).
WRITE_PROCESS_MIN_BYTES = 2 << 20


class Ingestor:
    def __init__(
        self,
        settings: Settings,
        embedder: Callable[[], Embedder],
        store: ChromaStore,
        chunker: Chunker,
        manifest: Manifest,
        progress: ProgressSink | Callable[[FileResult], None] | None = None,
        selection: Selection | None = None,
    ) -> None:
        self.settings = settings
        self._embedder_factory = embedder
        self.store = store
        # The store the run reads and writes: ``store``, or the writer process (ingest.storeproc).
        self.db: ChromaStore | StoreProcess = store
        self._writer_proc: StoreProcess | None = None
        self.chunker = chunker
        self.manifest = manifest
        self.sink = as_sink(progress)
        self.selection = selection or Selection()
        self.model = settings.embed_model_name
        self._emit_lock = threading.Lock()
        self._report = IngestReport()
        self._dim: int | None = None
        self._local = threading.local()
        self._workers: list[PdfWorker] = []
        self._workers_lock = threading.Lock()
        # Test seam: called with each candidate just before it is read (e.g. to delete it).
        self.before_read: Callable[[Candidate], None] | None = None

    # -- the run -------------------------------------------------------------------------
    def ingest(self, targets: Sequence[Path]) -> IngestReport:
        started_wall, t0 = time.time(), time.perf_counter()
        report = self._report = IngestReport()
        try:
            return self._ingest(targets, report, started_wall, t0)
        finally:
            self._stop_writer()

    def _ingest(self, targets: Sequence[Path], report: IngestReport, started_wall: float, t0: float) -> IngestReport:
        self._check_model()
        report.recovered = self.recover()
        candidates: dict[str, Candidate] = {}
        walked_dirs: list[str] = []
        for target in targets:
            if not target.exists() and not target.is_symlink():
                raise RagError(
                    f"No such file or folder: {target}. To drop a folder that is gone from the index, "
                    f"use `rag forget {target}`.",
                    code="not_found",
                    status=404,
                )
            root, cands = walk(target, self.selection)
            report.roots.append(str(root))
            self.manifest.add_root(str(root) if target.is_dir() else str(root / target.name), self.selection.describe())
            if target.is_dir():
                walked_dirs.append(str(root))
            for c in cands:
                candidates.setdefault(c.key, c)
        self.sink.started(len(candidates), sum(c.size for c in candidates.values()))
        work = self._plan(list(candidates.values()))
        try:
            if work and self._use_writer_process(sum(j.cand.size for j in work)):
                self._writing(start=True)
            self._run(work)
        finally:
            for w in self._workers:
                w.close()
        for walked in walked_dirs:
            self._remove_missing(walked, set(candidates))
        self._stop_writer()
        report.seconds = time.perf_counter() - t0
        self.manifest.record_run(started_wall, report.seconds, report.summary() | {"roots": report.roots})
        self.sink.finished(report)
        return report

    def _emit(self, result: FileResult) -> None:
        with self._emit_lock:
            self._report.files.append(result)
            self.sink.file_done(result)

    # -- the writer process --------------------------------------------------------------
    def _writing(self, start: bool = False) -> ChromaStore | StoreProcess:
        """The store to write to. Once the writer process runs, every store call goes through it
        (one process uses the embedded Chroma at a time). It is started for a big run (``start``),
        and for repairs after a crash when ``RAG_WRITE_PROCESS=always``."""
        if self._writer_proc is None and (start or self.settings.write_process == "always"):
            self.db = self._writer_proc = StoreProcess(self.settings)
        return self.db

    def _use_writer_process(self, size: int) -> bool:
        mode = self.settings.write_process
        # With a Chroma server the writes cost this process little (orjson, then waiting on a socket).
        embedded = not self.settings.chroma_url
        return mode == "always" or (mode == "auto" and embedded and size >= WRITE_PROCESS_MIN_BYTES)

    def _stop_writer(self) -> None:
        if self._writer_proc is not None:
            self._writer_proc.close()
            self._writer_proc = None
            self.db = self.store
            self.store.reopen()  # it may hold a stale copy of what the child wrote

    # -- settings and recovery ------------------------------------------------------------
    def _check_model(self) -> None:
        info = self.store.info()
        if info is None and self.manifest.counts().get("chunks"):
            # The collection was dropped behind our back: the manifest describes nothing.
            self.manifest.clear()
            self._report.notes.append("the collection was missing; the manifest was reset")
        if info is not None:
            check_compatible(info, self.model, None, self.store.name)
            self._dim = info.embed_dim

    def recover(self) -> int:
        """Make the store and manifest agree after an interrupted run. Returns the
        number of files that will be re-ingested because of it."""
        pending = self.manifest.pending()
        counts = self.manifest.counts()
        if not pending and counts.get("chunks", 0) == self.db.count():
            return 0
        db = self._writing()
        stored = db.all_ids()
        owned = self.manifest.all_chunk_ids()
        db.delete(sorted(stored - owned))  # written but never committed
        suspect = self.manifest.paths_of_chunks(owned - stored) | {r.path for r in pending}
        self.manifest.invalidate(sorted(suspect))
        return len(suspect)

    # -- planning: what needs work --------------------------------------------------------
    def _plan(self, candidates: list[Candidate]) -> list[Job]:
        work: list[Job] = []
        for cand in candidates:
            if cand.skip_reason:
                self._emit(FileResult(cand.source, "skipped", error=cand.skip_reason, root=str(cand.root)))
                continue
            if cand.kind is None and cand.error is None:
                ext = cand.path.suffix or cand.path.name
                self._emit(FileResult(cand.source, "skipped", error=f"unsupported file type '{ext}'"))
                continue
            row = self.manifest.get(cand.key)
            job = Job(cand, row)
            same_stat = row is not None and (row.size, row.mtime_ns) == (cand.size, cand.mtime_ns)
            if cand.error is not None:
                job.fail(cand.error, kind="io")  # e.g. permissions: may pass after a chmod, so not cached
            elif (
                row is not None
                and same_stat
                and row.status == "ok"
                and row.hash
                and row.chunker == self.chunker.signature
            ):
                self._emit(FileResult(row.source, "unchanged", chunks=row.chunks, bytes=cand.size, root=row.root))
                continue
            elif row is not None and same_stat and row.status == "failed" and row.error_kind == "load":
                # The file has not changed since it failed to load: it would fail the same way.
                self._emit(FileResult(row.source, "failed", error=row.error, bytes=cand.size, root=row.root))
                continue
            work.append(job)
        return work

    # -- the pipeline ------------------------------------------------------------------------
    def _run(self, work: list[Job]) -> None:
        s = self.settings
        write_q: queue.Queue[Job | None] = queue.Queue(maxsize=max(8, s.write_batch // 8))
        writer = Writer(self.manifest, lambda: self.db, self.chunker, self.model, self._dim, s.write_batch, self._emit)
        writer_thread = threading.Thread(target=writer.run, args=(write_q,), name="rag-writer", daemon=True)
        writer_thread.start()

        def send(job: Job) -> None:
            if not job.sent:
                job.sent = True
                write_q.put(job)

        buffer: list[tuple[Job, int]] = []
        lookahead: deque[tuple[Job, Future[None]]] = deque()
        todo = iter(work)
        with (
            ThreadPoolExecutor(s.parse_workers, thread_name_prefix="rag-parse") as parse_pool,
            ThreadPoolExecutor(s.embed_concurrency, thread_name_prefix="rag-embed") as embed_pool,
        ):
            embedding = EmbedStage(embed_pool, self._embed, send, s.embed_concurrency * 2)
            try:
                while True:
                    while len(lookahead) < s.parse_workers * 4 and embedding.abort is None and writer.error is None:
                        job = next(todo, None)
                        if job is None:
                            break
                        lookahead.append((job, parse_pool.submit(self._parse, job)))
                    if not lookahead or embedding.abort is not None:
                        break
                    job, fut = lookahead.popleft()
                    fut.result()
                    if job.state != "index" or job.missing == 0:
                        send(job)
                    else:
                        buffer.extend((job, i) for i, v in enumerate(job.vectors) if v is None)
                        while len(buffer) >= s.embed_batch_size:
                            embedding.submit(buffer[: s.embed_batch_size])
                            buffer = buffer[s.embed_batch_size :]
                    embedding.drain(block=False)
                    embedding.resubmit()
                if buffer and embedding.abort is None:
                    embedding.submit(buffer)
                embedding.finish()
            finally:
                write_q.put(None)
                writer_thread.join()
        if writer.error is not None:
            raise writer.error
        abort = embedding.abort
        if abort is not None and fatal(abort):
            raise abort
        if abort is not None:
            raise type(abort)(
                f"Stopped after {ABORT_AFTER_FAILED_BATCHES} embedding requests in a row failed: {abort.message} "
                "Files finished so far are kept; run the same command again to continue.",
                code=abort.code,
            )

    def _parse(self, job: Job) -> None:
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
            vectors = self.db.get_embeddings(sorted(set(by_hash.values())))
        except Exception:  # reuse is an optimisation; embedding again is always correct
            return
        for i, chunk in enumerate(job.chunks):
            cid = by_hash.get(chunk.metadata["chunk_hash"])
            if cid is not None and cid in vectors and job.vectors[i] is None:
                job.vectors[i] = vectors[cid]
                job.missing -= 1
                job.reused += 1

    def _embed(self, texts: list[str]) -> list[list[float]]:
        return self._embedder_factory().embed_documents(texts)

    # -- deleted files -----------------------------------------------------------------------------
    def _remove_missing(self, root: str, seen: set[str]) -> None:
        gone = [r for r in self.manifest.files(prefix=root) if r.path not in seen]
        if gone:
            for row, chunks in drop_files(self.manifest, self._writing(), gone):
                self._emit(FileResult(row.source, "removed", chunks=chunks, root=row.root))


def drop_files(manifest: Manifest, store: ChromaStore | StoreProcess, rows: list[FileRow]) -> list[tuple[FileRow, int]]:
    """Remove these files' chunks from the store and the manifest, by the write protocol (pending,
    then the store, then the manifest), 500 files at a time. Returns each file with its chunk count."""
    out: list[tuple[FileRow, int]] = []
    for i in range(0, len(rows), 500):
        part = rows[i : i + 500]
        ids = {r.path: manifest.chunk_ids(r.path) for r in part}
        manifest.mark_pending([(r.path, r.root, r.source, []) for r in part])
        store.delete([cid for v in ids.values() for cid in v] + [p for r in part for p in r.pending_ids])
        manifest.forget([r.path for r in part])
        out += [(r, len(ids[r.path])) for r in part]
    return out


def forget(manifest: Manifest, store: ChromaStore, path: str) -> list[str]:
    """Drop ``path`` (a file, or every file under a folder) from the index. Returns the sources dropped."""
    return [row.source for row, _ in drop_files(manifest, store, manifest.files(prefix=path))]
