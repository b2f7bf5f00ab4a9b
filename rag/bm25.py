"""BM25 over the keyword index's rows, held in memory as numpy arrays.

SQLite FTS5 is the persistent, crash-safe keyword index, but an OR query over
50,000 chunks makes it compute BM25 for every chunk holding any query term: 20 to
100 ms here for ordinary questions, far above the query budget. This module scores
the same rows with the same formula (FTS5's ``bm25()``: k1 = 1.2, b = 0.75,
idf = ln((N - n + 0.5) / (n + 0.5)), at least 1e-6) in about a millisecond, by
summing each query term's precomputed column of weights.

It is built from ``kw_chunks`` (a second or two per 50,000 chunks) and rebuilt
when the table changes; ``kw_state.gen``, bumped by triggers on every insert and
delete, says when. A long-running service rebuilds in the background and keeps
answering from the previous build meanwhile (results are materialised from the
table, so a chunk deleted since is simply left out).
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rag.text import CJK

K1, B = 1.2, 0.75


@dataclass
class Built:
    gen: int
    rowids: np.ndarray  # doc index -> kw_chunks rowid
    ids: list[str]  # doc index -> chunk id
    paths: np.ndarray  # doc index -> index into path_names
    path_names: dict[str, int]
    pages: np.ndarray
    vocab: dict[str, int]
    indptr: np.ndarray  # term -> slice of docs/weights
    docs: np.ndarray
    weights: np.ndarray  # BM25 term-frequency part, idf applied at query time
    df: np.ndarray
    positions: dict[str, int] = field(default_factory=dict)  # chunk id -> doc index
    chinese: float = 0.0  # the share of term occurrences (postings) that are Chinese or Japanese

    @property
    def n(self) -> int:
        return len(self.rowids)

    def idf(self, word: str) -> float:
        """FTS5's idf; a term no chunk holds gets the idf of a term in none (the largest)."""
        t = self.vocab.get(word)
        return idf(self.n, int(self.df[t]) if t is not None else 0)


def idf(n: int, df: int) -> float:
    return max(math.log((n - df + 0.5) / (df + 0.5)), 1e-6)


@dataclass(frozen=True)
class Matches:
    """How a query's terms meet some chunks: what calibrated relevance (``rag.relevance``) needs.

    ``total_idf``: the idf mass of the query's distinct terms (terms no chunk holds count at the
    largest idf, ``ln(2N + 1)``); ``absent_idf``: the part of it no chunk holds; ``max_idf``:
    ``ln(2N + 1)``, to put idfs on a 0..1 scale. ``by_id``: chunk id -> (BM25, idf mass of the
    query terms it holds, the largest idf among them); chunks holding none are left out.
    ``absent_words``: how many of the query's word terms (Latin letters or digits, not CJK bigrams,
    which miss by mere paraphrase) no chunk holds: "ZFS", "HomeKit", "bitcoin" name what the
    documents never mention. ``glossed``: the query's Chinese words were looked up in English
    (``rag.glossary``; a Chinese question on documents that do not say it in Chinese), where
    cosines run lower and keyword coverage counts dictionary senses."""

    total_idf: float = 0.0
    absent_idf: float = 0.0
    max_idf: float = 1.0
    by_id: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    absent_words: int = 0
    glossed: bool = False


def build(db: sqlite3.Connection) -> Built:
    gen = int(db.execute("SELECT gen FROM kw_state").fetchone()[0])
    rows = db.execute("SELECT rowid, path, page, terms, id FROM kw_chunks ORDER BY rowid").fetchall()
    n = len(rows)
    path_names: dict[str, int] = {}
    paths = np.fromiter((path_names.setdefault(r[1], len(path_names)) for r in rows), dtype=np.int32, count=n)
    pages = np.fromiter((r[2] or 0 for r in rows), dtype=np.int32, count=n)
    rowids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    ids = [r[4] for r in rows]
    split = [r[3].split() for r in rows]
    lengths = np.fromiter((len(t) for t in split), dtype=np.int64, count=n)
    vocab: dict[str, int] = {}
    total = int(lengths.sum())
    term_ids = np.fromiter(
        (vocab.setdefault(t, len(vocab)) for toks in split for t in toks), dtype=np.int64, count=total
    )
    del split
    doc_ids = np.repeat(np.arange(n, dtype=np.int64), lengths)
    keys, tf = np.unique(term_ids * max(n, 1) + doc_ids, return_counts=True)  # sorted by term, then doc
    terms = keys // max(n, 1)
    docs = (keys % max(n, 1)).astype(np.int32)
    avgdl = float(lengths.mean()) if n else 1.0
    norm = K1 * (1 - B + B * lengths[docs] / avgdl)
    weights = (tf * (K1 + 1) / (tf + norm)).astype(np.float32)
    df = np.bincount(terms, minlength=len(vocab)).astype(np.int64)
    indptr = np.concatenate(([0], np.cumsum(df)))
    positions = {cid: i for i, cid in enumerate(ids)}
    cjk = np.fromiter((bool(CJK.match(t)) for t in vocab), dtype=bool, count=len(vocab))  # in id order
    chinese = float(df[cjk].sum() / max(int(df.sum()), 1))
    return Built(gen, rowids, ids, paths, path_names, pages, vocab, indptr, docs, weights, df, positions, chinese)


def _build(open_db: Callable[[], sqlite3.Connection]) -> Built:
    db = open_db()
    try:
        return build(db)
    finally:
        db.close()


def score(built: Built, words: list[str], n: int, mask: np.ndarray | None) -> list[tuple[int, str, float]]:
    """The ``n`` best (rowid, chunk id, BM25) for any of ``words``, among docs where ``mask`` is true."""
    cols = [built.vocab[w] for w in dict.fromkeys(words) if w in built.vocab]
    if not cols or n <= 0:
        return []
    parts_d, parts_w = [], []
    for t in cols:
        lo, hi = built.indptr[t], built.indptr[t + 1]
        parts_d.append(built.docs[lo:hi])
        parts_w.append(built.weights[lo:hi] * idf(built.n, int(built.df[t])))
    docs = np.concatenate(parts_d)
    scores = np.bincount(docs, weights=np.concatenate(parts_w), minlength=built.n)
    candidates = np.unique(docs)
    if mask is not None:
        candidates = candidates[mask[candidates]]
    top = candidates[np.argpartition(-scores[candidates], n - 1)[:n]] if len(candidates) > n else candidates
    ordered = top[np.lexsort((built.rowids[top], -scores[top]))]
    return [(int(built.rowids[d]), built.ids[d], float(scores[d])) for d in ordered]


def match(built: Built, words: list[str], ids: Sequence[str]) -> Matches:
    """BM25 and matched-term idf of the chunks ``ids`` (any chunks, ranked or not) for ``words``:
    a binary search of each query term's posting list (sorted by doc) per chunk."""
    unique = list(dict.fromkeys(words))
    max_idf = math.log(2 * built.n + 1) if built.n else 1.0
    total = absent = 0.0
    absent_words = 0
    cols: list[tuple[int, float]] = []
    for w in unique:
        t = built.vocab.get(w)
        w_idf = built.idf(w)
        total += w_idf
        if t is None:
            absent += w_idf
            absent_words += w.isascii() and any(c.isalnum() for c in w)
        else:
            cols.append((t, w_idf))
    known = [cid for cid in dict.fromkeys(ids) if cid in built.positions]
    if not cols or not known:
        return Matches(total, absent, max_idf, {}, absent_words)
    req = np.fromiter((built.positions[c] for c in known), dtype=np.int64, count=len(known))
    bm = np.zeros(len(req))
    mass = np.zeros(len(req))
    rare = np.zeros(len(req))
    for t, w_idf in cols:
        lo, hi = int(built.indptr[t]), int(built.indptr[t + 1])
        posting = built.docs[lo:hi]
        pos = np.minimum(np.searchsorted(posting, req), len(posting) - 1)
        found = posting[pos] == req
        bm += np.where(found, built.weights[lo + pos] * w_idf, 0.0)
        mass += found * w_idf
        rare = np.maximum(rare, found * w_idf)
    by_id = {c: (float(b), float(m), float(r)) for c, b, m, r in zip(known, bm, mass, rare, strict=True) if m > 0}
    return Matches(total, absent, max_idf, by_id, absent_words)


class MemoryBM25:
    """The in-memory scorer of one manifest database, kept in step with it."""

    def __init__(self) -> None:
        self._built: Built | None = None
        self._lock = threading.Lock()
        self._rebuilding: threading.Thread | None = None

    def invalidate(self) -> None:
        """Forget the build: the next query rebuilds before answering (this process just wrote)."""
        with self._lock:
            self._built = None

    def current(self, gen: int, open_db: Callable[[], sqlite3.Connection], *, wait: bool = False) -> Built:
        """The built index, for ``gen`` (``kw_state.gen`` as the caller just read it): rebuilt first
        if there is none (or ``wait``), in the background if it is stale. ``open_db`` opens the
        connection a build reads through (closed after it): a caller holds none while it waits."""
        built = self._built
        if built is not None and built.gen == gen:
            return built
        if built is None or wait:
            with self._lock:
                if self._built is None or self._built.gen != gen:
                    self._built = _build(open_db)
                return self._built
        if self._rebuilding is None or not self._rebuilding.is_alive():
            self._rebuilding = threading.Thread(target=self._rebuild, args=(open_db,), daemon=True)
            self._rebuilding.start()
        return built

    def _rebuild(self, open_db: Callable[[], sqlite3.Connection]) -> None:
        fresh = _build(open_db)
        with self._lock:
            if self._built is None or fresh.gen > self._built.gen:
                self._built = fresh

    def mask(
        self, built: Built, paths: list[str] | None, page_min: int | None, page_max: int | None
    ) -> np.ndarray | None:
        if paths is None and page_min is None and page_max is None:
            return None
        keep = np.ones(built.n, dtype=bool)
        if paths is not None:
            wanted = [built.path_names[p] for p in paths if p in built.path_names]
            keep &= np.isin(built.paths, np.array(wanted, dtype=np.int32))
        if page_min is not None:
            keep &= built.pages >= page_min
        if page_max is not None:
            keep &= built.pages <= page_max
        return keep
