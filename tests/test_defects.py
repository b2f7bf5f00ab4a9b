"""Issue 15, "Defects found by probing today's `rag serve`": each one a test. The important ones
(the long query, the disconnect, SIGTERM) run against a real ``rag serve`` process in front of a
slow fake backend that records when its client goes away."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.testclient import TestClient

from rag.engine import Rag
from rag.settings import Settings
from tests.conftest import BIN, DATA, ServerProcess, clean_env, free_port
from tests.fakes import FakeChat, FakeEmbedder, FakeOpenAIServer, fake_embedding
from tests.test_limits import error_of, make_app, post_raw, served

CHUNKS = 600  # 30 s of answer at 20 chunks a second, unless the client goes


class SlowBackend:
    """An OpenAI-compatible backend whose chat answer streams a chunk every 50 ms; ``gone`` is set
    when its client disconnects mid-answer, ``sent`` counts the chunks it wrote."""

    def __init__(self) -> None:
        self.gone = threading.Event()
        self.sent = 0
        self.app = FastAPI()

        @self.app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": "fake", "object": "model", "created": 0, "owned_by": "x"}]}

        @self.app.post("/v1/embeddings")
        async def embeddings(request: Request) -> JSONResponse:
            body = await request.json()
            texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
            data = [{"object": "embedding", "index": i, "embedding": fake_embedding(t)} for i, t in enumerate(texts)]
            return JSONResponse({"object": "list", "data": data, "model": "fake", "usage": {}})

        @self.app.post("/v1/chat/completions")
        async def chat(request: Request) -> StreamingResponse:
            async def chunks() -> AsyncIterator[str]:
                try:
                    for _ in range(CHUNKS):
                        delta = {"choices": [{"index": 0, "delta": {"content": "word "}, "finish_reason": None}]}
                        yield f"data: {json.dumps(delta)}\n\n"
                        self.sent += 1
                        await asyncio.sleep(0.05)
                    yield "data: [DONE]\n\n"
                except asyncio.CancelledError:
                    self.gone.set()
                    raise

            return StreamingResponse(chunks(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def backend() -> Iterator[tuple[SlowBackend, str]]:
    slow = SlowBackend()
    with served(slow.app) as url:
        yield slow, url


@pytest.fixture(scope="module")
def service(backend: tuple[SlowBackend, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    _, url = backend
    index = tmp_path_factory.mktemp("defects") / "index"
    docs = tmp_path_factory.mktemp("defects-docs")
    (docs / "returns-policy.md").write_bytes((DATA / "returns-policy.md").read_bytes())
    env = {
        "RAG_INDEX_DIR": str(index),
        "RAG_BASE_URL": url + "/v1",
        "RAG_EMBED_MODEL": "fake",
        "RAG_CHAT_MODEL": "fake",
        "RAG_MIN_RELEVANCE": "0",
        "RAG_ANSWER_MODE": "generate",
        "RAG_REWRITE": "off",
    }
    settings = Settings(index_dir=index, base_url=url + "/v1", embed_model="fake", chat_model="fake")
    with Rag(settings) as r:
        r.ingest([docs])
    port = free_port()
    log = tmp_path_factory.mktemp("defects-log") / "serve.log"
    server = ServerProcess(
        [str(BIN / "rag"), "serve", "--port", str(port)], port, "/health", env=clean_env(**env), log=log
    )
    yield server
    server.stop()


def close_wait_to(port: int) -> int:
    """Sockets in CLOSE-WAIT whose peer is 127.0.0.1:``port`` (our side never closed them)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state = fields[2], fields[3]
        if state == "08" and int(remote.split(":")[1], 16) == port:
            count += 1
    return count


# -- against a real `rag serve` -------------------------------------------------------------------
def test_one_long_request_does_not_take_the_service_down(service: ServerProcess) -> None:
    huge = json.dumps({"query": "warranty " * 120_000})  # the repro: ~1 MB
    t0 = time.monotonic()
    r = httpx.post(service.url + "/search", content=huge, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code in (400, 413) and "error" in r.json()
    long = httpx.post(service.url + "/search", json={"query": "warranty " * 1000}, timeout=30)
    assert error_of(long, 400)["code"] == "invalid_request"
    assert time.monotonic() - t0 < 10
    ok = httpx.post(service.url + "/search", json={"query": "warranty", "mode": "dense"}, timeout=30)
    assert ok.status_code == 200 and ok.json()["hits"]
    assert httpx.get(service.url + "/health", timeout=5).status_code == 200


def test_a_client_gone_mid_answer_stops_the_model(service: ServerProcess, backend: tuple[SlowBackend, str]) -> None:
    slow, url = backend
    slow.gone.clear()
    with httpx.stream("POST", service.url + "/query", json={"question": "restocking fee?"}, timeout=30) as r:
        assert r.status_code == 200
        tokens = 0
        for line in r.iter_lines():
            tokens += line.startswith("event: token")
            if tokens >= 3:
                break
    assert slow.gone.wait(10), "the backend never saw its client go"
    assert slow.sent < CHUNKS
    port = int(url.rsplit(":", 1)[1])
    deadline = time.monotonic() + 5
    while close_wait_to(port):
        assert time.monotonic() < deadline, "a socket to the model server stayed in CLOSE-WAIT"
        time.sleep(0.1)
    assert httpx.get(service.url + "/health", timeout=5).status_code == 200


def test_an_error_after_the_stream_opened_closes_it(service: ServerProcess, backend: tuple[SlowBackend, str]) -> None:
    slow, _ = backend
    slow.gone.clear()
    body = {"model": "rag", "messages": [{"role": "user", "content": "fee?"}], "stream": True, "stream_options": "x"}
    r = httpx.post(service.url + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream_options"


def test_sigterm_ends_rag_serve_promptly(service: ServerProcess, tmp_path: Path) -> None:
    # A second process with the same settings, busy streaming an answer, is stopped with SIGTERM.
    port = free_port()
    args = [str(BIN / "rag"), "serve", "--port", str(port)]
    server = ServerProcess(args, port, "/health", env=_env_of(service), log=tmp_path / "serve.log")
    try:
        with httpx.stream("POST", server.url + "/query", json={"question": "restocking fee?"}, timeout=30) as r:
            next(r.iter_lines())
            t0 = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            server.proc.wait(timeout=20)
            assert time.monotonic() - t0 < 12
    finally:
        server.stop()


def _env_of(service: ServerProcess) -> dict[str, str]:
    """The environment ``service`` was started with (its /proc entry)."""
    raw = Path(f"/proc/{service.proc.pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


# -- against the app (TestClient) ------------------------------------------------------------------
@pytest.fixture(scope="module")
def fake_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("defects-fake") / "index"
    docs = tmp_path_factory.mktemp("defects-fake-docs")
    (docs / "returns-policy.md").write_bytes((DATA / "returns-policy.md").read_bytes())
    settings = Settings(index_dir=path)
    with Rag(settings, embedder=FakeEmbedder(settings.embed_model_name), chat=FakeChat()) as r:
        r.ingest([docs])
    return path


@pytest.fixture
def client(fake_index: Path) -> Iterator[TestClient]:
    with TestClient(make_app(fake_index)) as c:
        yield c


def test_uncaught_exceptions_become_json_400s(client: TestClient) -> None:
    for mode in ("dense", "hybrid", "keyword"):
        error_of(post_raw(client, "/search", {"query": "warranty \ud800", "mode": mode}), 400)
    error_of(post_raw(client, "/query", {"question": "warranty \ud800"}), 400)
    chat = {"model": "rag", "messages": [{"role": "user", "content": "warranty \ud800"}]}
    error_of(post_raw(client, "/v1/chat/completions", chat), 400)
    deep = b"[" * 10_000 + b"]" * 10_000
    for path in ("/v1/chat/completions", "/search"):
        error_of(client.post(path, content=deep, headers={"content-type": "application/json"}), 400)
    msg = [{"role": "user", "content": "fee?"}]
    err = error_of(
        client.post("/v1/chat/completions", json={"model": "rag", "messages": msg, "stream_options": "x"}), 400
    )
    assert err["param"] == "stream_options"
    passthrough = {"model": "smollm2-135m-instruct", "messages": msg, "max_tokens": "x"}
    assert error_of(client.post("/v1/chat/completions", json=passthrough), 400)["param"] == "max_tokens"


@pytest.mark.parametrize("value", ["8", 0, -1, True, 2.5])
def test_max_tokens_must_be_a_positive_integer(client: TestClient, value: Any) -> None:
    body = {"model": "rag", "messages": [{"role": "user", "content": "fee?"}], "max_tokens": value}
    assert error_of(client.post("/v1/chat/completions", json=body), 400)["param"] == "max_tokens"
    body["max_completion_tokens"] = body.pop("max_tokens")
    error_of(client.post("/v1/chat/completions", json=body), 400)


def test_a_10000_turn_history_is_a_400_not_a_502(fake_index: Path) -> None:
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}] * 5000
    with TestClient(make_app(fake_index, max_body_kb=4096)) as c:
        body = {"model": "rag", "messages": [*turns, {"role": "user", "content": "fee?"}]}
        assert "RAG_MAX_HISTORY_TURNS" in error_of(c.post("/v1/chat/completions", json=body), 400)["message"]


def test_framework_errors_have_our_shape(client: TestClient) -> None:
    assert error_of(client.get("/nope"), 404)["code"] == "not_found"
    assert set(error_of(client.get("/v1/nope"), 404)) == {"message", "type", "param", "code"}
    assert error_of(client.delete("/search"), 405)["code"] == "method_not_allowed"
    bad = client.post("/search", content=b'{"query": "\xff\xfe"}', headers={"content-type": "application/json"})
    assert "detail" not in bad.json() and error_of(bad, 400)
    bad = client.post("/v1/embeddings", content=b'{"model": "\xff"}', headers={"content-type": "application/json"})
    assert set(error_of(bad, 400)) == {"message", "type", "param", "code"}


def test_errors_name_no_internal_address_or_directory(tmp_path: Path) -> None:
    with FakeOpenAIServer() as fake:
        index = tmp_path / "index"
        settings = Settings(index_dir=index, base_url=fake.base_url, embed_model="e", chat_model="c")
        from api.app import create_app

        with TestClient(create_app(settings)) as c:
            fake.mode = "500"
            for resp in (
                c.post("/search", json={"query": "warranty"}),
                c.post("/query", json={"question": "warranty?"}),
                c.post("/v1/chat/completions", json={"model": "rag", "messages": [{"role": "user", "content": "q"}]}),
            ):
                text = resp.text
                assert resp.status_code >= 400 and "error" in resp.json()
                assert fake.base_url not in text and str(fake.port) not in text and str(index) not in text
        fake.mode = "ok"
    dead = Settings(index_dir=index, base_url="http://127.0.0.1:9/v1", embed_model="e", chat_model="c")
    with TestClient(create_app(dead)) as c:
        body = {"model": "other", "messages": [{"role": "user", "content": "q"}]}
        r = c.post("/v1/chat/completions", json=body)
        assert r.status_code == 502 and "127.0.0.1:9" not in r.text
