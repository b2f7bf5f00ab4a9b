"""A small pool of SQLite connections to one file, shared by any number of threads (the keyword
index's readers, the manifest's readers for the ingest's parse threads)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator

# Connections a KeywordIndex keeps: its reads take a millisecond or less, so a few serve many threads.
POOL_SIZE = 4


class ConnectionPool:
    """At most ``size`` SQLite connections to one file, shared by any number of threads: a
    caller checks one out (``with pool.connection() as db:``) and it goes back on exit, so
    thread pools that retire and replace their threads (uvicorn's, anyio's) never leave
    connections behind. A caller finding all ``size`` in use waits for one. Idle connections
    stay open for the next caller. ``close`` closes the idle ones at once and those checked
    out as they come back; the pool opens new ones if it is used again."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], size: int = 8) -> None:
        self._connect = connect
        self.size = size
        self._idle: list[sqlite3.Connection] = []
        self._out: set[sqlite3.Connection] = set()  # checked out
        self._doomed: set[sqlite3.Connection] = set()  # checked out when ``close`` was called
        self._open = 0  # idle, checked out or being opened
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        db = self._checkout()
        try:
            yield db
        finally:
            self._checkin(db)

    @property
    def opened(self) -> int:
        """Connections open now, idle or checked out."""
        return self._open

    def _checkout(self) -> sqlite3.Connection:
        with self._cond:
            while not self._idle and self._open >= self.size:
                self._cond.wait()
            if self._idle:
                db = self._idle.pop()
                self._out.add(db)
                return db
            self._open += 1
        try:
            db = self._connect()
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._out.add(db)
        return db

    def _checkin(self, db: sqlite3.Connection) -> None:
        with self._cond:
            self._out.discard(db)
            doomed = db in self._doomed
            if doomed:
                self._doomed.discard(db)
                self._open -= 1
            else:
                if db.in_transaction:  # a failed read left one open: not for the next caller
                    db.rollback()
                self._idle.append(db)
            self._cond.notify()
        if doomed:
            db.close()

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._doomed |= self._out
            self._cond.notify_all()
        for db in idle:
            db.close()
