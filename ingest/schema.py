"""What the manifest's SQLite file holds, and how older files are brought up to date.

Two groups of tables share the file, so that one transaction can commit both:

- the catalog (``CATALOG``): ``files`` (one row per file: what is in the vector store and why),
  ``chunks`` (the committed chunk ids of each file), ``roots`` and ``runs``;
- the keyword index (``KEYWORD``): ``kw_chunks`` (text and metadata of every committed chunk),
  ``kw`` (an FTS5 index over their analysed terms) and ``kw_state`` (a write counter), kept in
  step by triggers: a row leaving ``chunks`` leaves ``kw_chunks``, and every change bumps
  ``kw_state.gen``. ``rag.keyword`` reads these tables; only this module writes their shape.

Each group migrates itself on open (``install``): the catalog by looking at what is there, the
keyword index by ``PRAGMA user_version`` (``KEYWORD_VERSION``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rag.store import StoredChunk
from rag.text import terms

CATALOG = """
CREATE TABLE IF NOT EXISTS roots (path TEXT PRIMARY KEY, last_run REAL, selection TEXT);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,          -- absolute path: the file's identity
    root TEXT NOT NULL,             -- the ingested folder it was found under
    source TEXT NOT NULL,           -- path relative to root: what citations show
    kind TEXT,
    size INTEGER,
    mtime_ns INTEGER,
    hash TEXT,                      -- sha256 of the content; NULL forces a re-ingest
    chunker TEXT,                   -- Chunker.signature (the chunk settings): any change re-chunks the file
    status TEXT NOT NULL,           -- ok | failed | pending | stale
    error TEXT,
    error_kind TEXT,                -- load (the file itself) | io | model | store (may pass on retry)
    chunks INTEGER NOT NULL DEFAULT 0,
    pending_ids TEXT,               -- JSON ids being written while status is pending
    updated REAL
);
CREATE TABLE IF NOT EXISTS chunks (
    id TEXT PRIMARY KEY,            -- committed: present in the vector store
    path TEXT NOT NULL,
    hash TEXT NOT NULL              -- sha256 of the chunk text, to reuse embeddings
);
CREATE INDEX IF NOT EXISTS chunks_path ON chunks (path);
CREATE INDEX IF NOT EXISTS chunks_hash ON chunks (hash);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    seconds REAL NOT NULL,
    summary TEXT NOT NULL
);
"""

# Copies of the chunk settings older manifests kept and nothing read (``files.chunker`` holds them).
_DROPPED_COLUMNS = ("chunk_tokens", "chunk_overlap")

# Bumped when the keyword analysis (rag.text.terms) changes: older files re-analyse their stored texts.
KEYWORD_VERSION = 3

# kw_chunks holds the text and what filters and citations need; kw is an external-content FTS5
# index over its `terms`.
KEYWORD = """
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

KEYWORD_INSERT = (
    "INSERT OR REPLACE INTO kw_chunks (id, path, source, kind, page, meta, text, terms) VALUES (?,?,?,?,?,?,?,?)"
)


# -- the catalog's rows ----------------------------------------------------------------------
@dataclass
class FileRow:
    path: str
    root: str
    source: str
    kind: str | None
    size: int | None
    mtime_ns: int | None
    hash: str | None
    chunker: str | None
    status: str
    error: str | None
    error_kind: str | None
    chunks: int
    pending_ids: list[str]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> FileRow:
        d = dict(row)
        d["pending_ids"] = json.loads(d["pending_ids"] or "[]")
        return cls(**{name: d[name] for name in cls.__dataclass_fields__})


@dataclass
class Committed:
    """What a file holds in the store after a successful write."""

    path: str
    root: str
    source: str
    kind: str
    size: int
    mtime_ns: int
    hash: str
    chunker: str
    chunks: list[tuple[str, str]]  # (chunk id, chunk hash)
    docs: Sequence[StoredChunk] = ()  # texts and metadata for the keyword index


@dataclass
class Failed:
    """A file that failed: its row says why, and it holds no chunks."""

    path: str
    root: str
    source: str
    kind: str | None
    size: int | None
    mtime_ns: int | None
    error: str
    error_kind: str


def install(db: sqlite3.Connection) -> None:
    """Create both groups of tables, or bring older ones up to date (an autocommit connection)."""
    db.executescript(CATALOG)
    _migrate_catalog(db)
    _install_keyword(db)


def _migrate_catalog(db: sqlite3.Connection) -> None:
    """Drop what older manifests kept and nothing reads: the ``meta`` table and the per-file chunk
    settings columns. Checked again inside the transaction: another process may be doing it too."""

    def stale() -> list[str]:
        cols = {r[1] for r in db.execute("PRAGMA table_info(files)")}
        has_meta = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        return [c for c in _DROPPED_COLUMNS if c in cols] + (["meta"] if has_meta else [])

    if not stale():
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for name in stale():
            db.execute("DROP TABLE meta" if name == "meta" else f"ALTER TABLE files DROP COLUMN {name}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _install_keyword(db: sqlite3.Connection) -> None:
    """The keyword tables at ``KEYWORD_VERSION``: older ones are brought up by re-analysing the
    stored texts (crash-safe: the version is set last, so an interrupted upgrade is redone)."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version >= KEYWORD_VERSION:
        db.executescript(KEYWORD)
        return
    db.executescript(
        "DROP TRIGGER IF EXISTS kw_chunks_ai; DROP TRIGGER IF EXISTS kw_chunks_ad; "
        "DROP TABLE IF EXISTS kw_vocab; DROP TABLE IF EXISTS kw;"
    )
    db.executescript(KEYWORD)
    rows = db.execute("SELECT rowid, text FROM kw_chunks").fetchall()
    if rows:
        db.executemany("UPDATE kw_chunks SET terms = ? WHERE rowid = ?", [(" ".join(terms(t)), r) for r, t in rows])
        db.execute("INSERT INTO kw (kw) VALUES ('rebuild')")
        db.execute("UPDATE kw_state SET gen = gen + 1")
    db.execute(f"PRAGMA user_version = {KEYWORD_VERSION}")


def keyword_rows(path: str, chunks: Sequence[StoredChunk]) -> list[tuple[Any, ...]]:
    """``kw_chunks`` rows (for ``KEYWORD_INSERT``) for one file's chunks."""
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


def keyword_missing(db: sqlite3.Connection) -> list[tuple[str, str]]:
    """(chunk id, path) committed in the catalog but absent from the keyword index: a manifest
    written before the keyword index existed."""
    sql = "SELECT c.id, c.path FROM chunks c LEFT JOIN kw_chunks k ON k.id = c.id WHERE k.id IS NULL"
    return [(r[0], r[1]) for r in db.execute(sql)]
