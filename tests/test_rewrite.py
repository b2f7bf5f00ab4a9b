"""The standalone retrieval query for a follow-up (issue 14, item 5): by the chat model when it
gives a sane rewrite, else by deterministic rules. Unit level: in-memory chat models, and the real
documents of data/ for the retrieval check."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rag.models import ChatDelta, Usage
from rag.rewrite import MAX_TOKENS, Rewrite, by_rules, check, refers_back, salient, standalone
from tests.test_quote import top_hits

RESTOCKING = "What is the restocking fee for opened items?"
FOLLOW_UP = "Is it waived if the item is damaged?"
HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": RESTOCKING},
    {"role": "assistant", "content": "A restocking fee of 15% of the purchase price is deducted [1]."},
]
ZH_HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": "Q7 空气净化器的滤网多久更换一次？"},
    {"role": "assistant", "content": "建议每六个月更换一次。[1]"},
]


class ScriptedChat:
    """A ``rag.models.ChatModel`` that streams a fixed reply (or raises), recording its calls."""

    def __init__(self, reply: str = "", error: Exception | None = None) -> None:
        self.model = "scripted"
        self.reply = reply
        self.error = error
        self.calls: list[tuple[list[dict[str, str]], dict[str, Any]]] = []

    def stream(self, messages: list[dict[str, str]], **params: Any) -> Iterator[ChatDelta]:
        self.calls.append((messages, params))
        if self.error is not None:
            raise self.error
        for i in range(0, len(self.reply), 5):
            yield ChatDelta(self.reply[i : i + 5])
        yield ChatDelta(finish_reason="stop", usage=Usage(10, 5, estimated=False))


def test_no_history_is_the_question_itself() -> None:
    assert standalone(FOLLOW_UP, []) == Rewrite(FOLLOW_UP, "none")
    chat = ScriptedChat("anything")
    assert standalone(FOLLOW_UP, [{"role": "assistant", "content": "Hello!"}], chat) == Rewrite(FOLLOW_UP, "none")
    assert chat.calls == []  # no model call without an earlier question


def test_rules_add_the_previous_questions_subject() -> None:
    r = standalone(FOLLOW_UP, HISTORY)
    assert r.method == "rules" and r.error is None
    assert r.query.startswith(FOLLOW_UP) and "restocking fee opened items" in r.query


def test_rules_leave_a_question_that_stands_alone() -> None:
    q = "How long is the warranty on the X200?"
    assert standalone(q, HISTORY).query == q
    assert by_rules("HEPA 滤网能水洗吗？", ["Q7 空气净化器的滤网多久更换一次？"]) == "HEPA 滤网能水洗吗？"


def test_rules_in_chinese() -> None:
    r = standalone("它的保修期多长？", ZH_HISTORY)
    assert (
        r.method == "rules" and r.query.startswith("它的保修期多长？") and "Q7" in r.query and "空气净化器" in r.query
    )
    assert "Q7" in standalone("那保修呢？", ZH_HISTORY).query


def test_rules_borrow_the_thing_named_or_what_was_asked() -> None:
    assert by_rules("How long is its warranty?", ["How many hours does the X200 battery last?"]).endswith("? X200")
    about_z10 = by_rules("What about the Z10?", ["How long is the warranty on the X200?"])
    assert "warranty" in about_z10 and "X200" not in about_z10  # its own product, the earlier question's topic
    assert by_rules("那保修呢？", ["Q7 空气净化器的滤网多久更换一次？"]) == "那保修呢？ Q7 空气净化器"
    assert "滤网" in by_rules("HEPA 的呢？", ["Q7 空气净化器的滤网多久更换一次？"])


def test_rules_follow_a_chain_of_follow_ups_back_to_its_topic() -> None:
    previous = [RESTOCKING, "Is it waived if the item is damaged?"]
    query = by_rules("And what about missing cables?", previous)
    assert "restocking" in query and "waived" in query
    # a question that stood alone ends the chain: older topics are not dragged in
    assert "Q7" not in by_rules("Is it waived?", ["Q7 filter?", RESTOCKING])


def test_what_refers_back() -> None:
    assert refers_back(FOLLOW_UP) and refers_back("What about the Z10?") and refers_back("And unopened ones?")
    assert refers_back("这个多少钱？") and refers_back("滤网呢？") and refers_back("它防水吗？")
    assert not refers_back(RESTOCKING) and not refers_back("Q7 空气净化器的滤网多久更换一次？")
    assert salient(RESTOCKING) == ["restocking", "fee", "opened", "items"]
    assert salient("Q7 空气净化器的滤网多久更换一次？") == ["Q7", "空气净化器", "滤网", "更换一次"]


def test_a_good_model_rewrite_is_used() -> None:
    good = "Is the restocking fee for opened items waived if the item is damaged?"
    chat = ScriptedChat(f"  {good}\n")
    r = standalone(FOLLOW_UP, HISTORY, chat, temperature=0.7, max_tokens=500, seed=3)
    assert r == Rewrite(good, "model")
    messages, params = chat.calls[0]
    assert params == {"temperature": 0.0, "max_tokens": MAX_TOKENS, "seed": 3}
    assert messages[0]["role"] == "system" and FOLLOW_UP in messages[-1]["content"]
    assert RESTOCKING in messages[-1]["content"]


def test_labels_and_quotes_around_a_rewrite_are_stripped() -> None:
    chat = ScriptedChat('Standalone question: "Is the restocking fee waived for damaged items?"')
    assert standalone(FOLLOW_UP, HISTORY, chat).query == "Is the restocking fee waived for damaged items?"


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ("", "empty"),
        ("Is the restocking fee waived?\nThe fee is 15% and it is waived for damaged items.", "more than one line"),
        ("Is the restocking fee waived? " * 12, "too long"),
        ("What is the capital of France?", "unrelated to the conversation"),
        ("退货手续费 restocking fee 是否免除？", "another language"),
    ],
)
def test_a_junk_rewrite_falls_back_to_the_rules(reply: str, problem: str) -> None:
    r = standalone(FOLLOW_UP, HISTORY, ScriptedChat(reply))
    assert r.method == "rules" and r.error is not None and problem in r.error
    assert "restocking" in r.query
    assert check(reply, FOLLOW_UP, HISTORY)[1] == problem


def test_a_failing_model_falls_back_to_the_rules() -> None:
    r = standalone(FOLLOW_UP, HISTORY, ScriptedChat(error=RuntimeError("connection refused")))
    assert r.method == "rules" and "connection refused" in (r.error or "") and "restocking" in r.query


def test_a_chinese_rewrite_must_be_chinese() -> None:
    good = "Q7 空气净化器的保修期多长？"
    assert standalone("它的保修期多长？", ZH_HISTORY, ScriptedChat(good)) == Rewrite(good, "model")
    r = standalone("它的保修期多长？", ZH_HISTORY, ScriptedChat("How long is the Q7 warranty?"))
    assert r.method == "rules" and "another language" in (r.error or "")


def test_the_rewrite_retrieves_the_restocking_passage() -> None:
    """On data/'s documents (the issue's test, at unit level: the lead's runs it through Rag)."""
    assert "restocking fee of 15%" in top_hits(standalone(FOLLOW_UP, HISTORY).query, 1)[0].text
    zh = standalone("它的保修期多长？", ZH_HISTORY).query
    assert zh == "它的保修期多长？ Q7 空气净化器"  # the product it was about, not the filter question's words
    assert any("保修期为两年" in h.text for h in top_hits(zh, 3))
