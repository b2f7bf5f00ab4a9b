"""What the routes need, as FastAPI dependencies, all from ``request.app.state`` (built in the
app's lifespan, :func:`api.app.create_app`): the app's :class:`~rag.engine.Rag`, one ``Rag`` per
other collection a grounded model names (:class:`Collections`), the backend :class:`~api.proxy.Proxy`,
and a ``/v1`` request's JSON body (:func:`openai_body`).

The dependencies are ``async`` so they run on the event loop, not in the thread pool.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Annotated, Any

from fastapi import Depends, Request

from api.auth import OPEN, Access, Caller, require
from api.bounds import check_json_encodable, check_openai_params
from api.openai_wire import OpenAIError
from api.proxy import Proxy
from rag.engine import Rag
from rag.errors import InvalidRequestError, RagError

GROUNDED = "rag"
# Chroma's rule for collection names (3-63 characters, letters, digits, '.', '_', '-', starting and
# ending with a letter or digit); it also keeps a name safe as the manifest's file name.
COLLECTION_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{1,61})[A-Za-z0-9]$")


class UnknownCollectionError(RagError):
    code = "collection_not_found"
    status = 404


def check_collection_name(name: str) -> str:
    """``name`` if it is a valid collection name, else a 400."""
    if not COLLECTION_NAME.match(name) or ".." in name:
        raise InvalidRequestError(
            f"Invalid collection name {name[:80]!r}: 3-63 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit."
        )
    return name


class Collections:
    """One ``Rag`` per collection: the app's own, and one per other collection a request names
    (a ``collection`` in a body, a grounded model ``rag:<collection>``), made on first use with the
    app's settings and model clients, and closed with the app."""

    def __init__(self, rag: Rag) -> None:
        self.rag = rag
        self._by_collection: dict[str, Rag] = {}
        self._lock = threading.Lock()

    @property
    def default(self) -> str:
        return self.rag.settings.collection

    def close(self) -> None:
        for r in self._by_collection.values():
            r.close()

    def names(self) -> list[str]:
        """Every collection of the index, the app's own first (even before anything is ingested)."""
        try:
            stored = self.rag.collections()
        except RagError:  # no index yet
            stored = []
        return list(dict.fromkeys([self.default, *stored]))

    def rag_for(self, name: str, *, create: bool = False) -> Rag:
        """The ``Rag`` of collection ``name``: 400 for an invalid name; 404 for a collection that
        does not exist (other than the app's own) unless ``create`` (a write that makes it)."""
        if name == self.default:
            return self.rag
        with self._lock:
            if name in self._by_collection:
                return self._by_collection[name]
        check_collection_name(name)
        if not create and name not in self.names():
            raise UnknownCollectionError(f"There is no collection named '{name}'.")
        with self._lock:
            if name not in self._by_collection:
                # The same model clients (and so the same embedded engines): only the collection differs.
                settings = self.rag.settings.model_copy(update={"collection": name})
                self._by_collection[name] = Rag(settings, embedder=self.rag.embedder, chat=self.rag.chat)
            return self._by_collection[name]

    def checked(self, caller: Caller, name: str | None, scope: Access, *, create: bool = False) -> Rag:
        """The ``Rag`` of ``name`` (default: the app's collection) for ``caller``: 400 for an invalid
        name, 403 outside the caller's scope (before saying whether it exists), then :meth:`rag_for`."""
        name = self.default if name is None else name
        if name != self.default:
            check_collection_name(name)
        require(caller, name, scope)
        return self.rag_for(name, create=create)

    @staticmethod
    def collection_of(model: str, default: str) -> str | None:
        """The collection a grounded model name answers from (``rag``: ``default``); None for any
        other model (the backend's)."""
        if model == GROUNDED:
            return default
        if model.startswith(GROUNDED + ":"):
            return model.split(":", 1)[1]
        return None

    def grounded_rag(self, model: str, caller: Caller | None = None) -> Rag | None:
        """The ``Rag`` for a grounded model name (403 outside ``caller``'s scope, OpenAI-shaped 400
        or 404 for an invalid or unknown collection); None for any other model (the backend's)."""
        name = self.collection_of(model, self.default)
        if name is None:
            return None
        try:
            return self.checked(caller or OPEN, name, "read")
        except InvalidRequestError as exc:
            raise OpenAIError(400, exc.message, param="model") from None
        except UnknownCollectionError:
            raise OpenAIError(
                404, f"The model '{model}' does not exist.", param="model", code="model_not_found"
            ) from None


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
    except RecursionError:
        raise OpenAIError(400, "The body is nested too deeply.") from None
    if not isinstance(body, dict):
        raise OpenAIError(400, "The body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise OpenAIError(400, "'model' is required: 'rag' for grounded answers, or a backend model.", param="model")
    check_json_encodable(body)  # a lone surrogate or NaN would fail later, at the backend or in the prompt
    check_openai_params(body)
    return body


AppRag = Annotated[Rag, Depends(get_rag)]
AppCollections = Annotated[Collections, Depends(get_collections)]
AppProxy = Annotated[Proxy, Depends(get_proxy)]
OpenAIBody = Annotated[dict[str, Any], Depends(openai_body)]
