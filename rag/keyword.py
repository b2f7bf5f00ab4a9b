"""The keyword index: BM25 (SQLite FTS5) over exactly the chunks in the vector store.

It lives in the ingest manifest's SQLite file, and its rows are written in the
same transaction that commits a file's chunks (and deleted by a trigger when the
manifest drops them), so it always holds what the manifest says is committed:
crash recovery of the manifest is recovery of the keyword index too. The tables, their
triggers and their migrations are defined with the manifest's (``ingest.schema``); this
module only reads them.

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

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rag import bm25, glossary
from rag.bm25 import MemoryBM25
from rag.sqlite_pool import POOL_SIZE, ConnectionPool
from rag.store import Hit
from rag.text import CJK, STOPWORDS, stem, terms

# Re-exported: the analysis lives in rag.text, the connection pool in rag.sqlite_pool.
__all__ = ["POOL_SIZE", "STOPWORDS", "ConnectionPool", "KeywordIndex", "Scope", "stem", "terms"]


def match_expression(query: str | list[str]) -> str | None:
    """An FTS5 query: any of the terms (BM25 ranks documents with more and rarer ones first)."""
    unique = list(dict.fromkeys(terms(query) if isinstance(query, str) else query))
    if not unique:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in unique)


@dataclass
class Scope:
    """Where a search may look, resolved to SQL: allowed file paths (None = all) and a page range."""

    paths: list[str] | None = None
    page_min: int | None = None
    page_max: int | None = None


class KeywordIndex:
    """Reads the keyword tables of a manifest file through a small pool of read-only
    connections (WAL: never blocked by an ingest writing the same file)."""

    def __init__(self, path: Path, memory: bool = True, connections: int = POOL_SIZE) -> None:
        self.path = path
        self._memory = MemoryBM25() if memory else None
        self._stats: MemoryBM25 | None = self._memory
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
        for memory in {id(m): m for m in (self._memory, self._stats) if m is not None}.values():
            memory.invalidate()

    def search(self, query: str, n: int, scope: Scope | None = None, *, texts: bool = True) -> list[Hit]:
        """The ``n`` best chunks by BM25; ``score`` is BM25 (higher is better, unbounded).
        ``texts=False`` leaves text and metadata out (fusion needs only ids and scores;
        ``fetch`` fills in the few hits that survive it)."""
        try:
            words = self.query_terms(query)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
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

    def matches(self, query: str, ids: Sequence[str]) -> bm25.Matches:
        """How the query's terms meet the chunks ``ids`` (BM25, idf mass of the terms each holds;
        ``rag.bm25.match``): the keyword signals of calibrated relevance, for chunks found by
        either side. Always from the in-memory build (made here if ``memory=False``)."""
        try:
            built = self._built()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return bm25.Matches()
            raise
        words, glossed = self._lookup(query, lambda: built)
        return replace(bm25.match(built, words, ids), glossed=glossed)

    def query_terms(self, query: str) -> list[str]:
        """The terms a search for ``query`` looks for: its own, and for a Chinese question on
        documents that are not Chinese, the English senses of its words (``rag.glossary``)."""
        return self._lookup(query, self._built)[0]

    def _built(self) -> bm25.Built:
        if self._stats is None:
            self._stats = self._memory or MemoryBM25()
        with self.pool.connection() as db:
            gen = _generation(db)
        return self._stats.current(gen, self._open)

    @staticmethod
    def _lookup(query: str, built: Callable[[], bm25.Built]) -> tuple[list[str], bool]:
        """The query's terms, and whether its Chinese words were looked up in English.
        ``built`` is asked for only when the query has Chinese words to look up."""
        own = list(dict.fromkeys(terms(query)))
        content = glossary.content_words(query)
        if not content:
            return own, False
        index = built()
        vocab = index.vocab
        # At most half its Chinese words in any chunk, in documents mostly not in Chinese: they do
        # not say it in Chinese. (In Chinese documents, such a question is off their subject.)
        if index.chinese >= 0.5 or sum(all(t in vocab for t in terms(w)) for w in content) * 2 > len(content):
            return own, False
        english = [t for t in glossary.english_terms(query) if t not in own]
        return [t for t in own if not CJK.match(t) or t in vocab] + english, True

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

    def close(self) -> None:
        self.pool.close()


def _generation(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT gen FROM kw_state").fetchone()
    return int(row[0]) if row else 0
