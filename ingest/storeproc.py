"""Chroma writes from a process of their own while an ingest runs.

Chroma's Python bindings hold the GIL for the whole of each add/upsert: measured here, a Python
thread beside ``collection.add()`` ran at about 1% of its normal speed. In one process, reading,
chunking and embedding all stopped while Chroma wrote, so the pipeline's time was the sum of both
(docs/benchmarks.md, capacity). From a child process the writes overlap the rest of the pipeline.

The embedded Chroma is meant for one process at a time, and a process keeps the HNSW index it has
loaded. So while the writer runs, every store call of the ingest goes through it, and afterwards
the caller's own client is reopened (``ChromaStore.reopen``), which moves every store of this
process on the same index path to the new client.

The child dies with its parent (Linux: ``PR_SET_PDEATHSIG``), so a killed ingest leaves no writer
behind to race the next run's recovery. Elsewhere it exits at its next request, on EOF.
"""

from __future__ import annotations

import contextlib
import multiprocessing.connection
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ingest import child
from rag import errors
from rag.errors import RagError, StoreError
from rag.settings import Settings
from rag.store import IndexInfo, StoredChunk

# The calls a parent may make; anything else is refused by the child.
METHODS = frozenset({"info", "ensure", "write", "delete", "get_embeddings", "count", "all_ids", "max_batch"})


def main() -> None:
    """The writer: ``python -c 'from ingest.storeproc import main; main()' PARENT_PID``."""
    _die_with(int(sys.argv[1]))
    conn_in, conn_out = child.channel()
    with contextlib.suppress(EOFError, OSError):  # the parent went away: nothing left to do
        _serve(conn_in, conn_out)


def _serve(conn_in: multiprocessing.connection.Connection, conn_out: multiprocessing.connection.Connection) -> None:
    from rag.store import ChromaStore

    settings: Settings = conn_in.recv()
    try:
        store = ChromaStore(settings)
    except Exception as exc:
        conn_out.send(("error", _describe(exc)))
        return
    conn_out.send(("ok", None))
    while True:
        method, args = conn_in.recv()
        try:
            if method not in METHODS:
                raise StoreError(f"unknown store call {method!r}")
            attr = getattr(store, method)
            reply = ("ok", attr(*args) if callable(attr) else attr)
        except Exception as exc:
            reply = ("error", _describe(exc))
        conn_out.send(reply)


def _die_with(parent: int) -> None:
    with contextlib.suppress(Exception):  # not Linux: the EOF on our stdin stops us instead
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _describe(exc: Exception) -> tuple[str, str, str | None]:
    if isinstance(exc, RagError):
        return type(exc).__name__, exc.message, exc.code
    return "StoreError", f"{type(exc).__name__}: {exc}", None


def _rebuild(name: str, message: str, code: str | None) -> RagError:
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, RagError)):
        cls = StoreError
    return cls(message, code=code) if code else cls(message)


class StoreProcess:
    """The store calls of an ingest, answered by a child process that owns the Chroma client.

    Thread-safe: calls from the parse threads (vectors to reuse) and the writer thread take turns.
    """

    def __init__(self, settings: Settings) -> None:
        self.name = settings.collection
        self.location = settings.chroma_url or str(settings.index_dir)
        self._proc, self._send, self._recv = child.spawn("ingest.storeproc", str(os.getpid()))
        self._lock = threading.Lock()
        self._ready = False
        # Started now, answered at the first call: the child imports Chroma while files are parsed.
        self._send.send(settings)

    def _call(self, method: str, *args: Any) -> Any:
        return self._start(method, *args)()

    def _start(self, method: str, *args: Any) -> Callable[[], Any]:
        """Send a call and return at once; the result waits for the answer. Until then, other
        calls wait their turn (the child answers in order)."""
        self._lock.acquire()
        try:
            if not self._ready:
                self._answer()
                self._ready = True
            self._send.send((method, args))
        except (EOFError, OSError):
            self._lock.release()
            raise self._died() from None
        except BaseException:
            self._lock.release()
            raise

        def answer() -> Any:
            try:
                return self._answer()
            finally:
                self._lock.release()

        return answer

    def _answer(self) -> Any:
        try:
            status, payload = self._recv.recv()
        except (EOFError, OSError):
            raise self._died() from None
        if status != "ok":
            raise _rebuild(*payload)
        return payload

    def _died(self) -> StoreError:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(1)
        return StoreError(
            f"The index writer process stopped unexpectedly (exit code {self._proc.poll()}) while writing to "
            f"{self.location}. Run the same command again: finished files are kept."
        )

    # -- the calls the ingest makes (the VectorStore subset) ------------------------------------
    def info(self) -> IndexInfo | None:
        return self._call("info")  # type: ignore[no-any-return]

    def ensure(self, info: IndexInfo) -> None:
        self._call("ensure", info)

    def start_write(
        self, chunks: Sequence[StoredChunk], embeddings: Sequence[Sequence[float]], drop: Sequence[str]
    ) -> Callable[[], None]:
        """``ChromaStore.write`` in the child; returns at once with the function that waits for it."""
        import numpy as np

        # Only what Chroma stores crosses the pipe (not the keyword terms), vectors as one array.
        lean = [StoredChunk(c.id, c.text, c.metadata) for c in chunks]
        return self._start("write", lean, np.asarray(embeddings, dtype=np.float32), list(drop))

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self._call("delete", list(ids))

    def get_embeddings(self, ids: Sequence[str]) -> dict[str, list[float]]:
        return self._call("get_embeddings", list(ids))  # type: ignore[no-any-return]

    def count(self) -> int:
        return int(self._call("count"))

    def all_ids(self) -> set[str]:
        return self._call("all_ids")  # type: ignore[no-any-return]

    @property
    def max_batch(self) -> int:
        return int(self._call("max_batch"))

    def close(self) -> None:
        """Let the child exit (it has answered every call by now); kill it if it hangs, or if it
        was never used (a run that stopped early need not wait for it to import Chroma)."""
        with self._lock:
            if not self._ready and self._proc.poll() is None:
                self._proc.kill()
            for conn in (self._send, self._recv):
                conn.close()
            for pipe in (self._proc.stdin, self._proc.stdout):
                if pipe is not None:
                    pipe.close()
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
