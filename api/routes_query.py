"""``POST /query`` (an answer as Server-Sent Events) and ``POST /search`` (chunks, no model).

Everything that can fail before the first byte (empty question, empty index, model server down,
unknown model) is raised before the stream starts, so the client gets a JSON error with the right
status; a failure after that arrives as an ``error`` event, and the stream ends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from api.auth import CallerDep
from api.bounds import check_history, check_text
from api.deps import AppCollections
from api.errors import redact
from api.schemas import ErrorResponse, QueryRequest, SearchRequest, SearchResponse
from api.streams import ClosingStream, answer_closer
from rag.answer import AnswerStream
from rag.settings import Settings

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid request"},
    401: {"model": ErrorResponse, "description": "No API key, or a wrong one (when keys are on)"},
    403: {"model": ErrorResponse, "description": "The API key may not read this collection"},
    404: {"model": ErrorResponse, "description": "No such collection"},
    409: {"model": ErrorResponse, "description": "Index empty or built with another embedding model"},
    502: {"model": ErrorResponse, "description": "Model server unreachable or refused the request"},
    504: {"model": ErrorResponse, "description": "Model server timed out"},
}

router = APIRouter()


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _events(stream: AnswerStream, settings: Settings) -> Iterator[str]:
    for event in stream:
        data = event.data
        if event.type == "error":  # no internal address or directory reaches the client
            data = data | {"message": redact(str(data.get("message", "")), settings)}
        yield sse(event.type, data)


@router.post(
    "/query",
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Events: sources, token (many), then done or error.",
        },
        **ERRORS,
    },
)
def query(body: QueryRequest, collections: AppCollections, caller: CallerDep) -> StreamingResponse:
    """Answer a question as a stream of Server-Sent Events:
    `sources` (retrieved chunks, each with `relevance` and `in_prompt`, and the `query` searched),
    `token` (text deltas), then `done` (answer, `refused`, citations, `claims`: each sentence with
    `supported`, usage, timings) or `error`. When no passage is relevant enough (RAG_MIN_RELEVANCE)
    the answer is a refusal (`refused: true`, the closest passages in `sources`), and no model is asked."""
    rag = collections.checked(caller, body.collection, "read")
    check_text(rag.settings, "question", body.question)
    check_history(rag.settings, (t.content for t in body.history))
    stream = rag.start(body.question, body.k, **body.answer_options())
    return ClosingStream(
        _events(stream, rag.settings),
        close=answer_closer(stream),  # a client gone: the model stops
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/search", response_model=SearchResponse, responses=ERRORS)
def search(body: SearchRequest, collections: AppCollections, caller: CallerDep) -> dict[str, Any]:
    """The best-matching chunks for `query`, without asking a model."""
    rag = collections.checked(caller, body.collection, "read")
    check_text(rag.settings, "query", body.query)
    hits = rag.search(body.query, body.k, **body.options())
    return {"hits": [h.to_dict() for h in hits]}
