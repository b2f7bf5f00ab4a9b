"""The embedding stage of an ingest: batches of chunk texts sent to ``/v1/embeddings``, a few in
flight, their vectors put back in the files' jobs, and what a failed request means for its files."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from ingest.jobs import Job
from rag.errors import IndexMismatchError, ModelAuthError, ModelNotFoundError, ModelUnreachableError, RagError

# After this many embedding batches fail in a row the server is down, not a file bad: stop.
ABORT_AFTER_FAILED_BATCHES = 3


def fatal(exc: RagError) -> bool:
    """Errors no other file would escape: the server is down, or refuses our key or model."""
    return isinstance(exc, ModelUnreachableError | ModelAuthError | ModelNotFoundError | IndexMismatchError)


class EmbedStage:
    """The embedding requests of a run: batches in flight (at most ``limit``), the vectors they
    bring back put in their jobs, a finished job handed to ``send``. A request that fails after
    the client's retries and carries several files is sent again one file at a time, so only the
    file at fault fails; after ``ABORT_AFTER_FAILED_BATCHES`` failures in a row, or one the server
    as a whole is at fault for, ``abort`` is set and nothing more is sent."""

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        embed: Callable[[list[str]], list[list[float]]],
        send: Callable[[Job], None],
        limit: int,
    ) -> None:
        self.pool, self.embed, self.send, self.limit = pool, embed, send, limit
        # Each request in flight, with its (job, chunk index) items and whether it is one file's retry.
        self.inflight: dict[Future[list[list[float]]], tuple[list[tuple[Job, int]], bool]] = {}
        self.retries: list[list[tuple[Job, int]]] = []
        self.failed_batches = 0
        self.abort: RagError | None = None

    def submit(self, items: list[tuple[Job, int]], alone: bool = False) -> None:
        while len(self.inflight) >= self.limit:
            self.drain(block=True)
        texts = [job.chunks[i].text for job, i in items]
        self.inflight[self.pool.submit(self.embed, texts)] = (items, alone)

    def resubmit(self) -> None:
        while self.retries:
            part = self.retries.pop()
            if self.abort is None and not part[0][0].sent:
                self.submit(part, alone=True)

    def finish(self) -> None:
        while self.inflight or self.retries:
            self.resubmit()
            self.drain(block=True)

    def drain(self, block: bool) -> None:
        if not self.inflight:
            return
        done, _ = wait(list(self.inflight), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for fut in done:
            items, alone = self.inflight.pop(fut)
            try:
                vectors = fut.result()
            except RagError as exc:
                self._failed(items, alone, exc)
                continue
            self.failed_batches = 0
            for (job, i), vec in zip(items, vectors, strict=True):
                job.vectors[i] = vec
                job.missing -= 1
                if job.missing == 0:
                    self.send(job)

    def _failed(self, items: list[tuple[Job, int]], alone: bool, exc: RagError) -> None:
        jobs = list({id(job): job for job, _ in items if not job.sent}.values())
        if not fatal(exc) and not alone and len(jobs) > 1 and self.abort is None:
            # A request fails whole for one bad input (a server's own length limit, say):
            # send each file's part again on its own, so only the file at fault fails.
            self.retries.extend([(j, i) for j, i in items if j is job] for job in jobs)
            return
        if exc.code != "bad_request":  # a refused input is the file's fault, not the server's
            self.failed_batches += 1
        if self.failed_batches >= ABORT_AFTER_FAILED_BATCHES or fatal(exc):
            self.abort = exc
            if fatal(exc):
                return  # not the files' fault: leave them for the next run
        for job in jobs:
            job.fail(f"embedding failed: {exc.message}", kind="model")
            self.send(job)
