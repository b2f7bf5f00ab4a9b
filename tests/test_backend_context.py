"""The chat server's own context, where it says it (vLLM's /v1/models, llama.cpp's /props), and
prompts fitted to it: against the fake OpenAI-compatible server, a real HTTP server on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

from conftest import DATA, free_port
from fakes import FakeEmbedder, FakeOpenAIServer, fake_server_fixture  # noqa: F401 - the fake_server fixture

from rag.backend_context import reported_context
from rag.engine import Rag
from rag.settings import Settings


def test_reported_context_from_models_then_props(fake_server: FakeOpenAIServer) -> None:
    assert reported_context(fake_server.base_url, "fake") is None  # the server says nothing
    fake_server.props_ctx = 2048
    assert reported_context(fake_server.base_url, "fake") == 2048  # llama.cpp's /props
    fake_server.max_model_len = 8192
    assert reported_context(fake_server.base_url, "fake") == 8192  # vLLM's /v1/models first


def test_a_server_that_cannot_be_reached_says_nothing() -> None:
    assert reported_context(f"http://127.0.0.1:{free_port()}/v1", "m", timeout=1.0) is None


def test_prompts_are_fitted_to_the_context_the_server_reports(tmp_path: Path, fake_server: FakeOpenAIServer) -> None:
    fake_server.max_model_len = 700
    settings = Settings(
        index_dir=tmp_path / "index",
        base_url=fake_server.base_url,
        chat_model="fake",
        min_relevance=0.0,
        max_tokens=128,
    )
    with Rag(settings, embedder=FakeEmbedder(settings.embed_model_name)) as r:
        r.ingest([DATA])
        events = list(r.stream("What is the restocking fee for opened items?", k=5, answer="generate"))
    flags = [s["in_prompt"] for s in events[0].data["sources"]]
    assert flags[0] is True and False in flags  # 700 tokens hold some of the five passages, not all
    assert events[-1].type == "done"
