"""API keys on every route: who is calling (:class:`Caller`), and what it may read or write.

Auth is on when ``RAG_API_KEYS`` (full-access keys) or ``RAG_API_KEYS_FILE`` (hashed, scoped keys:
:mod:`rag.keys`) is set. A route takes ``caller: CallerDep``: with auth on, a request without a key
(``Authorization: Bearer KEY`` or ``x-api-key: KEY``) or with a wrong one is answered 401 before the
route runs; the route then checks the collection it touches with :func:`require` (403 outside the
key's scope). Errors are OpenAI-shaped on ``/v1`` (so SDKs raise ``AuthenticationError`` /
``PermissionDeniedError``) and ``{"error": {...}}`` elsewhere. With auth off every caller may do
everything (``Caller(None)``). ``GET /health`` and the web page's files take no caller.

Keys are never logged nor echoed; ``request.state.key_id`` (a name or a hash prefix) is what other
parts (rate limits, logs) may use.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as ASGIScope

from api import openai_wire
from rag.errors import RagError
from rag.keys import FULL, KeyRing, Scope

Access = Literal["read", "write"]


class UnauthorizedError(RagError):
    """No API key, or not one in force."""

    code = "invalid_api_key"
    status = 401


class ForbiddenError(RagError):
    """A key used outside its scope (another collection, or a write with a read-only key)."""

    code = "forbidden"
    status = 403


@dataclass(frozen=True)
class Caller:
    """Who is calling. ``key_id`` is None when auth is off (then everything is allowed), else a
    short non-secret id: the key's name in the keys file, or ``key-`` and a hash prefix."""

    key_id: str | None
    scope: Scope = FULL

    def can(self, collection: str, scope: Access) -> bool:
        return self.key_id is None or self.scope.can(collection, scope)

    def readable(self, collections: Iterable[str]) -> list[str]:
        """Those of ``collections`` this caller may read, in order."""
        return [c for c in collections if self.can(c, "read")]

    @property
    def reads_any(self) -> bool:
        """Whether this caller may read some collection (what a backend model needs)."""
        return self.key_id is None or bool(self.scope.collections)


OPEN = Caller(None)


def keyring(request: Request) -> KeyRing:
    """The app's keys, made from its settings on first use and kept on ``app.state``."""
    state = request.app.state
    ring: KeyRing | None = getattr(state, "keyring", None)
    if ring is None:
        rag = getattr(state, "rag", None)
        s = rag.settings if rag is not None else None
        ring = KeyRing.from_settings(getattr(s, "api_keys", None), getattr(s, "api_keys_file", None))
        state.keyring = ring
    return ring


def presented_key(request: Request) -> str | None:
    """The key a request carries: ``Authorization: Bearer KEY``, else ``x-api-key: KEY``."""
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def authenticate(request: Request) -> Caller:
    """The request's caller (cached on ``request.state``); :class:`UnauthorizedError` with auth on
    and no valid key. Sets ``request.state.key_id``."""
    cached: Caller | None = getattr(request.state, "caller", None)
    if cached is not None:
        return cached
    ring = keyring(request)
    caller = OPEN
    if ring.enabled:
        key = presented_key(request)
        if key is None:
            raise UnauthorizedError("An API key is required: send 'Authorization: Bearer KEY' (or 'x-api-key: KEY').")
        found = ring.lookup(key)
        if found is None:
            raise UnauthorizedError("Invalid API key.")
        caller = Caller(*found)
    request.state.caller = caller
    request.state.key_id = caller.key_id
    return caller


async def get_caller(request: Request) -> Caller:
    return authenticate(request)


CallerDep = Annotated[Caller, Depends(get_caller)]


def require(caller: Caller, collection: str, scope: Access) -> None:
    """403 unless ``caller`` may ``scope`` (read or write) ``collection``."""
    if not caller.can(collection, scope):
        verb = "read" if scope == "read" else "write to"
        raise ForbiddenError(f"This API key ('{caller.key_id}') may not {verb} the collection '{collection}'.")


def is_openai_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def error_response(request: Request, exc: RagError) -> JSONResponse:
    """An auth error in the shape the path's clients expect, with ``WWW-Authenticate`` on a 401."""
    if is_openai_path(request.url.path):
        response = openai_wire.error(exc.status, exc.message, code=exc.code)
    else:
        response = JSONResponse({"error": exc.to_dict()}, status_code=exc.status)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


OPEN_PATHS = frozenset({"/health", "/", "/favicon.ico"})
OPEN_PREFIXES = ("/static/",)


def is_open(method: str, path: str) -> bool:
    """What needs no key: ``/health``, the web page and its static files, CORS preflights."""
    return method == "OPTIONS" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class AuthMiddleware:
    """Default deny: with keys on, every request but :func:`is_open` ones needs a valid key before
    any route (or body parsing) runs, so a route that forgets ``CallerDep`` is still closed. The
    caller it finds is cached on the request's state for ``CallerDep``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not is_open(scope["method"], scope["path"]):
            request = Request(scope)
            try:
                authenticate(request)
            except UnauthorizedError as exc:
                await error_response(request, exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install(app: FastAPI) -> None:
    """The middleware (:class:`AuthMiddleware`), the 401/403 handlers, and the OpenAPI docs behind a
    key (create the app with ``docs_url=None, redoc_url=None, openapi_url=None``)."""
    app.add_middleware(AuthMiddleware)

    async def auth_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RagError)
        return error_response(request, exc)

    app.add_exception_handler(UnauthorizedError, auth_error)
    app.add_exception_handler(ForbiddenError, auth_error)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(caller: CallerDep) -> dict[str, Any]:
        return app.openapi()

    @app.get("/docs", include_in_schema=False)
    async def docs(caller: CallerDep) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    @app.get("/redoc", include_in_schema=False)
    async def redoc(caller: CallerDep) -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")
