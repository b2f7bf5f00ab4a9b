"""Issue 6 (first part): /v1 against a fault-injecting OpenAI-compatible server
(tests/fakes.py): streams that break off, backend errors relayed in OpenAI's shape,
parameters a kind of backend cannot honour refused before anything reaches it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from fakes import FakeOpenAIServer, fake_server_fixture  # noqa: F401 - provides the fake_server fixture
from fastapi.testclient import TestClient

from api.app import create_app
from rag import Rag, Settings
from tests.conftest import BIN, DATA, ServerProcess, clean_env, free_port

ASK = {"model": "rag", "messages": [{"role": "user", "content": "How long is the warranty?"}]}


def app_for(tmp: Path, base_url: str, **extra: Any) -> tuple[Rag, TestClient]:
    settings = Settings(
        index_dir=tmp / "index",
        base_url=base_url,
        embed_model="fake-embed-a",
        chat_model="fake-chat-model",
        max_retries=0,
        request_timeout=10,
        min_relevance=0.0,  # the fake's hashed vectors carry no meaning: never refuse before the backend
        **extra,
    )
    return Rag(settings), TestClient(create_app(settings))


@pytest.fixture
def ingested(tmp_path: Path, fake_server: FakeOpenAIServer) -> Iterator[tuple[FakeOpenAIServer, Path]]:
    with Rag(Settings(index_dir=tmp_path / "index", base_url=fake_server.base_url, embed_model="fake-embed-a")) as r:
        r.ingest([DATA])
    yield fake_server, tmp_path


def data_lines(body: str) -> list[str]:
    return [line[len("data: ") :] for line in body.splitlines() if line.startswith("data: ")]


def test_grounded_stream_and_whole_answer_from_a_backend(ingested: tuple[FakeOpenAIServer, Path]) -> None:
    fake, tmp = ingested
    rag, client = app_for(tmp, fake.base_url)
    with rag, client:
        whole = client.post("/v1/chat/completions", json=ASK).json()
        assert whole["object"] == "chat.completion" and whole["model"] == "rag"
        # The fake answers "The answer [1] [9]." with 3 sources: the invalid [9] is dropped.
        assert whole["choices"][0]["message"]["content"] == "The answer [1] ."
        assert [c["n"] for c in whole["citations"]] == [1]
        lines = data_lines(client.post("/v1/chat/completions", json=ASK | {"stream": True}).text)
        assert lines[-1] == "[DONE]"
        chunks = [json.loads(x) for x in lines[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        assert text == whole["choices"][0]["message"]["content"]
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["citations"] == whole["citations"]


def test_a_stream_that_breaks_off_ends_with_an_error_chunk(ingested: tuple[FakeOpenAIServer, Path]) -> None:
    fake, tmp = ingested
    fake.mode, fake.target = "drop", "chat"
    rag, client = app_for(tmp, fake.base_url)
    with rag, client:
        for model in ("rag", "fake-chat-model"):  # grounded and passed through
            resp = client.post("/v1/chat/completions", json=ASK | {"model": model, "stream": True})
            assert resp.status_code == 200
            last = json.loads(data_lines(resp.text)[-1])
            assert "error" in last and last["error"]["message"], model
            assert "[DONE]" not in resp.text, model


@pytest.mark.parametrize(
    ("mode", "status", "kind"), [("500", 500, "server_error"), ("401", 401, "authentication_error")]
)
def test_backend_errors_arrive_in_openai_shape(
    ingested: tuple[FakeOpenAIServer, Path], mode: str, status: int, kind: str
) -> None:
    fake, tmp = ingested
    fake.mode, fake.target = mode, "chat"
    rag, client = app_for(tmp, fake.base_url)
    with rag, client:
        for model in ("rag", "fake-chat-model"):
            resp = client.post("/v1/chat/completions", json=ASK | {"model": model})
            err = resp.json()["error"]
            # Grounded: our server's backend failed (a 502 naming the fix); passed through: the backend's own.
            assert resp.status_code == (502 if model == "rag" else status), (model, resp.text)
            assert set(err) == {"message", "type", "param", "code"} and err["message"]
            if model != "rag":
                assert err["type"] == kind


def test_an_ollama_backend_gets_a_400_not_silence(ingested: tuple[FakeOpenAIServer, Path]) -> None:
    fake, tmp = ingested
    rag, client = app_for(tmp, fake.base_url, backend="ollama")
    with rag, client:
        fake.requests.clear()
        for param, value in (("n", 2), ("logit_bias", {"50256": -100}), ("presence_penalty", 0.5)):
            resp = client.post("/v1/chat/completions", json=ASK | {param: value})
            assert resp.status_code == 400 and resp.json()["error"]["param"] == param
            resp = client.post("/v1/chat/completions", json=ASK | {"model": "llama3.2", param: value})
            assert resp.status_code == 400 and resp.json()["error"]["param"] == param  # passed through: same
        assert fake.requests == []  # refused before retrieval or the model
        ok = client.post("/v1/chat/completions", json=ASK | {"temperature": 0.2, "max_completion_tokens": 50})
        assert ok.status_code == 200
    rag, client = app_for(tmp, fake.base_url)  # a generic OpenAI-compatible server gets everything
    with rag, client:
        image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
        question = [{"type": "text", "text": "How long is the warranty?"}, image]
        sent = {"presence_penalty": 0.5, "logit_bias": {"7": 1}, "n": 1, "response_format": {"type": "text"}}
        resp = client.post(
            "/v1/chat/completions", json=ASK | sent | {"messages": [{"role": "user", "content": question}]}
        )
        assert resp.status_code == 200
        got = fake.bodies[-1]
        assert {k: got[k] for k in sent} == sent  # a grounded answer forwards the parameters...
        last = got["messages"][-1]["content"]  # ...and the image, beside the grounded question
        assert last[0]["type"] == "text" and "How long is the warranty?" in last[0]["text"] and last[1] == image


def test_a_backend_that_is_down(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    rag, client = app_for(tmp_path, dead)
    with rag, client:
        resp = client.post("/v1/chat/completions", json=ASK | {"model": "other"})
        assert resp.status_code == 502 and dead not in resp.json()["error"]["message"]  # issue 15: no internal URLs
        resp = client.post("/v1/embeddings", json={"model": "e", "input": "x"})
        assert resp.status_code == 502
        models = client.get("/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["rag"]  # no index yet, backend down: still answers
        resp = client.post("/v1/completions", json={"model": "rag", "prompt": "x"})
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "model"


def test_tool_calls_and_parameters_pass_through_a_real_server(tmp_path: Path, fake_server: FakeOpenAIServer) -> None:
    """openai SDK -> `rag serve` (a real uvicorn process) -> an OpenAI-compatible backend."""
    env = clean_env(
        RAG_INDEX_DIR=str(tmp_path / "index"),
        RAG_BASE_URL=fake_server.base_url,
        RAG_EMBED_MODEL="fake-embed-a",
        RAG_CHAT_MODEL="fake-chat-model",
        RAG_MIN_RELEVANCE="0",
    )
    port = free_port()
    server = ServerProcess([str(BIN / "rag"), "serve", "--port", str(port)], port, "/health", env=env)
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        tools: Any = [
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
            }
        ]
        resp = client.chat.completions.create(
            model="llama3.2",
            messages=[{"role": "user", "content": "Weather in Oslo?"}],
            tools=tools,
            tool_choice="auto",
            logit_bias={"50256": -100},
            frequency_penalty=0.3,
            max_completion_tokens=40,
        )
        call = resp.choices[0].message.tool_calls
        assert call and call[0].function.name == "get_weather"  # type: ignore[union-attr]
        sent = fake_server.bodies[-1]
        assert sent["model"] == "llama3.2" and sent["tools"] == tools and sent["tool_choice"] == "auto"
        assert sent["logit_bias"] == {"50256": -100} and sent["frequency_penalty"] == 0.3
        assert sent["max_completion_tokens"] == 40
        streamed = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="llama3.2", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            if c.choices
        )
        assert streamed == "The answer [1] [9]."  # unchanged: no grounding, no marker filtering
    finally:
        server.stop()
