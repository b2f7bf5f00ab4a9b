"""A fault-injecting fake OpenAI-compatible server for error-path tests.

A small FastAPI app (``/v1/embeddings``, ``/v1/chat/completions``, ``/v1/models``)
served by uvicorn in a background thread on 127.0.0.1. Set ``mode`` per test:

* ``"ok"``        embeddings are deterministic 8-dim vectors from a hash of the text;
                  chat streams "The answer [1] [9]." in OpenAI chunks, then ``data: [DONE]``
                  (the markers arrive split across chunks: "[1", "] [", "9]").
* ``"401"``       OpenAI-style error body, HTTP 401 (invalid_api_key).
* ``"404_model"`` HTTP 404, code model_not_found, naming the requested model.
* ``"500"``       HTTP 500 with an OpenAI-style error body.
* ``"drop"``      chat only: two chunks, then the connection is closed without [DONE]
                  (embeddings answer normally, so the chat stream is reached).
* ``"stall"``     waits ``stall_seconds`` (default 5, bounded) before answering; ends early
                  when the client disconnects or the server stops.

``target`` limits the fault to ``"chat"`` or ``"embeddings"`` (default ``"all"``); the
other endpoint then answers as in ``"ok"``. ``requests`` records ``(path, model)`` for
every call, so a test can assert that nothing reached the model server.

    with FakeOpenAIServer() as fake:
        fake.mode = "401"
        ... Settings(base_url=fake.base_url) ...

or, as the ``fake_server`` fixture (a fresh server per test, in "ok" mode)::

    from fakes import fake_server_fixture  # noqa: F401

    def test_x(fake_server): ...

In-memory fakes of the ``rag.models`` interfaces, for tests about logic rather than models
(no server, no process)::

    Rag(settings, embedder=FakeEmbedder(settings.embed_model_name), chat=FakeChat())

* ``FakeEmbedder``: hashed bag-of-words unit vectors over ``rag.keyword.terms`` (the same
  text always gets the same vector; texts sharing words are close, so dense search still
  finds a passage by its words).
* ``FakeChat``: streams an answer that cites every numbered source in the prompt, then the usage.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from rag.models import ChatDelta, Usage
from rag.text import terms

MODES = ("ok", "401", "404_model", "500", "drop", "stall")
TARGETS = ("all", "chat", "embeddings")
DIM = 8
ANSWER_CHUNKS = ("The answer ", "[1", "] [", "9]", ".")
STALL_MAX = 5.0


class FakeEmbedder:
    """An in-memory ``rag.models.Embedder``: each term of the text (``rag.keyword.terms``:
    stemmed words, CJK bigrams) adds +-1 to one of ``dim`` coordinates chosen by its hash;
    the vector is normalised. ``calls`` counts the texts of each ``embed_documents`` call."""

    def __init__(self, model: str = "fake-embed", dim: int = 256) -> None:
        self.model = model
        self.dim = dim
        self.calls: list[int] = []

    def vector(self, text: str) -> list[float]:
        v = [0.0] * self.dim
        for term in terms(text) or [text]:
            h = int.from_bytes(hashlib.sha256(term.encode("utf-8")).digest()[:8], "little")
            v[h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        norm = math.sqrt(sum(x * x for x in v))
        return [x / norm for x in v] if norm else [1.0] + [0.0] * (self.dim - 1)

    def embed_documents(self, texts: list[str] | tuple[str, ...]) -> list[list[float]]:
        self.calls.append(len(texts))
        return [self.vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.vector(text)


class FakeChat:
    """An in-memory ``rag.models.ChatModel``: answers "From the sources [1] [2] ... [n]." in
    small deltas (markers split across them), n being the number of sources in the prompt,
    then a last delta with the finish reason and the usage. ``calls`` keeps the messages."""

    def __init__(self, model: str = "fake-chat") -> None:
        self.model = model
        self.calls: list[list[dict[str, Any]]] = []

    def stream(self, messages: list[dict[str, Any]], **params: Any) -> Iterator[ChatDelta]:
        self.calls.append(messages)
        prompt = str(messages[-1]["content"])
        n = max((int(m) for m in re.findall(r"^\[(\d+)\] ", prompt, re.MULTILINE)), default=0)
        text = "From the sources " + " ".join(f"[{i}]" for i in range(1, n + 1)) + "."
        pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
        for piece in pieces:
            yield ChatDelta(piece)
        yield ChatDelta(finish_reason="stop", usage=Usage(len(prompt) // 4, len(pieces), estimated=False))


class StreamDropped(RuntimeError):
    """Raised inside the chat stream in "drop" mode; uvicorn then closes the connection
    without finishing the chunked body."""


def fake_embedding(text: str) -> list[float]:
    """A deterministic unit vector of DIM floats from the text's SHA-256."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    raw = [(b - 127.5) / 127.5 for b in digest[:DIM]]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def _error(status: int, message: str, type_: str, code: str | None, param: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}, status_code=status
    )


def _chunk(model: str, content: str | None = None, finish: str | None = None) -> str:
    delta: dict[str, Any] = {} if content is None else {"role": "assistant", "content": content}
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


class FakeOpenAIServer:
    """The fake server; a context manager that starts and stops its uvicorn thread."""

    def __init__(self, mode: str = "ok", *, target: str = "all", stall_seconds: float = STALL_MAX) -> None:
        self._mode = "ok"
        self._target = "all"
        self.mode = mode
        self.target = target
        self.stall_seconds = min(float(stall_seconds), STALL_MAX)
        self.requests: list[tuple[str, str | None]] = []
        self.bodies: list[dict[str, Any]] = []  # chat request bodies, as received
        self.max_model_len: int | None = None  # said on /v1/models, as vLLM does
        self.props_ctx: int | None = None  # said on /props, as llama.cpp's server does
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._sock: socket.socket | None = None
        self.port = 0
        self.app = self._build_app()

    # -- settings tests change -------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"unknown fake mode {value!r}; one of {MODES}")
        self._mode = value

    @property
    def target(self) -> str:
        return self._target

    @target.setter
    def target(self, value: str) -> None:
        if value not in TARGETS:
            raise ValueError(f"unknown fake target {value!r}; one of {TARGETS}")
        self._target = value

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def reset(self) -> None:
        self.mode, self.target = "ok", "all"
        self.stall_seconds = STALL_MAX
        self.requests.clear()
        self.bodies.clear()

    def _fault(self, endpoint: str) -> str:
        """The mode that applies to ``endpoint`` ("chat" or "embeddings")."""
        if self.target not in ("all", endpoint):
            return "ok"
        if self.mode == "drop" and endpoint != "chat":
            return "ok"
        return self.mode

    # -- the app ------------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI()
        fake = self

        async def stall(request: Request) -> None:
            deadline = time.monotonic() + fake.stall_seconds
            while time.monotonic() < deadline and not fake._stopping.is_set():
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.05)

        def failure(mode: str, model: str | None) -> Response | None:
            if mode == "401":
                return _error(401, "Incorrect API key provided: sk-fake.", "invalid_request_error", "invalid_api_key")
            if mode == "404_model":
                return _error(
                    404,
                    f"The model `{model}` does not exist or you do not have access to it.",
                    "invalid_request_error",
                    "model_not_found",
                    "model",
                )
            if mode == "500":
                return _error(500, "The fake server had an internal error.", "server_error", None)
            return None

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            entry: dict[str, Any] = {"id": "fake", "object": "model", "created": 0, "owned_by": "fake"}
            if fake.max_model_len is not None:
                entry["max_model_len"] = fake.max_model_len
            return {"object": "list", "data": [entry]}

        @app.get("/props")
        async def props() -> Response:
            if fake.props_ctx is None:
                return _error(404, "Not found.", "not_found", None)
            return JSONResponse({"default_generation_settings": {"n_ctx": fake.props_ctx}})

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> Response:
            body = await request.json()
            model = body.get("model")
            fake.requests.append(("/v1/embeddings", model))
            mode = fake._fault("embeddings")
            if mode == "stall":
                await stall(request)
            elif (resp := failure(mode, model)) is not None:
                return resp
            inputs = body.get("input")
            texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
            data = [
                {"object": "embedding", "index": i, "embedding": fake_embedding(str(t))} for i, t in enumerate(texts)
            ]
            return JSONResponse(
                {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 0, "total_tokens": 0}}
            )

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await request.json()
            model = str(body.get("model"))
            fake.requests.append(("/v1/chat/completions", model))
            fake.bodies.append(body)
            mode = fake._fault("chat")
            if mode == "stall":
                await stall(request)
            elif (resp := failure(mode, model)) is not None:
                return resp
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            if body.get("tools") and not body.get("stream"):
                # A model that calls the first tool it is offered (for pass-through tests).
                name = body["tools"][0]["function"]["name"]
                call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": "{}"}}
                return JSONResponse(
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": 0,
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                                "finish_reason": "tool_calls",
                            }
                        ],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                    }
                )

            async def ok_stream() -> AsyncIterator[str]:
                for piece in ANSWER_CHUNKS:
                    yield _chunk(model, piece)
                yield _chunk(model, finish="stop")
                if include_usage:
                    usage = {"prompt_tokens": 10, "completion_tokens": len(ANSWER_CHUNKS), "total_tokens": 15}
                    yield (
                        "data: "
                        + json.dumps(
                            {
                                "id": "chatcmpl-fake",
                                "object": "chat.completion.chunk",
                                "created": 0,
                                "model": model,
                                "choices": [],
                                "usage": usage,
                            }
                        )
                        + "\n\n"
                    )
                yield "data: [DONE]\n\n"

            async def dropped_stream() -> AsyncIterator[str]:
                for piece in ANSWER_CHUNKS[:2]:
                    yield _chunk(model, piece)
                    await asyncio.sleep(0.01)
                raise StreamDropped("fake server drops the connection mid-stream")

            stream = dropped_stream() if mode == "drop" else ok_stream()
            return StreamingResponse(stream, media_type="text/event-stream")

        return app

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            log_level="critical",
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=1,
        )
        self._server = uvicorn.Server(config)
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"fake-openai-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fake OpenAI server did not start within 10 s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                raise RuntimeError("the fake OpenAI server thread did not stop within 10 s")
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._server = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(name="fake_server")
def fake_server_fixture() -> Iterator[FakeOpenAIServer]:
    """A running fake OpenAI-compatible server in "ok" mode, stopped at teardown."""
    with FakeOpenAIServer() as fake:
        yield fake
