"""Fit the grounded prompt to the chat model's context, so nothing is cut silently.

Ollama (and others) cut an over-long prompt at their context size without a word, and the model
then answers from a prompt missing its sources or its question. Here the prompt is built to fit
``context_tokens - reserve_tokens`` (the reserve: the answer's ``max_tokens``), by priority:

1. the system prompt and the question: never left out; if even they do not fit,
   ``InvalidRequestError`` names ``RAG_CHAT_CONTEXT``;
2. the passages, in rank order: one that does not fit is left out whole, and a later, smaller one
   may still fit (lower-ranked passages are the ones sacrificed). Passages keep their numbers
   (``[1]``, ``[3]`` when the second is out): the numbers are the hits' positions, which the
   ``sources`` event and the citations use, so renumbering would point citations at the wrong hit;
3. the history, newest turn first: the oldest turns are dropped, a user message together with the
   assistant answer(s) after it.

Counts are estimates (``rag.text.estimate_tokens`` over-counts English slightly) plus
``MESSAGE_OVERHEAD`` tokens per message for the chat template (``<|im_start|>role`` ... ``<|im_end|>``)
and ``PRIMING`` for the assistant header the template appends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rag.errors import InvalidRequestError
from rag.prompt import SYSTEM, source_block, user_content
from rag.store import Hit
from rag.text import estimate_tokens

MESSAGE_OVERHEAD = 8  # ChatML-style templates spend 4-6 tokens per message; a little more for others
PRIMING = 8  # the assistant header the template appends after the last message
DEFAULT_CONTEXT = 4096  # an OpenAI-compatible server that does not say its context
OLLAMA_CONTEXT = 2048  # Ollama's default num_ctx before 0.6 (newer: 4096); /v1 cannot raise it


@dataclass
class Fitted:
    messages: list[dict[str, Any]]
    in_prompt: list[bool]  # per hit, in the hits' order: False = left out (did not fit)
    history_dropped: int  # the oldest turns left out (a user message and its answers count as one)
    prompt_tokens: int  # the estimate the prompt was fitted by, template overhead included

    @property
    def passages_dropped(self) -> int:
        return self.in_prompt.count(False)


def chat_context(
    configured: int | None, *, reported: int | None = None, embedded_ctx: int | None = None, ollama: bool = False
) -> int:
    """The context to fit prompts to: ``RAG_CHAT_CONTEXT`` when set, else what the backend says
    (``reported``), else the embedded model's own (``embedded_ctx``, 4096 by default), else
    ``OLLAMA_CONTEXT`` for Ollama and ``DEFAULT_CONTEXT`` for other servers."""
    for value in (configured, reported, embedded_ctx):
        if value:
            return value
    return OLLAMA_CONTEXT if ollama else DEFAULT_CONTEXT


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: count the text ones
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _turns(history: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """History as turns: each user message with the messages after it up to the next user message."""
    turns: list[list[dict[str, Any]]] = []
    for message in history:
        if message.get("role") == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return turns


def fit_messages(
    question: str,
    hits: list[Hit],
    history: list[dict[str, Any]] | None = None,
    *,
    context_tokens: int,
    reserve_tokens: int,
    count: Callable[[str], int] = estimate_tokens,
) -> Fitted:
    """The grounded prompt (as ``rag.prompt.build_messages`` builds it) fitted to
    ``context_tokens - reserve_tokens``; see the module's docstring for what goes first."""
    budget = context_tokens - reserve_tokens
    fixed = PRIMING + count(SYSTEM) + 2 * MESSAGE_OVERHEAD  # the system message, the user message's overhead
    user = count(user_content(question, []))
    if fixed + user > budget:
        raise InvalidRequestError(
            f"The question and the instructions need about {fixed + user} tokens, but the chat model's context "
            f"leaves {max(budget, 0)} (RAG_CHAT_CONTEXT={context_tokens} minus {reserve_tokens} for the answer). "
            "Raise RAG_CHAT_CONTEXT (if the model's context is larger), lower RAG_MAX_TOKENS, "
            "or shorten the question."
        )
    blocks: list[str] = []
    in_prompt: list[bool] = []
    for n, hit in enumerate(hits, start=1):
        block = source_block(n, hit)
        cost = count(user_content(question, [*blocks, block]))  # counted whole: a counter need not add up
        in_prompt.append(fixed + cost <= budget)
        if in_prompt[-1]:
            blocks.append(block)
            user = cost

    used = fixed + user
    turns = _turns(list(history or []))
    kept = 0
    for turn in reversed(turns):
        cost = sum(count(_content(m)) + MESSAGE_OVERHEAD for m in turn)
        if used + cost > budget:
            break
        used += cost
        kept += 1
    recent = [m for turn in turns[len(turns) - kept :] for m in turn] if kept else []
    messages = [
        {"role": "system", "content": SYSTEM},
        *recent,
        {"role": "user", "content": user_content(question, blocks)},
    ]
    return Fitted(messages, in_prompt, len(turns) - kept, used)
