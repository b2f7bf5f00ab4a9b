"""One writer per index: a lock file beside the manifest, held while an ingest, forget,
reindex or reset runs.

Two ingests of one collection at once would each reconcile the store against the
manifest while the other writes, and delete each other's uncommitted chunks. The
lock is an ``flock``: the kernel releases it when its process dies, ``kill -9``
included, so a crash never leaves a stale lock for the next run to trip over.

Readers (``rag ask``, ``rag search``, ``rag serve``) do not take it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from rag.errors import IndexBusyError

try:
    import fcntl
except ImportError:  # not POSIX: no lock, as before
    fcntl = None  # type: ignore[assignment]


class IndexLock:
    """Re-entrant for the thread that holds it (``rag reindex`` ingests under the lock it holds);
    another thread, or another process, is refused while it is held."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what  # named in the error: "collection 'rag' in /home/me/.local/share/rag"
        self._fd: int | None = None
        self._depth = 0
        self._owner: int | None = None  # the thread holding it
        self._mutex = threading.Lock()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def acquire(self) -> None:
        with self._mutex:
            if self._depth == 0:
                self._fd = self._take()
                self._owner = threading.get_ident()
            elif self._owner != threading.get_ident():
                raise self._busy("Another thread of this process")
            self._depth += 1

    def release(self) -> None:
        with self._mutex:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                if self._fd is not None:
                    os.close(self._fd)  # closing the descriptor drops the flock
                    self._fd = None

    def _busy(self, who: str) -> IndexBusyError:
        return IndexBusyError(
            f"{who} is writing to {self.what}: an ingest, forget, reindex or reset is running. "
            "Wait for it to finish, or use another --collection or --index-dir."
        )

    def _take(self) -> int | None:
        if fcntl is None:
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise self._busy(f"Another process (pid {holder})") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)  # for the message above; the flock is the lock
        return fd
