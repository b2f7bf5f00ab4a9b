"""Text analysis, once: the terms keyword search indexes, the content terms that match a sentence
to a passage, sentences with their character spans, the language of a question, and token
estimates. Keyword search, citation attribution, answer checking, quoting and prompt fitting all
use these, so a Chinese sentence is split, matched and counted the same way everywhere.

Two character classes, on purpose:
- ``CJK``: Han and kana, scripts written without spaces between words, analysed as character
  bigrams (the usual approach with no word segmenter);
- ``WIDE``: those plus Hangul (written with spaces, so words stay words), each character about
  one token for the models we use.
"""

from __future__ import annotations

import functools
import re
import threading

import snowballstemmer

CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK = re.compile(f"[{CJK_CLASS}]+")
WIDE = re.compile(f"[{CJK_CLASS}\uac00-\ud7af]")

STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers him his how i if in into is it its itself just me more most my no nor not of
    off on once only or other our ours out over own same she should so some such than that the their
    theirs them then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours""".split()  # noqa: SIM905
)

_WORD = re.compile(r"\w+")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_stemmers = threading.local()  # Snowball stemmer objects are not thread-safe


# -- keyword terms (persisted in the keyword index: a change here bumps ingest.schema.KEYWORD_VERSION) ----
@functools.lru_cache(maxsize=100_000)
def stem(word: str) -> str:
    if not (word.isascii() and word.isalpha()):
        return word  # identifiers, numbers, other scripts: as they are
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        stemmer = _stemmers.english = snowballstemmer.stemmer("english")
    return str(stemmer.stemWord(word))


def _word_terms(word: str, out: list[str]) -> None:
    lower = word.lower()
    parts = [p for p in word.split("_") if p]
    if len(parts) == 1 and (word.isupper() or not any(c.isupper() for c in word[1:])):
        if len(lower) > 1 and lower not in STOPWORDS:
            out.append(stem(lower))
        return
    if len(lower.strip("_")) > 1:
        out.append(lower)  # the identifier whole: an exact name match is the strongest signal
    for part in parts:
        split = any(c.isupper() for c in part[1:]) and not part.isupper()
        for sub in (_CAMEL.findall(part) if split else None) or [part]:
            sub = sub.lower()
            if len(sub) > 1 and sub not in STOPWORDS:
                out.append(stem(sub))


def terms(text: str) -> list[str]:
    """The keyword index's terms of ``text``: words lower-cased and stemmed (no stopwords),
    identifiers whole and in parts, Chinese and Japanese as overlapping character bigrams
    (a lone character as itself)."""
    out: list[str] = []
    for word in _WORD.findall(text):
        pos = 0
        for m in CJK.finditer(word):
            if m.start() > pos:
                _word_terms(word[pos : m.start()], out)
            run = m.group()
            if len(run) == 1:
                out.append(run)
            else:
                out.extend(run[i : i + 2] for i in range(len(run) - 1))
            pos = m.end()
        if pos < len(word):
            _word_terms(word[pos:], out)
    return out


def content_terms(text: str) -> set[str]:
    """The terms that say what a sentence is about, for matching it to a passage: the keyword
    terms as a set (so ``warranties`` matches ``warranty`` and a Chinese sentence its bigrams)."""
    return set(terms(text))


# -- sentences ---------------------------------------------------------------------------------
# A sentence runs to its full stop (Western or Chinese) and takes the citation markers right after
# it ("... lumens.[1] Next"). A full stop inside a number or version (3.5, v1.2.3) or an abbreviation
# followed by a lower-case word does not end it; a blank line always does.
_SENTENCE_END = re.compile(r"(?:[.!?](?=\s|$|\[)|[。！？；]|\n\s*\n)(?:\s*\[\d{1,3}(?:\s*,\s*\d{1,3})*\])*")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text``, leading and trailing spaces excluded."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _SENTENCE_END.finditer(text):
        nxt = text[m.end() : m.end() + 2].lstrip()
        if m.group().startswith(".") and nxt[:1].islower():
            continue  # "e.g. the", "approx. five"
        _add_span(text, pos, m.end(), spans)
        pos = m.end()
    _add_span(text, pos, len(text), spans)
    return spans


def _add_span(text: str, start: int, end: int, out: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        out.append((start, end))


def sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]


# -- language and size -------------------------------------------------------------------------
# Chinese grammar: particles, question words, full-width end marks. A question that has them is
# written in Chinese however long the commands it names ("set datafile missing 有什么作用？"); an
# English one that names a Chinese term has none ("What does 保修期 mean?").
_CHINESE_GRAMMAR = re.compile(f"[的了吗呢吧么什怎哪谁是在有][{CJK_CLASS}]|[{CJK_CLASS}][的了吗呢吧么]|[？。！]")


def is_chinese(text: str) -> bool:
    """True when ``text`` is written in Chinese (or Japanese): at least 30% of its letters are CJK,
    or it has Chinese grammar around them. Identifiers, commands and numbers in a Chinese question
    do not make it English."""
    letters = sum(1 for c in text if c.isalpha())
    if not letters:
        return False
    wide = sum(len(m) for m in CJK.findall(text))
    return wide / letters >= 0.3 or (wide >= 2 and _CHINESE_GRAMMAR.search(text) is not None)


def language(text: str) -> str:
    """``"zh"`` or ``"en"``: the two languages our answers, refusals and quotes are written in."""
    return "zh" if is_chinese(text) else "en"


def estimate_tokens(text: str) -> int:
    """Tokens without a tokenizer: one per CJK or Hangul character, one per ~4 other characters.
    It over-counts English slightly for the models we use, which is the safe side for fitting."""
    wide = len(WIDE.findall(text))
    return wide + (len(text) - wide + 3) // 4
