"""What the routes need, as FastAPI dependencies, all from ``request.app.state`` (built in the
app's lifespan, :func:`api.app.create_app`): the app's :class:`~rag.engine.Rag`, one ``Rag`` per
other collection a grounded model names (:class:`Collections`), the backend :class:`~api.proxy.Proxy`,
and a ``/v1`` request's JSON body (:func:`openai_body`).

The dependencies are ``async`` so they run on the event loop, not in the thread pool.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request

from api.openai_wire import OpenAIError
from api.proxy import Proxy
from rag.engine import Rag

GROUNDED = "rag"


class Collections:
    """The ``Rag`` a grounded model name answers from: ``rag`` is the app's own, ``rag:<collection>``
    one per collection, made on first use with the app's settings and closed with the app."""

    def __init__(self, rag: Rag) -> None:
        self.rag = rag
        self._by_collection: dict[str, Rag] = {}

    def close(self) -> None:
        for r in self._by_collection.values():
            r.close()

    def grounded_rag(self, model: str) -> Rag | None:
        """The ``Rag`` for a grounded model name; None for any other model (the backend's).
        Called from ``async`` routes, on the event loop, so two requests never make the same one."""
        if model == GROUNDED:
            return self.rag
        if not model.startswith(GROUNDED + ":"):
            return None
        name = model.split(":", 1)[1]
        if name == self.rag.settings.collection:
            return self.rag
        if name not in self._by_collection:
            # The same model clients (and so the same embedded engines): only the collection differs.
            settings = self.rag.settings.model_copy(update={"collection": name})
            self._by_collection[name] = Rag(settings, embedder=self.rag.embedder, chat=self.rag.chat)
        return self._by_collection[name]


async def get_rag(request: Request) -> Rag:
    rag: Rag = request.app.state.rag
    return rag


async def get_collections(request: Request) -> Collections:
    collections: Collections = request.app.state.collections
    return collections


async def get_proxy(request: Request) -> Proxy:
    proxy: Proxy = request.app.state.proxy
    return proxy


async def openai_body(request: Request) -> dict[str, Any]:
    """A ``/v1`` POST body: a JSON object naming a ``model`` (else a 400 in OpenAI's shape)."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise OpenAIError(400, "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise OpenAIError(400, "The body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise OpenAIError(400, "'model' is required: 'rag' for grounded answers, or a backend model.", param="model")
    return body


AppRag = Annotated[Rag, Depends(get_rag)]
AppCollections = Annotated[Collections, Depends(get_collections)]
AppProxy = Annotated[Proxy, Depends(get_proxy)]
OpenAIBody = Annotated[dict[str, Any], Depends(openai_body)]
