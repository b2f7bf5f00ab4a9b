"""Answering: make the question stand alone, retrieve, decide how to answer (refuse, quote or
generate), fit the prompt to the chat model's context, and open the answer stream.

The decision, in order:
1. **refuse** when no retrieved passage's ``relevance`` reaches ``RAG_MIN_RELEVANCE``: no model is
   asked; the answer says so in the question's language, with the closest passages;
2. **quote** when asked for (``answer="quote"``), or when ``auto`` and the chat model is the
   embedded one (too small to trust: measured, see ``Answerer.mode_for``): the passage sentences
   that best answer the question, verbatim, no model call; a quote finding no answering sentence
   is a refusal;
3. **generate** otherwise: the grounded prompt, fitted to the model's context.
Every answer's sentences are then checked against the passages (``rag.claims``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Literal

from rag.answer import Answer, AnswerStream, Event, Plan
from rag.backend_context import reported_context
from rag.claims import check_claims
from rag.errors import InvalidRequestError, RagError
from rag.fit import chat_context, fit_messages
from rag.models import ChatDelta, ChatModel, Embedder, check_question
from rag.prompt import history_note, refusal
from rag.quote import quote, stream_pieces
from rag.retrieval import Filters, Mode
from rag.rewrite import Rewrite, standalone
from rag.searching import Searcher
from rag.settings import ANSWER_MODES, AnswerMode, Settings
from rag.text import language


def check_answer_mode(mode: str) -> AnswerMode:
    if mode not in ANSWER_MODES:
        raise InvalidRequestError(f"Unknown answer mode '{mode}': use one of {', '.join(ANSWER_MODES)}.")
    return mode  # type: ignore[return-value]


class Answerer:
    def __init__(
        self,
        settings: Settings,
        searcher: Searcher,
        chat: Callable[[], ChatModel],
        embedder: Callable[[], Embedder],
    ) -> None:
        self.settings = settings
        self.searcher = searcher
        self._chat = chat
        self._embedder = embedder
        self._context: int | None = None  # the chat server's reported context; 0: it says nothing

    def mode_for(self, question: str, asked: AnswerMode) -> Literal["generate", "quote"]:
        """``auto``: quote on the embedded chat model, generate on a configured backend. Measured
        on data/eval/demo.jsonl (docs/benchmarks.md, "Answers"): the embedded 135M model answered
        50% of the questions right with 64% of its sentences unsupported, quoting 86% with 0%;
        and it cannot write Chinese at all. A configured backend is a model the user chose."""
        if asked != "auto":
            return asked
        return "quote" if self.settings.base_url is None else "generate"

    def start(
        self,
        question: str,
        k: int | None = None,
        *,
        mode: Mode | str | None = None,
        filters: Filters | None = None,
        min_score: float | None = None,
        history: list[dict[str, Any]] | None = None,
        params: dict[str, Any] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        answer: str | None = None,
        strict: bool = False,
    ) -> AnswerStream:
        """Retrieve, then open the answer stream. ``history``: earlier conversation turns (OpenAI
        messages): the question is rewritten to stand alone for retrieval, and the turns go before
        it in the prompt (oldest dropped first if they do not fit); ``params``: chat parameters for
        the backend over the configured defaults; ``attachments``: OpenAI content parts (images)
        sent with the grounded question; ``answer``: generate, quote or auto (RAG_ANSWER_MODE);
        ``strict``: leave unsupported sentences out of the answer."""
        question = check_question(question)
        s = self.settings
        asked = check_answer_mode(answer or s.answer_mode)
        t0 = time.perf_counter()
        history = history or []
        if s.rewrite == "off":
            rewrite = Rewrite(question, "none")
        else:
            rewrite = standalone(question, history, self._rewriter(), temperature=0, seed=s.seed)
        hits = self.searcher.search(rewrite.query, k, mode=mode, filters=filters, min_score=min_score)
        if not hits and rewrite.method == "model":
            # A model's rewrite can drift off the documents' words (a small model may answer
            # instead of rewriting); the rules keep the question's own words.
            rewrite = replace(standalone(question, history, None), error="the model's rewrite matched no passage")
            hits = self.searcher.search(rewrite.query, k, mode=mode, filters=filters, min_score=min_score)
        if not hits:
            raise InvalidRequestError(
                "No indexed passage matches the filters"
                + (" and minimum score" if min_score is not None else "")
                + "; widen them (`rag search` shows what matches)."
            )
        t1 = time.perf_counter()
        plan = Plan(
            question, rewrite.query, hits, self.mode_for(question, asked), strict=strict, rewrite=rewrite.method
        )
        check = self._checker([h.text for h in hits])
        deltas: Iterator[ChatDelta]
        if max(h.relevance for h in hits) < s.min_relevance:
            plan.mode = "refused"
            deltas = iter([ChatDelta(refusal(question))])
        elif plan.mode == "quote":
            quoted = quote(question, hits, embedder=self._embedder())
            if quoted.refused:
                plan.mode = "refused"
            deltas = (ChatDelta(piece) for piece in stream_pieces(quoted))
        else:
            deltas = self._generate(plan, history, params, attachments)
        return AnswerStream(plan, deltas, t0, t1, check)

    def _rewriter(self) -> ChatModel | None:
        """The chat model rewrites follow-ups, except the embedded one (too small: rules do it)."""
        how = self.settings.rewrite
        if how == "rules" or (how == "auto" and self.settings.base_url is None):
            return None
        return self._chat()

    def _reported_context(self) -> int | None:
        """What a configured chat server says its context is (asked once, then remembered); not
        asked when RAG_CHAT_CONTEXT is set, for the embedded engine (we start it) or for Ollama
        (its /v1 does not say)."""
        s = self.settings
        if s.chat_context is not None or s.base_url is None or s.backend_kind == "ollama":
            return None
        if self._context is None:
            self._context = reported_context(s.base_url, s.chat_model_name, s.api_key) or 0
        return self._context or None

    def _checker(self, passages: list[str]) -> Callable[[str], Any]:
        embedder = self._embedder()
        return lambda text: check_claims(text, passages, embedder=embedder)

    def _generate(
        self,
        plan: Plan,
        history: list[dict[str, Any]],
        params: dict[str, Any] | None,
        attachments: list[dict[str, Any]] | None,
    ) -> Iterator[ChatDelta]:
        s = self.settings
        chat_params = {"temperature": s.temperature, "max_tokens": s.max_tokens, "seed": s.seed} | (params or {})
        context = chat_context(
            s.chat_context,
            reported=self._reported_context(),
            embedded_ctx=s.embedded_ctx if s.base_url is None else None,
            ollama=s.backend_kind == "ollama",
        )
        fitted = fit_messages(
            plan.question, plan.hits, history, context_tokens=context, reserve_tokens=int(chat_params["max_tokens"])
        )
        plan.in_prompt = fitted.in_prompt
        if fitted.history_dropped:
            plan.notes.append(history_note(fitted.history_dropped, language(plan.question)))
        messages = fitted.messages
        if attachments:
            messages[-1]["content"] = [{"type": "text", "text": messages[-1]["content"]}, *attachments]
        return self._chat().stream(messages, **chat_params)

    def stream(self, question: str, k: int | None = None, **options: Any) -> Iterator[Event]:
        """``start`` as events; errors become an ``error`` event. Options as for ``start``."""
        try:
            answer = self.start(question, k, **options)
        except RagError as exc:
            yield Event("error", exc.to_dict() | {"status": exc.status})
            return
        yield from answer

    def ask(self, question: str, k: int | None = None, **options: Any) -> Answer:
        """The whole answer at once. Options as for ``start``."""
        stream = self.start(question, k, **options)
        for _ in stream:
            pass
        if stream.error is not None:
            raise stream.error
        assert stream.answer is not None
        return stream.answer
