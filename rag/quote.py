"""Quote mode: answer with the passage sentences that best answer the question, verbatim, each
followed by its source marker, with no model call (nothing can be invented).

``quote(question, hits)`` scores every sentence of the hits (``rag.text.sentence_spans``) by
- coverage: the question's content terms it holds (``rag.text.content_terms``), each weighted by
  an IDF over the hits' sentences, so a rare term ("restocking") counts more than one every
  sentence has ("item"); question words ("how long", "多久") do not count;
- embedding similarity to the question, when an embedder is given (min-max scaled over the
  sentences, so it ranks rather than gates);
- small bonuses: a number when the question asks how many / how long / when (``+NUMBER_BONUS``);
  the hit's rank or ``relevance``; the question's language;
- a penalty for a sentence that is itself a question (an FAQ's "Q: ..."), whose score passes to
  the sentence after it (the answer).

The best sentence is taken, then others scoring at least ``KEEP_RATIO`` of it, up to
``max_sentences``, no sentence twice (overlapping chunks repeat sentences). They are written
grouped by hit (the best hit first), in passage order within a hit, so adjacent sentences read as
in the document. With no sentence sharing a term with the question (and no embedder), the
answer is the refusal (``rag.prompt.refusal``) and ``parts`` is empty.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from rag.errors import RagError
from rag.passage_spans import passage_spans
from rag.prompt import refusal
from rag.store import Hit
from rag.text import CJK_CLASS, content_terms, is_chinese, language

if TYPE_CHECKING:  # rag.models loads the openai SDK; quoting needs only the interface
    from rag.models import Embedder

LEADS = {"en": "The documents say:", "zh": "文档中的相关内容："}
KEEP_RATIO = 0.6  # a second or third sentence must score this share of the best one
NUMBER_BONUS = 0.15
QUESTION_PENALTY = 0.4  # a sentence ending in "?" keeps this share of its score
HEADING_WEIGHT = 0.5  # a question term in the passage's heading path counts half in each sentence under it
TITLE_WEIGHT = 0.7  # a title line ("Version 2.4.0 - released 2025-10-02") is quoted only when it answers best

_QUANTITY = re.compile(
    r"\bhow (?:long|many|much|often|old|far|soon|big|large|fast|quickly|high|heavy|bright)\b|\bwhen\b"
    r"|\bwhat (?:time|date|day|year|percentage|percent|price|version|temperature)\b|\bwhich (?:version|year|date)\b"
    r"|多久|多少|多长|几|什么时候|何时|多大|多远|多快|多高|多重|哪一年|哪天|百分之",
    re.IGNORECASE,
)
_QUESTION_WORDS = re.compile(
    r"\bhow (?:long|many|much|often|old|far|soon)\b|多长时间|多久|多少|多长|什么时候|怎么办|怎么样|怎么|如何|为什么"
    r"|什么|哪些|哪个|是否|吗|呢",
    re.IGNORECASE,
)
_NUMBER = re.compile(
    r"\d|[零一二两三四五六七八九十百千万半]|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
    r"|fifteen|twenty|thirty|forty|fifty|sixty|hundred|thousand|once|twice|daily|weekly|monthly|yearly|annually)\b",
    re.IGNORECASE,
)
_NUMBERS = re.compile(r"(?<![\w.])\d+(?:[.,:/-]\d+)*(?![\w])")
# Question filler: "how long does it take", "what do I need to ..." name no content.
GENERIC = frozenset("take get make need happen mean go come give find want know tell doe let".split())  # noqa: SIM905
# A model or part code ("X200", "Q7", "G33.1", "E42"): what a question is about, by name.
_CODE = re.compile(r"(?<![\w.])[A-Za-z]{1,3}\d+(?:\.\d+)?[A-Za-z]?(?![\w])")
_CJK_GAP = re.compile(f"(?<=[{CJK_CLASS}，。；：！？、]) (?=[{CJK_CLASS}])")
_PIECE = re.compile(f"\\[\\d+\\]|[{CJK_CLASS}]{{1,2}}|[^\\s\\[{CJK_CLASS}]+|\\s+|.", re.DOTALL)


@dataclass
class QuotePart:
    n: int  # the hit's 1-based number, as in the marker "[n]"
    start: int  # the sentence's span in Quoted.text (its marker follows)
    end: int
    passage_start: int  # its span in hits[n - 1].text (exact characters)
    passage_end: int
    file_start: int | None = None  # its span in the file (the chunk's metadata "start" + the offset)
    file_end: int | None = None
    score: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"score": round(self.score, 4)}


@dataclass
class Quoted:
    text: str
    parts: list[QuotePart] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        """True when no sentence answered the question (``text`` is then the refusal)."""
        return not self.parts

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "parts": [p.to_dict() for p in self.parts], "refused": self.refused}


@dataclass
class _Sentence:
    hit: int  # 0-based
    index: int  # position among its hit's sentences
    start: int
    end: int
    text: str  # whitespace flattened
    terms: set[str]
    context: set[str]  # the terms of the passage's heading path and file name that the sentence lacks
    title: bool  # a heading line, not a sentence
    coverage: float = 0.0
    score: float = 0.0


def flat(text: str) -> str:
    """``text`` on one line: whitespace runs as one space, none between Chinese characters."""
    return _CJK_GAP.sub("", re.sub(r"\s+", " ", text).strip())


def _terms(text: str) -> set[str]:
    """Content terms, and numbers whole ("2.4.0", "08:00"), which ``content_terms`` splits or drops."""
    return content_terms(text) | set(_NUMBERS.findall(text))


def _sentences(hits: list[Hit]) -> list[_Sentence]:
    out: list[_Sentence] = []
    for h, hit in enumerate(hits):
        index = 0
        # What the passage is about: its heading path and its file's name ("x200-user-guide.pdf").
        name = re.sub(r"\.\w+$", "", hit.source.replace("\\", "/").rsplit("/", 1)[-1])
        context = _terms(str(hit.metadata.get("heading") or "") + " " + re.sub(r"[-_.]", " ", name))
        for s, e, title in passage_spans(hit.text):
            text = flat(hit.text[s:e])
            terms = _terms(text)
            if text.startswith("#") or len(terms) < (3 if is_chinese(text) else 2):
                continue  # Markdown headings, list numbers, fragments
            out.append(_Sentence(h, index, s, e, text, terms, context - terms, title))
            index += 1
    return out


def _question_terms(question: str) -> set[str]:
    wanted = _terms(_QUESTION_WORDS.sub(" ", question)) - GENERIC
    return wanted or _terms(question)


def _score(question: str, hits: list[Hit], cands: list[_Sentence], embedder: Embedder | None) -> bool:
    """Score ``cands`` in place; False when nothing relates to the question."""
    wanted = _question_terms(question)
    df: dict[str, int] = {}
    for c in cands:
        for t in (c.terms | c.context) & wanted:
            df[t] = df.get(t, 0) + 1
    idf = {t: math.log(1 + (len(cands) + 1) / (n + 0.5)) for t, n in df.items()}
    mass = sum(idf.values())
    for c in cands:
        own = sum(idf[t] for t in c.terms if t in idf)
        context = sum(idf[t] for t in c.context if t in idf)
        c.coverage = (own + HEADING_WEIGHT * context) / mass if mass else 0.0
    sims = [0.0] * len(cands)
    if embedder is not None:
        try:
            q = embedder.embed_query(question)
            vectors = embedder.embed_documents([c.text for c in cands])
            raw = [_cosine(q, v) for v in vectors]
            lo, hi = min(raw), max(raw)
            sims = [(r - lo) / (hi - lo) if hi - lo > 1e-9 else 0.0 for r in raw]
        except RagError:
            embedder = None  # quote by terms alone rather than fail the answer
    if not mass and embedder is None:
        return False
    quantity = bool(_QUANTITY.search(question))
    lang = language(question)
    for c, sim in zip(cands, sims, strict=True):
        score = 0.6 * c.coverage + 0.4 * sim if embedder is not None else c.coverage
        if quantity and c.coverage > 0 and _NUMBER.search(c.text):
            score += NUMBER_BONUS
        relevance = getattr(hits[c.hit], "relevance", None)
        rel = float(relevance) if isinstance(relevance, int | float) else 0.0
        score += 0.06 * rel if rel > 0 else 0.06 / (c.hit + 1)  # relevance 0: not ranked (yet)
        if language(c.text) == lang:
            score += 0.05
        c.score = score * TITLE_WEIGHT if c.title else score
    for prev, c in zip(cands, cands[1:], strict=False):
        if prev.text.endswith(("?", "？")):
            if prev.hit == c.hit and c.index == prev.index + 1:
                c.score = max(c.score, 0.9 * prev.score)
            prev.score *= QUESTION_PENALTY
    return any(c.coverage > 0 for c in cands) or embedder is not None


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def _pick(cands: list[_Sentence], wanted: set[str], max_sentences: int) -> list[_Sentence]:
    """The best sentence, then others close to it in score that either continue a chosen one
    (the next or previous sentence of its passage) or hold a question term not yet quoted."""
    ranked = sorted(cands, key=lambda c: (-c.score, c.hit, c.index))
    chosen: list[_Sentence] = []
    covered: set[str] = set()
    for c in ranked:
        if len(chosen) >= max_sentences or (chosen and c.score < KEEP_RATIO * chosen[0].score):
            break
        key = c.text.casefold()
        if any(key in o.text.casefold() or o.text.casefold() in key for o in chosen):
            continue
        adjacent = any(o.hit == c.hit and abs(o.index - c.index) == 1 for o in chosen)
        if chosen and not adjacent and not (c.terms & wanted) - covered:  # adds nothing asked for
            continue
        chosen.append(c)
        covered |= (c.terms | c.context) & wanted
    best: dict[int, float] = {}
    for c in chosen:
        best[c.hit] = max(best.get(c.hit, 0.0), c.score)
    return sorted(chosen, key=lambda c: (-best[c.hit], c.hit, c.index))


def codes(text: str) -> set[str]:
    """The model and part codes ``text`` names ("X200", "Q7", "G33.1"), casefolded."""
    return {m.casefold() for m in _CODE.findall(text)}


def _naming(question: str, hits: list[Hit]) -> set[int]:
    """The hits (0-based) that name a code the question names, in their text, heading or file
    name; all of them when the question names none or none does. A question about the X200 is not
    answered from the Q7's passage because both speak of a warranty."""
    asked = codes(question)
    if not asked:
        return set(range(len(hits)))
    naming = {
        h
        for h, hit in enumerate(hits)
        if asked & codes(f"{hit.text} {hit.metadata.get('heading') or ''} {re.sub(r'[-_/]', ' ', hit.source)}")
    }
    return naming or set(range(len(hits)))


def quote(question: str, hits: list[Hit], *, embedder: Embedder | None = None, max_sentences: int = 3) -> Quoted:
    """The quoted answer to ``question`` from ``hits`` (``[n]`` is ``hits[n - 1]``)."""
    naming = _naming(question, hits)
    cands = [c for c in _sentences(hits) if c.hit in naming]
    if not cands or not _score(question, hits, cands, embedder):
        return Quoted(refusal(question))
    lang = language(question)
    text = LEADS[lang] + "\n\n"
    parts: list[QuotePart] = []
    for c in _pick(cands, _question_terms(question), max(1, max_sentences)):
        if parts:
            text += "\n" if c.hit + 1 != parts[-1].n else ("" if is_chinese(c.text) else " ")
        start = len(text)
        text += c.text
        end = len(text)
        text += f"[{c.hit + 1}]" if is_chinese(c.text) else f" [{c.hit + 1}]"
        offset = hits[c.hit].metadata.get("start")
        base = offset if isinstance(offset, int) else None
        parts.append(
            QuotePart(
                c.hit + 1,
                start,
                end,
                c.start,
                c.end,
                None if base is None else base + c.start,
                None if base is None else base + c.end,
                c.score,
            )
        )
    return Quoted(text, parts)


def stream_pieces(quoted: Quoted) -> Iterator[str]:
    """``quoted.text`` in small pieces (a word with its following space, two Chinese characters,
    a whole marker), to stream as ``token`` events; the pieces join to the text exactly."""
    pending = ""
    for m in _PIECE.finditer(quoted.text):
        piece = m.group()
        if piece.isspace() and pending:
            yield pending + piece
            pending = ""
            continue
        if pending:
            yield pending
        pending = piece
    if pending:
        yield pending
