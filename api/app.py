"""The HTTP service: FastAPI, answers streamed as Server-Sent Events.

- ``/query``, ``/search``: :mod:`api.routes_query`; ``/health``: :mod:`api.routes_health`;
  ``/v1`` (OpenAI-compatible): :mod:`api.routes_openai`.
- What the routes use (the app's ``Rag``, one per other collection, the backend proxy) is built
  here, in the lifespan, kept on ``app.state`` and handed to them by :mod:`api.deps`.
- Errors: every one is JSON, ``{"error": {"message", "type", "code"}}`` (``RagError.to_dict``), in
  OpenAI's shape on ``/v1`` (:mod:`api.errors`), with internal addresses left out.
- Limits (body size, rate, concurrent answers, Host check, security headers, CORS): :mod:`api.limits`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import (
    auth,
    errors,
    limits,
    routes_collections,
    routes_documents,
    routes_health,
    routes_openai,
    routes_query,
    routes_verify,
    routes_web,
)
from api.deps import Collections
from api.jobs import Jobs
from api.proxy import Proxy
from rag.engine import Rag
from rag.errors import RagError
from rag.settings import Settings

log = logging.getLogger("rag.serve")


def _warm(rag: Rag) -> None:
    """Start whichever embedded engines this service uses; a failure is only logged here (the first
    request that needs the engine tries again and reports it)."""
    s = rag.settings
    engines = [rag.engines.chat] if s.base_url is None else []
    if s.embed_url is None:
        engines.append(rag.engines.embeddings)
    for engine in engines:
        try:
            engine.url()
        except RagError as exc:
            log.warning("could not start the embedded %s engine: %s", engine.spec.name, exc.message)


def create_app(settings: Settings | None = None, rag: Rag | None = None, *, warm: bool = False) -> FastAPI:
    """The service for ``rag`` (else a ``Rag`` of ``settings``, closed with the app). ``warm``
    (``rag serve``): start the embedded engines now, in the background, not at the first question."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.rag = rag or Rag(settings or Settings())
        if warm:
            threading.Thread(target=_warm, args=(app.state.rag,), name="rag-warm", daemon=True).start()
        app.state.proxy = Proxy(app.state.rag)
        app.state.collections = Collections(app.state.rag)
        app.state.jobs = Jobs()
        try:
            yield
        finally:
            app.state.jobs.stop()  # running ingests stop at their next file; the rest is redone next time
            app.state.proxy.close()
            app.state.collections.close()
            if rag is None:
                app.state.rag.close()

    app = FastAPI(
        title="Local RAG",
        summary="Ask questions about your own documents; answers cite file and page.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served by api.auth, behind a key when keys are on
        redoc_url=None,
        openapi_url=None,
    )
    conf = rag.settings if rag is not None else settings or Settings()
    limits.install(app, conf)  # before auth, so inside it: the rate limit sees the caller's key_id
    auth.install(app)
    limits.install_cors(app, conf)
    errors.install(app)
    app.include_router(routes_openai.router)
    app.include_router(routes_query.router)
    app.include_router(routes_health.router)
    app.include_router(routes_verify.router)
    app.include_router(routes_documents.router)
    app.include_router(routes_collections.router)
    app.include_router(routes_web.router)
    return app
