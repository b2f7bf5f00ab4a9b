"""Citation markers: keep the valid ones, drop the rest, and attribute what the
model left uncited.

``MarkerFilter`` works on a token stream: a marker may arrive split across
deltas (``"[", "1", "]"``), so text that could still become a marker is held
back until it is decided. A marker naming no source is removed before it
reaches the user.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.text import content_terms, sentences

MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_PARTIAL = re.compile(r"\[[\d,\s]*$")
_MAX_MARKER_LEN = 80


class MarkerFilter:
    """Feed deltas in; get deltas out with only markers in ``1..n_sources``."""

    def __init__(self, n_sources: int) -> None:
        self.n = n_sources
        self._held = ""
        self.cited: list[int] = []  # in order of first appearance
        self.dropped: list[str] = []

    def feed(self, delta: str) -> str:
        text = self._held + delta
        self._held = ""
        partial = _PARTIAL.search(text)
        if partial and len(text) - partial.start() <= _MAX_MARKER_LEN:
            self._held = text[partial.start() :]
            text = text[: partial.start()]
        return self._clean(text)

    def flush(self) -> str:
        text, self._held = self._held, ""
        return self._clean(text)

    def _clean(self, text: str) -> str:
        def fix(m: re.Match[str]) -> str:
            nums = [int(x) for x in re.split(r"\s*,\s*", m.group(1))]
            good = [k for k in nums if 1 <= k <= self.n]
            if len(good) < len(nums):
                self.dropped.append(m.group(0))
            for k in good:
                if k not in self.cited:
                    self.cited.append(k)
            return "[" + ", ".join(map(str, good)) + "]" if good else ""

        return MARKER.sub(fix, text)


@dataclass
class Attribution:
    n: int
    inferred: bool  # True: matched by content overlap, not cited by the model


def attribute(answer: str, sources: list[str], *, cited: list[int], threshold: float = 0.5) -> list[Attribution]:
    """Citations for ``answer``: those the model cited, then for each sentence with
    no marker the source sharing most of its terms (at least ``threshold`` of them)."""
    out = [Attribution(n, False) for n in cited]
    source_terms = [content_terms(s) for s in sources]
    for sentence in sentences(answer):
        if MARKER.search(sentence):
            continue
        terms = content_terms(sentence)
        if len(terms) < 3:
            continue
        best, best_score = 0, 0.0
        for i, st in enumerate(source_terms, start=1):
            score = len(terms & st) / len(terms)
            if score > best_score:
                best, best_score = i, score
        if best and best_score >= threshold and all(a.n != best for a in out):
            out.append(Attribution(best, True))
    return out
