"""The service's limits, so no one request or client can take it down (issue 15, item 3).

:class:`Limits`, one ASGI middleware, in this order: the ``Host`` check (against DNS rebinding:
loopback names, IP addresses, ``RAG_HOST`` and ``RAG_ALLOWED_HOSTS``; 400), the per-caller request
rate (a token bucket per API key, else per client address; 429 with ``Retry-After``), the body size
(``RAG_MAX_BODY_KB``; 413; uploads under ``/documents`` have their own limit), JSON bodies only (415
for any other declared type: a form any web page can post cannot drive the API), concurrent answers
(``RAG_MAX_STREAMS``; 429 with ``Retry-After``), a write timeout (``RAG_STREAM_WRITE_TIMEOUT``: a
client that stops reading loses its response and its slot), and security headers (CSP, nosniff, no
referrer, no framing).
CORS is off unless ``RAG_CORS_ORIGINS`` lists origins (:func:`install`).

The lengths of questions, queries, histories and embeddings inputs: :mod:`api.bounds`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time
from collections import OrderedDict
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from rag.settings import Settings

log = logging.getLogger("rag.serve")

ANSWER_PATHS = frozenset({"/query", "/v1/chat/completions", "/v1/completions"})
UPLOAD_PREFIXES = ("/documents",)  # multipart uploads: RAG_MAX_UPLOAD_MB, checked by their route
UNMETERED = ("/health", "/static/")
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "testserver"})  # testserver: Starlette's TestClient
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
STREAM_RETRY_AFTER = 2
MAX_CALLERS = 10_000  # buckets kept; the least recently seen caller's is dropped first

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# FastAPI's /docs and /redoc load their scripts from a CDN and start them inline.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
HTML_HEADERS = ((b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"))


class StreamWriteTimeout(Exception):
    """A client did not read a response for ``RAG_STREAM_WRITE_TIMEOUT`` seconds."""


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def host_name(host: str) -> str:
    """The name in a ``Host`` header: lower case, without the port, brackets or a final dot."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return host.rstrip(".")


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """A DNS-rebinding page reaches us under its own domain name; IP addresses and loopback names
    cannot be an attacker's, and the operator lists the names the service is reached by."""
    if "*" in allowed:
        return True
    name = host_name(host)
    if name in allowed or name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class TokenBuckets:
    """``per_minute`` requests per minute per caller, in bursts of up to ``per_minute``."""

    def __init__(self, per_minute: int, max_callers: int = MAX_CALLERS) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.max_callers = max_callers
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # caller: (tokens, when)

    def take(self, caller: str, now: float | None = None) -> float:
        """0 if the request may go ahead (a token is taken), else the seconds until one is free."""
        now = time.monotonic() if now is None else now
        tokens, then = self._buckets.pop(caller, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - then) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[caller] = (tokens - 1 if wait == 0 else tokens, now)
        while len(self._buckets) > self.max_callers:
            self._buckets.popitem(last=False)
        return wait


def auth_on(settings: Settings) -> bool:
    return bool(getattr(settings, "api_keys", None) or getattr(settings, "api_keys_file", None))


def caller(scope: Scope, headers: Headers, keyed: bool) -> str:
    """Who a request counts against: its API key (by hash; only when keys are on, else a client
    could make a new bucket per request), else its client address."""
    key_id = (scope.get("state") or {}).get("key_id")
    if key_id:
        return f"key:{key_id}"
    presented = headers.get("authorization") or headers.get("x-api-key")
    if keyed and presented:
        return "key:" + hashlib.sha256(presented.encode("utf-8", "replace")).hexdigest()[:32]
    client = scope.get("client")
    return f"addr:{client[0] if client else '?'}"


def is_json(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


class Limits:
    """The middleware; see the module's docstring."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        hosts = {*LOOPBACK, host_name(settings.host), *(host_name(h) for h in split_list(settings.allowed_hosts))}
        self.hosts = frozenset(hosts)
        self.buckets = TokenBuckets(settings.rate_per_minute) if settings.rate_per_minute else None
        self.keyed = auth_on(settings)
        self.max_body = settings.max_body_kb * 1024
        self.streams = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        send = self._guarded(send, path)
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is None and scope["method"] in BODY_METHODS and not path.startswith(UPLOAD_PREFIXES):
            refusal, receive = await self._body(path, headers, receive)
        answer = scope["method"] == "POST" and path in ANSWER_PATHS
        if refusal is None and answer and self.streams >= self.settings.max_streams:
            retry = {"Retry-After": str(STREAM_RETRY_AFTER)}
            message = f"The service is answering {self.streams} questions, its limit (RAG_MAX_STREAMS): try again."
            refusal = error_response(path, 429, message, code="too_many_streams", headers=retry)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if answer:
            self.streams += 1
        try:
            await self.app(scope, receive, send)
        except StreamWriteTimeout:
            log.warning("%s %s: the client stopped reading; response ended", scope["method"], path)
        finally:
            if answer:
                self.streams -= 1

    def _refusal(self, scope: Scope, headers: Headers) -> Any:
        path: str = scope["path"]
        host = headers.get("host")
        if host is not None and not host_allowed(host, self.hosts):
            message = "Unexpected Host header: add the name this service is reached by to RAG_ALLOWED_HOSTS."
            return error_response(path, 400, message, code="host_not_allowed")
        if self.buckets is not None and not path.startswith(UNMETERED) and scope["method"] != "OPTIONS":
            wait = self.buckets.take(caller(scope, headers, self.keyed))
            if wait > 0:
                retry = {"Retry-After": str(max(1, math.ceil(wait)))}
                message = f"Too many requests: at most {self.settings.rate_per_minute} a minute (RAG_RATE_PER_MINUTE)."
                return error_response(path, 429, message, code="rate_limited", headers=retry)
        return None

    async def _body(self, path: str, headers: Headers, receive: Receive) -> tuple[Any, Receive]:
        """Refuse a body over the cap or not JSON; a body of unknown length is read here first."""
        kib = self.settings.max_body_kb
        too_large = error_response(path, 413, f"The body is larger than {kib} KiB (RAG_MAX_BODY_KB).")
        length = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return too_large, receive
        # A page can post a form (urlencoded, multipart, text/plain) anywhere; it always says so.
        # No Content-Type at all (curl -d, old scripts) cannot come from a form: read as JSON.
        content_type = headers.get("content-type")
        if (chunked or (length or "0") != "0") and content_type is not None and not is_json(content_type):
            return error_response(path, 415, "Send the body as JSON, with Content-Type: application/json."), receive
        if length is not None or not chunked:
            return None, receive
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return None, receive  # the client left: the app sees an empty body and the disconnect
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                return too_large, receive
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        return None, replay

    def _guarded(self, send: Send, path: str) -> Send:
        timeout = self.settings.stream_write_timeout
        docs = path.startswith(("/docs", "/redoc"))

        async def guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = security_headers(list(message.get("headers", [])), docs)
            with anyio.move_on_after(timeout) as deadline:
                await send(message)
            if deadline.cancelled_caught:
                raise StreamWriteTimeout

        return guarded


def security_headers(headers: list[tuple[bytes, bytes]], docs: bool = False) -> list[tuple[bytes, bytes]]:
    """``headers`` with nosniff always, and on HTML a CSP without inline scripts (a looser one for
    FastAPI's docs pages), no referrer and no framing."""
    names = {name.lower() for name, _ in headers}
    out = list(headers)
    if b"x-content-type-options" not in names:
        out.append((b"x-content-type-options", b"nosniff"))
    content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
    if content_type.lower().startswith(b"text/html"):
        if b"content-security-policy" not in names:
            out.append((b"content-security-policy", (DOCS_CSP if docs else CSP).encode()))
        out += [h for h in HTML_HEADERS if h[0] not in names]
    return out


def install(app: FastAPI, settings: Settings) -> None:
    """The limits middleware; add it before the auth middleware (so it runs inside it, and a
    caller's ``request.state.key_id`` is known to the rate limit)."""
    app.add_middleware(Limits, settings=settings)


def install_cors(app: FastAPI, settings: Settings) -> None:
    """CORS, outermost, when ``RAG_CORS_ORIGINS`` lists origins (so a 401 or 429 carries the headers
    a browser needs to show it); off otherwise."""
    origins = split_list(settings.cors_origins)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["authorization", "content-type", "x-api-key"],
            expose_headers=["retry-after"],
            max_age=600,
        )
