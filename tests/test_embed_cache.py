"""The answer path's embedding cache (``rag.embed_cache``): the same vectors as the embedder it
wraps, each text embedded once, bounded, queries apart from documents; and through ``Rag`` a
second answer over the same passages embeds nothing but its question."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fakes import FakeChat, FakeEmbedder

from rag.embed_cache import CachedEmbedder
from rag.engine import Rag
from rag.settings import Settings
from tests.conftest import DATA


class Counting(FakeEmbedder):
    def __init__(self, model: str = "fake-embed") -> None:
        super().__init__(model)
        self.texts: list[str] = []
        self.queries: list[str] = []

    def embed_documents(self, texts: Any) -> list[list[float]]:
        self.texts += list(texts)
        return super().embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        self.queries.append(text)
        return super().embed_query(text)


def test_same_vectors_each_text_embedded_once() -> None:
    inner = Counting()
    cache = CachedEmbedder(inner)
    texts = ["The fee is 15%.", "Returns within 30 days.", "The fee is 15%."]
    first = cache.embed_documents(texts)
    assert first == [inner.vector(t) for t in texts]  # exactly the wrapped embedder's vectors
    assert inner.texts == ["The fee is 15%.", "Returns within 30 days."]  # a duplicate is sent once
    assert cache.embed_documents(["Returns within 30 days.", "New one."]) == [
        inner.vector("Returns within 30 days."),
        inner.vector("New one."),
    ]
    assert inner.texts[-1:] == ["New one."]
    assert cache.model == inner.model


def test_queries_and_documents_are_kept_apart() -> None:
    inner = Counting()
    cache = CachedEmbedder(inner)
    cache.embed_documents(["warranty"])
    assert cache.embed_query("warranty") == inner.vector("warranty")
    assert inner.queries == ["warranty"]  # a document's vector is not reused for a query
    cache.embed_query("warranty")
    assert inner.queries == ["warranty"]


def test_bounded_least_recently_used_first() -> None:
    inner = Counting()
    cache = CachedEmbedder(inner, max_items=2)
    cache.embed_documents(["a1 alpha", "b2 beta"])
    cache.embed_documents(["a1 alpha"])  # used again: b2 is now the oldest
    cache.embed_documents(["c3 gamma"])
    assert len(cache._vectors) == 2
    inner.texts.clear()
    cache.embed_documents(["a1 alpha", "b2 beta"])
    assert inner.texts == ["b2 beta"]


def test_threads_share_it() -> None:
    inner = Counting()
    cache = CachedEmbedder(inner, max_items=50)
    texts = [f"sentence number {i} about pumps" for i in range(80)]
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(40):
                t = texts[(i + offset) % len(texts)]
                assert cache.embed_documents([t]) == [inner.vector(t)]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n * 7,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(cache._vectors) <= 50


def test_a_second_answer_over_the_same_passages_embeds_only_its_question(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path / "index", min_relevance=0.0)
    inner = Counting(settings.embed_model_name)
    with Rag(settings, embedder=inner, chat=FakeChat()) as r:
        r.ingest([DATA / "returns-policy.md"])
        inner.texts.clear()
        first = r.ask("What is the restocking fee for opened items?", answer="quote")
        sent = len(inner.texts)
        assert sent > 0
        again = r.ask("What is the restocking fee for opened items?", answer="quote")
        assert again.text == first.text and [c.to_dict() for c in again.claims] == [c.to_dict() for c in first.claims]
        assert len(inner.texts) == sent  # quote and claim check: every passage sentence remembered
        r.ask("How much is the restocking fee?", answer="quote")
        r.verify(first.text)
        assert len(inner.texts) == len(set(inner.texts))  # whatever was new, nothing was embedded twice
