"""``POST /verify``: check every sentence of any text against the index (no chat model).

The body is ``{"text": ..., "k": ...}``; the answer ``{"claims": [...]}``, one claim per sentence
(``rag.claims.Claim.to_dict``), each with the passages that support it (or the closest one).
An empty text or a ``k`` outside 1..100 is a 400 (``InvalidRequestError``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.auth import CallerDep
from api.bounds import check_text
from api.deps import AppCollections
from api.routes_query import ERRORS
from rag.errors import InvalidRequestError

router = APIRouter()


class VerifyRequest(BaseModel):
    text: str = Field(..., description="Any text, e.g. an answer from any model.", examples=["The X200 weighs 1.2 kg."])
    k: int | None = Field(None, description="Passages retrieved per sentence, 1..100 (default RAG_TOP_K).")
    collection: str | None = Field(None, description="The collection to check against (default: the service's).")


@router.post("/verify", responses=ERRORS)
def verify(body: VerifyRequest, collections: AppCollections, caller: CallerDep) -> dict[str, Any]:
    """Each sentence of `text` checked against the documents: `supported`, `score`, `reason`,
    `sources` and the supporting `passages`."""
    if not body.text.strip():
        raise InvalidRequestError("'text' is empty: nothing to verify.")
    if body.k is not None and not 1 <= body.k <= 100:
        raise InvalidRequestError(f"'k' must be between 1 and 100, not {body.k}.")
    rag = collections.checked(caller, body.collection, "read")
    check_text(rag.settings, "text", body.text, rag.settings.max_text_chars)  # issue 15: bounded inputs
    claims = rag.verify(body.text, body.k)
    return {"claims": [c.to_dict() for c in claims]}
