"""Chat to grounded answer: an OpenAI chat request for a grounded model (``rag``, ``rag:<collection>``)
becomes a question for the same code as ``POST /query``.

The last user turn is the question (its image parts go to the backend beside it), earlier user and
assistant turns are conversation, and the sampling parameters in :data:`FORWARDED` go to the chat
backend; others are left out, and what the backend cannot honour is refused (:mod:`api.backends`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse

from api import openai_wire as wire
from api.backends import check_supported
from api.bounds import check_history, check_text
from api.errors import redact
from api.openai_wire import OpenAIError
from api.streams import ClosingStream, answer_closer
from rag.engine import Rag
from rag.errors import RagError

# Parameters a grounded answer forwards to the chat backend.
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


def answer(rag: Rag, body: dict[str, Any]) -> dict[str, Any] | StreamingResponse | JSONResponse:
    """The grounded answer to ``body`` (a chat request) from ``rag``'s collection: a
    ``chat.completion``, a stream of chunks, or an error (a failure of retrieval or the model)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise OpenAIError(400, "'messages' must be a non-empty list.", param="messages")
    last = max((i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"), default=None)
    if last is None:
        raise OpenAIError(400, "A grounded model needs a user message to answer.", param="messages")
    question, images = wire.text_of(messages[last].get("content"))
    params = {k: body[k] for k in FORWARDED if body.get(k) is not None}
    if body.get("max_completion_tokens") is not None:
        params["max_tokens"] = body["max_completion_tokens"]
    if params.get("n") not in (None, 1):
        raise OpenAIError(400, "A grounded answer is one answer: leave out n (or use n=1).", param="n")
    check_supported(rag.settings, params, images)
    history = [
        {"role": m.get("role"), "content": wire.text_of(m.get("content"))[0]}
        for m in messages[:last]
        if isinstance(m, dict) and m.get("role") in ("user", "assistant")
    ]
    content = messages[last].get("content")
    attachments = [p for p in content if isinstance(p, dict) and p.get("type") != "text"] if images else None
    check_text(rag.settings, "question", question)
    check_history(rag.settings, (str(m["content"]) for m in history))
    answer_mode = body.get("answer")  # extensions beside the OpenAI fields (the SDKs' extra_body)
    if answer_mode is not None and not isinstance(answer_mode, str):
        raise OpenAIError(400, "'answer' must be generate, quote or auto.", param="answer")
    options = body.get("stream_options") or {}
    include_usage = bool(options.get("include_usage")) if isinstance(options, dict) else False
    try:
        stream = rag.start(
            question,
            history=history,
            params=params,
            attachments=attachments,
            answer=answer_mode,
            strict=bool(body.get("strict")),
        )
    except RagError as exc:
        return _error(rag, exc)
    close = answer_closer(stream)  # from here on, whatever happens closes the open chat stream
    model = str(body["model"])
    if body.get("stream"):
        chunks = _redacted(wire.chunks(stream, model, include_usage), rag)
        return ClosingStream(chunks, close=close, media_type="text/event-stream")
    try:
        for _ in stream:
            pass
    finally:
        close()
    if stream.error is not None or stream.answer is None:
        return _error(rag, stream.error or RagError("The answer stream ended without an answer."))
    a = stream.answer
    claims = [c.to_dict() for c in a.claims]
    return wire.completion(model, a.text, a.citations, a.usage, refused=a.refused, claims=claims)


def _error(rag: Rag, exc: RagError) -> JSONResponse:
    """OpenAI's error body, without internal addresses or directories."""
    return wire.error(exc.status, redact(exc.message, rag.settings), code=exc.code)


def _redacted(chunks: Iterator[str], rag: Rag) -> Iterator[str]:
    """The chunks, with the message of an error chunk (a failure mid-stream) redacted."""
    for chunk in chunks:
        if chunk.startswith('data: {"error"'):
            body = json.loads(chunk[len("data: ") :])
            body["error"]["message"] = redact(str(body["error"].get("message")), rag.settings)
            chunk = wire.data(body)
        yield chunk
