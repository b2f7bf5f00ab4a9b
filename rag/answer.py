"""An answer as it streams: the events (``sources``, ``token``..., ``done`` or ``error``), and the
whole answer they add up to. The same names and data as the HTTP Server-Sent Events.

An answer is made one of three ways (``Plan.mode``): ``generate`` (the chat model's words),
``quote`` (passage sentences chosen without a model) or ``refused`` (no passage cleared
``RAG_MIN_RELEVANCE``: no model was asked). All three stream the same events; ``done`` carries
``claims`` (each sentence checked against the passages, ``rag.claims``) and ``refused``. In strict
mode a sentence is released only once it is checked, and unsupported ones are left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rag.citations import MARKER, MarkerFilter, attribute
from rag.errors import RagError
from rag.models import ChatDelta, Usage
from rag.prompt import refusal
from rag.store import Hit
from rag.text import sentence_spans

if TYPE_CHECKING:
    from rag.claims import Claim

Check = Callable[[str], "list[Claim]"]


@dataclass
class Event:
    """One step of a streamed answer; the same names and data as the HTTP SSE events."""

    type: str  # "sources" | "token" | "done" | "error"
    data: dict[str, Any]


@dataclass
class Plan:
    """What an answer is made from, decided before the first event."""

    question: str
    query: str  # what was searched: the question, or its standalone rewrite in a conversation
    hits: list[Hit]
    mode: str  # "generate" | "quote" | "refused"
    in_prompt: list[bool] | None = None  # per hit: False = did not fit the chat model's context
    strict: bool = False
    rewrite: str = "none"  # how the query was made: none, model or rules
    notes: list[str] = field(default_factory=list)  # said to the user after the answer

    @property
    def refused(self) -> bool:
        return self.mode == "refused"

    def source_dicts(self) -> list[dict[str, Any]]:
        flags = self.in_prompt or [True] * len(self.hits)
        return [
            source_dict(i, h) | {"in_prompt": f} for i, (h, f) in enumerate(zip(self.hits, flags, strict=True), start=1)
        ]


@dataclass
class Answer:
    text: str
    citations: list[dict[str, Any]]
    sources: list[Hit]
    usage: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    refused: bool = False
    mode: str = "generate"
    query: str = ""
    omitted: list[str] = field(default_factory=list)  # strict mode: unsupported sentences left out
    notes: list[str] = field(default_factory=list)

    @property
    def unsupported(self) -> list[Claim]:
        return [c for c in self.claims if not c.supported]

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.text,
            "refused": self.refused,
            "mode": self.mode,
            "query": self.query,
            "citations": self.citations,
            "claims": [c.to_dict() for c in self.claims],
            "omitted": self.omitted,
            "notes": self.notes,
            "sources": [source_dict(i, h) for i, h in enumerate(self.sources, start=1)],
            "usage": self.usage,
            "timings": self.timings,
        }


def source_dict(n: int, hit: Hit) -> dict[str, Any]:
    return {"n": n, **hit.to_dict()}


class AnswerStream:
    """A question whose sources are retrieved and whose answer is ready to stream (the chat stream
    already open, so setup errors have been raised); iterating yields the events."""

    def __init__(
        self, plan: Plan, deltas: Iterator[ChatDelta], t0: float, t_retrieved: float, check: Check | None = None
    ):
        self.plan = plan
        self.question = plan.question
        self.hits = plan.hits
        self._deltas = deltas
        self._t0 = t0
        self._t_retrieved = t_retrieved
        self._check = check
        self._omitted: list[str] = []
        self._emptied = False  # strict mode left nothing: the answer became a refusal
        self.answer: Answer | None = None
        self.error: RagError | None = None

    def close(self) -> None:
        """Close the chat stream (its HTTP response to the model server), read or not: a client
        that went away must not keep the model generating for nobody."""
        close = getattr(self._deltas, "close", None)
        if callable(close):
            close()

    def __iter__(self) -> Iterator[Event]:
        plan = self.plan
        yield Event("sources", {"sources": plan.source_dicts(), "query": plan.query, "mode": plan.mode})
        markers = MarkerFilter(len(self.hits))
        parts: list[str] = []
        held = ""  # strict mode: the sentence still being written
        usage = Usage()
        first: float | None = None
        try:
            for delta in self._deltas:
                if delta.usage is not None:
                    usage = delta.usage
                if not delta.text:
                    continue
                first = first or time.perf_counter()
                out = markers.feed(delta.text)
                if plan.strict and out:
                    held += out
                    spans = sentence_spans(held)
                    if len(spans) < 2:
                        continue
                    out, held = self._kept(held[: spans[-1][0]]), held[spans[-1][0] :]
                if out:
                    parts.append(out)
                    yield Event("token", {"text": out})
            tail = markers.flush()
            if plan.strict:
                tail = self._kept(held + tail)
                if self._omitted and not ("".join(parts) + tail).strip():
                    # Every sentence was unsupported: say so rather than answer with nothing.
                    tail = refusal(self.question)
                    self._emptied = True
            if tail:
                parts.append(tail)
                yield Event("token", {"text": tail})
        except RagError as exc:
            self.error = exc
            yield Event("error", exc.to_dict() | {"status": exc.status})
            return
        end = time.perf_counter()
        text = "".join(parts)
        yield Event("done", self._finish(text, usage, first, end))

    def _kept(self, text: str) -> str:
        """Strict mode: ``text`` without the sentences the check does not support."""
        if self._check is None or not text.strip():
            return text
        out, pos = [], 0
        for claim in self._check(text):
            if not claim.supported:
                out.append(text[pos : claim.start])
                self._omitted.append(claim.text)
                pos = claim.end
        return "".join(out) + text[pos:]

    def _finish(self, text: str, usage: Usage, first: float | None, end: float) -> dict[str, Any]:
        plan = self.plan
        if self._emptied:
            plan.mode = "refused"
            plan.notes.append("Strict mode: no sentence of the answer was supported by the passages.")
        claims = [] if plan.refused or self._check is None else self._check(text)
        if plan.refused:
            citations: list[dict[str, Any]] = []
        else:
            cited = list(dict.fromkeys(int(n) for m in MARKER.finditer(text) for n in m.group(1).split(",")))
            found = attribute(text, [h.text for h in self.hits], cited=cited)
            citations = [source_dict(a.n, self.hits[a.n - 1]) | {"inferred": a.inferred} for a in found]
        gen_s = end - (first or end)
        timings = {
            "retrieval_ms": round((self._t_retrieved - self._t0) * 1000, 1),
            "first_token_ms": round(((first or end) - self._t0) * 1000, 1),
            "total_ms": round((end - self._t0) * 1000, 1),
            "tokens_per_s": round(usage.completion_tokens / gen_s, 1) if gen_s > 0 else 0.0,
        }
        self.answer = Answer(
            text,
            citations,
            self.hits,
            usage.to_dict(),
            timings,
            claims,
            plan.refused,
            plan.mode,
            plan.query,
            self._omitted,
            plan.notes,
        )
        data = {
            "answer": text,
            "refused": plan.refused,
            "mode": plan.mode,
            "citations": citations,
            "claims": [c.to_dict() for c in claims],
            "usage": usage.to_dict(),
            "timings": timings,
        }
        if plan.refused:
            data["sources"] = plan.source_dicts()  # the closest passages, to show what was found
        if plan.strict:
            data["omitted"] = self._omitted
        if plan.notes:
            data["notes"] = plan.notes
        return data
