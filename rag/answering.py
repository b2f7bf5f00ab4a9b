"""Answering: retrieve, build the grounded prompt, open the chat stream (``AnswerStream``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from rag.answer import Answer, AnswerStream, Event
from rag.errors import InvalidRequestError, RagError
from rag.models import ChatModel, check_question
from rag.prompt import build_messages
from rag.retrieval import Filters, Mode
from rag.searching import Searcher
from rag.settings import Settings


class Answerer:
    def __init__(self, settings: Settings, searcher: Searcher, chat: Callable[[], ChatModel]) -> None:
        self.settings = settings
        self.searcher = searcher
        self._chat = chat

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
    ) -> AnswerStream:
        """Retrieve, then open the answer stream. ``history``: earlier conversation turns, put
        before the grounded question; ``params``: chat parameters for the backend (temperature,
        seed, stop, ...), over the configured defaults; ``attachments``: OpenAI content parts (images)
        sent with the grounded question."""
        question = check_question(question)
        t0 = time.perf_counter()
        hits = self.searcher.search(question, k, mode=mode, filters=filters, min_score=min_score)
        if not hits:
            raise InvalidRequestError(
                "No indexed passage matches the filters"
                + (" and minimum score" if min_score is not None else "")
                + "; widen them (`rag search` shows what matches)."
            )
        t1 = time.perf_counter()
        s = self.settings
        chat_params = {"temperature": s.temperature, "max_tokens": s.max_tokens, "seed": s.seed} | (params or {})
        messages = build_messages(question, hits, history)
        if attachments:
            messages[-1]["content"] = [{"type": "text", "text": messages[-1]["content"]}, *attachments]
        deltas = self._chat().stream(messages, **chat_params)
        return AnswerStream(question, hits, deltas, t0, t1)

    def stream(self, question: str, k: int | None = None, **options: Any) -> Iterator[Event]:
        """``start`` as events; errors become an ``error`` event. Options as for ``search``."""
        try:
            answer = self.start(question, k, **options)
        except RagError as exc:
            yield Event("error", exc.to_dict() | {"status": exc.status})
            return
        yield from answer

    def ask(self, question: str, k: int | None = None, **options: Any) -> Answer:
        """The whole answer at once. Options (mode, filters, min_score) as for ``search``."""
        stream = self.start(question, k, **options)
        for _ in stream:
            pass
        if stream.error is not None:
            raise stream.error
        assert stream.answer is not None
        return stream.answer
