"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from pydantic import BaseModel, Field


class QueryRequest(BaseModel):
    question: str = Field(
        ..., description="The question to answer from the index.", examples=["How long is the warranty on the X200?"]
    )
    k: int | None = Field(None, ge=1, le=100, description="How many chunks to retrieve (default RAG_TOP_K).")


class SearchRequest(BaseModel):
    query: str = Field(..., description="Text to search for.")
    k: int | None = Field(None, ge=1, le=100)


class SearchHit(BaseModel):
    id: str
    score: float
    source: str
    page: int | None
    heading: str | None = None
    start: int | None = None
    end: int | None = None
    text: str


class SearchResponse(BaseModel):
    hits: list[SearchHit]


class ErrorBody(BaseModel):
    message: str
    type: str
    code: str


class ErrorResponse(BaseModel):
    error: ErrorBody
