"""Concurrent answers on the embedded default: old engine and new engine in one run (issue 12).

For each engine, a real ``rag serve`` on the embedded default with data/ ingested:

* ``old``: the code before issue 12 (a git worktree of ``trees.BEFORE_ENGINES``): SmolLM2 in-process
  in llama-cpp-python behind our FastAPI shim, one answer at a time;
* ``new``: this tree: llama.cpp's server from the xllamacpp wheel, ``RAG_EMBEDDED_PARALLEL`` slots.

Then 1, 4 and 8 ``POST /query`` streams at once, every level ``--rounds`` times, the engines taking
turns so machine noise hits both alike. No question is asked twice of one engine (the new engine's
prompt cache is off by default, but a client may turn it on). Reported per engine and level:

* time to first token (request sent to the first ``token`` event), p50 and p95;
* tokens/s per stream: the stream's completion tokens over its time from first token to ``done``;
* aggregate tokens/s: all completion tokens of the burst over its wall time.

    .venv/bin/python benchmarks/concurrency.py [--rounds 2] [--levels 1,4,8] [--only new]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trees import BEFORE_ENGINES, REPO, env_for, old_engine_available, rag_command, worktree  # noqa: E402

from tests.conftest import ServerProcess, free_port  # noqa: E402

TOPICS = [
    "the restocking fee for opened items",
    "the return window",
    "how to get an RMA number",
    "when refunds are issued",
    "what happens to faulty products after 30 days",
    "the warranty on the X200",
    "the X200 battery",
    "cleaning the X200",
    "the Z10 Wi-Fi reconnect fix",
    "the Z10 eco schedule",
    "the Z10 child lock",
    "the Z10 open-window detection",
    "downgrading Z10 firmware",
    "error code U7",
    "phone support hours",
    "chat support hours",
    "email support response times",
    "support on public holidays",
    "the Q7 air purifier filter",
    "the Q7 noise level",
    "shipping costs of a return",
    "unopened items",
    "missing accessories in a return",
    "the RMA number format",
    "the Z10 humidity reading",
    "the Z10 boot time",
]
FORMS = ["What does the documentation say about {}?", "Tell me about {}.", "Explain {} briefly."]


def questions() -> list[str]:
    return [form.format(topic) for form in FORMS for topic in TOPICS]


def one(url: str, question: str, out: list[dict[str, float]], answer: str = "generate") -> None:
    t0 = time.perf_counter()
    first = last = None
    done: dict[str, object] = {}
    body = {"question": question, "answer": answer}
    with httpx.stream("POST", url + "/query", json=body, timeout=600) as resp:
        event = ""
        for line in resp.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
                if event == "token":
                    last = time.perf_counter()
                    first = first or last
            elif line.startswith("data: ") and event == "done":
                done = json.loads(line[6:])
    end = time.perf_counter()
    if first is None or last is None or not done:
        out.append({"error": 1.0})
        return
    tokens = float(done["usage"]["completion_tokens"])  # type: ignore[index]
    refused = 1.0 if done.get("refused") else 0.0
    out.append(
        {
            "ttft": first - t0,
            "tokens": tokens,
            # Generation only: first to last token. The claim check runs after the last token,
            # before `done` (its time is `check`), and is not the engine's speed.
            "stream_tps": tokens / max(last - first, 1e-6),
            "last": last,
            "check": end - last,
            "refused": refused,
        }
    )


def burst(url: str, qs: list[str], answer: str) -> dict[str, float]:
    out: list[dict[str, float]] = []
    threads = [threading.Thread(target=one, args=(url, q, out, answer)) for q in qs]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [r for r in out if "error" not in r]
    wall = max((r["last"] for r in ok), default=t0) - t0  # until the last token of the burst
    return {
        "ttfts": [r["ttft"] for r in ok],  # type: ignore[dict-item]
        "stream_tps": [r["stream_tps"] for r in ok],  # type: ignore[dict-item]
        "tokens": sum(r["tokens"] for r in ok),
        "wall": wall,
        "checks": [r["check"] for r in ok],  # type: ignore[dict-item]
        "errors": len(out) - len(ok),
        "refused": sum(r["refused"] for r in ok),
    }


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--levels", default="1,4,8")
    ap.add_argument("--only", choices=["old", "new"])
    ap.add_argument("--old-ref", default=BEFORE_ENGINES)
    ap.add_argument(
        "--answer",
        choices=["generate", "quote", "auto"],
        default="generate",
        help="the answer mode asked for (default generate: the model writes, which is what this measures; "
        "auto is the embedded default's quote mode since issue 14: no model call)",
    )
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    print(f"$ {' '.join(sys.argv)}  (load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores)")
    work = Path(tempfile.mkdtemp(prefix="rag-concurrency-"))
    trees = {"old": None, "new": REPO}
    why = old_engine_available()
    if a.only == "new" or why:
        trees.pop("old")
        if why and a.only != "new":
            print(f"old engine skipped: {why}")
    else:
        trees["old"] = worktree(a.old_ref, work / "old-tree")
    if a.only == "old":
        trees.pop("new")
    servers: dict[str, ServerProcess] = {}
    try:
        for name, tree in trees.items():
            assert tree is not None
            # RAG_MIN_RELEVANCE=0: every question reaches the model (a refusal makes no model call,
            # and its instant "first token" would flatter the engine); the old tree ignores it.
            env = env_for(tree, RAG_INDEX_DIR=str(work / f"index-{name}"), RAG_MIN_RELEVANCE="0")
            # cwd: child processes (the PDF parser) import the package from the current directory first.
            ingest = [*rag_command(tree), "ingest", str(REPO / "data")]
            subprocess.run(ingest, env=env, check=True, capture_output=True, cwd=tree)
            port = free_port()
            servers[name] = ServerProcess(
                [*rag_command(tree), "serve", "--port", str(port)],
                port,
                "/health",
                env=env,
                log=work / f"{name}.log",
                cwd=tree,
            )
            one(servers[name].url, "Warm-up: what is this about?", [])  # loads the models
        pool = {name: iter(questions()) for name in servers}
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        for _ in range(a.rounds):
            for level in levels:
                for name, server in servers.items():
                    qs = [next(pool[name]) for _ in range(level)]
                    results.setdefault((name, level), []).append(burst(server.url, qs, a.answer))
    finally:
        for s in servers.values():
            s.stop()
    print(f"{a.rounds} rounds; /query on data/, top_k 3, max_tokens 384; times in seconds")
    print(f"answer mode asked: {a.answer}; refused = answers refused before any model call (no relevant passage)")
    print("tok/s: first to last token (then the claim check: `check s`, median); tok/s all: to the burst's last token")
    head = ("engine", "streams", "ttft p50", "ttft p95", "tok/s/stream", "tok/s all", "check s", "errors", "refused")
    print(
        f"{head[0]:<6} {head[1]:>7} {head[2]:>9} {head[3]:>9} {head[4]:>13} {head[5]:>10} {head[6]:>8}"
        f" {head[7]:>6} {head[8]:>7}"
    )
    summary: dict[tuple[str, int], dict[str, float]] = {}
    for (name, level), runs in sorted(results.items(), key=lambda x: (x[0][0], x[0][1])):
        ttfts = [t for r in runs for t in r["ttfts"]]  # type: ignore[attr-defined]
        tps = [t for r in runs for t in r["stream_tps"]]  # type: ignore[attr-defined]
        agg = sum(r["tokens"] for r in runs) / sum(r["wall"] for r in runs)
        errors = sum(int(r["errors"]) for r in runs)
        refused = sum(int(r["refused"]) for r in runs)
        check = statistics.median([c for r in runs for c in r["checks"]])  # type: ignore[attr-defined]
        row = {"p50": pct(ttfts, 50), "p95": pct(ttfts, 95), "tps": statistics.median(tps), "agg": agg}
        summary[(name, level)] = row
        print(
            f"{name:<6} {level:>7} {row['p50']:9.2f} {row['p95']:9.2f} {row['tps']:13.1f} {agg:10.1f}"
            f" {check:8.2f} {errors:>6} {refused:>7}"
        )
    for name in servers:
        if (name, 1) in summary and (name, max(levels)) in summary:
            one_s, many = summary[(name, 1)], summary[(name, max(levels))]
            agg = f"{many['agg'] / one_s['agg']:.2f}x" if one_s["agg"] else "n/a (no model tokens: quote mode)"
            print(
                f"{name}: at {max(levels)} streams p95 TTFT = {many['p95'] / one_s['p95']:.2f}x one stream's "
                f"(target <= 3); aggregate tokens/s = {agg} one stream's (target >= 1.5)"
            )
    if ("old", 1) in summary and ("new", 1) in summary:
        o, n = summary[("old", 1)], summary[("new", 1)]
        print(f"single stream, new/old: tokens/s {n['tps'] / o['tps']:.2f}x, TTFT p50 {n['p50'] / o['p50']:.2f}x")


if __name__ == "__main__":
    main()
