"""Search modes, filters and the fusion of dense and keyword results.

Three modes: ``dense`` (Chroma, cosine similarity), ``keyword`` (BM25 over the
same chunks, ``rag.keyword``) and ``hybrid`` (both, fused; the default).

How ``hybrid`` ranks (issue 14): ``depth`` (100) candidates from each side, every one scored
with calibrated relevance (``rag.relevance``: the probability that the passage is relevant, from
cosine similarity, BM25, query-term coverage, rare-term matches...), sorted by it. ``score`` is
the relevance too in hybrid; dense and keyword keep their own score (cosine, BM25) and order, and
get ``relevance`` beside it. ``rank`` is the one call a search makes after fetching both lists.

``fuse`` is the fusion hybrid used before (issue 5): min-max normalise each side's scores within
its candidates, score ``0.6 * dense + 0.4 * keyword``. Per-query normalisation made the best hit
score 1 whatever its quality, and a rare exact match lost to passages that merely looked alike;
it stays for the benchmarks that compare against it (benchmarks/fusion_tuning.py,
benchmarks/relevance_fit.py; figures in docs/benchmarks.md).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from rag import relevance
from rag.bm25 import Matches
from rag.errors import InvalidRequestError
from rag.store import Hit

Mode = Literal["dense", "keyword", "hybrid"]
MODES: tuple[Mode, ...] = ("dense", "keyword", "hybrid")
# Filters are matched against every file in Python: bounded, so one request cannot cost minutes
# (100,000 globs took 90 s of CPU before).
MAX_FILTER_PATTERNS = 64
MAX_PATTERN_CHARS = 256


@dataclass(frozen=True)
class Filters:
    """Which chunks a search may return. Empty means no restriction.

    ``paths``: source-path prefixes (``c3ref/``, ``docs/guide``) or globs (``*.md``,
    ``docs/**/intro*``; ``*`` also crosses ``/``), matched against the source as cited;
    an absolute path (``/home/me/notes``) is matched against the file's full path.
    ``types``: kinds (``pdf``, ``markdown``, ``html``, ``text``, ``code``) or extensions
    (``md``, ``.py``). ``pages``: an inclusive range; chunks without pages (anything but
    PDF) never match a page range.
    """

    paths: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    page_min: int | None = None
    page_max: int | None = None

    def __post_init__(self) -> None:
        for name in ("paths", "types"):
            values = getattr(self, name)
            if len(values) > MAX_FILTER_PATTERNS:
                raise InvalidRequestError(f"At most {MAX_FILTER_PATTERNS} {name} filters, not {len(values)}.")
            if any(len(v) > MAX_PATTERN_CHARS for v in values):
                raise InvalidRequestError(f"A {name} filter is longer than {MAX_PATTERN_CHARS} characters.")
        for name in ("page_min", "page_max"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise InvalidRequestError(f"Pages are numbered from 1; {name.replace('_', ' ')} {v} is invalid.")
        if self.page_min is not None and self.page_max is not None and self.page_min > self.page_max:
            raise InvalidRequestError(f"The page range {self.page_min}-{self.page_max} is empty.")

    @property
    def by_file(self) -> bool:
        return bool(self.paths or self.types)

    def matches_file(self, source: str, path: str, kind: str | None) -> bool:
        if self.paths and not any(_path_matches(p, source, path) for p in self.paths):
            return False
        if self.types:
            ext = source.rsplit(".", 1)[-1].lower() if "." in source.rsplit("/", 1)[-1] else ""
            wanted = {t.lower().lstrip(".") for t in self.types}
            if (kind or "") not in wanted and ext not in wanted:
                return False
        return True


def parse_pages(text: str | None) -> tuple[int | None, int | None]:
    """``"5"``, ``"3-7"``, ``"3-"`` or ``"-7"`` as (min, max)."""
    if text is None or not text.strip():
        return None, None
    m = re.fullmatch(r"\s*(\d*)\s*(-?)\s*(\d*)\s*", text)
    if not m or not (m.group(1) or m.group(3)) or (not m.group(2) and not m.group(1)):
        raise InvalidRequestError(f"Invalid page range '{text}': use 5, 3-7, 3- or -7.")
    lo = int(m.group(1)) if m.group(1) else None
    hi = int(m.group(3)) if m.group(3) else (lo if not m.group(2) else None)
    return lo, hi


def _path_matches(pattern: str, source: str, path: str) -> bool:
    target = path if pattern.startswith("/") else source
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(target, pattern)
    return target.startswith(pattern)


# -- fusion ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fusion:
    """The hybrid mode's one configuration (see the module docstring for the reasoning)."""

    depth: int = 100  # candidates taken from each side
    dense_weight: float = 0.6


def _minmax(hits: Sequence[Hit]) -> dict[str, float]:
    if not hits:
        return {}
    scores = [h.score for h in hits]
    lo, hi = min(scores), max(scores)
    if hi - lo <= 1e-12:
        return {h.id: 1.0 for h in hits}
    return {h.id: (h.score - lo) / (hi - lo) for h in hits}


def fuse(dense: Sequence[Hit], keyword: Sequence[Hit], k: int, fusion: Fusion = Fusion()) -> list[Hit]:
    """The top ``k`` of both lists by weighted, normalised score; ``score`` is the fused one (0-1)."""
    w = fusion.dense_weight
    d, kw = _minmax(dense), _minmax(keyword)
    by_id = {h.id: h for h in keyword} | {h.id: h for h in dense}
    fused = {cid: w * d.get(cid, 0.0) + (1 - w) * kw.get(cid, 0.0) for cid in by_id}
    ranked = sorted(fused, key=lambda cid: (-fused[cid], cid))[:k]
    return [replace(by_id[cid], score=fused[cid]) for cid in ranked]


class TermMatcher(Protocol):
    """What ``rank`` needs from the keyword index (``rag.keyword.KeywordIndex.matches``)."""

    def matches(self, query: str, ids: Sequence[str]) -> Matches: ...


def rank(query: str, dense: Sequence[Hit], keyword: Sequence[Hit], index: TermMatcher, mode: Mode) -> list[Hit]:
    """Every candidate with calibrated ``relevance`` set. ``hybrid``: both lists merged and sorted
    by relevance (``score`` = relevance); ``dense`` / ``keyword``: that mode's list, in its own
    order with its own score. ``dense`` holds cosine similarities (empty in keyword mode),
    ``keyword`` BM25 hits (empty in dense mode)."""
    if mode == "hybrid":
        by_id = {h.id: h for h in keyword} | {h.id: h for h in dense}
    else:
        by_id = {h.id: h for h in (keyword if mode == "keyword" else dense)}
    if not by_id:
        return []
    ids = list(by_id)
    matches = index.matches(query, ids)
    cosines = {h.id: h.score for h in dense}
    bm25 = {h.id: h.score for h in keyword}
    scores = relevance.score(relevance.candidates(ids, cosines, matches, bm25), matches, dense=mode != "keyword")
    rel = dict(zip(ids, scores, strict=True))
    if mode != "hybrid":
        return [replace(h, relevance=rel[h.id]) for h in by_id.values()]
    ordered = sorted(ids, key=lambda cid: (-rel[cid], cid))
    return [replace(by_id[cid], score=rel[cid], relevance=rel[cid]) for cid in ordered]


def check_mode(mode: str) -> Mode:
    if mode not in MODES:
        raise InvalidRequestError(f"Unknown search mode '{mode}': use one of {', '.join(MODES)}.")
    return mode  # type: ignore[return-value]
