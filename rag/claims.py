"""Every sentence checked: is each sentence of an answer backed by the passages it was written from?

``check_claims(text, passages)`` splits ``text`` into sentences (``rag.text.sentence_spans``; a
claim's span includes its trailing ``[n]`` markers, its ``text`` does not) and checks each against
the passages it cites first, then the others. A passage supports a sentence when

- **the hard facts agree**, checked against the passage's *window* (the sentences that best match
  the claim, up to three): every number (digits, English number words, Chinese numerals, dates,
  versions, percentages, prices) and every code-like token (``snake_case``, ``CamelCase``,
  ``--flags``, ``E42``, paths, backticked commands) of the claim appears there; every capitalised
  name appears in the passage; a claim saying "default"/"默认" is about a default the window states;
- **negations agree**: each clause of the claim has the same polarity (not/never/no/without/不/没有/
  无/非/未/禁止 ...) as the passage clause that matches it best;
- **the meaning is supported**: ``score`` >= ``min_score``, where ``score`` is the share of the
  claim's content terms (``rag.text.content_terms``) found in the window, averaged, when an
  embedder is given, with the cosine of the claim to its best passage sentence (rescaled to 0..1).

Trivial sentences (greetings, "I cannot find that in the documents.", fewer than 3 content terms
and no number or name) are *not checked*: ``supported`` is True, ``sources`` empty, ``score`` 1.0
and ``checked`` False, so a strict answer keeps them and a reader can tell them apart.
``verify(text, search)`` does the same for any text, retrieving the passages per sentence.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rag.citations import MARKER
from rag.facts import Facts, clauses, facts, names_missing, negated, numbers_missing, opposite, trivial
from rag.text import content_terms, sentence_spans

if TYPE_CHECKING:
    from rag.models import Embedder
    from rag.store import Hit

MIN_SCORE = 0.5  # chosen on the tuning half of data/eval/claims.jsonl (benchmarks/claims_accuracy.py)
COS_LO, COS_HI = 0.80, 0.92  # multilingual-e5-small: cosines below LO mean unrelated, above HI the same
WINDOW = 3  # passage sentences a claim may draw on


@dataclass
class Claim:
    text: str  # the sentence, markers stripped
    start: int  # span of the sentence in the checked text, its trailing [n] markers included
    end: int
    sources: list[int]  # 1-based numbers of the supporting passages, best first
    supported: bool
    score: float  # 0..1 support strength (of the best passage)
    reason: str | None = None  # why unsupported
    checked: bool = True  # False: a trivial sentence (greeting, refusal), supported without sources
    passages: list[Hit] = field(default_factory=list)  # verify(): the supporting hits (else the closest)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "sources": self.sources,
            "supported": self.supported,
            "score": round(self.score, 4),
            "reason": self.reason,
            "checked": self.checked,
        }
        if self.passages:
            out["passages"] = [h.to_dict() for h in self.passages]
        return out


@dataclass
class _Passage:
    sentences: list[str]
    terms: list[set[str]]
    facts: Facts  # of the whole passage
    vectors: list[list[float]] | None = None


@dataclass
class _Verdict:
    supported: bool
    score: float
    reason: str | None


def _prepare(passages: Sequence[str], embedder: Embedder | None) -> list[_Passage]:
    out = []
    for text in passages:
        sents = [text[a:b] for a, b in sentence_spans(text)] or [text]
        out.append(_Passage(sents, [content_terms(s) for s in sents], facts(text)))
    if embedder is not None:
        flat = [s for p in out for s in p.sentences]
        vectors = embedder.embed_documents(flat) if flat else []
        i = 0
        for p in out:
            p.vectors = vectors[i : i + len(p.sentences)]
            i += len(p.sentences)
    return out


def _cos(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return dot / (na * nb) if na and nb else 0.0


def _judge(claim: str, terms: set[str], vec: list[float] | None, p: _Passage, min_score: float) -> _Verdict:
    sims = [_cos(vec, v) for v in p.vectors] if vec is not None and p.vectors else None
    words = {t for t in terms if not t.isdigit()} or terms

    def rank(i: int) -> float:
        base = len(words & p.terms[i]) / len(words) if words else 0.0
        return base + (sims[i] if sims else 0.0)

    order = sorted(range(len(p.sentences)), key=rank, reverse=True)
    window = [order[0]]
    covered = set(words & p.terms[order[0]])
    for i in order[1:]:
        if len(window) >= WINDOW:
            break
        if len((words & p.terms[i]) - covered) >= 2:
            window.append(i)
            covered |= words & p.terms[i]
    window.sort()
    coverage = len(terms & set().union(*(p.terms[i] for i in window))) / len(terms) if terms else 0.0
    score = coverage
    if sims:
        best = max(sims[i] for i in window)
        score = (coverage + min(1.0, max(0.0, (best - COS_LO) / (COS_HI - COS_LO)))) / 2
    # Facts may also come from the sentences around the window (a heading, "this macro") and from
    # any sentence sharing two of the claim's words; the passage's first sentence if it is a heading.
    near = {j for i in window for j in (i - 1, i, i + 1) if 0 <= j < len(p.sentences)}
    near |= {i for i in range(len(p.sentences)) if len(words & p.terms[i]) >= 2}
    if len(p.sentences[0].split()) <= 12:
        near.add(0)
    near_text = " ".join(p.sentences[i] for i in sorted(near))
    claim_facts, near_facts = facts(claim), facts(near_text)
    missing = numbers_missing(claim_facts, near_facts)
    if missing:
        return _Verdict(False, score, f"number {missing} not in the sources")
    missing = names_missing(claim_facts.codes, near_facts.codes, near_text)
    if missing:
        return _Verdict(False, score, f"'{missing}' not in the sources")
    missing = names_missing(claim_facts.names, p.facts.names, " ".join(p.sentences))
    if missing:
        return _Verdict(False, score, f"name '{missing}' not in the sources")
    if claim_facts.default and not near_facts.default:
        return _Verdict(False, score, "the sources state no such default")
    reason = _polarity(claim, [c for i in window for c in clauses(p.sentences[i])])
    if reason:
        return _Verdict(False, score, reason)
    if score < min_score:
        return _Verdict(False, score, "meaning not supported")
    return _Verdict(True, score, None)


def _polarity(claim: str, passage_clauses: list[str]) -> str | None:
    """Each clause of the claim against the passage clause it matches best: same negation, and no
    word whose opposite the passage uses."""
    p_terms = [content_terms(c) for c in passage_clauses]
    for part in clauses(claim):
        t = content_terms(part)
        if len(t) < 2 or not passage_clauses:
            continue
        best = max(range(len(passage_clauses)), key=lambda i: len(t & p_terms[i]) / (1 + 0.01 * len(p_terms[i])))
        if not t & p_terms[best]:
            continue
        if negated(part) != negated(passage_clauses[best]):
            return "negation differs"
        if opposite(part, passage_clauses[best]):
            return "says the opposite of the sources"
    return None


def _sentences(text: str) -> list[tuple[int, int, str]]:
    out = []
    for a, b in sentence_spans(text):
        stripped = " ".join(MARKER.sub(" ", text[a:b]).split())
        stripped = re.sub(r"\s+([.,;:!?。，；：！？])", r"\1", stripped)
        if stripped:
            out.append((a, b, stripped))
    return out


def _check_one(
    claim: str,
    span: tuple[int, int],
    cited: list[int],
    passages: list[_Passage],
    embedder: Embedder | None,
    min_score: float,
) -> tuple[Claim, int | None]:
    """The claim, and the passage closest to supporting it (1-based; None when there is none)."""
    terms = content_terms(claim)
    if trivial(claim, terms):
        return Claim(claim, span[0], span[1], [], True, 1.0, None, checked=False), None
    vec = embedder.embed_query(claim) if embedder is not None and passages else None
    order = [n for n in cited if 1 <= n <= len(passages)]
    order += [n for n in range(1, len(passages) + 1) if n not in order]
    verdicts = {n: _judge(claim, terms, vec, passages[n - 1], min_score) for n in order}
    good = sorted((n for n in order if verdicts[n].supported), key=lambda n: -verdicts[n].score)
    if good:
        return Claim(claim, span[0], span[1], good, True, verdicts[good[0]].score, None), good[0]
    if not order:
        return Claim(claim, span[0], span[1], [], False, 0.0, "no passage to check against"), None
    # The reason from the passage the claim cites, else from the closest one.
    closest = max(order, key=lambda n: verdicts[n].score)
    first = next((n for n in order if n in cited), None) or closest
    return Claim(claim, span[0], span[1], [], False, verdicts[first].score, verdicts[first].reason), closest


def check_claims(
    text: str, passages: Sequence[str], *, embedder: Embedder | None = None, min_score: float = MIN_SCORE
) -> list[Claim]:
    """One ``Claim`` per sentence of ``text``, checked against ``passages`` (its ``[n]`` markers
    name them, 1-based: those first, then the others)."""
    prepared = _prepare(passages, embedder)
    out = []
    for a, b, claim in _sentences(text):
        cited = [int(x) for m in MARKER.finditer(text[a:b]) for x in re.split(r"\s*,\s*", m.group(1))]
        out.append(_check_one(claim, (a, b), cited, prepared, embedder, min_score)[0])
    return out


def verify(
    text: str,
    search: Callable[[str], list[Hit]],
    *,
    embedder: Embedder | None = None,
    min_score: float = MIN_SCORE,
) -> list[Claim]:
    """Check any text against the index: each sentence is searched for (``search(sentence)``) and
    checked against the hits. A claim's ``passages`` are its supporting hits, best first, and its
    ``sources`` number them (1-based); an unsupported claim has no sources and carries the closest
    hit in ``passages``, so the reader sees what it was compared with."""
    out = []
    for a, b, sentence in _sentences(text):
        if trivial(sentence, content_terms(sentence)):
            out.append(Claim(sentence, a, b, [], True, 1.0, None, checked=False))
            continue
        hits = search(sentence)
        prepared = _prepare([h.text for h in hits], embedder)
        claim, closest = _check_one(sentence, (a, b), [], prepared, embedder, min_score)
        if claim.supported:
            claim.passages = [hits[n - 1] for n in claim.sources]
            claim.sources = list(range(1, len(claim.passages) + 1))
        elif closest is not None:
            claim.passages = [hits[closest - 1]]
        out.append(claim)
    return out
