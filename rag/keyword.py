"""The keyword index: BM25 (SQLite FTS5) over exactly the chunks in the vector store.

It lives in the ingest manifest's SQLite file, and its rows are written in the
same transaction that commits a file's chunks (and deleted by a trigger when the
manifest drops them), so it always holds what the manifest says is committed:
crash recovery of the manifest is recovery of the keyword index too.

Text is analysed in Python before FTS5 sees it, because FTS5's tokenizers do not
split Chinese (a run of Han characters would be one token) and split identifiers
such as ``sqlite3_prepare_v2`` into parts that each match too much. We index:

- words, lower-cased and stemmed (Snowball English: ``running`` finds ``run``);
- identifiers whole *and* in parts (``sqlite3_prepare_v2``, ``sqlite3``, ``prepare``,
  ``v2``; ``getElementById``, ``get``, ``element``, ``by``, ``id``);
- Chinese and Japanese as overlapping character bigrams (plus single characters
  that stand alone), the usual approach when no word segmenter is available;
- no English stopwords (they only lengthen posting lists and slow queries).

Queries are scored by ``rag.bm25`` (the same BM25, in memory: FTS5 takes 20-100 ms
for an OR query over 50,000 chunks) unless ``memory=False``, which asks FTS5.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rag import bm25
from rag.bm25 import MemoryBM25
from rag.store import Hit, StoredChunk
from rag.text import STOPWORDS, stem, terms

__all__ = ["STOPWORDS", "stem", "terms"]  # re-exported: the analysis lives in rag.text

# Bumped when the analysis changes: manifests with an older one re-analyse their stored texts.
VERSION = 3

# The keyword tables, created in the manifest database. kw_chunks holds the text and
# what filters and citations need; kw is an external-content FTS5 index over its `terms`.
SCHEMA = """
CREATE TABLE IF NOT EXISTS kw_chunks (
    rowid INTEGER PRIMARY KEY,      -- stable: FTS5 external content is keyed by it
    id TEXT NOT NULL UNIQUE,        -- the chunk id in the vector store
    path TEXT NOT NULL,             -- absolute path of the file (manifest identity)
    source TEXT NOT NULL,
    kind TEXT,
    page INTEGER NOT NULL DEFAULT 0,
    meta TEXT NOT NULL,             -- JSON metadata, as stored in Chroma
    text TEXT NOT NULL,
    terms TEXT NOT NULL             -- analysed text (what FTS5 indexes)
);
CREATE INDEX IF NOT EXISTS kw_chunks_path ON kw_chunks (path);
CREATE VIRTUAL TABLE IF NOT EXISTS kw USING fts5(
    terms, content='kw_chunks', content_rowid='rowid', tokenize="unicode61 tokenchars '_'"
);
-- gen changes with every row written or deleted: readers holding a copy (rag.bm25) rebuild it.
CREATE TABLE IF NOT EXISTS kw_state (gen INTEGER NOT NULL);
INSERT INTO kw_state (gen) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM kw_state);
CREATE TRIGGER IF NOT EXISTS kw_chunks_ai AFTER INSERT ON kw_chunks BEGIN
    INSERT INTO kw (rowid, terms) VALUES (new.rowid, new.terms);
    UPDATE kw_state SET gen = gen + 1;
END;
CREATE TRIGGER IF NOT EXISTS kw_chunks_ad AFTER DELETE ON kw_chunks BEGIN
    INSERT INTO kw (kw, rowid, terms) VALUES ('delete', old.rowid, old.terms);
    UPDATE kw_state SET gen = gen + 1;
END;
-- Whatever removes a committed chunk from the manifest removes it from the keyword index.
CREATE TRIGGER IF NOT EXISTS chunks_kw_ad AFTER DELETE ON chunks BEGIN
    DELETE FROM kw_chunks WHERE id = old.id;
END;
"""


def match_expression(query: str | list[str]) -> str | None:
    """An FTS5 query: any of the terms (BM25 ranks documents with more and rarer ones first)."""
    unique = list(dict.fromkeys(terms(query) if isinstance(query, str) else query))
    if not unique:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in unique)


def install(db: sqlite3.Connection) -> None:
    """Create the keyword tables in a manifest database, or bring older ones up to VERSION by
    re-analysing the stored texts (crash-safe: the version is set last, so an interrupted
    upgrade is redone)."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version >= VERSION:
        db.executescript(SCHEMA)
        return
    db.executescript(
        "DROP TRIGGER IF EXISTS kw_chunks_ai; DROP TRIGGER IF EXISTS kw_chunks_ad; "
        "DROP TABLE IF EXISTS kw_vocab; DROP TABLE IF EXISTS kw;"
    )
    db.executescript(SCHEMA)
    rows = db.execute("SELECT rowid, text FROM kw_chunks").fetchall()
    if rows:
        db.executemany("UPDATE kw_chunks SET terms = ? WHERE rowid = ?", [(" ".join(terms(t)), r) for r, t in rows])
        db.execute("INSERT INTO kw (kw) VALUES ('rebuild')")
        db.execute("UPDATE kw_state SET gen = gen + 1")
    db.execute(f"PRAGMA user_version = {VERSION}")


def rows_for(path: str, chunks: Sequence[StoredChunk]) -> list[tuple[Any, ...]]:
    """kw_chunks rows for one file's chunks (written by the manifest's commit)."""
    return [
        (
            c.id,
            path,
            str(c.metadata.get("source", "")),
            c.metadata.get("kind"),
            int(c.metadata.get("page") or 0),
            json.dumps(c.metadata, ensure_ascii=False),
            c.text,
            c.terms if c.terms is not None else " ".join(terms(c.text)),
        )
        for c in chunks
    ]


INSERT = "INSERT OR REPLACE INTO kw_chunks (id, path, source, kind, page, meta, text, terms) VALUES (?,?,?,?,?,?,?,?)"


@dataclass
class Scope:
    """Where a search may look, resolved to SQL: allowed file paths (None = all) and a page range."""

    paths: list[str] | None = None
    page_min: int | None = None
    page_max: int | None = None


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


class KeywordIndex:
    """Reads the keyword tables of a manifest file through a small pool of read-only
    connections (WAL: never blocked by an ingest writing the same file)."""

    def __init__(self, path: Path, memory: bool = True, connections: int = POOL_SIZE) -> None:
        self.path = path
        self._memory = MemoryBM25() if memory else None
        self.pool = ConnectionPool(self._open, connections)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        db.execute("PRAGMA query_only=ON")
        return db

    def count(self) -> int:
        try:
            with self.pool.connection() as db:
                return int(db.execute("SELECT COUNT(*) FROM kw_chunks").fetchone()[0])
        except sqlite3.OperationalError:  # a manifest from before the keyword index: no table yet
            return 0

    def generation(self) -> int:
        """A counter every committed change of the index bumps (``kw_state.gen``: a trigger on
        every chunk written or deleted, by any process). Reading it costs a few microseconds."""
        try:
            with self.pool.connection() as db:
                return _generation(db)
        except sqlite3.OperationalError:  # a manifest from before the keyword index
            return 0

    def written(self) -> None:
        """This process changed the index: the next query must not answer from an older copy."""
        if self._memory is not None:
            self._memory.invalidate()

    def search(self, query: str, n: int, scope: Scope | None = None, *, texts: bool = True) -> list[Hit]:
        """The ``n`` best chunks by BM25; ``score`` is BM25 (higher is better, unbounded).
        ``texts=False`` leaves text and metadata out (fusion needs only ids and scores;
        ``fetch`` fills in the few hits that survive it)."""
        words = list(dict.fromkeys(terms(query)))
        scope = scope or Scope()
        if not words or n <= 0 or (scope.paths is not None and not scope.paths):
            return []
        try:
            ranked = self._ranked(words, n, scope)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        if not texts:
            return [Hit(id=cid, score=score, source="", page=None, text="") for _, cid, score in ranked]
        with self.pool.connection() as db:
            rows = self._rows(db, "rowid", [r for r, _, _ in ranked])
        return [replace(rows[rowid], score=score) for rowid, _, score in ranked if rowid in rows]

    def _ranked(self, words: list[str], n: int, scope: Scope) -> list[tuple[int, str, float]]:
        if self._memory is not None:
            with self.pool.connection() as db:
                gen = _generation(db)
            built = self._memory.current(gen, self._open)  # a build reads through a connection of its own
            return bm25.score(built, words, n, self._memory.mask(built, scope.paths, scope.page_min, scope.page_max))
        expr = match_expression(words)
        sql = "SELECT c.rowid, c.id, -bm25(kw) FROM kw JOIN kw_chunks c ON c.rowid = kw.rowid WHERE kw MATCH ?"
        args: list[Any] = [expr]
        if scope.paths is not None:
            sql += f" AND c.path IN ({','.join('?' * len(scope.paths))})"
            args += scope.paths
        if scope.page_min is not None:
            sql += " AND c.page >= ?"
            args.append(scope.page_min)
        if scope.page_max is not None:
            sql += " AND c.page <= ?"
            args.append(scope.page_max)
        with self.pool.connection() as db:
            rows = db.execute(sql + " ORDER BY bm25(kw) LIMIT ?", [*args, n]).fetchall()
        return [(int(r), str(cid), float(score)) for r, cid, score in rows]

    def fetch(self, ids: Sequence[str]) -> dict[str, Hit]:
        """Text, source, page and metadata of chunks by id (score 0): what a search result needs,
        without asking the vector store for documents (which costs more than the search)."""
        try:
            with self.pool.connection() as db:
                return {h.id: h for h in self._rows(db, "id", list(ids)).values()}
        except sqlite3.OperationalError:
            return {}

    @staticmethod
    def _rows(db: sqlite3.Connection, key: str, values: list[Any]) -> dict[Any, Hit]:
        out: dict[Any, Hit] = {}
        for i in range(0, len(values), 500):
            part = values[i : i + 500]
            marks = ",".join("?" * len(part))
            sql = f"SELECT {key}, id, meta, text FROM kw_chunks WHERE {key} IN ({marks})"
            for k, cid, meta, text in db.execute(sql, part):
                out[k] = Hit.of(cid, 0.0, text, json.loads(meta))
        return out

    def ids(self) -> set[str]:
        try:
            with self.pool.connection() as db:
                return {r[0] for r in db.execute("SELECT id FROM kw_chunks")}
        except sqlite3.OperationalError:
            return set()

    def close(self) -> None:
        self.pool.close()


def _generation(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT gen FROM kw_state").fetchone()
    return int(row[0]) if row else 0


def missing_rows(manifest_db: sqlite3.Connection) -> list[tuple[str, str]]:
    """(chunk id, path) committed in the manifest but absent from the keyword index:
    a manifest written before the keyword index existed."""
    return [
        (r[0], r[1])
        for r in manifest_db.execute(
            "SELECT c.id, c.path FROM chunks c LEFT JOIN kw_chunks k ON k.id = c.id WHERE k.id IS NULL"
        )
    ]
