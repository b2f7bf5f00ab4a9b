"""The one configuration object. Built once (from ``RAG_*`` environment variables,
CLI options or keyword arguments) and passed down; library code never reads
``os.environ`` itself."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Names the embedded default serves its bundled models under.
EMBEDDED_EMBED_MODEL = "multilingual-e5-small"
EMBEDDED_CHAT_MODEL = "smollm2-135m-instruct"
AnswerMode = Literal["generate", "quote", "auto"]
ANSWER_MODES: tuple[AnswerMode, ...] = get_args(AnswerMode)


def _default_index_dir() -> Path:
    return Path.home() / ".local" / "share" / "rag"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore", validate_assignment=True)

    # -- where the index lives ------------------------------------------------
    index_dir: Path = Field(default_factory=_default_index_dir, description="Directory of the embedded Chroma index.")
    collection: str = Field("rag", description="Chroma collection name.")
    chroma_url: str | None = Field(
        None, description="URL of a Chroma server (`chroma run`); when set, index_dir is not used for vectors."
    )

    # -- model backends (any OpenAI-compatible server) -----------------------
    base_url: str | None = Field(None, description="OpenAI-compatible base URL for chat (and embeddings).")
    embed_base_url: str | None = Field(None, description="Base URL for /v1/embeddings; defaults to base_url.")
    backend: Literal["auto", "ollama", "openai-compatible"] = Field(
        "auto",
        description="What the chat server is, for the parameters /v1 refuses rather than lets it ignore: "
        "auto (Ollama if the URL says so, port 11434), ollama, or openai-compatible (pass everything).",
    )
    api_key: str | None = None
    embed_api_key: str | None = None
    embed_model: str | None = None
    chat_model: str | None = None
    request_timeout: float = 120.0
    max_retries: int = 2

    # -- chunking and embedding ----------------------------------------------
    chunk_tokens: int = Field(128, ge=16, le=8192)
    chunk_overlap: int = Field(16, ge=0)
    embed_batch_size: int = Field(32, ge=1, le=2048, description="Texts per /v1/embeddings request.")
    embed_concurrency: int = Field(2, ge=1, le=64, description="Embedding requests in flight at once.")
    chunk_counter: Literal["auto", "exact", "estimate"] = Field(
        "auto",
        description="How chunks are sized: 'exact' in multilingual-e5 tokens (the embedded model's own "
        "tokenizer; ~2.5 ms per chunk), 'estimate' (characters, ~50x faster; chunks also capped in bytes, "
        "which bounds tokens for any tokenizer), 'auto': exact for the embedded model, else estimate.",
    )
    embed_max_tokens: int = Field(
        512, ge=16, description="The embedding model's input limit; chunks are never larger (never truncated)."
    )

    # -- ingest -------------------------------------------------------------
    parse_workers: int = Field(2, ge=1, le=64, description="Files read and chunked in parallel.")
    # PDF time limits stop a stuck parser, not a long file: the parser reports each page it finishes.
    pdf_timeout: float = Field(
        60.0,
        gt=0,
        description="Stall limit: a PDF is failed when its parser finishes no page for this many seconds "
        "(opening the file counts as a page). Pages take milliseconds, up to ~1 s when a busy machine starves "
        "the low-priority parser (measured); a minute means it is stuck. Also the base of the whole-file cap.",
    )
    pdf_seconds_per_page: float = Field(
        5.0,
        gt=0,
        description="Whole-file cap: a PDF is failed when it takes longer than pdf_timeout + this many seconds "
        "per page in all (60 s + 5 s x 300 pages = 26 min), for a file slow on every page that never stalls. "
        "Pages take 2-100 ms, up to ~1 s on a busy machine: 5 s per page leaves a wide margin.",
    )
    pdf_memory_mb: int = Field(1024, ge=128, description="Memory limit of the PDF parser process.")
    max_file_mb: float = Field(20.0, gt=0, description="Larger non-PDF files are reported and skipped.")
    write_batch: int = Field(1000, ge=1, description="Chunks per Chroma write (capped at Chroma's maximum).")
    write_process: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Write to Chroma from a child process during ingest, so writes overlap reading and "
        "embedding (Chroma holds Python's GIL while it writes). 'auto': for the embedded Chroma when there "
        "are at least 2 MB of files to index (the child costs ~1 s to start); 'never': write in-process.",
    )

    # -- retrieval ----------------------------------------------------------
    search_mode: Literal["dense", "keyword", "hybrid"] = Field(
        "hybrid", description="Default search mode: dense (embeddings), keyword (BM25) or hybrid (both, fused)."
    )
    keyword_memory: bool = Field(
        True, description="Score keyword queries in memory (fast; rebuilt after changes) rather than with FTS5."
    )
    hybrid_depth: int = Field(100, ge=1, le=1000, description="Candidates each side contributes to hybrid fusion.")
    hybrid_dense_weight: float = Field(
        0.6, ge=0, le=1, description="Weight of the dense side in hybrid fusion (the keyword side gets the rest)."
    )
    min_relevance: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Refuse to answer when no retrieved passage reaches this calibrated relevance (rag.relevance: "
        "the probability, 0..1, that a passage is relevant); chosen by measurement, docs/benchmarks.md.",
    )

    # -- answering ----------------------------------------------------------
    # 3: the embedded 135M chat model answers noticeably better from fewer passages, and hybrid
    # search puts the passage with the answer first (see the issue 5 note in docs/benchmarks.md).
    top_k: int = Field(3, ge=1, le=100, description="Passages retrieved for an answer.")
    temperature: float = 0.1
    max_tokens: int = Field(384, ge=1)
    seed: int | None = Field(0, description="Sampling seed; answers repeat by default.")
    answer_mode: AnswerMode = Field(
        "auto",
        description="How answers are made: generate (the chat model writes them), quote (the passage sentences "
        "that best answer the question, verbatim with their markers; no model call), or auto (quote on the "
        "embedded chat model, which answered 50% of the demo set right against 86% quoted; generate on a "
        "configured backend).",
    )
    chat_context: int | None = Field(
        None,
        ge=256,
        description="The chat model's context in tokens; prompts are fitted to it (passages and old turns left out, "
        "and said so) rather than cut by the server. Default: what the backend reports, else embedded_ctx for the "
        "embedded model, 2048 for Ollama (its default num_ctx, which /v1 cannot raise), 4096 for other servers.",
    )
    rewrite: Literal["auto", "model", "rules", "off"] = Field(
        "auto",
        description="How a follow-up question is rewritten to stand alone for retrieval: model (the chat model, "
        "with a rules fallback), rules (deterministic: earlier questions' words added to a question that refers "
        "back), off, or auto (rules for the embedded chat model, too small to rewrite; model otherwise).",
    )

    # -- embedded default ---------------------------------------------------
    embedded_ctx: int = Field(4096, ge=512, le=8192, description="Context of each answer of the embedded chat model.")
    embedded_parallel: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Answers the embedded chat engine generates at once (llama.cpp slots, continuous batching); "
        "each slot holds embedded_ctx tokens of context (~80 MB per slot at 4096, and start-up time). "
        "Default: 8 under `rag serve`, 1 for one-question commands and the library.",
    )
    embedded_threads: int | None = Field(None, description="CPU threads for each embedded engine (default: all).")
    embedded_start_timeout: float = Field(120.0, gt=0, description="Seconds an embedded engine may take to start.")

    # -- documents over HTTP (api.routes_documents) --------------------------
    ingest_roots: str | None = Field(
        None,
        description="Folders `POST /ingest` may read (os.pathsep- or comma-separated; paths are resolved, symlinks "
        "included, before the check). Unset: `POST /ingest` is off.",
    )
    upload_dir: Path | None = Field(
        None, description="Where `POST /documents` stores uploads, a folder per collection (default INDEX_DIR/uploads)."
    )
    max_upload_mb: float = Field(50.0, gt=0, description="Largest file `POST /documents` accepts (413 beyond).")

    # -- HTTP service -------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000

    # -- limits (the HTTP service; api/limits.py) ------------------------------
    max_body_kb: int = Field(
        1024, ge=1, description="Largest request body in KiB (413 beyond); uploads have their own RAG_MAX_UPLOAD_MB."
    )
    max_query_chars: int = Field(
        4000,
        ge=1,
        description="Longest question, search query, history turn or /v1/embeddings input, in characters (400 "
        "beyond); also at most a quarter of this many estimated tokens (CJK counts a token a character), "
        "since the embedded embedder's time grows with the square of its input.",
    )
    max_text_chars: int = Field(20000, ge=1, description="Longest text POST /verify checks (400 beyond).")
    max_history_turns: int = Field(50, ge=0, description="Most earlier messages in a conversation (400 beyond).")
    max_history_chars: int = Field(32000, ge=0, description="Most characters in a conversation's history.")
    max_streams: int = Field(
        16,
        ge=1,
        description="Answers (/query, /v1/chat/completions, /v1/completions) in progress at once; beyond it 429 "
        "with Retry-After. 16: twice the embedded chat engine's 8 slots under `rag serve`.",
    )
    stream_write_timeout: float = Field(
        30.0, gt=0, description="Seconds a response write may wait for a client that stops reading; then it ends."
    )
    rate_per_minute: int = Field(
        600,
        ge=0,
        description="Requests per minute per caller (API key, else address), in bursts up to as many; 0: off.",
    )
    cors_origins: str = Field("", description="Comma-separated origins allowed by CORS; empty: CORS off.")
    allowed_hosts: str = Field(
        "",
        description="Comma-separated extra Host names accepted (against DNS rebinding: loopback names, IP "
        "addresses and RAG_HOST are always accepted); '*' accepts any.",
    )

    # -- access ---------------------------------------------------------------
    api_keys: str | None = Field(
        None,
        repr=False,
        description="Comma-separated API keys with full access (every collection, read and write); "
        "setting this or api_keys_file turns on authentication on every route but GET /health.",
    )
    api_keys_file: Path | None = Field(
        None, description="File of hashed, scoped API keys, managed with `rag keys create|list|revoke`."
    )

    @property
    def uploads_root(self) -> Path:
        """Where uploads are stored: ``upload_dir``, else ``INDEX_DIR/uploads``."""
        return self.upload_dir or self.index_dir / "uploads"

    @property
    def ingest_root_list(self) -> list[Path]:
        """The ``ingest_roots`` allowlist, as given (resolve them before comparing)."""
        import os
        import re

        raw = self.ingest_roots or ""
        return [Path(p).expanduser() for p in re.split(f"[,{re.escape(os.pathsep)}]", raw) if p.strip()]

    @property
    def backend_kind(self) -> Literal["embedded", "ollama", "openai-compatible"]:
        """The kind of the chat backend: the embedded engine when no ``base_url`` is set, else
        ``backend``; only ``auto`` guesses from the URL (Ollama's port ``:11434`` or ``ollama``)."""
        url = self.base_url
        if url is None:
            return "embedded"
        if self.backend != "auto":
            return self.backend
        return "ollama" if ":11434" in url or "ollama" in url.lower() else "openai-compatible"

    @property
    def embed_url(self) -> str | None:
        """The configured embeddings server (``embed_base_url``, else ``base_url``); None: the embedded one."""
        return self.embed_base_url or self.base_url

    @property
    def embedded(self) -> bool:
        """True when no backend is configured and the bundled models serve both roles."""
        return self.base_url is None and self.embed_base_url is None

    @property
    def embed_model_name(self) -> str:
        return self.embed_model or EMBEDDED_EMBED_MODEL

    @property
    def chat_model_name(self) -> str:
        return self.chat_model or EMBEDDED_CHAT_MODEL
