"""Error paths, against a fault-injecting fake OpenAI server (tests/fakes.py) or a
port with nothing listening: the CLI prints one ``Error:`` line and exits 1, the
HTTP API answers JSON errors with the right status (or ends an SSE stream with an
``error`` event), and the library raises or yields RagErrors, never SDK exceptions."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from conftest import DATA, clean_env, free_port, invoke_cli, parse_sse, run_cli
from fakes import FakeOpenAIServer, fake_server_fixture  # noqa: F401 - provides the fake_server fixture
from fastapi.testclient import TestClient

from api.app import create_app
from rag import (
    IndexMismatchError,
    ModelAuthError,
    ModelNotFoundError,
    ModelServerError,
    ModelTimeoutError,
    ModelUnreachableError,
    Rag,
    Settings,
)

EMBED = "fake-embed-a"
OTHER_EMBED = "fake-embed-b"
CHAT = "fake-chat-model"
CLI_TIMEOUT = 30


def dead_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/v1"


def cli_env(index: Path, base_url: str, **extra: str) -> dict[str, str]:
    return clean_env(
        RAG_INDEX_DIR=str(index),
        RAG_BASE_URL=base_url,
        RAG_EMBED_MODEL=EMBED,
        RAG_CHAT_MODEL=CHAT,
        RAG_MAX_RETRIES="0",
        RAG_REQUEST_TIMEOUT="10",
        RAG_MIN_RELEVANCE="0",  # these tests are about the chat server's errors: never refuse before it
        **extra,
    )


def make_settings(index: Path, base_url: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "index_dir": index,
        "base_url": base_url,
        "embed_model": EMBED,
        "chat_model": CHAT,
        "max_retries": 0,
        "request_timeout": 10,
        "min_relevance": 0.0,  # never refuse before the chat server
    }
    return Settings(**(values | extra))


def one_error_line(proc: CompletedProcess[str]) -> str:
    """Assert the CLI failed cleanly: exit 1, no traceback, one ``Error:`` line on stderr."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    # `rag ingest` announces its work first ("ingesting N files"); nothing else may precede the error.
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("ingesting ")]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error:"), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def built_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/ ingested through the CLI with the fake in "ok" mode and embedding model EMBED (a real
    process: its index is copied while no client of this process holds it open)."""
    index = tmp_path_factory.mktemp("fake-built") / "index"
    with FakeOpenAIServer() as fake:
        proc = run_cli("ingest", str(DATA), env=cli_env(index, fake.base_url), timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert fake.requests and all(r == ("/v1/embeddings", EMBED) for r in fake.requests)
    return index


@pytest.fixture
def index_dir(built_index: Path, tmp_path: Path) -> Path:
    """A private copy of the built index, so no test can change another's."""
    dst = tmp_path / "built-index"
    shutil.copytree(built_index, dst)
    return dst


@pytest.fixture
def empty_index(tmp_path: Path) -> Path:
    return tmp_path / "empty-index"


@pytest.fixture
def client_factory() -> Iterator[Any]:
    """``make(settings)`` -> a started TestClient (lifespan ran); all closed at teardown."""
    clients: list[TestClient] = []

    def make(settings: Settings) -> TestClient:
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def assert_error_body(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "code"}
    assert err["code"] == code
    assert isinstance(err["message"], str) and err["message"]
    return dict(err)


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_ingest_server_down(empty_index: Path) -> None:
    url = dead_url()
    line = one_error_line(invoke_cli("ingest", str(DATA), env=cli_env(empty_index, url), timeout=CLI_TIMEOUT))
    assert url in line
    assert "Cannot reach the embeddings server" in line


def test_cli_ask_server_down(index_dir: Path) -> None:
    url = dead_url()
    proc = invoke_cli("ask", "How long is the warranty?", env=cli_env(index_dir, url), timeout=CLI_TIMEOUT)
    line = one_error_line(proc)
    assert url in line
    assert "Cannot reach" in line
    assert proc.stdout == ""


def test_cli_ask_bad_api_key(index_dir: Path, fake_server: FakeOpenAIServer) -> None:
    fake_server.mode = "401"
    proc = invoke_cli(
        "ask", "How long is the warranty?", env=cli_env(index_dir, fake_server.base_url), timeout=CLI_TIMEOUT
    )
    line = one_error_line(proc)
    assert "RAG_API_KEY" in line
    assert fake_server.base_url in line


def test_cli_ingest_unknown_embedding_model(empty_index: Path, fake_server: FakeOpenAIServer) -> None:
    fake_server.mode = "404_model"
    proc = invoke_cli("ingest", str(DATA), env=cli_env(empty_index, fake_server.base_url), timeout=CLI_TIMEOUT)
    line = one_error_line(proc)
    assert f"'{EMBED}'" in line
    assert "RAG_EMBED_MODEL" in line


def test_cli_ask_unknown_chat_model(index_dir: Path, fake_server: FakeOpenAIServer) -> None:
    fake_server.mode, fake_server.target = "404_model", "chat"
    proc = invoke_cli(
        "ask", "How long is the warranty?", env=cli_env(index_dir, fake_server.base_url), timeout=CLI_TIMEOUT
    )
    line = one_error_line(proc)
    assert f"'{CHAT}'" in line
    assert "chat server" in line
    assert proc.stdout == ""


@pytest.mark.parametrize("command", ["ask", "search"])
def test_cli_empty_index(command: str, empty_index: Path, fake_server: FakeOpenAIServer) -> None:
    proc = invoke_cli(command, "warranty", env=cli_env(empty_index, fake_server.base_url), timeout=CLI_TIMEOUT)
    line = one_error_line(proc)
    assert "is empty" in line
    assert "rag ingest" in line
    assert fake_server.requests == []  # refused before any model was asked


def test_cli_empty_question(empty_index: Path) -> None:
    proc = invoke_cli("ask", "  ", env=cli_env(empty_index, dead_url()), timeout=CLI_TIMEOUT)
    line = one_error_line(proc)
    assert "question is empty" in line
    assert proc.stdout == ""


@pytest.mark.parametrize("command", ["ask", "ingest"])
def test_cli_embedding_model_mismatch(command: str, index_dir: Path, fake_server: FakeOpenAIServer) -> None:
    args = ["ask", "How long is the warranty?"] if command == "ask" else ["ingest", str(DATA)]
    env = cli_env(index_dir, fake_server.base_url) | {"RAG_EMBED_MODEL": OTHER_EMBED}
    line = one_error_line(invoke_cli(*args, env=env, timeout=CLI_TIMEOUT))
    assert f"'{EMBED}'" in line and f"'{OTHER_EMBED}'" in line
    assert "rag reindex" in line
    assert "--collection" in line
    assert fake_server.requests == []  # refused before embedding anything


# -- HTTP -----------------------------------------------------------------------------------------


def test_http_empty_question(empty_index: Path, fake_server: FakeOpenAIServer, client_factory: Any) -> None:
    client = client_factory(make_settings(empty_index, fake_server.base_url))
    err = assert_error_body(client.post("/query", json={"question": "   "}), 400, "invalid_request")
    assert err["type"] == "InvalidRequestError"
    assert "question is empty" in err["message"]
    assert fake_server.requests == []


def test_http_missing_question(empty_index: Path, fake_server: FakeOpenAIServer, client_factory: Any) -> None:
    client = client_factory(make_settings(empty_index, fake_server.base_url))
    err = assert_error_body(client.post("/query", json={}), 400, "invalid_request")
    assert err["type"] == "InvalidRequestError"
    assert "question" in err["message"]


@pytest.mark.parametrize("k", [0, 101])
def test_http_k_out_of_range(k: int, index_dir: Path, fake_server: FakeOpenAIServer, client_factory: Any) -> None:
    client = client_factory(make_settings(index_dir, fake_server.base_url))
    err = assert_error_body(client.post("/query", json={"question": "warranty?", "k": k}), 400, "invalid_request")
    assert "k" in err["message"]
    assert fake_server.requests == []


def test_http_empty_index(empty_index: Path, fake_server: FakeOpenAIServer, client_factory: Any) -> None:
    client = client_factory(make_settings(empty_index, fake_server.base_url))
    err = assert_error_body(client.post("/query", json={"question": "warranty?"}), 409, "empty_index")
    assert err["type"] == "EmptyIndexError"
    assert "rag ingest" in err["message"]
    err = assert_error_body(client.post("/search", json={"query": "warranty"}), 409, "empty_index")
    assert fake_server.requests == []


def test_http_backend_down(index_dir: Path, client_factory: Any) -> None:
    url = dead_url()
    client = client_factory(make_settings(index_dir, url))
    err = assert_error_body(client.post("/query", json={"question": "warranty?"}), 502, "model_server_error")
    assert err["type"] == "ModelUnreachableError"
    assert url not in err["message"] and "(internal address)." in err["message"]  # issue 15: no internal URLs
    assert_error_body(client.post("/search", json={"query": "warranty"}), 502, "model_server_error")


@pytest.mark.parametrize(
    ("mode", "target", "code", "type_", "needle"),
    [
        ("401", "all", "model_auth_failed", "ModelAuthError", "RAG_API_KEY"),
        ("404_model", "all", "model_not_found", "ModelNotFoundError", f"'{EMBED}'"),
        ("404_model", "chat", "model_not_found", "ModelNotFoundError", f"'{CHAT}'"),
        ("500", "all", "model_server_error", "ModelServerError", "HTTP 500"),
        ("500", "chat", "model_server_error", "ModelServerError", "HTTP 500"),
    ],
)
def test_http_backend_refuses(
    mode: str,
    target: str,
    code: str,
    type_: str,
    needle: str,
    index_dir: Path,
    fake_server: FakeOpenAIServer,
    client_factory: Any,
) -> None:
    fake_server.mode, fake_server.target = mode, target
    client = client_factory(make_settings(index_dir, fake_server.base_url))
    err = assert_error_body(client.post("/query", json={"question": "warranty?"}), 502, code)
    assert err["type"] == type_
    assert needle in err["message"]
    assert fake_server.base_url not in err["message"]  # issue 15: no internal URLs reach clients


@pytest.mark.parametrize("target", ["embeddings", "chat"])
def test_http_backend_stall_times_out(
    target: str, index_dir: Path, fake_server: FakeOpenAIServer, client_factory: Any
) -> None:
    fake_server.mode, fake_server.target = "stall", target
    client = client_factory(make_settings(index_dir, fake_server.base_url, request_timeout=1, max_retries=0))
    t0 = time.monotonic()
    resp = client.post("/query", json={"question": "warranty?"})
    elapsed = time.monotonic() - t0
    err = assert_error_body(resp, 504, "model_timeout")
    assert err["type"] == "ModelTimeoutError"
    assert "RAG_REQUEST_TIMEOUT" in err["message"]
    assert 0.9 <= elapsed < 4, elapsed


def test_http_stream_dropped_mid_answer(index_dir: Path, fake_server: FakeOpenAIServer, client_factory: Any) -> None:
    fake_server.mode = "drop"
    client = client_factory(make_settings(index_dir, fake_server.base_url))
    resp = client.post("/query", json={"question": "How long is the warranty?"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(resp.text)
    names = [name for name, _ in events]
    assert names[0] == "sources"
    assert names[-1] == "error"
    assert "done" not in names
    assert set(names[1:-1]) <= {"token"}
    tokens = "".join(str(data["text"]) for name, data in events if name == "token")
    assert tokens == "The answer "  # "[1" was still held back when the stream broke
    err = events[-1][1]
    assert err["code"] == "model_server_error"
    assert err["status"] == 502
    assert err["type"] == "ModelServerError"
    assert fake_server.base_url not in str(err["message"])  # issue 15: no internal URLs reach clients


def test_http_stream_dropped_message_says_mid_stream(
    index_dir: Path, fake_server: FakeOpenAIServer, client_factory: Any
) -> None:
    fake_server.mode = "drop"
    client = client_factory(make_settings(index_dir, fake_server.base_url))
    events = parse_sse(client.post("/query", json={"question": "How long is the warranty?"}).text)
    message = str(events[-1][1]["message"])
    assert "mid-stream" in message
    assert "Cannot reach" not in message


def test_http_invalid_citation_markers_never_reach_client(
    index_dir: Path, fake_server: FakeOpenAIServer, client_factory: Any
) -> None:
    client = client_factory(make_settings(index_dir, fake_server.base_url))
    resp = client.post("/query", json={"question": "How long is the warranty?", "k": 2})
    assert resp.status_code == 200
    events = parse_sse(resp.text)
    assert [name for name, _ in events][0] == "sources"
    assert events[-1][0] == "done"
    sources = events[0][1]["sources"]
    assert isinstance(sources, list) and len(sources) == 2
    assert [s["n"] for s in sources] == [1, 2]
    token_texts = [str(data["text"]) for name, data in events if name == "token"]
    streamed = "".join(token_texts)
    assert "[9]" not in streamed and "9]" not in streamed
    assert not any("9" in t for t in token_texts)
    assert streamed == "The answer [1] ."
    done = events[-1][1]
    assert done["answer"] == streamed
    citations = done["citations"]
    assert isinstance(citations, list) and citations
    assert all(1 <= c["n"] <= len(sources) for c in citations)
    assert citations[0]["n"] == 1 and citations[0]["inferred"] is False


# -- library --------------------------------------------------------------------------------------


def test_library_stream_yields_error_event_when_backend_down(index_dir: Path) -> None:
    url = dead_url()
    events = list(Rag(make_settings(index_dir, url)).stream("How long is the warranty?"))
    assert [e.type for e in events] == ["error"]
    data = events[0].data
    assert data["code"] == "model_server_error"
    assert data["type"] == "ModelUnreachableError"
    assert data["status"] == 502
    assert url in data["message"]


def test_library_ask_raises_model_server_error_when_backend_down(index_dir: Path) -> None:
    url = dead_url()
    with pytest.raises(ModelServerError, match="Cannot reach") as info:
        Rag(make_settings(index_dir, url)).ask("How long is the warranty?")
    assert type(info.value) is ModelUnreachableError  # a ModelServerError
    assert url in info.value.message


@pytest.mark.parametrize(
    ("mode", "exc_type"),
    [("401", ModelAuthError), ("404_model", ModelNotFoundError), ("500", ModelServerError)],
)
def test_library_ask_raises_typed_errors(
    mode: str, exc_type: type[Exception], index_dir: Path, fake_server: FakeOpenAIServer
) -> None:
    fake_server.mode, fake_server.target = mode, "chat"
    with pytest.raises(exc_type) as info:
        Rag(make_settings(index_dir, fake_server.base_url)).ask("How long is the warranty?")
    assert type(info.value) is exc_type


def test_library_ask_times_out(index_dir: Path, fake_server: FakeOpenAIServer) -> None:
    fake_server.mode, fake_server.target = "stall", "chat"
    with pytest.raises(ModelTimeoutError):
        Rag(make_settings(index_dir, fake_server.base_url, request_timeout=1)).ask("How long is the warranty?")


def test_library_stream_dropped_ends_with_error_event(index_dir: Path, fake_server: FakeOpenAIServer) -> None:
    fake_server.mode = "drop"
    events = list(Rag(make_settings(index_dir, fake_server.base_url)).stream("How long is the warranty?"))
    assert events[0].type == "sources"
    assert events[-1].type == "error"
    assert events[-1].data["code"] == "model_server_error"
    assert "done" not in [e.type for e in events]


def test_library_ask_mid_stream_drop_raises_model_server_error(index_dir: Path, fake_server: FakeOpenAIServer) -> None:
    fake_server.mode = "drop"
    with pytest.raises(ModelServerError):
        Rag(make_settings(index_dir, fake_server.base_url)).ask("How long is the warranty?")


def test_library_embedding_model_mismatch(index_dir: Path, fake_server: FakeOpenAIServer) -> None:
    rag = Rag(make_settings(index_dir, fake_server.base_url, embed_model=OTHER_EMBED))
    with pytest.raises(IndexMismatchError, match="rag reindex") as info:
        rag.ask("How long is the warranty?")
    assert "--collection" in info.value.message
    assert info.value.code == "index_mismatch" and info.value.status == 409
    with pytest.raises(IndexMismatchError, match="--collection"):
        rag.ingest([DATA])
    with pytest.raises(IndexMismatchError):
        rag.search("warranty")
    assert fake_server.requests == []
    assert rag.status()["embed_model"] == EMBED  # the index was left as it was


def test_http_embedding_model_mismatch(index_dir: Path, fake_server: FakeOpenAIServer, client_factory: Any) -> None:
    client = client_factory(make_settings(index_dir, fake_server.base_url, embed_model=OTHER_EMBED))
    err = assert_error_body(client.post("/query", json={"question": "warranty?"}), 409, "index_mismatch")
    assert err["type"] == "IndexMismatchError"
    assert "rag reindex" in err["message"] and "--collection" in err["message"]
