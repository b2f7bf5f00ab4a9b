"""Shared fixtures. Every test gets its own index directory and a clean ``RAG_*``
environment, so nothing leaks from the developer's shell or between tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rag import Rag, Settings

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("RAG_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "index"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(index_dir=tmp_path / "index")


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    """A private copy of data/ that a test may change."""
    dst = tmp_path / "docs"
    shutil.copytree(DATA, dst)
    return dst


@pytest.fixture(scope="session")
def embedded_rag_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rag]:
    """One embedded-default Rag with data/ ingested, shared by read-only tests."""
    index = tmp_path_factory.mktemp("shared-index")
    with Rag(Settings(index_dir=index)) as r:
        r.ingest([DATA])
        yield r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: no RAG_* from outside, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 600, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "rag"), *args], env=env, capture_output=True, text=True, timeout=timeout, input=input, cwd=REPO
    )


def invoke_cli(
    *args: str, env: dict[str, str], timeout: float = 600, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`rag ARGS` run in this process with click's CliRunner: what ``run_cli`` returns, without
    starting a process (~2 s of imports each). ``os.environ`` is made exactly ``env`` for the call
    (RAG_* variables not in ``env`` are removed) and the working directory is the repository, as
    for ``run_cli``. An exception escaping the command is appended to stderr as a traceback, the way
    the interpreter would print it, so "no traceback" assertions mean the same as with a process;
    a call still running after ``timeout`` seconds raises ``subprocess.TimeoutExpired`` (SIGALRM).
    Use ``run_cli`` when the test is about the process itself (locks, kills, other users)."""
    from click.testing import CliRunner

    from rag.cli import cli

    overrides: dict[str, str | None] = {k: v for k, v in env.items() if os.environ.get(k) != v}
    overrides |= {k: None for k in os.environ if k not in env}

    def expired(signum: int, frame: object) -> None:
        raise subprocess.TimeoutExpired(["rag", *args], timeout)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with contextlib.chdir(REPO):
            result = CliRunner().invoke(cli, list(args), input=input, env=overrides, prog_name="rag")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if isinstance(result.exception, subprocess.TimeoutExpired):
        raise result.exception
    stderr = result.stderr
    if result.exc_info is not None and not issubclass(result.exc_info[0], SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess(["rag", *args], result.exit_code, result.stdout, stderr)


class ServerProcess:
    """A server started as a real process on 127.0.0.1, stopped at teardown."""

    def __init__(
        self,
        args: list[str],
        port: int,
        health: str,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        timeout: float = 120,
        cwd: Path = REPO,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        self._out = out
        self.proc = subprocess.Popen(args, env=env or clean_env(), stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{args[0]} exited with {self.proc.returncode}: {self.tail()}")
            try:
                if httpx.get(self.url + health, timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{args} did not become healthy in {timeout}s: {self.tail()}")
            time.sleep(0.2)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log and self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._out is not subprocess.DEVNULL:
            self._out.close()


def stored_metadata(r: Rag, where: dict[str, str] | None = None) -> dict[str, dict[str, object]]:
    """Metadata by id of the chunks in the collection's vector store (``where``: fields that must
    equal, e.g. ``{"source": "a.md"}``), read through the store's own calls."""
    chunks = r.store.get_chunks(sorted(r.store.all_ids()))
    return {c.id: c.metadata for c in chunks if all(c.metadata.get(k) == v for k, v in (where or {}).items())}


def parse_sse(body: str) -> list[tuple[str, dict[str, object]]]:
    import json

    events = []
    for block in body.strip().split("\n\n"):
        name, data = "", ""
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data += line[len("data: ") :]
        if name:
            events.append((name, json.loads(data)))
    return events


def start_instant_embeddings(log_dir: Path, *extra: str) -> ServerProcess:
    """A real OpenAI-compatible embeddings server (benchmarks/instant_embeddings.py) with
    deterministic vectors and no model cost; ``extra``: e.g. ``--delay-ms 60``, ``--fail-first 2``."""
    port = free_port()
    script = str(REPO / "benchmarks" / "instant_embeddings.py")
    args = [sys.executable, script, "--port", str(port), *extra]
    return ServerProcess(args, port, "/v1/models", log=log_dir / f"embed-{port}.log")


@pytest.fixture(scope="session")
def instant_embeddings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_instant_embeddings(tmp_path_factory.mktemp("instant"))
    yield server
    server.stop()


def instant_settings(index_dir: Path, server: ServerProcess, **extra: object) -> Settings:
    values: dict[str, object] = {
        "index_dir": index_dir,
        "embed_base_url": server.url + "/v1",
        "embed_model": "instant",
    }
    return Settings(**(values | extra))


@pytest.fixture(scope="module")
def embedded_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`rag serve` as a real process on the embedded default, with data/ ingested; yields its URL."""
    tmp = tmp_path_factory.mktemp("serve")
    env = clean_env(RAG_INDEX_DIR=str(tmp / "index"))
    assert run_cli("ingest", str(DATA), env=env).returncode == 0
    port = free_port()
    server = ServerProcess(
        [str(BIN / "rag"), "serve", "--port", str(port)], port, "/health", env=env, log=tmp / "serve.log"
    )
    yield server.url
    server.stop()
