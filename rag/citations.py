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


_WORD = re.compile(r"[a-z0-9]+(?:[.'-][a-z0-9]+)*|[\u3400-\u9fff]", re.IGNORECASE)
_STOPWORDS = (
    "a an the of to in on for and or is are was were be been it its this that with as by at from which can "
    "you your we our i not no do does how what when where who why will would should could may"
)
_STOP = frozenset(_STOPWORDS.split())
# A sentence with the markers that follow its full stop ("... lumens.[1] Next").
_SENTENCES = re.compile(r"[^.!?。！？]+(?:[.!?。！？]+|$)(?:\s*\[[\d,\s]+\])*")


def _terms(text: str) -> set[str]:
    words = [w.lower() for w in _WORD.findall(text)]
    terms = {w for w in words if w not in _STOP}
    # CJK has no spaces: character bigrams carry the meaning single characters do not.
    cjk = [w for w in words if len(w) == 1 and "\u3400" <= w <= "\u9fff"]
    terms |= {a + b for a, b in zip(cjk, cjk[1:], strict=False)}
    return terms


def attribute(answer: str, sources: list[str], *, cited: list[int], threshold: float = 0.5) -> list[Attribution]:
    """Citations for ``answer``: those the model cited, then for each sentence with
    no marker the source sharing most of its terms (at least ``threshold`` of them)."""
    out = [Attribution(n, False) for n in cited]
    source_terms = [_terms(s) for s in sources]
    for sentence in _SENTENCES.findall(answer):
        if MARKER.search(sentence):
            continue
        terms = _terms(sentence)
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
