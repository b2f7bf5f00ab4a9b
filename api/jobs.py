"""Ingest jobs: ``Rag.ingest`` in a background thread, one writer per collection.

A job is made by :meth:`Jobs.reserve`: its thread takes the collection's write lock at once
(``Indexer.exclusive``: a thread of this process or another process writing is refused with
:class:`~rag.errors.IndexBusyError`, 409), and :meth:`Jobs.reserve` checks this process's own jobs
first. The caller then stores what is to be ingested (an upload) and :meth:`Job.start`\\ s it, or
:meth:`Job.cancel`\\ s it; the thread runs the ingest under the lock it already holds (re-entrant),
so nobody can slip in between the upload and its ingest.

Progress comes from the ingest's ``ProgressSink`` (totals, then one ``FileResult`` per file). The
storage rule (``ingest.index``) makes a job that fails or is stopped harmless: what it committed
is whole, the rest is repaired and redone by the next ingest. At shutdown :meth:`Jobs.stop` asks
running jobs to stop (at the next finished file) and waits a little.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ingest.report import FileResult, IngestReport, ProgressSink
from ingest.walker import Selection
from rag.engine import Rag
from rag.errors import IndexBusyError, RagError

log = logging.getLogger("rag.serve")
State = Literal["queued", "running", "done", "failed"]
KEEP = 200  # finished jobs remembered (the oldest are forgotten first)
MAX_FAILURES = 1000  # failures kept per job
_ids = itertools.count(1)


class JobStopped(Exception):
    """Raised from the progress sink to end a running ingest (the service is stopping)."""


@dataclass
class Job:
    id: str
    collection: str
    kind: str  # "upload" or "ingest"
    state: State = "queued"
    files_total: int = 0
    files_done: int = 0
    chunks: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    paths: list[Path] = field(default_factory=list)
    selection: Selection | None = None
    _locked: threading.Event = field(default_factory=threading.Event, repr=False)
    _go: threading.Event = field(default_factory=threading.Event, repr=False)
    _cancelled: bool = False
    _busy: IndexBusyError | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "collection": self.collection,
            "kind": self.kind,
            "state": self.state,
            "files_total": self.files_total,
            "files_done": self.files_done,
            "chunks": self.chunks,
            "failures": list(self.failures),
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "error": self.error,
        }

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running") and not self._cancelled

    def start(self, paths: list[Path], selection: Selection | None = None) -> None:
        """Run the ingest of ``paths`` (under the lock this job holds)."""
        self.paths, self.selection = paths, selection
        self._go.set()

    def cancel(self) -> None:
        """Give up a reserved job that never started (e.g. its upload failed): its lock is released
        before this returns (the thread only has to let go of it)."""
        self._cancelled = True
        self._go.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)


class _Sink(ProgressSink):
    def __init__(self, job: Job, stopping: threading.Event) -> None:
        self.job = job
        self.stopping = stopping

    def started(self, files: int, total_bytes: int) -> None:
        self.job.files_total = files

    def file_done(self, result: FileResult) -> None:
        job = self.job
        job.files_done += 1
        if result.status in ("added", "updated"):
            job.chunks += result.chunks
        if result.status in ("failed", "skipped") and result.error and len(job.failures) < MAX_FAILURES:
            job.failures.append({"source": result.source, "status": result.status, "error": result.error})
        if self.stopping.is_set():
            raise JobStopped

    def finished(self, report: IngestReport) -> None:
        self.job.files_total = max(self.job.files_total, self.job.files_done)


class Jobs:
    """This process's ingest jobs, by id; at most one active per collection."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def reserve(self, rag: Rag, kind: str) -> Job:
        """A new job holding ``rag``'s collection's write lock; :class:`IndexBusyError` (409) if
        a job of ours or any other writer has it."""
        collection = rag.settings.collection
        if self._stopping.is_set():
            raise RagError("The service is stopping: no new jobs.", code="shutting_down", status=503)
        with self._lock:
            running = [j for j in self._jobs.values() if j.collection == collection and j.active]
            if running:
                raise self.busy(running[0])
            job = Job(f"{next(_ids)}-{secrets.token_hex(4)}", collection, kind)
            self._jobs[job.id] = job
            self._trim()
        job._thread = threading.Thread(target=self._main, args=(job, rag), name=f"rag-job-{job.id}", daemon=True)
        job._thread.start()
        job._locked.wait()
        if job._busy is not None:
            with self._lock:
                self._jobs.pop(job.id, None)
            raise job._busy
        return job

    @staticmethod
    def busy(job: Job) -> IndexBusyError:
        return IndexBusyError(
            f"Job {job.id} is writing to collection '{job.collection}': wait for it to finish (GET /jobs/{job.id})."
        )

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def recent(self, collection: str | None = None) -> list[Job]:
        """Newest first."""
        with self._lock:
            jobs = [j for j in reversed(self._jobs.values()) if not j._cancelled]
        return [j for j in jobs if collection is None or j.collection == collection]

    def stop(self, timeout: float = 10.0) -> None:
        """Refuse new jobs, stop running ones at their next finished file, wait up to ``timeout``."""
        self._stopping.set()
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            if job.state == "queued":
                job.cancel()
        deadline = time.monotonic() + timeout
        for job in jobs:
            if job._thread is not None:
                job._thread.join(max(0.0, deadline - time.monotonic()))

    def _trim(self) -> None:
        done = [k for k, j in self._jobs.items() if not j.active]
        for key in done[: max(0, len(self._jobs) - KEEP)]:
            del self._jobs[key]

    def _main(self, job: Job, rag: Rag) -> None:
        try:
            with rag.indexer.exclusive():
                job._locked.set()
                job._go.wait()
                if job._cancelled:
                    with self._lock:
                        self._jobs.pop(job.id, None)
                    return
                job.state, job.started = "running", time.time()
                rag.ingest(job.paths, progress=_Sink(job, self._stopping), selection=job.selection)
                job.state = "done"
        except IndexBusyError as exc:
            if not job._locked.is_set():
                job._busy = exc
            job.state, job.error = "failed", exc.message
        except JobStopped:
            job.state = "failed"
            job.error = "Stopped: the service shut down. What was committed is kept; the next ingest finishes it."
        except RagError as exc:
            job.state, job.error = "failed", exc.message
        except Exception as exc:  # a bug: the job fails, the service goes on
            log.exception("ingest job %s failed", job.id)
            job.state, job.error = "failed", f"Internal error ({type(exc).__name__}); see the service's log."
        finally:
            job.finished = time.time()
            job._locked.set()
            if not job._cancelled:
                log.info(
                    "ingest job %s (%s): %s, %d files, %d chunks",
                    job.id,
                    job.collection,
                    job.state,
                    job.files_done,
                    job.chunks,
                )
