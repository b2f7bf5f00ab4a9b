"""Quote mode (issue 14, item 4): the passage sentences that answer the question, verbatim, with
markers and exact spans; no model. Unit level, on the real documents of data/ chunked as the
ingest chunks them (no index, no process)."""

from __future__ import annotations

import functools
import math
import re
from typing import cast

import pytest

from ingest.chunker import Chunker
from ingest.loaders import load
from ingest.tokens import HeuristicTokenCounter
from rag.errors import ModelServerError
from rag.models import Embedder
from rag.prompt import refusal
from rag.quote import LEADS, Quoted, flat, quote, stream_pieces
from rag.store import Hit
from rag.text import content_terms, is_chinese
from tests.conftest import DATA
from tests.fakes import FakeEmbedder

FILES = (
    "returns-policy.md",
    "support-hours.html",
    "x200-user-guide.pdf",
    "z10-release-notes.txt",
    "zh/q7-air-purifier.md",
)


@functools.cache
def data_hits() -> tuple[Hit, ...]:
    """Every chunk of data/'s documents as a hit, chunked as an ingest with default sizes would."""
    chunker = Chunker(HeuristicTokenCounter(), 128, 16)
    hits = []
    for name in FILES:
        for unit in load(DATA / name).units:
            for ch in chunker.chunk(unit):
                meta = {"source": name, "start": ch.start, "end": ch.end, "heading": ch.heading}
                if unit.page:
                    meta["page"] = unit.page
                hits.append(Hit.of(f"{name}:{unit.page}:{ch.start}", 0.0, ch.text, meta))
    return tuple(hits)


def top_hits(query: str, k: int = 3) -> list[Hit]:
    """A stand-in for retrieval: the chunks sharing the most IDF-weighted terms with ``query``."""
    chunks = data_hits()
    df: dict[str, int] = {}
    for h in chunks:
        for t in content_terms(h.text):
            df[t] = df.get(t, 0) + 1
    wanted = content_terms(query)

    def score(h: Hit) -> float:
        return sum(math.log(len(chunks) / df[t]) for t in wanted & content_terms(h.text))

    return sorted(chunks, key=score, reverse=True)[:k]


def answer_of(question: str, **kw: object) -> tuple[Quoted, list[Hit]]:
    hits = top_hits(question)
    return quote(question, hits, **kw), hits  # type: ignore[arg-type]


def check_spans(q: Quoted, hits: list[Hit]) -> None:
    """Every part: its text is the passage's sentence (whitespace flattened), its marker follows it,
    and its file span holds the same characters in the file the chunk came from."""
    for p in q.parts:
        hit = hits[p.n - 1]
        exact = hit.text[p.passage_start : p.passage_end]
        assert q.text[p.start : p.end] == flat(exact)
        assert re.match(rf"\s?\[{p.n}\]", q.text[p.end :])
        assert p.file_start == hit.metadata["start"] + p.passage_start
        assert p.file_end == hit.metadata["start"] + p.passage_end
        if hit.page is None:  # text files: the offsets are the file's own
            assert (DATA / hit.source).read_text()[p.file_start : p.file_end] == exact


# -- the demo questions: the sentence holding the answer is quoted first --------------------------
@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What is the restocking fee for opened items?", "restocking fee of 15%"),
        ("How long is the warranty on the X200?", "limited warranty of 3 years"),
        ("Q7 空气净化器的滤网多久更换一次？", "滤网建议每六个月更换一次"),
        ("When was version 2.4.0 released?", "2025-10-02"),
        ("How many hours does the X200 battery last?", "2.5 hours of playback"),
        ("Is the restocking fee waived if the item is damaged?", "waived if the item arrived damaged"),
        ("Q7 的保修期是多久？", "保修期为两年"),
        ("What does error code U7 mean?", "update failed three times in a row"),
        ("How do I check the firmware version of the Z10?", "Menu > Settings > About"),
    ],
)
def test_the_answer_sentence_is_quoted_first(question: str, expected: str) -> None:
    q, hits = answer_of(question)
    assert not q.refused and 1 <= len(q.parts) <= 3
    first = q.parts[0]
    assert expected in q.text[first.start : first.end], q.text
    check_spans(q, hits)


def test_the_answer_is_in_the_questions_language_with_its_markers() -> None:
    en, _ = answer_of("What is the restocking fee for opened items?")
    assert en.text.startswith(LEADS["en"] + "\n\n")
    assert en.text.endswith("[1]")
    zh, _ = answer_of("Q7 空气净化器的滤网多久更换一次？")
    assert zh.text.startswith(LEADS["zh"] + "\n\n")
    assert "。[" in zh.text and " [" not in zh.text  # Chinese: the marker right after the full stop


def test_an_faq_answer_is_quoted_not_its_question() -> None:
    q, _ = answer_of("指示灯一直显示红色怎么办？")
    assert q.text[q.parts[0].start :].startswith("答：请先确认门窗是否关闭")


def test_a_pdf_title_line_is_not_glued_to_the_sentence() -> None:
    q, hits = answer_of("How long is the warranty on the X200?")
    first = q.parts[0]
    assert q.text[first.start : first.end].startswith("The X200 is covered")
    assert hits[0].text[: first.passage_start].strip() == "Warranty and Service"


def test_a_question_naming_a_product_is_quoted_from_passages_naming_it() -> None:
    # The Q7's warranty passage speaks the question's language and its words (保修期); the X200's
    # speaks English. Quoting the Q7's "two years" for the X200 would be a wrong answer.
    warranty = [h for h in data_hits() if "保修期为两年" in h.text or "limited warranty of 3" in h.text]
    assert [h.source for h in warranty] == ["x200-user-guide.pdf", "zh/q7-air-purifier.md"]
    hits = warranty[::-1]  # the Q7 passage first, as retrieval ranked it
    q = quote("X200 投影仪的保修期是多久？", hits)
    assert [p.n for p in q.parts] == [2] and "limited warranty of 3 years" in q.text, q.text
    assert "两年" in quote("Q7 的保修期是多久？", hits).text
    # No passage names the code asked about: every passage may answer, as before.
    assert not quote("X900 的保修期是多久？", hits).refused


def test_a_chinese_question_naming_commands_is_answered_in_chinese() -> None:
    # By letters these are mostly Latin; by grammar they are Chinese (rag.text.is_chinese).
    for question in ("set datafile missing 有什么作用？", "LinuxCNC 能读取 SolidWorks 的 SLDPRT 文件吗？"):
        assert is_chinese(question) and refusal(question) == refusal("什么？")
    assert not is_chinese("What does 保修期 mean?") and not is_chinese("The 青松 Q7 air purifier")
    q, _ = answer_of("Q7 warranty 保修期是多久？")
    assert q.text.startswith(LEADS["zh"])


def test_nothing_related_gives_the_refusal() -> None:
    hits = top_hits("What is the restocking fee?")
    q = quote("Who won the 2022 football world cup?", hits)
    assert q.refused and q.parts == [] and q.text == refusal("Who won?")
    assert quote("世界杯冠军是谁？", hits).text == refusal("谁？")
    assert quote("anything", []).refused


def test_a_sentence_repeated_by_overlapping_chunks_is_quoted_once() -> None:
    hits = top_hits("What is the restocking fee for opened items?", 1)
    q = quote("What is the restocking fee for opened items?", [hits[0], hits[0]], max_sentences=3)
    texts = [q.text[p.start : p.end] for p in q.parts]
    assert len(texts) == len(set(texts)) >= 1
    assert all(p.n == 1 for p in q.parts)  # the first copy (the better-ranked hit) is the one cited


def test_max_sentences_and_order_within_a_passage() -> None:
    q, _ = answer_of("What is the restocking fee for opened items?")
    assert (
        len(quote("What is the restocking fee for opened items?", top_hits("restocking"), max_sentences=1).parts) == 1
    )
    same = [p for p in q.parts if p.n == q.parts[0].n]
    assert [p.passage_start for p in same] == sorted(p.passage_start for p in same)


def test_with_an_embedder_the_sentences_are_embedded_once() -> None:
    embedder = FakeEmbedder()
    question = "How long is the warranty on the X200?"
    q = quote(question, top_hits(question), embedder=cast(Embedder, embedder))  # fakes' list|tuple signature
    assert len(embedder.calls) == 1 and embedder.calls[0] >= 3
    assert "3 years" in q.text[q.parts[0].start : q.parts[0].end]


def test_an_embedder_that_fails_falls_back_to_terms() -> None:
    class Broken(FakeEmbedder):
        def embed_query(self, text: str) -> list[float]:
            raise ModelServerError("down")

    question = "What is the restocking fee for opened items?"
    q = quote(question, top_hits(question), embedder=cast(Embedder, Broken()))
    assert "restocking fee of 15%" in q.text


def test_relevance_is_used_when_present() -> None:
    question = "Is the restocking fee waived if the item is damaged?"
    hits = top_hits(question)
    for h, r in zip(hits, (0.2, 0.9, 0.1), strict=True):
        setattr(h, "relevance", r)  # noqa: B010 (a field only once rag.relevance lands)
    try:
        assert not quote(question, hits).refused
    finally:
        for h in hits:
            setattr(h, "relevance", 0.0)  # noqa: B010


def test_stream_pieces_join_to_the_text_in_small_pieces() -> None:
    for question in ("What is the restocking fee for opened items?", "Q7 空气净化器的滤网多久更换一次？"):
        q, _ = answer_of(question)
        pieces = list(stream_pieces(q))
        assert "".join(pieces) == q.text
        assert len(pieces) > 10 and max(len(p) for p in pieces) <= 24
        assert any(re.fullmatch(r"\s?\[\d\]\s*", p) for p in pieces)  # markers whole
    assert list(stream_pieces(Quoted(""))) == []


def test_to_dict_is_json_ready() -> None:
    q, _ = answer_of("What is the restocking fee for opened items?")
    d = q.to_dict()
    assert d["refused"] is False and d["text"] == q.text
    assert set(d["parts"][0]) == {
        "n",
        "start",
        "end",
        "passage_start",
        "passage_end",
        "file_start",
        "file_end",
        "score",
    }


def test_a_sentence_without_full_stops_is_quoted_in_bounded_pieces() -> None:
    text = "no full stop here just words about the filter schedule " * 60
    q = quote("What is the filter schedule?", [Hit("a", 0.0, "x.md", None, text, {"start": 100})])
    assert len(q.parts) >= 1 and all(p.end - p.start <= 400 for p in q.parts)
    assert q.parts[0].file_start == 100 + q.parts[0].passage_start
