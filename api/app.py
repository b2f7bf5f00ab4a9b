"""The HTTP service: FastAPI, answers streamed as Server-Sent Events.

Everything that can fail before the first byte (empty question, empty index,
model server down, unknown model) is raised before the stream starts, so the
client gets a JSON error with the right status; a failure after that arrives
as an ``error`` event, and the stream ends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from api.openai_api import OpenAIAPI
from api.openai_api import router as openai_router
from api.schemas import ErrorResponse, QueryRequest, SearchRequest, SearchResponse
from rag.engine import AnswerStream, Rag
from rag.errors import RagError
from rag.settings import Settings

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid request"},
    409: {"model": ErrorResponse, "description": "Index empty or built with another embedding model"},
    502: {"model": ErrorResponse, "description": "Model server unreachable or refused the request"},
    504: {"model": ErrorResponse, "description": "Model server timed out"},
}


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _events(stream: AnswerStream) -> Iterator[str]:
    for event in stream:
        yield sse(event.type, event.data)


def create_app(settings: Settings | None = None, rag: Rag | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.rag = rag or Rag(settings or Settings())
        app.state.openai = OpenAIAPI(app.state.rag)
        try:
            yield
        finally:
            app.state.openai.close()
            if rag is None:
                app.state.rag.close()

    app = FastAPI(
        title="Local RAG",
        summary="Ask questions about your own documents; answers cite file and page.",
        version="0.1.0",
        lifespan=lifespan,
    )

    app.include_router(openai_router(lambda: app.state.openai))

    @app.exception_handler(RagError)
    async def rag_error(request: Request, exc: RagError) -> JSONResponse:
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()
        )
        body = {"message": f"Invalid request: {problems}", "type": "InvalidRequestError", "code": "invalid_request"}
        return JSONResponse({"error": body}, status_code=400)

    @app.post(
        "/query",
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "Events: sources, token (many), then done or error.",
            },
            **ERRORS,
        },
    )
    def query(body: QueryRequest, request: Request) -> StreamingResponse:
        """Answer a question as a stream of Server-Sent Events:
        `sources` (retrieved chunks), `token` (text deltas), then `done`
        (answer, citations, usage, timings) or `error`."""
        stream = request.app.state.rag.start(body.question, body.k, **body.options())
        return StreamingResponse(
            _events(stream),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post("/search", response_model=SearchResponse, responses=ERRORS)
    def search(body: SearchRequest, request: Request) -> dict[str, Any]:
        """The best-matching chunks for `query`, without asking a model."""
        hits = request.app.state.rag.search(body.query, body.k, **body.options())
        return {"hits": [h.to_dict() for h in hits]}

    @app.get("/health")
    def health(request: Request) -> dict[str, Any]:
        """Liveness plus what the service is configured with."""
        r: Rag = request.app.state.rag
        return {
            "status": "ok",
            "collection": r.settings.collection,
            "chunks": r.store.count(),
            "chat_model": r.settings.chat_model_name,
            "embed_model": r.settings.embed_model_name,
        }

    return app
