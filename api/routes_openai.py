"""``/v1``: the OpenAI protocol, so any OpenAI client gets grounded answers by changing its base URL.

- ``rag`` (the default collection) and ``rag:<collection>`` are *grounded* models: the
  last user turn is the question (earlier turns are conversation), the answer comes
  from the same code as ``POST /query`` and carries ``citations`` (on the message, and
  on the final chunk when streaming) that plain clients ignore (:mod:`api.grounded`).
- Any other model name is passed to the backend unchanged (streaming too), as are
  ``/v1/completions`` and ``/v1/embeddings``: our URL is a drop-in for the backend's (:mod:`api.proxy`).
- Errors have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``; a
  failure mid-stream sends one error chunk and ends the stream (:mod:`api.openai_wire`).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from api import grounded
from api.auth import Caller, CallerDep
from api.backends import check_model_served, check_supported
from api.bounds import check_embeddings_input
from api.deps import GROUNDED, AppCollections, AppProxy, AppRag, OpenAIBody
from api.openai_wire import OpenAIError, has_images
from rag.errors import RagError

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])


def backend_allowed(caller: Caller) -> None:
    """A backend model (passed through, no documents) needs a key that may read some collection."""
    if not caller.reads_any:
        raise OpenAIError(403, "This API key may not use the backend's models.", code="forbidden")


@router.get("/models")
def models(caller: CallerDep, rag: AppRag, proxy: AppProxy) -> dict[str, Any]:
    """Grounded models (one per collection the key can read) and the backend's own."""
    now = int(time.time())
    default = rag.settings.collection
    names = [GROUNDED] if caller.can(default, "read") else []
    with contextlib.suppress(RagError):  # no index yet: only the default grounded model
        names += [f"{GROUNDED}:{c}" for c in caller.readable(rag.collections())]
    listed = [{"id": n, "object": "model", "created": now, "owned_by": "rag"} for n in dict.fromkeys(names)]
    return {"object": "list", "data": listed + (proxy.backend_models() if caller.reads_any else [])}


@router.post("/chat/completions", response_model=None)
async def chat(caller: CallerDep, body: OpenAIBody, rag: AppRag, collections: AppCollections, proxy: AppProxy) -> Any:
    """Grounded answers for `rag` / `rag:<collection>`; any other model goes to the backend."""
    target = collections.grounded_rag(body["model"], caller)
    if target is None:
        backend_allowed(caller)
        # What the backend would ignore silently (Ollama) or cannot do (the embedded model) is refused.
        check_model_served(rag.settings, body["model"], embeddings=False)
        check_supported(rag.settings, body, has_images(body.get("messages")))
        return await run_in_threadpool(proxy.forward, "/chat/completions", body)
    return await run_in_threadpool(grounded.answer, target, body)


@router.post("/completions", response_model=None)
async def completions(
    caller: CallerDep, body: OpenAIBody, rag: AppRag, collections: AppCollections, proxy: AppProxy
) -> Any:
    """Passed to the backend (the embedded chat model when none is configured)."""
    if collections.collection_of(body["model"], collections.default) is not None:
        raise OpenAIError(400, "Grounded models answer chat only: use /v1/chat/completions.", param="model")
    backend_allowed(caller)
    check_model_served(rag.settings, body["model"], embeddings=False)
    return await run_in_threadpool(proxy.forward, "/completions", body)


@router.post("/embeddings", response_model=None)
async def embeddings(caller: CallerDep, body: OpenAIBody, rag: AppRag, proxy: AppProxy) -> Any:
    """Passed to the embeddings backend (the embedded model when none is configured)."""
    backend_allowed(caller)
    check_model_served(rag.settings, body["model"], embeddings=True)
    check_embeddings_input(rag.settings, body)  # the embedded embedder's time grows with its input squared
    return await run_in_threadpool(proxy.forward, "/embeddings", body, embeddings=True)
