"""The ingest manifest: one SQLite file beside the index recording, per file, what is in the
vector store and why (its tables: ``ingest.schema``).

It is what makes reruns cheap (size + mtime, then content hash), renames free (embeddings are
found again by chunk hash) and crashes harmless: the rows it writes are steps of the storage rule,
which ``ingest.index.Index`` runs (pending marks before the store is touched, one commit after).
This module is the SQL of each step; the order is the Index's.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ingest import schema
from ingest.schema import Committed, Failed, FileRow
from rag.sqlite_pool import POOL_SIZE, ConnectionPool
from rag.store import StoredChunk


def under(prefix: str) -> tuple[str, str]:
    """SQL LIKE-free bounds for paths equal to or inside ``prefix``."""
    return prefix.rstrip("/") + "/", prefix.rstrip("/") + "0"  # '0' sorts right after '/'


def manifest_path(index_dir: Path, collection: str, chroma_url: str | None) -> Path:
    """One manifest per collection and store, in the local index directory (also in
    server mode: the manifest belongs to the machine that ingests)."""
    if chroma_url:
        url = urlparse(chroma_url)
        where = f"{url.hostname or 'localhost'}_{url.port or 8000}"
        return index_dir / "manifests" / f"{collection}@{where}.sqlite"
    return index_dir / "manifests" / f"{collection}.sqlite"


class Manifest:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self.db = self._connect()
        with self._lock, self.db:
            schema.install(self.db)
        # Readers for the parse threads: a few connections shared by however many threads come and go.
        self._readers = ConnectionPool(self._connect_reader, POOL_SIZE)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        db.row_factory = sqlite3.Row
        # WAL: a killed process loses no committed transaction, and readers do not block the writer.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # INSERT OR REPLACE must fire the delete triggers that keep the keyword index in step.
        db.execute("PRAGMA recursive_triggers=ON")
        return db

    def _connect_reader(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA query_only=ON")
        return db

    def close(self) -> None:
        self._readers.close()
        with self._lock:
            self.db.close()

    def _tx(self) -> Any:
        """``with self._tx():`` one IMMEDIATE transaction."""
        manifest = self

        class _Tx:
            def __enter__(self) -> sqlite3.Connection:
                manifest._lock.acquire()
                manifest.db.execute("BEGIN IMMEDIATE")
                return manifest.db

            def __exit__(self, exc_type: object, *rest: object) -> None:
                try:
                    manifest.db.execute("ROLLBACK" if exc_type else "COMMIT")
                finally:
                    manifest._lock.release()

        return _Tx()

    # -- settings and bookkeeping -----------------------------------------------------------
    def add_root(self, root: str, selection: dict[str, Any]) -> None:
        """Remember what was ingested and how, so `rag reindex` can do it again."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO roots (path, last_run, selection) VALUES (?, ?, ?) ON CONFLICT(path) DO UPDATE "
                "SET last_run = excluded.last_run, selection = excluded.selection",
                (root, time.time(), json.dumps(selection)),
            )

    def roots(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            rows = self.db.execute("SELECT path, selection FROM roots ORDER BY path").fetchall()
        return [(r["path"], json.loads(r["selection"] or "{}")) for r in rows]

    def forget_root(self, prefix: str) -> None:
        lo, hi = under(prefix)
        with self._tx() as db:
            db.execute("DELETE FROM roots WHERE path = ? OR (path >= ? AND path < ?)", (prefix.rstrip("/"), lo, hi))

    def record_run(self, started: float, seconds: float, summary: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO runs (started, seconds, summary) VALUES (?, ?, ?)",
                (started, seconds, json.dumps(summary)),
            )

    def last_run(self) -> dict[str, Any] | None:
        with self._lock:
            row = self.db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        return {"started": row["started"], "seconds": row["seconds"], **json.loads(row["summary"])}

    def clear(self, *, roots: bool = False) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM files")
            db.execute("DELETE FROM chunks")
            if roots:
                db.execute("DELETE FROM roots")
                db.execute("DELETE FROM runs")

    # -- files -------------------------------------------------------------------------------
    def get(self, path: str) -> FileRow | None:
        with self._lock:
            row = self.db.execute("SELECT * FROM files WHERE path = ?", (path,)).fetchone()
        return FileRow.from_row(row) if row else None

    def files(self, prefix: str | None = None, status: str | None = None) -> list[FileRow]:
        sql, args = "SELECT * FROM files WHERE 1=1", []
        if prefix is not None:
            lo, hi = under(prefix)
            sql += " AND (path = ? OR (path >= ? AND path < ?))"
            args += [prefix.rstrip("/"), lo, hi]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        with self._lock:
            return [FileRow.from_row(r) for r in self.db.execute(sql + " ORDER BY path", args)]

    def chunk_ids(self, path: str) -> list[str]:
        with self._lock:
            return [r["id"] for r in self.db.execute("SELECT id FROM chunks WHERE path = ? ORDER BY id", (path,))]

    def all_chunk_ids(self) -> set[str]:
        with self._lock:
            return {r["id"] for r in self.db.execute("SELECT id FROM chunks")}

    def counts(self) -> dict[str, int]:
        with self._lock:
            out = {r["status"]: r["n"] for r in self.db.execute("SELECT status, COUNT(*) n FROM files GROUP BY status")}
            out["chunks"] = self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return out

    def find_by_chunk_hash(self, hashes: Iterable[str]) -> dict[str, str]:
        """chunk hash -> the id of a committed chunk with that text. Called from the parse
        threads, so it reads through a pooled connection of its own (WAL: never blocked by the writer)."""
        found: dict[str, str] = {}
        batch = list(dict.fromkeys(hashes))
        with self._readers.connection() as db:
            for i in range(0, len(batch), 500):
                part = batch[i : i + 500]
                marks = ",".join("?" * len(part))
                for r in db.execute(f"SELECT hash, id FROM chunks WHERE hash IN ({marks})", part):
                    found.setdefault(r["hash"], r["id"])
        return found

    # -- the write protocol: pending, then commit ----------------------------------------------
    def mark_pending(self, items: Sequence[tuple[str, str, str, list[str]]]) -> None:
        """Before writing the store: (path, root, source, ids about to be written) per file."""
        now = time.time()
        with self._tx() as db:
            for path, root, source, ids in items:
                db.execute(
                    "INSERT INTO files (path, root, source, status, pending_ids, updated) "
                    "VALUES (?, ?, ?, 'pending', ?, ?) ON CONFLICT(path) DO UPDATE SET "
                    "status = 'pending', pending_ids = excluded.pending_ids, updated = excluded.updated",
                    (path, root, source, json.dumps(ids), now),
                )

    def commit(
        self,
        done: Sequence[Committed],
        failed: Sequence[Failed] = (),
        removed: Sequence[str] = (),
        touched: Sequence[tuple[str, int, int]] = (),
    ) -> None:
        """One transaction: the files written (their rows, ``chunks`` rows and keyword rows), the
        files that failed or went away (no chunks left), and files only touched (same content, new
        mtime: remembered so the next run takes the fast path)."""
        now = time.time()
        with self._tx() as db:
            for c in done:
                db.execute("DELETE FROM chunks WHERE path = ?", (c.path,))
                db.executemany(
                    "INSERT OR REPLACE INTO chunks (id, path, hash) VALUES (?, ?, ?)",
                    [(cid, c.path, h) for cid, h in c.chunks],
                )
                db.execute(
                    "UPDATE files SET root = ?, source = ?, kind = ?, size = ?, mtime_ns = ?, hash = ?, chunker = ?, "
                    "status = 'ok', error = NULL, error_kind = NULL, chunks = ?, pending_ids = NULL, updated = ? "
                    "WHERE path = ?",
                    (c.root, c.source, c.kind, c.size, c.mtime_ns, c.hash, c.chunker, len(c.chunks), now, c.path),
                )
                if c.docs:
                    db.executemany(schema.KEYWORD_INSERT, schema.keyword_rows(c.path, c.docs))
            for f in failed:
                db.execute("DELETE FROM chunks WHERE path = ?", (f.path,))
                db.execute(
                    "INSERT INTO files (path, root, source, kind, size, mtime_ns, status, error, error_kind, chunks, "
                    "updated) VALUES (?, ?, ?, ?, ?, ?, 'failed', ?, ?, 0, ?) ON CONFLICT(path) DO UPDATE SET "
                    "root = excluded.root, source = excluded.source, kind = excluded.kind, size = excluded.size, "
                    "mtime_ns = excluded.mtime_ns, hash = NULL, status = 'failed', error = excluded.error, "
                    "error_kind = excluded.error_kind, chunks = 0, pending_ids = NULL, updated = excluded.updated",
                    (f.path, f.root, f.source, f.kind, f.size, f.mtime_ns, f.error, f.error_kind, now),
                )
            _forget(db, removed)
            db.executemany("UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", [(s, m, p) for p, s, m in touched])

    def forget(self, paths: Sequence[str]) -> None:
        """Drop these files' rows (their chunks' keyword rows go with them, by trigger)."""
        with self._tx() as db:
            _forget(db, paths)

    # -- recovery --------------------------------------------------------------------------------
    def pending(self) -> list[FileRow]:
        return self.files(status="pending")

    def invalidate(self, paths: Iterable[str]) -> None:
        """Force these files to be re-ingested on the next run (their store content is suspect)."""
        with self._tx() as db:
            for path in paths:
                db.execute(
                    "UPDATE files SET hash = NULL, status = 'stale', pending_ids = NULL WHERE path = ?",
                    (path,),
                )

    def paths_of_chunks(self, ids: Iterable[str]) -> set[str]:
        batch = list(ids)
        out: set[str] = set()
        with self._lock:
            for i in range(0, len(batch), 500):
                part = batch[i : i + 500]
                marks = ",".join("?" * len(part))
                out.update(r["path"] for r in self.db.execute(f"SELECT path FROM chunks WHERE id IN ({marks})", part))
        return out

    # -- the keyword index (see rag.keyword) -------------------------------------------------------
    def keyword_missing(self) -> list[tuple[str, str]]:
        """(chunk id, path) of committed chunks the keyword index lacks (an older manifest)."""
        with self._lock:
            return schema.keyword_missing(self.db)

    def add_keyword(self, items: Sequence[tuple[str, StoredChunk]]) -> None:
        """Backfill keyword rows for committed chunks, (path, chunk) read back from the store."""
        if not items:
            return
        with self._tx() as db:
            ids = [c.id for _, c in items]
            marks = ",".join("?" * len(ids))
            committed = {r[0] for r in db.execute(f"SELECT id FROM chunks WHERE id IN ({marks})", ids)}
            rows = [row for path, c in items if c.id in committed for row in schema.keyword_rows(path, [c])]
            db.executemany(schema.KEYWORD_INSERT, rows)

    def iter_sources(self) -> Iterator[tuple[str, int]]:
        with self._lock:
            rows = self.db.execute("SELECT source, chunks FROM files WHERE status = 'ok' ORDER BY source").fetchall()
        for r in rows:
            yield r["source"], r["chunks"]


def _forget(db: sqlite3.Connection, paths: Iterable[str]) -> None:
    for path in paths:
        db.execute("DELETE FROM chunks WHERE path = ?", (path,))
        db.execute("DELETE FROM files WHERE path = ?", (path,))
