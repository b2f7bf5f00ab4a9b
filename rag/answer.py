"""An answer as it streams: the events (``sources``, ``token``..., ``done`` or ``error``), and the
whole answer they add up to. The same names and data as the HTTP Server-Sent Events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rag.citations import MarkerFilter, attribute
from rag.errors import RagError
from rag.models import ChatDelta, Usage
from rag.store import Hit


@dataclass
class Event:
    """One step of a streamed answer; the same names and data as the HTTP SSE events."""

    type: str  # "sources" | "token" | "done" | "error"
    data: dict[str, Any]


@dataclass
class Answer:
    text: str
    citations: list[dict[str, Any]]
    sources: list[Hit]
    usage: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.text,
            "citations": self.citations,
            "sources": [source_dict(i, h) for i, h in enumerate(self.sources, start=1)],
            "usage": self.usage,
            "timings": self.timings,
        }


def source_dict(n: int, hit: Hit) -> dict[str, Any]:
    return {"n": n, **hit.to_dict()}


class AnswerStream:
    """A question whose sources are retrieved and whose chat stream is already open,
    so setup errors have been raised; iterating yields the events."""

    def __init__(self, question: str, hits: list[Hit], deltas: Iterator[ChatDelta], t0: float, t_retrieved: float):
        self.question = question
        self.hits = hits
        self._deltas = deltas
        self._t0 = t0
        self._t_retrieved = t_retrieved
        self.answer: Answer | None = None
        self.error: RagError | None = None

    def __iter__(self) -> Iterator[Event]:
        yield Event("sources", {"sources": [source_dict(i, h) for i, h in enumerate(self.hits, start=1)]})
        markers = MarkerFilter(len(self.hits))
        parts: list[str] = []
        usage = Usage()
        first: float | None = None
        try:
            for delta in self._deltas:
                if delta.usage is not None:
                    usage = delta.usage
                if delta.text:
                    first = first or time.perf_counter()
                    out = markers.feed(delta.text)
                    if out:
                        parts.append(out)
                        yield Event("token", {"text": out})
            tail = markers.flush()
            if tail:
                parts.append(tail)
                yield Event("token", {"text": tail})
        except RagError as exc:
            self.error = exc
            yield Event("error", exc.to_dict() | {"status": exc.status})
            return
        end = time.perf_counter()
        text = "".join(parts)
        cited = attribute(text, [h.text for h in self.hits], cited=markers.cited)
        citations = [source_dict(a.n, self.hits[a.n - 1]) | {"inferred": a.inferred} for a in cited]
        gen_s = end - (first or end)
        timings = {
            "retrieval_ms": round((self._t_retrieved - self._t0) * 1000, 1),
            "first_token_ms": round(((first or end) - self._t0) * 1000, 1),
            "total_ms": round((end - self._t0) * 1000, 1),
            "tokens_per_s": round(usage.completion_tokens / gen_s, 1) if gen_s > 0 else 0.0,
        }
        self.answer = Answer(text, citations, self.hits, usage.to_dict(), timings)
        yield Event("done", {"answer": text, "citations": citations, "usage": usage.to_dict(), "timings": timings})
