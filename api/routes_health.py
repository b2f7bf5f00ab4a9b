"""``GET /health``: liveness plus what the service is configured with."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.auth import keyring
from api.deps import AppRag

router = APIRouter()


@router.get("/health")
def health(request: Request, rag: AppRag) -> dict[str, Any]:
    """Liveness plus what the service is configured with (only `{"status": "ok"}` when API keys are on)."""
    if keyring(request).enabled:
        return {"status": "ok"}
    return {
        "status": "ok",
        "collection": rag.settings.collection,
        "chunks": rag.count(),
        "chat_model": rag.settings.chat_model_name,
        "embed_model": rag.settings.embed_model_name,
    }
