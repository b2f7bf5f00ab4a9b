"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from rag.retrieval import MAX_FILTER_PATTERNS, MAX_PATTERN_CHARS, Filters

# Strict: `"k": "5"` and `"k": true` are mistakes, not 5 and 1 (lengths are checked against the
# settings by the routes, api.bounds).
Pattern = Annotated[str, Field(max_length=MAX_PATTERN_CHARS)]


class RetrievalOptions(BaseModel):
    """How chunks are found: the same options as `rag search` / `rag ask` and `Rag.search`."""

    collection: str | None = Field(
        None, description="The collection to search (default: the service's, RAG_COLLECTION); needs read access."
    )
    k: int | None = Field(
        None, ge=1, le=100, strict=True, description="How many chunks to retrieve (default RAG_TOP_K)."
    )
    mode: Literal["dense", "keyword", "hybrid"] | None = Field(
        None, description="dense (embeddings), keyword (BM25) or hybrid (fused; default RAG_SEARCH_MODE)."
    )
    paths: list[Pattern] = Field(
        default_factory=list,
        max_length=MAX_FILTER_PATTERNS,
        description="Only sources starting with one of these prefixes or matching one of these globs "
        "(as cited; an absolute path matches the full path).",
        examples=[["c3ref/", "*.md"]],
    )
    types: list[Pattern] = Field(
        default_factory=list,
        max_length=MAX_FILTER_PATTERNS,
        description="Only these kinds (pdf, markdown, html, text, code) or extensions (md, .py).",
    )
    page_min: int | None = Field(None, ge=1, strict=True, description="Only PDF pages from this one on.")
    page_max: int | None = Field(None, ge=1, strict=True, description="Only PDF pages up to this one.")
    min_score: float | None = Field(
        None,
        strict=True,
        allow_inf_nan=False,
        description="Drop hits below this score (cosine for dense, BM25 for keyword, 0-1 for hybrid).",
    )

    def options(self) -> dict[str, Any]:
        filters = Filters(tuple(self.paths), tuple(self.types), self.page_min, self.page_max)
        return {"mode": self.mode, "filters": filters, "min_score": self.min_score}


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class QueryRequest(RetrievalOptions):
    question: str = Field(
        ..., description="The question to answer from the index.", examples=["How long is the warranty on the X200?"]
    )
    answer: Literal["generate", "quote", "auto"] | None = Field(
        None,
        description="generate (the chat model writes the answer), quote (the passage sentences that answer it, "
        "verbatim; no model call) or auto (per backend and question language); default RAG_ANSWER_MODE.",
    )
    strict: bool = Field(
        False, strict=True, description="Leave out the sentences the check finds unsupported by the passages."
    )
    history: list[Turn] = Field(
        default_factory=list,
        description="Earlier turns of the conversation, oldest first; the question is rewritten to stand alone "
        "for retrieval (the `sources` event's `query`).",
    )

    def answer_options(self) -> dict[str, Any]:
        history = [t.model_dump() for t in self.history]
        return self.options() | {"answer": self.answer, "strict": self.strict, "history": history}


class SearchRequest(RetrievalOptions):
    query: str = Field(..., description="Text to search for.")


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
