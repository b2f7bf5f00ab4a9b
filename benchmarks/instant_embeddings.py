"""An OpenAI-compatible embeddings server that answers (almost) instantly.

Vectors are deterministic per input text (seeded from the text's sha256, unit
length), so two runs over the same texts store identical vectors. Used by the
ingest benchmark (to measure the pipeline without the model's cost) and by tests
(``--delay-ms`` slows every embeddings request; ``--fail-first N`` makes the first
N embeddings requests answer ``--fail-status``; ``--reject-containing WORD`` answers 400 to any
request with an input containing WORD, as servers do for an input over their own length limit).

    python benchmarks/instant_embeddings.py --host 127.0.0.1 --port 0 [--dim 384] [--delay-ms 0]

Prints one line, ``instant-embeddings listening on http://HOST:PORT/v1``, once it
accepts connections (``--port 0`` picks a free port), and nothing per request.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np


def vector(text: str, dim: int) -> np.ndarray:
    """The deterministic unit vector for ``text``, rounded to 6 decimals (short JSON, ~2x faster to encode)."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dim)
    return (v / np.linalg.norm(v)).round(6)


class Config:
    def __init__(
        self, dim: int, delay_ms: float, fail_first: int, fail_status: int, model: str, reject: str | None = None
    ) -> None:
        self.dim = dim
        self.reject = reject
        self.delay = delay_ms / 1000.0
        self.fail_left = fail_first
        self.fail_status = fail_status
        self.model = model
        self.lock = threading.Lock()
        self.requests = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the openai SDK's httpx client expects
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK of the headers (~40 ms on Linux) on every kept-alive request. Real model
    # servers (uvicorn, llama.cpp, Ollama) set TCP_NODELAY; so must a fake that stands for them.
    disable_nagle_algorithm = True
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # nothing per request

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, code: str) -> None:
        err = {"message": message, "type": "invalid_request_error" if status < 500 else "server_error"}
        self._send(status, {"error": {**err, "param": None, "code": code}})

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            model = {"id": self.server.cfg.model, "object": "model", "created": 0, "owned_by": "instant"}
            self._send(200, {"object": "list", "data": [model]})
        elif self.path.rstrip("/") in ("/health", ""):
            self._send(200, {"status": "ok"})
        else:
            self._error(404, f"no route {self.path}", "not_found")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") not in ("/v1/embeddings", "/embeddings"):
            self._error(404, f"no route {self.path}", "not_found")
            return
        cfg = self.server.cfg
        with cfg.lock:
            cfg.requests += 1
            fail = cfg.fail_left > 0
            cfg.fail_left -= int(fail)
        if cfg.delay:
            time.sleep(cfg.delay)
        if fail:
            self._error(cfg.fail_status, "failing on purpose (--fail-first)", "injected_failure")
            return
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            self._error(400, "The body is not valid JSON", "invalid_json")
            return
        inp = body.get("input") if isinstance(body, dict) else None
        texts = [inp] if isinstance(inp, str) else inp
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            self._error(400, "'input' must be a non-empty string or list of strings", "invalid_input")
            return
        if cfg.reject and any(cfg.reject in t for t in texts):
            self._error(400, f"input rejected: it contains {cfg.reject!r} (--reject-containing)", "input_rejected")
            return
        b64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            v = vector(text, int(body.get("dimensions") or cfg.dim))
            emb: Any = base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") if b64 else v.tolist()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(len(t.split()) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        self._send(200, {"object": "list", "data": data, "model": body.get("model") or cfg.model, "usage": usage})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], cfg: Config) -> None:
        super().__init__(addr, Handler)
        self.cfg = cfg


@contextlib.contextmanager
def running(dim: int = 384, delay_ms: float = 0.0, *extra: str) -> Iterator[str]:
    """Run the server as a separate process; yields its base URL (``http://127.0.0.1:N/v1``)."""
    cmd = [sys.executable, __file__, "--port", "0", "--dim", str(dim), "--delay-ms", str(delay_ms), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if "listening on" not in line:
            raise RuntimeError(f"instant embeddings server did not start: {line!r}")
        yield line.split("listening on", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (printed at start)")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--delay-ms", type=float, default=0.0, help="sleep this long in every embeddings request")
    ap.add_argument("--fail-first", type=int, default=0, help="the first N embeddings requests fail")
    ap.add_argument("--fail-status", type=int, default=500)
    ap.add_argument("--model", default="instant", help="the name GET /v1/models lists (any name is accepted)")
    ap.add_argument("--reject-containing", metavar="WORD", help="answer 400 to requests with an input containing WORD")
    a = ap.parse_args(argv)
    cfg = Config(a.dim, a.delay_ms, a.fail_first, a.fail_status, a.model, a.reject_containing)
    server = Server((a.host, a.port), cfg)
    host, port = server.server_address[:2]
    print(f"instant-embeddings listening on http://{host}:{port}/v1", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
