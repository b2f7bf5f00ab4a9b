"""The answer flow (refuse, quote or generate; fitting; strict; conversations) through ``Rag`` with
in-memory fakes: a real Chroma index of data/ in a temporary directory, no model process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.engine import Rag
from rag.models import ChatDelta, Usage
from rag.settings import Settings
from tests.conftest import DATA
from tests.fakes import FakeChat, FakeEmbedder

RESTOCKING = "What is the restocking fee for opened items?"


class ScriptedChat(FakeChat):
    """Answers with a fixed text (citation markers and all), recording the prompts."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def stream(self, messages: list[dict[str, Any]], **params: Any) -> Iterator[ChatDelta]:
        self.calls.append(messages)
        for i in range(0, len(self.text), 4):
            yield ChatDelta(self.text[i : i + 4])
        yield ChatDelta(finish_reason="stop", usage=Usage(100, len(self.text) // 4, estimated=False))


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("answering") / "index"
    settings = Settings(index_dir=path)
    with Rag(settings, embedder=FakeEmbedder(settings.embed_model_name), chat=FakeChat()) as r:
        r.ingest([DATA])
    return path


def rag_on(index: Path, chat: FakeChat | None = None, **overrides: Any) -> Rag:
    settings = Settings(index_dir=index, **overrides)
    return Rag(settings, embedder=FakeEmbedder(settings.embed_model_name), chat=chat or FakeChat())


def test_no_relevant_passage_means_a_refusal_and_no_model_call(index: Path) -> None:
    chat = FakeChat()
    with rag_on(index, chat, min_relevance=1.0) as r:
        events = list(r.stream("Who won the 2022 football world cup?"))
        zh = r.ask("2022 年世界杯的冠军是谁？")
    assert chat.calls == []
    names = [e.type for e in events]
    assert names[0] == "sources" and names[-1] == "done"
    done = events[-1].data
    assert done["refused"] is True and done["citations"] == [] and done["sources"]
    assert "cannot find" in done["answer"].lower()
    assert zh.refused and "文档" in zh.text


def test_relevant_passages_reach_the_model_with_checked_sentences(index: Path) -> None:
    chat = ScriptedChat("The restocking fee is 15% of the purchase price [1]. Shipping is free to Mars [1].")
    with rag_on(index, chat, min_relevance=0.0) as r:
        answer = r.ask(RESTOCKING, answer="generate")
    assert len(chat.calls) == 1 and not answer.refused
    assert [c.supported for c in answer.claims] == [True, False]
    assert answer.claims[1].text.startswith("Shipping is free to Mars")


def test_strict_leaves_unsupported_sentences_out(index: Path) -> None:
    chat = ScriptedChat("The restocking fee is 15% of the purchase price [1]. Shipping is free to Mars [1].")
    with rag_on(index, chat, min_relevance=0.0) as r:
        events = list(r.stream(RESTOCKING, answer="generate", strict=True))
    streamed = "".join(e.data["text"] for e in events if e.type == "token")
    done = events[-1].data
    assert "Mars" not in streamed and "15%" in streamed
    assert done["answer"] == streamed
    assert done["omitted"] and "Mars" in done["omitted"][0]
    assert all(c["supported"] for c in done["claims"])


def test_quote_mode_asks_no_model(index: Path) -> None:
    chat = FakeChat()
    with rag_on(index, chat, min_relevance=0.0) as r:
        answer = r.ask(RESTOCKING, answer="quote")
        auto_zh = r.ask("Q7 空气净化器的 HEPA 滤网多久需要更换一次？")
    assert chat.calls == []
    assert answer.mode == "quote" and "15%" in answer.text and answer.citations
    assert auto_zh.mode == "quote" and "六个月" in auto_zh.text  # auto: the embedded model writes no Chinese


def test_passages_that_do_not_fit_are_marked_and_left_out(index: Path) -> None:
    chat = FakeChat()
    with rag_on(index, chat, min_relevance=0.0, chat_context=700, max_tokens=128) as r:
        events = list(r.stream(RESTOCKING, k=5, answer="generate"))
    flags = [s["in_prompt"] for s in events[0].data["sources"]]
    assert flags[0] is True and False in flags
    prompt = chat.calls[0][-1]["content"]
    for i, flag in enumerate(flags, start=1):
        assert (f"[{i}] " in prompt) == flag


def test_old_turns_that_do_not_fit_are_dropped_and_said(index: Path) -> None:
    chat = FakeChat()
    long_turns = []
    for i in range(12):
        long_turns += [
            {"role": "user", "content": f"Question {i} " + "about returns and refunds " * 20},
            {"role": "assistant", "content": "An answer " * 40},
        ]
    with rag_on(index, chat, min_relevance=0.0, chat_context=1200, max_tokens=128) as r:
        answer = r.ask(RESTOCKING, history=long_turns, answer="generate")
    sent = chat.calls[0]
    assert len(sent) < len(long_turns) + 2  # some turns left out
    assert sent[-1]["role"] == "user" and RESTOCKING in sent[-1]["content"]
    assert answer.notes and "did not fit" in answer.notes[0]


def test_follow_up_is_searched_standalone(index: Path) -> None:
    history = [{"role": "user", "content": RESTOCKING}, {"role": "assistant", "content": "15% [1]."}]
    with rag_on(index, min_relevance=0.0) as r:
        events = list(r.stream("Is it waived if the item is damaged?", history=history, answer="quote"))
    sources = events[0].data
    assert "restocking" in sources["query"].lower()
    assert sources["sources"][0]["source"] == "returns-policy.md"


def test_a_model_rewrite_that_matches_nothing_falls_back_to_the_rules(index: Path) -> None:
    """A chat model that rewrites the follow-up into words no passage has (a small model may
    answer instead of rewriting): the question is searched with the rules' rewrite, not refused
    as "no passage matches"."""
    chat = ScriptedChat("Zeppelins?")  # shares a word with the conversation: passes the checks
    history = [{"role": "user", "content": RESTOCKING}, {"role": "assistant", "content": "15% [1], zeppelins apart."}]
    with rag_on(index, chat, min_relevance=0.0, rewrite="model") as r:
        events = list(r.stream("Is it waived if the item is damaged?", history=history, answer="quote", mode="keyword"))
    assert len(chat.calls) == 1  # the rewrite was asked for
    sources = events[0].data
    assert "zeppelins" not in sources["query"] and "restocking" in sources["query"].lower()
    assert sources["sources"][0]["source"] == "returns-policy.md"
    assert events[-1].type == "done"


def test_strict_with_nothing_supported_says_so(index: Path) -> None:
    chat = ScriptedChat("Shipping is free to Mars [1]. The moon is made of cheese [1].")
    with rag_on(index, chat, min_relevance=0.0) as r:
        events = list(r.stream(RESTOCKING, answer="generate", strict=True))
    streamed = "".join(e.data["text"] for e in events if e.type == "token")
    done = events[-1].data
    assert "Mars" not in streamed and "cannot find" in streamed.lower()
    assert done["answer"] == streamed and done["refused"] is True and len(done["omitted"]) == 2
