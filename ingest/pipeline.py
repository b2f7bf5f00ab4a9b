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

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ingest.chunker import Chunker
from ingest.embedstage import ABORT_AFTER_FAILED_BATCHES, EmbedStage, fatal
from ingest.index import Index
from ingest.jobs import Job
from ingest.manifest import FileRow, Manifest
from ingest.parsestage import BACKGROUND_NICE, ParseStage
from ingest.report import FileResult, IngestReport, ProgressSink, as_sink
from ingest.walker import Candidate, Selection, walk
from ingest.writer import Writer
from rag.errors import RagError
from rag.models import Embedder
from rag.settings import Settings
from rag.store import ChromaStore

__all__ = ["BACKGROUND_NICE", "Ingestor", "drop_files", "forget"]

# RAG_WRITE_PROCESS=auto writes from a child process when this much is to be indexed. The child
# costs ~1 s to start (Python and Chroma imports); writing in-process costs the GIL time of every
# other stage, ~30% of Chroma's own, which passes 1 s at ~3,000 chunks (1-2 MB of files).
WRITE_PROCESS_MIN_BYTES = 2 << 20


class Ingestor:
    """One ingest run over files and folders. Every change to the index goes through ``index``
    (``ingest.index.Index``, the storage rule); this class decides what changes."""

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
        self.index = Index(store, manifest, settings)
        self.chunker = chunker
        self.manifest = manifest
        self.sink = as_sink(progress)
        self.selection = selection or Selection()
        self.model = settings.embed_model_name
        self._emit_lock = threading.Lock()
        self._report = IngestReport()
        # Test seam: called with each candidate just before it is read (e.g. to delete it).
        self.before_read: Callable[[Candidate], None] | None = None

    # -- the run -------------------------------------------------------------------------
    def ingest(self, targets: Sequence[Path]) -> IngestReport:
        started_wall, t0 = time.time(), time.perf_counter()
        report = self._report = IngestReport()
        try:
            return self._ingest(targets, report, started_wall, t0)
        finally:
            self.index.stop_writer_process()

    def _ingest(self, targets: Sequence[Path], report: IngestReport, started_wall: float, t0: float) -> IngestReport:
        note = self.index.prepare(self.model, self.chunker.max_tokens, self.chunker.overlap)
        if note:
            report.notes.append(note)
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
        if work and self._use_writer_process(sum(j.cand.size for j in work)):
            self.index.start_writer_process()
        self._run(work)
        for walked in walked_dirs:
            self._remove_missing(walked, set(candidates))
        self.index.stop_writer_process()
        report.seconds = time.perf_counter() - t0
        self.manifest.record_run(started_wall, report.seconds, report.summary() | {"roots": report.roots})
        self.sink.finished(report)
        return report

    def _emit(self, result: FileResult) -> None:
        with self._emit_lock:
            self._report.files.append(result)
            self.sink.file_done(result)

    def _use_writer_process(self, size: int) -> bool:
        mode = self.settings.write_process
        # With a Chroma server the writes cost this process little (orjson, then waiting on a socket).
        embedded = not self.settings.chroma_url
        return mode == "always" or (mode == "auto" and embedded and size >= WRITE_PROCESS_MIN_BYTES)

    def recover(self) -> int:
        """Make the store and manifest agree after an interrupted run (``Index.recover``)."""
        return self.index.recover()

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

    # -- the stages --------------------------------------------------------------------------
    def _run(self, work: list[Job]) -> None:
        parse = ParseStage(self.settings, self.chunker, self.manifest, lambda: self.index.vectors, self.before_read)
        try:
            _Run(self.settings, parse, Writer(self.index, self.chunker, self.settings.write_batch, self._emit)).run(
                work, self._embed
            )
        finally:
            parse.close()

    def _embed(self, texts: list[str]) -> list[list[float]]:
        return self._embedder_factory().embed_documents(texts)

    # -- deleted files -----------------------------------------------------------------------------
    def _remove_missing(self, root: str, seen: set[str]) -> None:
        gone = [r for r in self.manifest.files(prefix=root) if r.path not in seen]
        if gone:
            for row, chunks in self.index.drop(gone):
                self._emit(FileResult(row.source, "removed", chunks=chunks, root=row.root))


class _Run:
    """The three stages over a run's work: jobs parsed ``parse_workers`` at a time (a bounded
    lookahead), their missing vectors batched across files to the embedding stage, finished jobs
    queued to the writer thread. ``run`` raises what stopped it: a write that failed, or the
    embedding stage's abort."""

    def __init__(self, settings: Settings, parse: ParseStage, writer: Writer) -> None:
        self.s = settings
        self.parse = parse
        self.writer = writer
        self.write_q: queue.Queue[Job | None] = queue.Queue(maxsize=max(8, settings.write_batch // 8))
        self.buffer: list[tuple[Job, int]] = []  # (job, chunk index) waiting for a full batch
        self.lookahead: deque[tuple[Job, Future[None]]] = deque()

    def send(self, job: Job) -> None:
        """Hand a finished job to the writer (once)."""
        if not job.sent:
            job.sent = True
            self.write_q.put(job)

    def run(self, work: list[Job], embed: Callable[[list[str]], list[list[float]]]) -> None:
        s = self.s
        writer_thread = threading.Thread(target=self.writer.run, args=(self.write_q,), name="rag-writer", daemon=True)
        writer_thread.start()
        with (
            ThreadPoolExecutor(s.parse_workers, thread_name_prefix="rag-parse") as parse_pool,
            ThreadPoolExecutor(s.embed_concurrency, thread_name_prefix="rag-embed") as embed_pool,
        ):
            embedding = EmbedStage(embed_pool, embed, self.send, s.embed_concurrency * 2)
            try:
                self._feed(iter(work), parse_pool, embedding)
                embedding.finish()
            finally:
                self.write_q.put(None)
                writer_thread.join()
        if self.writer.error is not None:
            raise self.writer.error
        abort = embedding.abort
        if abort is not None and fatal(abort):
            raise abort
        if abort is not None:
            raise type(abort)(
                f"Stopped after {ABORT_AFTER_FAILED_BATCHES} embedding requests in a row failed: {abort.message} "
                "Files finished so far are kept; run the same command again to continue.",
                code=abort.code,
            )

    def _feed(self, todo: Iterator[Job], parse_pool: ThreadPoolExecutor, embedding: EmbedStage) -> None:
        """Parse ahead, take parsed jobs in order, and pass each to the embedder or the writer."""
        s = self.s
        while True:
            while len(self.lookahead) < s.parse_workers * 4 and embedding.abort is None and self.writer.error is None:
                job = next(todo, None)
                if job is None:
                    break
                self.lookahead.append((job, parse_pool.submit(self.parse.parse, job)))
            if not self.lookahead or embedding.abort is not None:
                break
            job, fut = self.lookahead.popleft()
            fut.result()
            if job.state != "index" or job.missing == 0:
                self.send(job)
            else:
                self.buffer.extend((job, i) for i, v in enumerate(job.vectors) if v is None)
                while len(self.buffer) >= s.embed_batch_size:
                    embedding.submit(self.buffer[: s.embed_batch_size])
                    self.buffer = self.buffer[s.embed_batch_size :]
            embedding.drain(block=False)
            embedding.resubmit()
        if self.buffer and embedding.abort is None:
            embedding.submit(self.buffer)


def drop_files(manifest: Manifest, store: ChromaStore, rows: list[FileRow]) -> list[tuple[FileRow, int]]:
    """``Index.drop`` (kept for callers of the old name)."""
    return Index(store, manifest).drop(rows)


def forget(manifest: Manifest, store: ChromaStore, path: str) -> list[str]:
    """``Index.forget``: drop ``path`` (a file, or every file under a folder) and the roots at or
    under it. Returns the sources dropped. Kept for callers of the old name."""
    return Index(store, manifest).forget(path)
