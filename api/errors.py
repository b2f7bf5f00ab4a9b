"""Every error the service sends is JSON in one of two shapes, never a plain-text 500 or FastAPI's
``{"detail": ...}``:

- ``/v1`` paths: OpenAI's ``{"error": {"message", "type", "param", "code"}}`` (:mod:`api.openai_wire`),
  so SDKs show it;
- everything else: ours, ``{"error": {"message", "type", "code"}}`` (``RagError.to_dict``).

Messages that reach a client never name internal addresses (model servers, Chroma) or the index
directory (:func:`redact`): the service may face a network; the log keeps the full message.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from api.openai_wire import OpenAIError, error
from rag.errors import InvalidRequestError, RagError
from rag.settings import Settings

log = logging.getLogger("rag.serve")

URL = re.compile(r"\b(?:https?|wss?)://[^\s'\"<>)\]]*[^\s'\"<>)\].,;:]")
MESSAGES = {
    400: "The request is malformed.",
    404: "Not found: see /docs for the routes.",
    405: "Method not allowed on this route: see /docs.",
    413: "The request body is too large.",
    415: "Send the body as JSON, with Content-Type: application/json.",
    429: "Too many requests: slow down (see Retry-After).",
}
CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def redact(message: str, settings: Settings | None = None) -> str:
    """``message`` without URLs or the index directory (both are for the operator, not for clients)."""
    out = URL.sub("(internal address)", message)
    if settings is not None:
        index = str(settings.index_dir)
        if len(index) > 1:
            out = out.replace(index, "(index directory)")
    return out


def _settings(request: Request) -> Settings | None:
    rag = getattr(request.app.state, "rag", None)
    return getattr(rag, "settings", None)


def is_openai(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def error_response(
    path: str,
    status: int,
    message: str,
    *,
    code: str | None = None,
    kind: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The error body for ``path`` (OpenAI's on ``/v1``, ours elsewhere) with ``status``."""
    code = code or CODES.get(status, "server_error" if status >= 500 else "invalid_request")
    if is_openai(path):
        resp = error(status, message, code=code)
    else:
        body = {"message": message, "type": kind or _kind(status), "code": code}
        resp = JSONResponse({"error": body}, status_code=status)
    resp.headers.update(headers or {})
    return resp


def _kind(status: int) -> str:
    if status == 400:
        return InvalidRequestError.__name__
    return "HTTPError" if status < 500 else RagError.__name__


def rag_error_response(request: Request, exc: RagError) -> JSONResponse:
    message = redact(exc.message, _settings(request))
    if exc.status >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc.message)
    if is_openai(request.url.path):
        return error(exc.status, message, code=exc.code)
    return JSONResponse({"error": exc.to_dict() | {"message": message}}, status_code=exc.status)


def _problems(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"] if p != "body") or "body"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)[:1000]


def install(app: FastAPI) -> None:
    """The app's exception handlers: every error becomes one of the two JSON shapes."""

    @app.exception_handler(RagError)
    async def rag_error(request: Request, exc: RagError) -> JSONResponse:
        return rag_error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = redact(f"Invalid request: {_problems(exc)}", _settings(request))
        return error_response(request.url.path, 400, message)

    @app.exception_handler(OpenAIError)
    async def openai_error(request: Request, exc: OpenAIError) -> JSONResponse:
        exc.message = redact(exc.message, _settings(request))
        return exc.response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # FastAPI's own: 404, 405, a body it could not parse (not UTF-8, nested too deep).
        message = MESSAGES.get(exc.status_code) or str(exc.detail)
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            message = "The body is not valid JSON (not UTF-8, or nested too deeply)."
        return error_response(request.url.path, exc.status_code, message, headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The last resort (Starlette logs the traceback): a JSON 500 that says nothing internal.
        return error_response(request.url.path, 500, "Internal error; the service's log has the details.")
