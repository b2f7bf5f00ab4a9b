"""Fitting the prompt to the chat model's context (issue 14, item 6), and the fixed answer texts
of rag.prompt. Unit level; the last tests use the real documents of data/."""

from __future__ import annotations

from typing import Any

import pytest

from rag.errors import InvalidRequestError
from rag.fit import DEFAULT_CONTEXT, MESSAGE_OVERHEAD, OLLAMA_CONTEXT, chat_context, fit_messages
from rag.prompt import SYSTEM, build_messages, history_note, refusal
from rag.store import Hit
from rag.text import estimate_tokens
from tests.test_quote import top_hits

QUESTION = "What is the restocking fee for opened items?"


def hit(n: int, words: int) -> Hit:
    return Hit(f"h{n}", 1.0 / n, f"doc{n}.md", None, " ".join(f"w{n}x{i}" for i in range(words)), {})


def turns(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        out += [
            {"role": "user", "content": f"question {i} " * 20},
            {"role": "assistant", "content": f"answer {i} " * 30},
        ]
    return out


def numbers(fitted_user: str) -> list[int]:
    return [int(line[1 : line.index("]")]) for line in fitted_user.splitlines() if line.startswith("[")]


def test_with_room_it_is_build_messages() -> None:
    hits, history = [hit(1, 50), hit(2, 50)], turns(2)
    f = fit_messages(QUESTION, hits, history, context_tokens=100_000, reserve_tokens=384)
    assert f.messages == build_messages(QUESTION, hits, history)
    assert f.in_prompt == [True, True] and f.history_dropped == 0 and f.passages_dropped == 0
    expected = 8 + sum(estimate_tokens(str(m["content"])) + MESSAGE_OVERHEAD for m in f.messages)
    assert f.prompt_tokens == expected


def test_the_lowest_ranked_passages_are_left_out_and_the_numbers_kept() -> None:
    hits = [hit(1, 100), hit(2, 100), hit(3, 100)]
    full = fit_messages(QUESTION, hits, [], context_tokens=100_000, reserve_tokens=0).prompt_tokens
    one_passage = full - 2 * estimate_tokens("\n\n" + " ".join(f"w2x{i}" for i in range(100)))
    f = fit_messages(QUESTION, hits, [], context_tokens=one_passage + 300, reserve_tokens=300)
    assert f.in_prompt == [True, False, False]
    assert numbers(f.messages[-1]["content"]) == [1]
    assert f.prompt_tokens <= one_passage


def test_a_smaller_lower_ranked_passage_still_fits_with_its_own_number() -> None:
    hits = [hit(1, 20), hit(2, 400), hit(3, 20)]
    f = fit_messages(QUESTION, hits, [], context_tokens=700, reserve_tokens=300)
    assert f.in_prompt == [True, False, True]
    user = f.messages[-1]["content"]
    assert numbers(user) == [1, 3] and user.endswith(QUESTION)  # [3] stays [3]: citations point at hits


def test_history_is_dropped_oldest_first_by_whole_turns() -> None:
    history = turns(4)
    full = fit_messages(QUESTION, [hit(1, 30)], history, context_tokens=100_000, reserve_tokens=0)
    per_turn = sum(estimate_tokens(m["content"]) + MESSAGE_OVERHEAD for m in history[:2])
    f = fit_messages(QUESTION, [hit(1, 30)], history, context_tokens=full.prompt_tokens - per_turn, reserve_tokens=0)
    assert f.history_dropped == 1 and f.in_prompt == [True]
    assert f.messages[1:-1] == history[2:]  # the newest three turns, user and assistant together
    f = fit_messages(
        QUESTION, [hit(1, 30)], history, context_tokens=full.prompt_tokens - 3 * per_turn, reserve_tokens=0
    )
    assert f.history_dropped == 3 and f.messages[1:-1] == history[6:]


def test_a_turn_is_a_user_message_with_what_follows_it() -> None:
    history = [
        {"role": "assistant", "content": "Welcome!"},
        {"role": "user", "content": "first " * 50},
        {"role": "assistant", "content": "one " * 50},
        {"role": "assistant", "content": "two " * 50},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "ok"},
    ]
    f = fit_messages(QUESTION, [], history, context_tokens=230, reserve_tokens=0)
    assert f.history_dropped == 2 and f.messages[1:-1] == history[4:]


def test_passages_come_before_history() -> None:
    f = fit_messages(QUESTION, [hit(1, 200)], turns(3), context_tokens=560, reserve_tokens=100)
    assert f.in_prompt == [True] and f.history_dropped >= 1


def test_if_the_question_does_not_fit_the_error_names_the_setting() -> None:
    with pytest.raises(InvalidRequestError, match="RAG_CHAT_CONTEXT"):
        fit_messages("why? " * 800, [hit(1, 10)], [], context_tokens=1024, reserve_tokens=384)
    with pytest.raises(InvalidRequestError, match="RAG_CHAT_CONTEXT=512 minus 600"):
        fit_messages(QUESTION, [], [], context_tokens=512, reserve_tokens=600)


def test_the_question_and_system_prompt_alone_fit_with_no_passage() -> None:
    f = fit_messages(QUESTION, [hit(1, 500)], turns(1), context_tokens=200, reserve_tokens=50)
    assert f.in_prompt == [False] and f.history_dropped == 1
    assert f.messages == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"\n\n{QUESTION}"}]


def test_a_custom_token_counter_is_used() -> None:
    hits = [hit(1, 50), hit(2, 50)]
    both = fit_messages(QUESTION, hits, [], context_tokens=100_000, reserve_tokens=0, count=len).prompt_tokens
    assert both > 2 * 4 * 50  # a character a token
    f = fit_messages(QUESTION, hits, [], context_tokens=both - 1, reserve_tokens=0, count=len)
    assert f.in_prompt == [True, False] and f.prompt_tokens <= both - 1


def test_content_parts_in_history_are_counted() -> None:
    parts: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "look " * 400}]},
        {"role": "assistant", "content": "x"},
    ]
    f = fit_messages(QUESTION, [], parts, context_tokens=400, reserve_tokens=0)
    assert f.history_dropped == 1


def test_the_context_to_fit_to() -> None:
    assert chat_context(8192, reported=32768, embedded_ctx=4096) == 8192
    assert chat_context(None, reported=32768) == 32768
    assert chat_context(None, embedded_ctx=4096) == 4096
    assert chat_context(None, ollama=True) == OLLAMA_CONTEXT
    assert chat_context(None) == DEFAULT_CONTEXT


# -- on data/'s documents -----------------------------------------------------------------------
def test_real_passages_fit_the_embedded_context_and_a_small_one_drops_the_last() -> None:
    hits = top_hits(QUESTION, 5)
    f = fit_messages(QUESTION, hits, turns(2), context_tokens=4096, reserve_tokens=384)
    assert all(f.in_prompt) and f.history_dropped == 0 and f.prompt_tokens <= 4096 - 384
    assert f.messages == build_messages(QUESTION, hits, turns(2))
    small = fit_messages(QUESTION, hits, turns(2), context_tokens=900, reserve_tokens=384)
    assert small.in_prompt[0] and not all(small.in_prompt) and small.history_dropped == 2
    assert small.prompt_tokens <= 900 - 384
    assert "restocking fee of 15%" in small.messages[-1]["content"]


# -- the fixed texts ---------------------------------------------------------------------------
def test_refusal_and_history_note_in_the_questions_language() -> None:
    assert refusal(QUESTION) == "I cannot find that in the documents."
    assert refusal("Q7 空气净化器的滤网多久更换一次？") == "文档中没有找到相关内容。"
    assert refusal("I cannot find that in the documents.") in SYSTEM
    assert "1 oldest turn " in history_note(1, "en") and "3 oldest turns" in history_note(3, "en")
    assert "2" in history_note(2, "zh") and "对话" in history_note(2, "zh")
