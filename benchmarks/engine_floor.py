"""The embedded chat engine alone, without rag: how far concurrency can go on this machine (issue 12).

Starts llama.cpp's server from the xllamacpp wheel exactly as the embedded default does
(``rag.embedded.EmbeddedEngines``), then sends 1, 4 and 8 streaming chat completions at once,
straight to its ``/v1/chat/completions``: no retrieval, no prompt building, no claim check.
Each stream gets its own prompt (different passages from data/, so nothing is shared), of two sizes:

* ``rag``: ~480 prompt tokens, the size of a grounded prompt on data/ (system prompt + passages);
* ``short``: ~40 prompt tokens, to show what the engine does when prompts cost little.

Reported per size and level: time to first token p50/p95 (request sent to the first content
delta), decode tokens/s per stream (completion tokens over first-to-last token), aggregate
tokens/s (all completion tokens of the burst over its wall time), and the prompt tokens/s the
engine processed. If the issue's targets (p95 TTFT at 8 <= 3x one stream's, aggregate >= 1.5x)
fail here, no code in front of the engine can meet them.

    .venv/bin/python benchmarks/engine_floor.py [--rounds 2] [--levels 1,4,8] [--max-tokens 96]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.embedded import EmbeddedEngines  # noqa: E402
from rag.settings import Settings  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data"
SYSTEM = (
    "Answer the question using only the documents below. Cite each claim with its document number "
    "in square brackets. If the documents do not answer it, say so."
)


def passages() -> list[str]:
    text = " ".join(
        " ".join(p.read_text(encoding="utf-8").split())
        for p in sorted(DATA.rglob("*"))
        if p.suffix in {".md", ".txt", ".html"}
    )
    words = text.split()
    return [" ".join(words[i : i + 60]) for i in range(0, len(words) - 60, 23)]


def prompt(size: str, i: int, pool: list[str]) -> list[dict[str, str]]:
    if size == "short":
        return [{"role": "user", "content": f"Say something short about {pool[i % len(pool)][:90]}"}]
    docs = "\n".join(f"<document n={n + 1}>{pool[(i * 5 + n) % len(pool)]}</document>" for n in range(5))
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"{docs}\n\nQuestion number {i}: what do these documents say?"},
    ]


def one(url: str, messages: list[dict[str, str]], max_tokens: int, out: list[dict[str, float]]) -> None:
    body = {
        "model": "smollm2",
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "seed": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    first = last = 0.0
    usage: dict[str, int] = {}
    with httpx.stream("POST", url + "/chat/completions", json=body, timeout=300) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or []):
                last = time.perf_counter()
                first = first or last
    out.append(
        {
            "ttft": first - t0,
            "decode": (usage["completion_tokens"] - 1) / (last - first) if last > first else 0.0,
            "tokens": float(usage["completion_tokens"]),
            "prompt": float(usage["prompt_tokens"]),
            "end": last - t0,
        }
    )


def burst(url: str, size: str, n: int, start: int, pool: list[str], max_tokens: int) -> dict[str, float]:
    out: list[dict[str, float]] = []
    threads = [
        threading.Thread(target=one, args=(url, prompt(size, start + i, pool), max_tokens, out)) for i in range(n)
    ]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    assert len(out) == n, "a stream failed"
    ttfts = sorted(o["ttft"] for o in out)
    return {
        "ttft": ttfts,  # type: ignore[dict-item]
        "decode": statistics.mean(o["decode"] for o in out),
        "aggregate": sum(o["tokens"] for o in out) / wall,
        "prompt_tps": sum(o["prompt"] for o in out) / max(ttfts),
        "prompt_tokens": statistics.mean(o["prompt"] for o in out),
    }


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p * (len(s) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--levels", default="1,4,8")
    ap.add_argument("--max-tokens", type=int, default=96)
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    engines = EmbeddedEngines(Settings(embedded_parallel=max(levels)))
    pool = passages()
    try:
        url = engines.chat.url()
        one(url, prompt("short", 0, pool), 8, [])  # warm up
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        start = 1
        for _ in range(args.rounds):
            for size in ("rag", "short"):
                for n in levels:
                    results.setdefault((size, n), []).append(burst(url, size, n, start, pool, args.max_tokens))
                    start += n
        print("prompt streams prompt_tok ttft_p50 ttft_p95 decode_tok/s/stream agg_tok/s prompt_tok/s")
        summary: dict[tuple[str, int], tuple[float, float]] = {}
        for (size, n), runs in results.items():
            ttfts = [t for r in runs for t in r["ttft"]]  # type: ignore[attr-defined]
            agg = statistics.mean(r["aggregate"] for r in runs)
            summary[(size, n)] = (pct(ttfts, 0.95), agg)
            print(
                f"{size:6} {n:7} {statistics.mean(r['prompt_tokens'] for r in runs):10.0f} "
                f"{pct(ttfts, 0.5):8.2f} {pct(ttfts, 0.95):8.2f} "
                f"{statistics.mean(r['decode'] for r in runs):19.1f} {agg:9.1f} "
                f"{statistics.mean(r['prompt_tps'] for r in runs):12.0f}"
            )
        top = max(levels)
        for size in ("rag", "short"):
            (p1, a1), (pn, an) = summary[(size, 1)], summary[(size, top)]
            print(
                f"{size}: at {top} streams p95 TTFT = {pn / p1:.2f}x one stream's (target <= 3); "
                f"aggregate tokens/s = {an / a1:.2f}x (target >= 1.5)"
            )
    finally:
        engines.close()


if __name__ == "__main__":
    main()
