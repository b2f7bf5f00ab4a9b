"""The sentences of a passage as quote mode (``rag.quote``) takes them: ``rag.text.sentence_spans``,
with over-long ones (tables, lists without full stops) cut at lines and then at spaces, and a title
line over a sentence (a PDF's "Warranty and Service\nThe X200 is ...") split off as its own."""

from __future__ import annotations

import re

from rag.text import STOPWORDS, sentence_spans

MAX_SENTENCE_CHARS = 400  # longer "sentences" are cut at lines, then at spaces


def _heading_line(line: str, rest: str) -> bool:
    """A first line that is a title over the sentence (Markdown "## ...", or a PDF's heading line:
    short, no closing punctuation, the next line starting with a capital), not a wrapped line."""
    line = line.strip()
    if line.startswith("#"):
        return True
    words = line.split()
    if not words or len(words) > 8 or line[-1] in ".,;:!?。，；：！？" or words[-1].lower() in STOPWORDS:
        return False
    return rest.lstrip()[:1].isupper() or rest.lstrip()[:1].isdigit()


def passage_spans(text: str) -> list[tuple[int, int, bool]]:
    """``(start, end, title)`` of the sentences of a passage: ``sentence_spans``, with long ones cut
    at lines and a title line over a sentence (a PDF's "Warranty and Service\nThe X200 is ...")
    split off as a sentence of its own, marked ``title``."""
    out: list[tuple[int, int, bool]] = []
    for a, b in sentence_spans(text):
        pieces = [(a, b)]
        if b - a > MAX_SENTENCE_CHARS:
            pieces, pos = [], a
            for m in re.finditer(r"\n", text[a:b]):
                pieces.append((pos, a + m.start()))
                pos = a + m.end()
            pieces.append((pos, b))
            pieces = [w for piece in pieces for w in _windows(text, *piece)]
        for s, e in pieces:
            while (
                _line_start(text, s) and (nl := text.find("\n", s, e)) != -1 and _heading_line(text[s:nl], text[nl:e])
            ):
                out.append((s, nl, True))
                s = nl + 1
            title = _line_start(text, s) and _heading_line(text[s:e], "A") and not text[s:e].startswith("|")
            out.append((s, e, title))
    return [(s, e, t) for s, e, t in (_trim(text, *span) for span in out) if e > s]


def _windows(text: str, s: int, e: int) -> list[tuple[int, int]]:
    """``[s, e)`` in pieces of at most ``MAX_SENTENCE_CHARS``, cut at spaces where there are some."""
    out = []
    while e - s > MAX_SENTENCE_CHARS:
        cut = text.rfind(" ", s + MAX_SENTENCE_CHARS // 2, s + MAX_SENTENCE_CHARS)
        cut = cut if cut > s else s + MAX_SENTENCE_CHARS
        out.append((s, cut))
        s = cut
    out.append((s, e))
    return out


def _line_start(text: str, pos: int) -> bool:
    """True when only spaces stand between ``pos`` and the start of its line."""
    return not text[text.rfind("\n", 0, pos) + 1 : pos].strip()


def _trim(text: str, s: int, e: int, title: bool) -> tuple[int, int, bool]:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e, title
