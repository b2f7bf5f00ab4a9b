"""OpenAI's wire format: the one place the ``/v1`` error body is written, and the shapes of a
grounded completion (whole or as chunks), its citations and its usage.

Errors have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``; ``type`` follows
from the HTTP status. A route refuses a request by raising :class:`OpenAIError` (the app turns it
into :func:`error`); a failure mid-stream is one error chunk (:func:`error_data`), then the stream ends.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi.responses import JSONResponse

from rag.answer import AnswerStream
from rag.errors import RagError
from rag.models import Usage

TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error"}
CITATION_FIELDS = ("n", "source", "page", "heading", "start", "end", "text", "inferred")
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def error_type(status: int) -> str:
    return TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def error_body(message: str, kind: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error(status: int, message: str, *, param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, error_type(status), param=param, code=code), status_code=status)


def from_rag_error(exc: RagError) -> JSONResponse:
    return error(exc.status, exc.message, code=exc.code)


class OpenAIError(Exception):
    """A ``/v1`` request refused before anything reaches the backend; answered by :func:`error`."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> JSONResponse:
        return error(self.status, self.message, param=self.param, code=self.code)


def data(body: Any, *, ensure_ascii: bool = False) -> str:
    """One Server-Sent Events ``data:`` line."""
    return f"data: {json.dumps(body, ensure_ascii=ensure_ascii)}\n\n"


def error_data(message: str, *, code: str | None = None) -> str:
    """The chunk that ends a stream which failed after its first byte."""
    return data(error_body(message, "server_error", code=code))


DONE = "data: [DONE]\n\n"


# -- requests ---------------------------------------------------------------------------------
def text_of(content: Any) -> tuple[str, bool]:
    """A message's text, and whether it held non-text parts (images)."""
    if isinstance(content, str):
        return content, False
    if isinstance(content, list):
        texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(texts), any(isinstance(p, dict) and p.get("type") != "text" for p in content)
    return "", False


def has_images(messages: Any) -> bool:
    return isinstance(messages, list) and any(isinstance(m, dict) and text_of(m.get("content"))[1] for m in messages)


# -- responses --------------------------------------------------------------------------------
def citations(cited: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: c.get(k) for k in CITATION_FIELDS} for c in cited]


def usage(u: dict[str, Any]) -> dict[str, Any]:
    return {k: u.get(k, 0) for k in USAGE_FIELDS}


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def completion(
    model: str,
    text: str,
    cited: list[dict[str, Any]],
    used: dict[str, Any],
    *,
    refused: bool = False,
    claims: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A whole grounded answer as a ``chat.completion``, with ``citations`` on the message and beside
    it, and beside them ``refused`` (the documents hold no answer: no model was asked) and ``claims``
    (each sentence checked against the passages)."""
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "citations": citations(cited)},
                "finish_reason": "stop",
            }
        ],
        "usage": usage(used),
        "citations": citations(cited),
        "refused": refused,
        "claims": claims or [],
    }


def chunks(stream: AnswerStream, model: str, include_usage: bool) -> Iterator[str]:
    """A grounded answer as ``chat.completion.chunk`` events; the last chunk carries ``citations``,
    ``refused`` and ``claims``."""
    cid = completion_id()
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return data(body)

    yield chunk({"role": "assistant", "content": ""})
    for event in stream:
        if event.type == "token":
            yield chunk({"content": event.data["text"]})
        elif event.type == "error":
            err = stream.error or RagError("The answer failed.")
            yield error_data(err.message, code=err.code)
            return
        elif event.type == "done":
            done = event.data
            yield chunk(
                {}, "stop", citations=citations(done["citations"]), refused=done["refused"], claims=done["claims"]
            )
            if include_usage:
                used = usage(event.data["usage"] or Usage(0, 0).to_dict())
                body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
                yield data(body | {"choices": [], "usage": used}, ensure_ascii=True)
    yield DONE
