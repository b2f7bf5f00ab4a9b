"""Search modes, filters and the fusion of dense and keyword results.

Three modes: ``dense`` (Chroma, cosine similarity), ``keyword`` (BM25 over the
same chunks, ``rag.keyword``) and ``hybrid`` (both, fused; the default).

How ``hybrid`` fuses, and why (measured on both eval sets with
benchmarks/fusion_tuning.py; figures in docs/benchmarks.md): plain reciprocal
rank fusion gives a weak ranking the same say as a strong one and loses to the
better input on both sets. We instead
1. take ``depth`` (100) candidates from each side: a chunk ranked 40th by one side
   and 2nd by the other must be seen by both;
2. normalise each side's scores to [0, 1] within its candidates (min-max), so an
   unbounded BM25 score and a cosine similarity become comparable, and the best
   of each side counts fully however the absolute scores run for that query;
3. score every candidate ``0.6 * dense + 0.4 * keyword`` (a candidate missing from
   one side gets 0 there).
Weights 0.55-0.6 at depths 50-100 reach the better input on both sets (depth 75-100
is ahead on all four figures); 0.5 or 0.7, depth 20, RRF at any depth or weight, and
more keyword weight for queries with identifiers or numbers each lose on at least
one set; z-score normalisation at w 0.6 ties.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from rag.errors import InvalidRequestError
from rag.store import Hit

Mode = Literal["dense", "keyword", "hybrid"]
MODES: tuple[Mode, ...] = ("dense", "keyword", "hybrid")


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


def check_mode(mode: str) -> Mode:
    if mode not in MODES:
        raise InvalidRequestError(f"Unknown search mode '{mode}': use one of {', '.join(MODES)}.")
    return mode  # type: ignore[return-value]
