"""Issue 15 item 3: the service's limits (api/limits.py, api/bounds.py), against the app with
in-memory fakes; the concurrency ones against the app served by uvicorn in a thread (TestClient
runs one request at a time)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.limits import Limits, StreamWriteTimeout, TokenBuckets, host_allowed
from rag.engine import Rag
from rag.models import ChatDelta, Usage
from rag.settings import Settings
from tests.conftest import DATA
from tests.fakes import FakeChat, FakeEmbedder

JSON = {"content-type": "application/json"}


class SlowChat(FakeChat):
    """Streams a token every ``delay`` seconds, ``n`` of them; ``closed`` is set when the stream
    is closed before its end (the client left)."""

    def __init__(self, n: int = 400, delay: float = 0.05) -> None:
        super().__init__()
        self.n, self.delay = n, delay
        self.closed = threading.Event()
        self.sent = 0

    def stream(self, messages: list[dict[str, Any]], **params: Any) -> Iterator[ChatDelta]:
        self.calls.append(messages)

        def deltas() -> Iterator[ChatDelta]:
            try:
                for _ in range(self.n):
                    time.sleep(self.delay)
                    self.sent += 1
                    yield ChatDelta("word ")
                yield ChatDelta(finish_reason="stop", usage=Usage(1, self.n, estimated=False))
            except GeneratorExit:
                self.closed.set()
                raise

        return deltas()


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("limits") / "index"
    docs = tmp_path_factory.mktemp("limits-docs")
    (docs / "returns-policy.md").write_bytes((DATA / "returns-policy.md").read_bytes())
    settings = Settings(index_dir=path)
    with Rag(settings, embedder=FakeEmbedder(settings.embed_model_name), chat=FakeChat()) as r:
        r.ingest([docs])
    return path


def make_app(index: Path, chat: FakeChat | None = None, **overrides: Any) -> FastAPI:
    settings = Settings(index_dir=index, min_relevance=0.0, answer_mode="generate", **overrides)
    rag = Rag(settings, embedder=FakeEmbedder(settings.embed_model_name), chat=chat or FakeChat())
    return create_app(settings, rag=rag)


@pytest.fixture
def client(index: Path) -> Iterator[TestClient]:
    with TestClient(make_app(index)) as c:
        yield c


def post_raw(client: TestClient, path: str, body: Any) -> Any:
    """``body`` as JSON with non-ASCII escaped (so lone surrogates travel as ``\\ud800``)."""
    return client.post(path, content=json.dumps(body).encode(), headers=JSON)


def error_of(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err: dict[str, Any] = resp.json()["error"]
    assert err["message"]
    return err


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` served by uvicorn on 127.0.0.1 in a thread; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


# -- lengths and types ------------------------------------------------------------------------
def test_long_question_query_and_text_are_400(client: TestClient) -> None:
    assert "RAG_MAX_QUERY_CHARS" in error_of(client.post("/search", json={"query": "warranty " * 500}), 400)["message"]
    error_of(client.post("/query", json={"question": "warranty " * 500}), 400)
    error_of(client.post("/query", json={"question": "保修" * 600}), 400)  # 1,200 characters, ~1,200 tokens
    error_of(client.post("/verify", json={"text": "It is so. " * 2100}), 400)
    long = {"model": "rag", "messages": [{"role": "user", "content": "warranty " * 500}]}
    assert set(error_of(client.post("/v1/chat/completions", json=long), 400)) == {"message", "type", "param", "code"}


def test_history_is_bounded_in_turns_and_characters(client: TestClient) -> None:
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}] * 26
    error_of(client.post("/query", json={"question": "fee?", "history": turns}), 400)
    chat = {"model": "rag", "messages": [*turns, {"role": "user", "content": "fee?"}]}
    assert "RAG_MAX_HISTORY_TURNS" in error_of(client.post("/v1/chat/completions", json=chat), 400)["message"]
    big = [{"role": "user", "content": "x" * 3000}, {"role": "assistant", "content": "y" * 3000}] * 6
    assert (
        "RAG_MAX_HISTORY_CHARS"
        in error_of(client.post("/query", json={"question": "q", "history": big}), 400)["message"]
    )


def test_embeddings_inputs_are_bounded(client: TestClient) -> None:
    body = {"model": "multilingual-e5-small", "input": ["warranty " * 500]}
    error_of(client.post("/v1/embeddings", json=body), 400)
    error_of(client.post("/v1/embeddings", json=body | {"input": ["a"] * 2049}), 400)
    error_of(client.post("/v1/embeddings", json=body | {"input": [{"x": 1}]}), 400)


@pytest.mark.parametrize(
    "extra",
    [{"k": "5"}, {"k": True}, {"k": 0}, {"k": 101}, {"k": 2.5}, {"page_min": "2"}, {"min_score": "nan"}],
)
def test_k_and_filters_have_strict_types(client: TestClient, extra: dict[str, Any]) -> None:
    error_of(client.post("/search", json={"query": "warranty"} | extra), 400)
    error_of(client.post("/query", json={"question": "warranty?"} | extra), 400)


def test_min_score_must_be_finite(client: TestClient) -> None:
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'{"query": "warranty", "min_score": ' + literal + b"}"
        error_of(client.post("/search", content=body, headers=JSON), 400)


def test_filter_lists_are_bounded(client: TestClient) -> None:
    error_of(client.post("/search", json={"query": "warranty", "paths": ["*.md"] * 65}), 400)
    error_of(client.post("/search", json={"query": "warranty", "types": ["md"] * 65}), 400)
    error_of(client.post("/search", json={"query": "warranty", "paths": ["*" * 257]}), 400)
    ok = client.post("/search", json={"query": "warranty", "paths": ["*.md"] * 64})
    assert ok.status_code == 200, ok.text


# -- body, content type, host -------------------------------------------------------------------
def test_body_cap_is_413_in_the_path_shape(index: Path) -> None:
    with TestClient(make_app(index, max_body_kb=4)) as c:
        err = error_of(c.post("/search", content=b" " * 5000, headers=JSON), 413)
        assert err["code"] == "body_too_large" and "RAG_MAX_BODY_KB" in err["message"]
        v1 = error_of(c.post("/v1/chat/completions", content=b" " * 5000, headers=JSON), 413)
        assert set(v1) == {"message", "type", "param", "code"}

        def chunks() -> Iterator[bytes]:  # no Content-Length: read and counted
            for _ in range(10):
                yield b" " * 1000

        error_of(c.post("/search", content=chunks(), headers=JSON), 413)
        # Uploads have their own limit (RAG_MAX_UPLOAD_MB), not this one.
        up = c.post("/documents", files={"files": ("a.txt", b"x" * 8000, "text/plain")})
        assert up.status_code != 413, up.text


def test_a_form_post_cannot_drive_the_api(client: TestClient) -> None:
    form = {"model": "rag", "messages": "x"}
    for path in ("/v1/chat/completions", "/v1/embeddings", "/query", "/search"):
        err = error_of(client.post(path, data=form), 415)
        assert err["code"] == "unsupported_media_type"
    plain = client.post("/search", content=b'{"query": "warranty"}', headers={"content-type": "text/plain"})
    error_of(plain, 415)


def test_host_check_against_dns_rebinding(index: Path) -> None:
    assert host_allowed("localhost:8000", frozenset()) and host_allowed("[::1]:8000", frozenset())
    assert host_allowed("192.168.1.20:8000", frozenset()) and not host_allowed("evil.example", frozenset())
    with TestClient(make_app(index, allowed_hosts="rag.internal")) as c:
        err = error_of(c.post("/search", json={"query": "warranty"}, headers={"host": "attacker.example"}), 400)
        assert err["code"] == "host_not_allowed"
        assert c.post("/search", json={"query": "warranty"}, headers={"host": "rag.internal:8000"}).status_code == 200
        assert c.get("/health", headers={"host": "127.0.0.1:8000"}).status_code == 200


# -- headers, CORS ----------------------------------------------------------------------------------
def test_security_headers_on_html(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert client.get("/health").headers["x-content-type-options"] == "nosniff"


def test_cors_is_off_unless_origins_are_listed(index: Path, client: TestClient) -> None:
    pre = {"origin": "https://app.example", "access-control-request-method": "POST"}
    assert "access-control-allow-origin" not in client.options("/search", headers=pre).headers
    assert "access-control-allow-origin" not in client.get("/health", headers={"origin": "https://x.example"}).headers
    with TestClient(make_app(index, cors_origins="https://app.example")) as c:
        r = c.options("/search", headers=pre | {"access-control-request-headers": "content-type"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        other = c.options("/search", headers=pre | {"origin": "https://evil.example"})
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"


# -- rate and streams ------------------------------------------------------------------------------
def test_rate_limit_per_caller_with_retry_after(index: Path) -> None:
    buckets = TokenBuckets(60)
    assert all(buckets.take("a", now=0.0) == 0 for _ in range(60))
    assert buckets.take("a", now=0.0) == pytest.approx(1.0) and buckets.take("b", now=0.0) == 0
    assert buckets.take("a", now=1.0) == 0  # one token a second comes back
    with TestClient(make_app(index, rate_per_minute=3)) as c:
        codes = [c.post("/search", json={"query": "warranty"}).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = c.post("/search", json={"query": "warranty"})
        err = error_of(r, 429)
        assert err["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
        assert c.get("/health").status_code == 200  # liveness is not metered


def test_streams_beyond_the_limit_get_429_and_a_gone_client_frees_its_slot(index: Path) -> None:
    chat = SlowChat()
    with served(make_app(index, chat, max_streams=1)) as url, httpx.Client(base_url=url, timeout=10) as http:
        with http.stream("POST", "/query", json={"question": "restocking fee?"}) as first:
            assert first.status_code == 200
            next(first.iter_lines())  # the stream is running
            second = http.post("/query", json={"question": "restocking fee?"})
            assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
            assert second.json()["error"]["code"] == "too_many_streams"
            v1 = http.post(
                "/v1/chat/completions", json={"model": "rag", "messages": [{"role": "user", "content": "q"}]}
            )
            assert v1.status_code == 429 and set(v1.json()["error"]) == {"message", "type", "param", "code"}
        # The client left mid-answer: the model stream is closed and the slot is free again.
        assert chat.closed.wait(5), "the chat stream was not closed when the client left"
        assert chat.sent < chat.n
        chat.n = 3
        deadline = time.monotonic() + 5
        while (r := http.post("/query", json={"question": "restocking fee?"})).status_code == 429:
            assert time.monotonic() < deadline, "the slot was not released"
            time.sleep(0.1)
        assert r.status_code == 200


def test_a_client_that_stops_reading_loses_its_slot_after_the_write_timeout() -> None:
    settings = Settings(stream_write_timeout=0.2, max_streams=1, rate_per_minute=0)
    started = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        started.set()
        await send({"type": "http.response.body", "body": b"x", "more_body": True})

    async def stuck_send(message: Any) -> None:
        if message["type"] == "http.response.body":
            await anyio.sleep(30)  # a client that never reads

    async def main() -> None:
        limits = Limits(app, settings)
        scope = {"type": "http", "method": "POST", "path": "/query", "headers": [], "client": ("1.2.3.4", 1)}

        async def receive() -> Any:
            return {"type": "http.request", "body": b"", "more_body": False}

        t0 = time.monotonic()
        await limits(scope, receive, stuck_send)  # StreamWriteTimeout is caught: the slot is released
        assert time.monotonic() - t0 < 5 and started.is_set()
        assert limits.streams == 0

    anyio.run(main)
    assert issubclass(StreamWriteTimeout, Exception)
