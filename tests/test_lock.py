"""The one-writer lock (ingest.lock) on a real lock file. Two processes contending, and a killed
holder, are tested end to end in tests/test_selection.py."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from ingest.lock import IndexLock
from rag import IndexBusyError


def attempt(lock: IndexLock) -> BaseException | None:
    """``lock.acquire()`` from a new thread: the exception it raised, or None (then released)."""
    caught: list[BaseException | None] = [None]

    def run() -> None:
        try:
            lock.acquire()
            lock.release()
        except BaseException as exc:
            caught[0] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    return caught[0]


def test_reentrant_for_its_thread_refused_to_other_threads_and_other_holders(tmp_path: Path) -> None:
    path = tmp_path / "manifests" / "rag.lock"
    lock = IndexLock(path, "collection 'rag'")
    second = IndexLock(path, "collection 'rag'")  # another Rag on the same index, same process
    with lock.held():
        with lock.held():  # rag reindex ingests under the lock it holds
            assert path.read_text() == str(os.getpid())
        exc = attempt(lock)
        assert isinstance(exc, IndexBusyError)
        assert "Another thread of this process is writing to collection 'rag'" in exc.message
        with pytest.raises(IndexBusyError, match=rf"Another process \(pid {os.getpid()}\) .*--collection"):
            second.acquire()
        assert exc.status == 409 and exc.code == "index_busy"
    # Released by the outer block: anyone may take it now, and take it again.
    assert attempt(lock) is None
    with second.held():
        assert isinstance(attempt(lock), IndexBusyError)
    with lock.held():
        pass
