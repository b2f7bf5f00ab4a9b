"""The embedded Chroma (``PersistentClient`` in the index directory), shared by every store of this
process on the same path, and kept fresh: a PersistentClient keeps the HNSW index it has loaded and
does not see other processes' writes (measured: new vectors were missing from its queries), so
``refresh`` reopens it when the collection's write counter moved.

Thread-safe: every call holds the client it started with, so a reopen in another thread never
pulls the client out from under a query (the old client is stopped, and its files closed, when the
last call using it returns)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from rag.chroma import ChromaStore, _Conn
from rag.errors import StoreError


class _Embedded:
    """The embedded Chroma at one path, shared by every ``ChromaStore`` of this process that
    opens it (as Chroma shares one client per path): the current ``_Conn`` and the lock that
    swaps it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conn: _Conn | None = None


_embedded: dict[str, _Embedded] = {}
_embedded_lock = threading.Lock()


def _private_client(path: str, chroma_settings: Any) -> _Conn:
    """A PersistentClient with a System of its own. Chroma hands out one System per path per
    process; ours is taken out of its cache, so that a reopen gets a new one and stopping ours
    never stops a client someone else made."""
    import chromadb
    from chromadb.api.shared_system_client import SharedSystemClient as Shared

    with _embedded_lock:
        client = None
        ident = path  # Chroma's key for it: the path as given
        # Another client at this path (not ours): set it aside while ours is made.
        theirs = Shared._identifier_to_system.pop(ident, None), Shared._identifier_to_refcount.pop(ident, None)
        try:
            client = chromadb.PersistentClient(path=path, settings=chroma_settings)
        finally:
            mine = getattr(client, "_identifier", ident)
            system = Shared._identifier_to_system.pop(mine, None)
            Shared._identifier_to_refcount.pop(mine, None)
            if theirs[0] is not None:
                Shared._identifier_to_system[ident] = theirs[0]
            if theirs[1] is not None:
                Shared._identifier_to_refcount[ident] = theirs[1]
    return _Conn(client, system)


class EmbeddedChroma(ChromaStore):
    """A collection of the embedded Chroma in ``index_dir/chroma``."""

    def _open(self) -> None:
        from chromadb.config import Settings as ChromaSettings

        settings = self._settings
        self.location = str(settings.index_dir)
        try:
            settings.index_dir.mkdir(parents=True, exist_ok=True)
            path = str(settings.index_dir / "chroma")
            with _embedded_lock:
                self._shared = _embedded.setdefault(os.path.realpath(path), _Embedded())
            with self._shared.lock:
                if self._shared.conn is None:
                    self._shared.conn = _private_client(path, ChromaSettings(anonymized_telemetry=False))
        except Exception as exc:
            raise StoreError(f"Cannot open the Chroma index at {settings.index_dir}: {exc}") from exc

    def _current(self) -> _Conn:
        conn = self._shared.conn
        assert conn is not None
        return conn

    @contextlib.contextmanager
    def _hold(self) -> Iterator[_Conn]:
        shared = self._shared
        with shared.lock:
            conn = shared.conn
            assert conn is not None
            conn.users += 1
        try:
            yield conn
        finally:
            with shared.lock:
                conn.users -= 1
                done = conn.retired and conn.users == 0
            if done:
                _stop(conn)

    def reopen(self) -> None:
        """Forget what this process holds of the embedded index, after another process wrote it.

        A PersistentClient keeps the HNSW index it has loaded and does not see other processes'
        writes to it (measured: new vectors were missing from its queries). Every store of this
        process at the same path moves to the new client; calls still running on the old one
        finish on it, and the last of them stops it."""
        with self._shared.lock:
            self._reopen_locked(self._shared)

    def _reopen_locked(self, shared: _Embedded) -> _Conn:
        from chromadb.config import Settings as ChromaSettings

        old = shared.conn
        path = str(self._settings.index_dir / "chroma")
        try:
            conn = _private_client(path, ChromaSettings(anonymized_telemetry=False))
        except Exception as exc:
            raise StoreError(f"Cannot reopen the Chroma index at {self.location}: {exc}") from exc
        shared.conn = conn
        if old is not None:
            old.retired = True
            if old.users == 0:
                _stop(old)  # nothing runs on it (stopping under the lock: a new caller waits a moment)
        return conn

    def refresh(self, version: Callable[[], int]) -> bool:
        """Reopen the embedded index if it changed since this process loaded it: ``version()``
        reads a counter every committed write of this collection bumps, by any process (the
        keyword index's generation). When nothing changed this is a dict lookup after reading it.
        Returns whether it reopened."""
        shared = self._shared
        current = version()  # read before looking: a write committed after it is caught next time
        conn = shared.conn
        if conn is not None and conn.versions.get(self.name) == current:
            return False
        with shared.lock:
            conn = shared.conn
            assert conn is not None
            seen = conn.versions.get(self.name)
            if seen == current:
                return False
            # A client that has not loaded this collection's vectors yet will load them as they are now.
            reopened = seen is not None or self.name in conn.loaded
            if reopened:
                conn = self._reopen_locked(shared)
            conn.versions[self.name] = current
        return reopened


def _stop(conn: _Conn) -> None:
    """Stop a retired embedded client: its SQLite connections and loaded indexes are closed."""
    if conn.system is not None:
        with contextlib.suppress(Exception):
            conn.system.stop()
