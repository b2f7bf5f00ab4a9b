"""``rag eval``: retrieval quality of each search mode on a question set.

One JSON object per line::

    {"question": "...", "expected": [{"source": "relative/path", "page": 3}]}

``page`` is optional. A retrieved chunk is relevant when its source is the
expected one (or ends with ``/`` + it, so a corpus ingested from a parent folder
still matches) and, if a page is given, it is on that page. ``answer`` is free
text (kept, not scored) or a list of regular expressions, any of which matching
an answer means it is right (``rag.evaluate_answers``); ``answer_text`` a
readable answer. A line ``{"question": "...", "unanswerable": true}`` (no
``expected``) asks what the documents do not say: retrieval metrics leave it out;
it counts for refusal. Other fields (evidence, a note) are ignored.

Metrics over the top 10 chunks: hit@1/5/10 (a relevant chunk within the first
1/5/10), MRR (1 / rank of the first relevant chunk, 0 if none in the top 10) and
nDCG@10 with binary gains, where each expected location earns its gain once (a
second chunk from the same page is not a second success) and the ideal ranking
puts every expected location first.

Refusal at ``Settings.min_relevance``, per mode: a question would be refused when
its best hit's calibrated ``relevance`` is below the threshold. ``refused``: the
share of unanswerable lines that would be (want: high); ``wrongly_refused``: the
share of answerable lines that would be (want: low).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import InvalidRequestError
from rag.retrieval import Filters, Mode
from rag.store import Hit

if TYPE_CHECKING:
    from rag.engine import Rag

DEPTH = 10


@dataclass(frozen=True)
class Expected:
    source: str
    page: int | None = None

    def matches(self, hit: Hit) -> bool:
        same = hit.source == self.source or hit.source.endswith("/" + self.source)
        return same and (self.page is None or hit.page == self.page)


@dataclass
class Question:
    question: str
    expected: list[Expected]
    line: int
    answers: list[str] = field(default_factory=list)  # regexes, any matching = a right answer
    unanswerable: bool = False
    answer_text: str | None = None


def load_questions(path: Path) -> list[Question]:
    """Read and check a question file; errors name the line and what is wrong."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidRequestError(f"Cannot read the question file {path}: {exc.strerror or exc}") from exc
    out: list[Question] = []
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        where = f"{path}, line {n}"
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"{where}: not JSON ({exc.msg}).") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("question"), str) or not obj["question"].strip():
            raise InvalidRequestError(f'{where}: needs a non-empty "question" string.')
        answers, text = _answers(obj.get("answer"), where)
        if obj.get("answer_text") is not None:
            text = str(obj["answer_text"])
        if obj.get("unanswerable") is not None:
            if obj["unanswerable"] is not True or obj.get("expected"):
                raise InvalidRequestError(f'{where}: "unanswerable" must be true, on a line without "expected".')
            out.append(Question(obj["question"], [], n, answers, True, text))
            continue
        out.append(Question(obj["question"], _expected(obj.get("expected"), where), n, answers, False, text))
    if not out:
        raise InvalidRequestError(f"{path} holds no questions.")
    return out


def _expected(exp: object, where: str) -> list[Expected]:
    if not isinstance(exp, list) or not exp:
        raise InvalidRequestError(
            f'{where}: needs "expected": [{{"source": "path", "page": 3}}, ...] (or "unanswerable": true).'
        )
    expected = []
    for e in exp:
        if not isinstance(e, dict) or not isinstance(e.get("source"), str) or not e["source"]:
            raise InvalidRequestError(f'{where}: every expected entry needs a "source" path.')
        page = e.get("page")
        if page is not None and (not isinstance(page, int) or page < 1):
            raise InvalidRequestError(f'{where}: "page" must be a positive integer, not {page!r}.')
        expected.append(Expected(e["source"].strip("/"), page))
    return expected


def _answers(answer: object, where: str) -> tuple[list[str], str | None]:
    """(regexes, readable text) of an ``answer`` field: free text or a list of regexes."""
    if answer is None or isinstance(answer, str):
        return [], answer
    if not isinstance(answer, list) or not all(isinstance(a, str) and a for a in answer):
        raise InvalidRequestError(f'{where}: "answer" must be text or a list of regular expressions.')
    for a in answer:
        try:
            re.compile(a)
        except re.error as exc:
            raise InvalidRequestError(
                f"{where}: the answer pattern {a!r} is not a regular expression ({exc})."
            ) from exc
    return list(answer), None


def unknown_sources(questions: Sequence[Question], indexed: Sequence[str]) -> list[str]:
    """Expected sources that no indexed source matches: a wrong collection or folder, not a
    retrieval failure, so the harness says so rather than scoring zeros silently."""
    have = set(indexed)
    missing: dict[str, None] = {}
    for q in questions:
        for e in q.expected:
            if e.source not in have and not any(s.endswith("/" + e.source) for s in have):
                missing[e.source] = None
    return list(missing)


def ranks(hits: Sequence[Hit], expected: Sequence[Expected]) -> tuple[int | None, float]:
    """(rank of the first relevant hit or None, nDCG@10) for one question."""
    first: int | None = None
    dcg = 0.0
    earned: set[Expected] = set()
    for i, hit in enumerate(hits[:DEPTH], start=1):
        new = [e for e in expected if e not in earned and e.matches(hit)]
        if any(e.matches(hit) for e in expected) and first is None:
            first = i
        if new:
            earned.add(new[0])
            dcg += 1.0 / math.log2(i + 1)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(set(expected)), DEPTH) + 1))
    return first, (dcg / ideal if ideal else 0.0)


@dataclass
class ModeScore:
    mode: str
    questions: int = 0  # answerable lines: the retrieval metrics' denominator
    hit1: float = 0.0
    hit5: float = 0.0
    hit10: float = 0.0
    mrr: float = 0.0
    ndcg10: float = 0.0
    ms_mean: float = 0.0
    first_ranks: list[int | None] = field(default_factory=list)  # per line, unanswerable ones None
    unanswerable: int = 0
    min_relevance: float = 0.0
    refused: float | None = None  # share of unanswerable lines whose best hit is below min_relevance
    wrongly_refused: float | None = None  # share of answerable lines whose best hit is below it
    best_relevance: list[float] = field(default_factory=list)  # per line

    def to_dict(self) -> dict[str, Any]:
        def rate(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {
            "mode": self.mode,
            "questions": self.questions,
            "hit@1": round(self.hit1, 4),
            "hit@5": round(self.hit5, 4),
            "hit@10": round(self.hit10, 4),
            "mrr": round(self.mrr, 4),
            "ndcg@10": round(self.ndcg10, 4),
            "ms_mean": round(self.ms_mean, 2),
            "answerable": self.questions,
            "unanswerable": self.unanswerable,
            "min_relevance": self.min_relevance,
            "refused": rate(self.refused),
            "wrongly_refused": rate(self.wrongly_refused),
        }


def refusals(
    best: Sequence[float], unanswerable: Sequence[bool], threshold: float
) -> tuple[float | None, float | None]:
    """(share of unanswerable lines refused, share of answerable lines refused) when a line is
    refused if its best relevance is below ``threshold``; None where there are no such lines."""
    un = [b < threshold for b, u in zip(best, unanswerable, strict=True) if u]
    ans = [b < threshold for b, u in zip(best, unanswerable, strict=True) if not u]
    return (sum(un) / len(un) if un else None, sum(ans) / len(ans) if ans else None)


def summarise(
    mode: str,
    results: Sequence[tuple[int | None, float]],
    seconds: float,
    best: Sequence[float] = (),
    unanswerable: Sequence[bool] = (),
    min_relevance: float = 0.0,
) -> ModeScore:
    """Retrieval metrics over the answerable lines; refusal figures over all of them. ``results``
    has one entry per line (unanswerable lines' are ignored); ``best`` and ``unanswerable`` one per
    line too, or are empty (all lines answerable, no refusal figures)."""
    flags = list(unanswerable) or [False] * len(results)
    kept = [r for r, u in zip(results, flags, strict=True) if not u]
    n = len(kept)
    firsts = [r for r, _ in kept]
    refused, wrong = refusals(best, flags, min_relevance) if best else (None, None)
    return ModeScore(
        mode,
        n,
        hit1=sum(1 for r in firsts if r is not None and r <= 1) / n if n else 0.0,
        hit5=sum(1 for r in firsts if r is not None and r <= 5) / n if n else 0.0,
        hit10=sum(1 for r in firsts if r is not None) / n if n else 0.0,
        mrr=sum(1.0 / r for r in firsts if r is not None) / n if n else 0.0,
        ndcg10=sum(g for _, g in kept) / n if n else 0.0,
        ms_mean=1000 * seconds / max(len(results), 1),
        first_ranks=[r for r, _ in results],
        unanswerable=sum(flags),
        min_relevance=min_relevance,
        refused=refused,
        wrongly_refused=wrong,
        best_relevance=list(best),
    )


def evaluate(
    rag: Rag,
    questions: Sequence[Question],
    modes: Sequence[Mode],
    filters: Filters | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[ModeScore]:
    """Score each mode on ``questions`` against the current index. Each question is
    embedded once and the vector reused by every mode that needs it."""
    results: dict[str, list[tuple[int | None, float]]] = {m: [] for m in modes}
    best: dict[str, list[float]] = {m: [] for m in modes}
    spent: dict[str, float] = dict.fromkeys(modes, 0.0)
    for i, q in enumerate(questions, start=1):
        vector = rag.embedder.embed_query(q.question) if any(m != "keyword" for m in modes) else None
        for mode in modes:
            t0 = time.perf_counter()
            hits = rag.search(q.question, DEPTH, mode=mode, filters=filters, embedding=vector)
            spent[mode] += time.perf_counter() - t0
            results[mode].append(ranks(hits, q.expected) if not q.unanswerable else (None, 0.0))
            best[mode].append(max((h.relevance for h in hits), default=0.0))
        if progress:
            progress(i, len(questions))
    flags = [q.unanswerable for q in questions]
    threshold = rag.settings.min_relevance
    return [summarise(m, results[m], spent[m], best[m], flags, threshold) for m in modes]
