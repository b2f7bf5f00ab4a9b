"""Load and faults against a real ``rag serve`` with API keys on (issue 15, item 5).

Everything runs on 127.0.0.1; every loop is bounded by a count or a deadline, and the run stops
by itself. What it starts:

* a **fake backend** (this file, ``--backend``): a separate process serving OpenAI-compatible
  ``/v1/embeddings`` (the instant vectors of ``benchmarks/instant_embeddings.py``, 384 dims) and a
  streaming ``/v1/chat/completions`` that answers at once (``POST /control {"token_delay_ms": N}``
  slows it, ``GET /last-chat`` returns the last chat body it got). It is a process so it can be
  killed mid-stream; ``tests/fakes.py``'s ``FakeOpenAIServer`` runs in a thread, has 8-dim vectors
  and no slow-stream mode, so it cannot serve this;
* an **index of N chunks** (synthetic Markdown from ``benchmarks/corpus.py``, ingested with the
  fake's embeddings), cached under ``--work`` between runs;
* **``rag serve``** over it, ``RAG_API_KEYS`` set (every request sends the key),
  ``RAG_BASE_URL`` to the fake, ``RAG_MIN_RELEVANCE=0`` (fake vectors carry no meaning),
  ``RAG_MAX_STREAMS`` = the number of concurrent streams, ``RAG_RATE_PER_MINUTE=0`` (off: one key
  drives the whole load, a rate would measure nothing but the bucket). Or ``--url`` (and ``--key``):
  a service you started (then the backend scenarios that need the fake are skipped).

Scenarios (each: requests, p50/p99 latency, errors by status; deliberate 429/503 apart):

1. ``query``: S concurrent ``POST /query`` streams (``"answer": "generate"``), R rounds; every
   stream must end with ``done``. Then ``limits``: S + 4 slow streams at once against
   ``RAG_MAX_STREAMS`` = S, to show the deliberate 429s. With ``--embedded``, the same against the
   embedded default (real models, data/ ingested, one round).
2. ``search``: C concurrent ``POST /search`` clients (asyncio + httpx, one shared pool) for D s.
3. ``overhead``: one at a time, our time to first ``token`` event minus the backend's own time to
   its first content chunk for the very body we sent it (replayed from ``/last-chat``), side by side;
   target at most 50 ms at p50.
4. ``faults``: the backend killed (SIGKILL) after the first token of a slow stream: the stream must
   end with an ``error`` event; a request while it is down must get a clear 502/503 JSON error;
   once it is back (same port), the next request must end with ``done``.

    .venv/bin/python benchmarks/load.py --short [--json] [--work DIR]   # CI: ~2,000 chunks, < ~60 s
    .venv/bin/python benchmarks/load.py --full [--embedded] --work /tmp/rag-load   # issue's numbers
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import corpus  # noqa: E402
from instant_embeddings import Config as EmbedConfig  # noqa: E402
from instant_embeddings import Handler as EmbedHandler  # noqa: E402
from instant_embeddings import Server as EmbedServer  # noqa: E402

RAG = str(Path(sys.executable).parent / "rag")
KEY = "load-bench-key-0123456789abcdef"
ANSWER = ("The answer", " is in", " the sources", " [1]", ".")
DELIBERATE = (429, 503)
OVERHEAD_TARGET_MS = 50.0
EMBEDDED_TIMEOUT = 600.0  # client read timeout: 32 answers queue for 8 engine slots on 2 cores
EMBEDDED_MAX_TOKENS = 128  # answers of the embedded run are capped, so 32 of them on 2 cores stay in minutes
SENTENCES_PER_FILE = 260  # ~64 chunks of 128 tokens per file
EMBEDDED_QUESTIONS = [
    f"{form} {topic}"
    for topic in (
        "the restocking fee for opened items?",
        "the return window?",
        "how to get an RMA number?",
        "when refunds are issued?",
        "the warranty on the X200?",
        "the X200 battery?",
        "cleaning the X200?",
        "the Z10 Wi-Fi reconnect fix?",
        "the Z10 child lock?",
        "error code U7?",
        "phone support hours?",
        "the Q7 air purifier filter?",
    )
    for form in ("What does the documentation say about", "Tell me about", "Briefly, what about")
]


# -- the fake backend (a process of its own) ----------------------------------------------------


class BackendServer(EmbedServer):
    request_queue_size = 512

    def __init__(self, addr: tuple[str, int], cfg: EmbedConfig) -> None:
        super().__init__(addr, cfg)
        self.RequestHandlerClass = BackendHandler
        self.token_delay = 0.0
        self.last_chat: dict[str, Any] = {}


class BackendHandler(EmbedHandler):
    server: BackendServer  # type: ignore[assignment]

    def _body(self) -> Any:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            return json.loads(raw or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path.rstrip("/") == "/last-chat":
            self._send(200, self.server.last_chat)
        else:
            super().do_GET()

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        path = self.path.rstrip("/")
        if path == "/control":
            body = self._body() or {}
            self.server.token_delay = min(float(body.get("token_delay_ms", 0)), 2000.0) / 1000.0
            self._send(200, {"token_delay_ms": self.server.token_delay * 1000})
        elif path in ("/v1/chat/completions", "/chat/completions"):
            self._chat()
        else:
            super().do_POST()

    def _chat(self) -> None:
        body = self._body()
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._error(400, "'messages' must be a list", "invalid_messages")
            return
        self.server.last_chat = body
        model = str(body.get("model") or "fake")
        usage = {"prompt_tokens": 100, "completion_tokens": len(ANSWER), "total_tokens": 100 + len(ANSWER)}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(ANSWER)}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            self._send(
                200, {"id": "c", "object": "chat.completion", "model": model, "choices": [choice], "usage": usage}
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def write(obj: dict[str, Any] | str) -> None:
            text = obj if isinstance(obj, str) else json.dumps(obj)
            data = f"data: {text}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [choice]}

        try:
            for piece in ANSWER:
                if self.server.token_delay:
                    time.sleep(self.server.token_delay)
                write(chunk({"role": "assistant", "content": piece}))
            write(chunk({}, "stop"))
            if (body.get("stream_options") or {}).get("include_usage"):
                write({"id": "c", "object": "chat.completion.chunk", "model": model, "choices": [], "usage": usage})
            write("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def serve_backend(port: int) -> None:
    server = BackendServer(("127.0.0.1", port), EmbedConfig(384, 0.0, 0, 500, "instant"))
    print(f"load-backend listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()


class Backend:
    """The fake backend as a child process; ``kill`` is SIGKILL, ``start`` again reuses the port."""

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [sys.executable, __file__, "--backend", "--port", str(self.port)]
        for _ in range(20):  # the port may take a moment to be free again after a kill
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            line = self.proc.stdout.readline() if self.proc.stdout else ""
            if "listening on" in line:
                self.port = int(line.rsplit(":", 1)[1])
                return
            self.proc.wait(timeout=10)
            time.sleep(0.25)
        raise RuntimeError("the fake backend did not start")

    def control(self, token_delay_ms: float) -> None:
        httpx.post(self.url + "/control", json={"token_delay_ms": token_delay_ms}, timeout=10).raise_for_status()

    def last_chat(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/last-chat", timeout=10).json())

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


# -- processes: index and service -----------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    return env | extra


def fake_env(index: Path, backend: Backend) -> dict[str, str]:
    return clean_env(
        RAG_INDEX_DIR=str(index),
        RAG_BASE_URL=backend.url + "/v1",
        RAG_EMBED_MODEL="instant",
        RAG_CHAT_MODEL="fake-instant",
        RAG_CHAT_CONTEXT="8192",
        RAG_MIN_RELEVANCE="0",
    )


def chunk_count(env: dict[str, str]) -> int:
    out = subprocess.run([RAG, "status", "--json"], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    if out.returncode != 0:
        return 0
    return int(json.loads(out.stdout).get("chunks") or 0)


def build_index(work: Path, chunks: int, backend: Backend, say: Any) -> dict[str, Any]:
    """An index of at least ``chunks`` chunks under ``work``, built once and then reused."""
    index = work / f"index-{chunks}"
    marker = index / "load-index.json"
    if marker.exists():
        info = dict(json.loads(marker.read_text()))
        say(f"index: {info['chunks']:,} chunks, cached in {index}")
        return info | {"cached": True}
    docs = work / f"corpus-{chunks}"
    env = fake_env(index, backend)
    started = time.perf_counter()
    files, have = 0, 0
    for _ in range(4):  # add files until the index holds enough chunks (bounded)
        per_file = have / files if files else 64.0
        more = math.ceil((chunks - have) / per_file * 1.02) + 1
        for i in range(files, files + more):
            rng = random.Random(f"load:{i}")
            path = docs / f"area-{i % 16:02d}" / f"doc-{i:06d}.md"
            path.parent.mkdir(parents=True, exist_ok=True)
            corpus.write_markdown(path, rng, SENTENCES_PER_FILE)
        files += more
        say(f"index: ingesting {files:,} files ...")
        out = subprocess.run(
            [RAG, "ingest", str(docs)], env=env, capture_output=True, text=True, timeout=3600, cwd=REPO
        )
        if out.returncode != 0:
            raise RuntimeError(f"rag ingest failed ({out.returncode}): {out.stderr[-2000:]}")
        have = chunk_count(env)
        if have >= chunks:
            break
    info = {"chunks": have, "files": files, "build_seconds": round(time.perf_counter() - started, 1)}
    marker.write_text(json.dumps(info))
    say(f"index: {have:,} chunks from {files:,} files, built in {info['build_seconds']} s")
    return info | {"cached": False}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """``rag serve`` as a child process on 127.0.0.1, healthy before the constructor returns."""

    def __init__(self, env: dict[str, str], log: Path, timeout: float = 300) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.log = log
        cmd = [RAG, "serve", "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._out, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rag serve exited with {self.proc.returncode}: {self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rag serve did not become healthy in {timeout} s: {self.tail()}")
            time.sleep(0.2)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


# -- clients and tallies -------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


@dataclass
class Tally:
    """Outcomes of one scenario: latencies of the successful requests, deliberate refusals and
    errors by status (``event:error``: a stream that ended with an ``error`` event; ``no-done``:
    one that ended without ``done``; ``exc:NAME``: the client's exception)."""

    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    deliberate: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    ends: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    requests: int = 0
    refused: int = 0
    wall: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, r: dict[str, Any]) -> None:
        with self.lock:
            self.requests += 1
            status = r.get("status")
            if "end" in r:
                self.ends[str(r["end"])] += 1
            self.refused += int(bool(r.get("refused")))
            if status in DELIBERATE:
                self.deliberate[str(status)] += 1
            elif status != 200:
                self.errors[str(status) if status else f"exc:{r.get('exc')}"] += 1
            elif "end" in r and r["end"] != "done":
                self.errors["event:error" if r["end"] == "error" else "no-done"] += 1
            else:
                self.latencies.append(r["latency"])
                if r.get("ttft") is not None:
                    self.ttfts.append(r["ttft"])
                return
            if len(self.samples) < 5 and (status not in DELIBERATE or not self.samples):
                self.samples.append(str(r.get("detail", ""))[:300])

    def summary(self, **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests": self.requests,
            "ok": len(self.latencies),
            "deliberate": dict(self.deliberate),
            "errors": dict(self.errors),
            "latency_ms": {"p50": ms(pct(self.latencies, 50)), "p99": ms(pct(self.latencies, 99))},
        }
        if self.ttfts:
            out["ttft_ms"] = {"p50": ms(pct(self.ttfts, 50)), "p99": ms(pct(self.ttfts, 99))}
        if self.ends:
            out["ends"] = dict(self.ends)
            out["refused"] = self.refused  # answers that were refusals (no model call)
        if self.wall:
            out["wall_s"] = round(self.wall, 1)
            out["per_second"] = round(len(self.latencies) / self.wall, 1)
        if self.samples:
            out["error_samples"] = self.samples
        return out | extra


def headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def query_once(
    client: httpx.Client, url: str, question: str, key: str | None, on_token: Any = None, timeout: float = 120
) -> dict[str, Any]:
    """One ``POST /query`` read to its end: status, latency, time to the first ``token`` event,
    the event names, and how the stream ended (``done``, ``error`` or None)."""
    t0 = time.perf_counter()
    body = {"question": question, "answer": "generate"}
    events: list[str] = []
    result: dict[str, Any] = {}
    try:
        with client.stream("POST", url + "/query", json=body, headers=headers(key), timeout=timeout) as resp:
            result["status"] = resp.status_code
            if resp.status_code != 200:
                resp.read()
                return result | {"latency": time.perf_counter() - t0, "detail": resp.text[:300]}
            event, ttft = "", None
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                    events.append(event)
                    if event == "token" and ttft is None:
                        ttft = time.perf_counter() - t0
                        if on_token is not None:
                            on_token()
                elif line.startswith("data: ") and event == "error":
                    result["detail"] = line[6:300]
                elif line.startswith("data: ") and event == "done":
                    result["refused"] = bool(json.loads(line[6:]).get("refused"))
    except httpx.HTTPError as exc:
        detail = f"{exc!r} (cause {exc.__cause__!r}) after {time.perf_counter() - t0:.1f} s"
        return {"status": None, "exc": type(exc).__name__, "detail": detail, "events": events}
    end = events[-1] if events and events[-1] in ("done", "error") else None
    return result | {"latency": time.perf_counter() - t0, "ttft": ttft, "events": events, "end": end}


def question(rng: random.Random) -> str:
    return corpus.sentence(rng).rstrip(".?!") + "?"


def burst(
    url: str, key: str | None, questions: list[str], tally: Tally, client: httpx.Client, timeout: float = 120
) -> None:
    threads = [
        threading.Thread(target=lambda q=q: tally.add(query_once(client, url, q, key, timeout=timeout)))
        for q in questions
    ]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout * 3)  # a stream's reads time out first
    tally.wall += time.perf_counter() - t0


def scenario_query(url: str, key: str | None, streams: int, rounds: int, qs: list[str], timeout: float = 120) -> Tally:
    tally = Tally()
    limits = httpx.Limits(max_connections=streams + 8, max_keepalive_connections=streams + 8)
    with httpx.Client(limits=limits) as client:
        for r in range(rounds):
            burst(url, key, [qs[(r * streams + i) % len(qs)] for i in range(streams)], tally, client, timeout)
    return tally


async def _search_load(url: str, key: str | None, clients: int, seconds: float, tally: Tally) -> None:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, headers=headers(key), timeout=120) as ac:
        deadline = time.monotonic() + seconds

        async def worker(i: int) -> None:
            rng = random.Random(f"search:{i}")
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                try:
                    resp = await ac.post(url + "/search", json={"query": question(rng), "k": 5})
                except httpx.HTTPError as exc:
                    detail = f"{exc!r} (cause {exc.__cause__!r}) after {time.perf_counter() - t0:.1f} s"
                    tally.add({"status": None, "exc": type(exc).__name__, "detail": detail})
                    continue
                r: dict[str, Any] = {"status": resp.status_code, "latency": time.perf_counter() - t0}
                if resp.status_code == 200 and not resp.json().get("hits"):
                    r = {"status": "empty", "detail": "no hits"}
                elif resp.status_code != 200:
                    r["detail"] = resp.text[:300]
                tally.add(r)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        tally.wall = time.perf_counter() - t0


def scenario_search(url: str, key: str | None, clients: int, seconds: float) -> Tally:
    tally = Tally()
    asyncio.run(_search_load(url, key, clients, seconds, tally))
    return tally


def backend_ttft(client: httpx.Client, backend: Backend, body: dict[str, Any]) -> float | None:
    """The backend's own time to its first content chunk, for ``body`` as our service sent it."""
    t0 = time.perf_counter()
    with client.stream("POST", backend.url + "/v1/chat/completions", json=body, timeout=60) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: {") and '"content"' in line:
                return time.perf_counter() - t0
    return None


def scenario_overhead(url: str, key: str | None, backend: Backend, pairs: int, qs: list[str]) -> dict[str, Any]:
    ours, theirs, search = Tally(), [], Tally()
    with httpx.Client() as client:
        for i in range(pairs):
            q = qs[i % len(qs)]
            r = query_once(client, url, q, key)
            ours.add(r)
            if r.get("status") == 200 and r.get("ttft") is not None:
                t = backend_ttft(client, backend, backend.last_chat())
                if t is not None:
                    theirs.append(t)
            t0 = time.perf_counter()
            resp = client.post(url + "/search", json={"query": q, "k": 3}, headers=headers(key), timeout=60)
            search.add({"status": resp.status_code, "latency": time.perf_counter() - t0, "detail": resp.text[:200]})
    our_p50, their_p50 = pct(ours.ttfts, 50), pct(theirs, 50)
    overhead = None if our_p50 is None or their_p50 is None else our_p50 - their_p50
    return ours.summary(
        backend_ttft_ms={"p50": ms(their_p50), "p99": ms(pct(theirs, 99))},
        overhead_p50_ms=ms(overhead),
        target_ms=OVERHEAD_TARGET_MS,
        reached=overhead is not None and overhead * 1000 <= OVERHEAD_TARGET_MS,
        search_one_at_a_time_ms=search.summary()["latency_ms"],
    )


def scenario_limits(url: str, key: str | None, backend: Backend, max_streams: int, qs: list[str]) -> dict[str, Any]:
    """``max_streams`` + 4 slow streams at once: the extra ones get the deliberate 429."""
    backend.control(token_delay_ms=150)
    try:
        tally = scenario_query(url, key, max_streams + 4, 1, qs)
    finally:
        backend.control(token_delay_ms=0)
    return tally.summary(streams=max_streams + 4, max_streams=max_streams)


def scenario_faults(url: str, key: str | None, backend: Backend, qs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client() as client:
        backend.control(token_delay_ms=300)
        killed = threading.Event()

        def kill() -> None:
            if not killed.is_set():
                killed.set()
                backend.kill()

        r = query_once(client, url, qs[0], key, on_token=kill, timeout=60)
        out["mid_stream"] = {k: r.get(k) for k in ("status", "events", "end", "detail")} | {"killed": killed.is_set()}
        out["mid_stream"]["events"] = compact(r.get("events") or [])
        r = query_once(client, url, qs[1], key, timeout=60)  # the backend is down
        out["while_down"] = {k: r.get(k) for k in ("status", "end", "detail", "exc")}
        backend.start()
        backend.control(token_delay_ms=0)
        r = query_once(client, url, qs[2], key, timeout=60)
        out["after_restart"] = {k: r.get(k) for k in ("status", "end", "detail")} | {"events": compact(r["events"])}
        resp = client.post(url + "/search", json={"query": qs[3]}, headers=headers(key), timeout=60)
        out["search_after_restart"] = resp.status_code
    down = out["while_down"]
    out["passed"] = (
        out["mid_stream"]["killed"]
        and out["mid_stream"]["end"] == "error"
        and (down["status"] in (502, 503) or down["end"] == "error")
        and out["after_restart"]["end"] == "done"
        and out["search_after_restart"] == 200
    )
    return out


def compact(events: list[str]) -> list[str]:
    """``sources, token x5, done`` rather than every token."""
    out: list[str] = []
    for name in events:
        if out and out[-1].split(" x")[0] == name:
            n = int(out[-1].split(" x")[1]) + 1 if " x" in out[-1] else 2
            out[-1] = f"{name} x{n}"
        else:
            out.append(name)
    return out


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Form:
    name: str
    chunks: int
    streams: int
    rounds: int
    search_clients: int
    search_seconds: float
    overhead_pairs: int
    embedded_rounds: int


SHORT = Form("short", 2_000, 8, 3, 20, 5.0, 15, 1)
FULL = Form("full", 50_000, 32, 5, 200, 60.0, 60, 1)


def print_row(say: Any, name: str, s: dict[str, Any]) -> None:
    lat = s["latency_ms"]
    line = f"{name:<10} requests {s['requests']:>6}  ok {s['ok']:>6}  p50 {lat['p50']} ms  p99 {lat['p99']} ms"
    if "ttft_ms" in s:
        line += f"  ttft p50 {s['ttft_ms']['p50']} ms p99 {s['ttft_ms']['p99']} ms"
    if "per_second" in s:
        line += f"  {s['per_second']}/s"
    if s.get("refused"):
        line += f"  refused {s['refused']}"
    line += f"  deliberate {s['deliberate'] or 0}  errors {s['errors'] or 0}"
    say(line)
    for sample in s.get("error_samples", []):
        say(f"           e.g. {sample}")


def run_embedded(work: Path, form: Form, say: Any) -> dict[str, Any]:
    """32 (or the form's) streams on the embedded default: real models, data/ ingested."""
    index = work / "index-embedded"
    env = clean_env(RAG_INDEX_DIR=str(index), RAG_API_KEYS=KEY, RAG_MAX_STREAMS=str(form.streams))
    env |= {"RAG_RATE_PER_MINUTE": "0", "RAG_MAX_TOKENS": str(EMBEDDED_MAX_TOKENS)}
    if not (index / "load-index.json").exists():
        say("embedded: ingesting data/ with the embedded models ...")
        out = subprocess.run(
            [RAG, "ingest", str(REPO / "data")], env=env, capture_output=True, text=True, timeout=1800, cwd=REPO
        )
        if out.returncode != 0:
            raise RuntimeError(f"embedded ingest failed: {out.stderr[-2000:]}")
        (index / "load-index.json").write_text(json.dumps({"chunks": chunk_count(env)}))
    chunks = json.loads((index / "load-index.json").read_text())["chunks"]
    service = Service(env, work / "serve-embedded.log")
    try:
        with httpx.Client() as client:  # loads the models
            query_once(client, service.url, "What is the return window?", KEY, timeout=600)
        qs = EMBEDDED_QUESTIONS[:]
        random.Random(0).shuffle(qs)
        tally = scenario_query(service.url, KEY, form.streams, form.embedded_rounds, qs, EMBEDDED_TIMEOUT)
    finally:
        service.stop()
    return tally.summary(
        streams=form.streams, rounds=form.embedded_rounds, chunks=chunks, max_tokens=EMBEDDED_MAX_TOKENS
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    form = FULL if args.full else SHORT
    say = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="rag-load-"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    load = os.getloadavg()[0]
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    say(f"$ {command}  ({form.name} form; {os.cpu_count()} cores, load {load:.2f})")
    settings = {"RAG_API_KEYS": "1 key (every request sends it)", "RAG_MAX_STREAMS": form.streams}
    settings |= {"RAG_RATE_PER_MINUTE": "0 (off)", "RAG_MIN_RELEVANCE": 0, "answer": "generate", "search": "hybrid"}
    result: dict[str, Any] = {"form": form.name, "cores": os.cpu_count(), "load_before": round(load, 2)}
    result["settings"] = settings
    rng = random.Random(1)
    qs = [question(rng) for _ in range(2000)]
    backend: Backend | None = None
    service: Service | None = None
    url, key = args.url, args.key or KEY
    try:
        if url is None:
            backend = Backend()
            result["index"] = build_index(work, form.chunks, backend, say)
            env = fake_env(work / f"index-{form.chunks}", backend)
            env |= {"RAG_API_KEYS": key, "RAG_MAX_STREAMS": str(form.streams), "RAG_RATE_PER_MINUTE": "0"}
            service = Service(env, work / "serve.log")
            url = service.url
        say(f"service {url}; settings: {settings}")
        with httpx.Client() as client:  # warm-up: BM25 and Chroma loaded, connections open
            for q in qs[-3:]:
                query_once(client, url, q, key)
                client.post(url + "/search", json={"query": q}, headers=headers(key), timeout=120)
            unauth = client.post(url + "/search", json={"query": "x"}, timeout=30).status_code
        result["no_key_status"] = unauth
        say(f"without the key: {unauth}")

        s = scenario_query(url, key, form.streams, form.rounds, qs).summary(streams=form.streams, rounds=form.rounds)
        result["query"] = s
        print_row(say, "query", s)
        if backend is not None:
            s = scenario_limits(url, key, backend, form.streams, qs[500:])
            result["limits"] = s
            print_row(say, "limits", s)
        s = scenario_search(url, key, form.search_clients, form.search_seconds).summary(
            clients=form.search_clients, seconds=form.search_seconds
        )
        result["search"] = s
        print_row(say, "search", s)
        if backend is not None:
            s = scenario_overhead(url, key, backend, form.overhead_pairs, qs[1000:])
            result["overhead"] = s
            print_row(say, "overhead", s)
            verdict = "reached" if s["reached"] else "NOT reached"
            say(
                f"           our TTFT p50 {s['ttft_ms']['p50']} ms - backend TTFT p50 {s['backend_ttft_ms']['p50']} ms"
                f" = overhead {s['overhead_p50_ms']} ms (target <= {OVERHEAD_TARGET_MS:.0f} ms: {verdict});"
                f" /search one at a time p50 {s['search_one_at_a_time_ms']['p50']} ms"
            )
            f = scenario_faults(url, key, backend, qs[1500:])
            result["faults"] = f
            say(f"faults     killed mid-stream: {f['mid_stream']['events']} ({f['mid_stream']['detail']})")
            say(f"           while down: {f['while_down']['status']} {f['while_down']['detail']}")
            say(f"           after restart: {f['after_restart']['events']}; /search {f['search_after_restart']}")
            say(f"           {'passed' if f['passed'] else 'FAILED'}")
    finally:
        if service is not None:
            service.stop()
        if backend is not None:
            backend.stop()
    if args.embedded:
        s = run_embedded(work, form, say)
        result["embedded"] = s
        print_row(say, "embedded", s)
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    say(f"done in {result['seconds']} s (work directory {work})")
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    form = ap.add_mutually_exclusive_group()
    form.add_argument(
        "--short", action="store_true", help="CI form (default): 2,000 chunks, 8 streams, 20 clients, 5 s"
    )
    form.add_argument("--full", action="store_true", help="the issue's: 50,000 chunks, 32 streams, 200 clients, 60 s")
    ap.add_argument("--embedded", action="store_true", help="also 32 (short: 8) streams on the embedded default")
    ap.add_argument("--json", action="store_true", help="print the result as JSON on stdout (progress on stderr)")
    ap.add_argument("--work", help="work directory; the built indexes are cached here (default: a new temp dir)")
    ap.add_argument("--url", help="use this running service (127.0.0.1) instead of starting one")
    ap.add_argument("--key", help="its API key (with --url)")
    ap.add_argument("--backend", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.backend:
        serve_backend(args.port)
        return {}
    if args.url and not args.url.startswith(("http://127.0.0.1", "http://localhost")):
        ap.error("--url must be on 127.0.0.1")
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
