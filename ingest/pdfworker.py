"""PDFs are parsed in a separate process with time and memory limits, so one
pathological file (a decompression bomb, a parser loop) fails alone instead of
hanging or exhausting the whole run.

The time limits stop a file that is stuck, not one that is long: the worker
reports each page it finishes, and a file is stopped when no page finishes
within ``RAG_PDF_TIMEOUT`` seconds (the stall limit; opening the file counts as
a step too), or when the whole file takes longer than ``RAG_PDF_TIMEOUT +
pages * RAG_PDF_SECONDS_PER_PAGE`` (a cap that grows with the page count, for a
file that is slow on every page without ever stalling). A 300-page manual on a
busy machine takes minutes and passes; a page the parser loops on is stopped
after the stall limit, however many pages came before it.

The worker is a fresh interpreter talking over its stdin/stdout pipes
(``ingest.child``). It is started once and reused; when a file overruns its limit the worker is killed and a new
one started for the next file.
"""

from __future__ import annotations

import contextlib
import multiprocessing.connection
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ingest import child
from ingest.loaders import Heading, LoadError, Unit, load_pdf


def main() -> None:
    """The worker process: ``python -c 'from ingest.pdfworker import main; main()' MEMORY_MB [NICE]``."""
    if len(sys.argv) > 2 and int(sys.argv[2]):
        os.nice(int(sys.argv[2]))
    conn_in, conn_out = child.channel()
    _serve(conn_in, conn_out, int(sys.argv[1]))


def _serve(
    conn: multiprocessing.connection.Connection, out: multiprocessing.connection.Connection, memory_mb: int
) -> None:
    import logging
    import resource

    # pypdf logs what it repairs; the outcome reaches the user through the reply instead.
    logging.getLogger("pypdf").setLevel(logging.CRITICAL)

    limit = memory_mb * 1024 * 1024
    with contextlib.suppress(ValueError, OSError):  # a platform without RLIMIT_AS
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import pypdf  # noqa: F401 - imported before "ready", so start-up is not charged to the first file
    import pypdfium2  # noqa: F401

    out.send(("ready", None))
    while True:
        try:
            path = conn.recv()
        except EOFError:
            return
        try:
            units = load_pdf(Path(path), out.send)
            reply: tuple[str, Any] = (
                "ok",
                [(u.text, u.page, [(h.offset, h.level, h.title) for h in u.headings]) for u in units],
            )
        except LoadError as exc:
            reply = ("error", str(exc))
        except MemoryError:
            reply = ("error", f"needs more than the {memory_mb} MB parser limit (RAG_PDF_MEMORY_MB)")
        except RecursionError:
            reply = ("error", "unreadable PDF: nested too deeply")
        except Exception as exc:  # any parser bug is this file's failure, not the run's
            reply = ("error", f"unreadable PDF: {type(exc).__name__}: {exc}")
        try:
            out.send(reply)
        except MemoryError:
            out.send(("error", f"needs more than the {memory_mb} MB parser limit (RAG_PDF_MEMORY_MB)"))


class PdfWorker:
    """One parser process, used by one thread at a time.

    ``timeout`` is the stall limit (RAG_PDF_TIMEOUT): the longest the parser may go without
    finishing a page. A file may take ``timeout + pages * seconds_per_page`` in all
    (RAG_PDF_SECONDS_PER_PAGE)."""

    def __init__(self, timeout: float, memory_mb: int, nice: int = 0, seconds_per_page: float = 5.0) -> None:
        self.timeout = timeout
        self.seconds_per_page = seconds_per_page
        self.memory_mb = memory_mb
        self.nice = nice
        self._proc: subprocess.Popen[bytes] | None = None
        self._send: multiprocessing.connection.Connection | None = None
        self._recv: multiprocessing.connection.Connection | None = None
        self._lock = threading.Lock()

    def _start(self) -> tuple[multiprocessing.connection.Connection, multiprocessing.connection.Connection]:
        if self._proc is None or self._proc.poll() is not None:
            self._kill()
            self._proc, self._send, self._recv = child.spawn(
                "ingest.pdfworker", str(self.memory_mb), str(self.nice), stderr=subprocess.DEVNULL
            )
            try:
                ready = self._recv.poll(120) and self._recv.recv()[0] == "ready"
            except (EOFError, OSError):  # it died before "ready" (e.g. under its memory limit)
                ready = False
            if not ready:
                self._kill()
                raise LoadError("the PDF parser process did not start")
        assert self._send is not None and self._recv is not None
        return self._send, self._recv

    def load(self, path: Path) -> list[Unit]:
        with self._lock:
            send, recv = self._start()
            try:
                send.send(str(path))
                status, payload = self._await(recv)
            except (EOFError, OSError):
                code = self._proc.wait(5) if self._proc is not None else None
                self._kill()
                raise LoadError(f"the PDF parser crashed on this file (exit code {code})") from None
        if status != "ok":
            raise LoadError(payload)
        return [Unit(text, page=page, headings=[Heading(*h) for h in heads]) for text, page, heads in payload]

    def _await(self, recv: multiprocessing.connection.Connection) -> tuple[str, Any]:
        """The worker's answer, reading its progress reports meanwhile; stops it (LoadError) at a limit.
        EOFError/OSError: it died."""
        started = last = time.monotonic()
        pages: int | None = None  # known once the file is open
        done = 0
        while True:
            now = time.monotonic()
            stall_left = self.timeout - (now - last)
            cap = self.timeout + (pages or 0) * self.seconds_per_page
            cap_left = cap - (now - started) if pages is not None else stall_left
            if min(stall_left, cap_left) <= 0 or not recv.poll(min(stall_left, cap_left)):
                if time.monotonic() - last >= self.timeout:
                    self._kill()
                    if pages is None:
                        where = "opening the file"
                    else:
                        where = f"page {done + 1} of {pages}" if done < pages else "after the last page"
                    raise LoadError(
                        f"no progress for {self.timeout:g}s, stuck on {where} (RAG_PDF_TIMEOUT, the limit "
                        "per page); the parser was stopped"
                    )
                if pages is not None and time.monotonic() - started >= cap:
                    self._kill()
                    raise LoadError(
                        f"parsing took longer than {cap:g}s, the limit for {pages} pages (RAG_PDF_TIMEOUT "
                        f"{self.timeout:g}s + {self.seconds_per_page:g}s per page, RAG_PDF_SECONDS_PER_PAGE); "
                        f"the parser was stopped at page {min(done + 1, pages)}"
                    )
                continue  # poll() woke early: recompute
            kind, value = recv.recv()
            if kind == "pages":
                pages, last = value, time.monotonic()
            elif kind == "page":
                done, last = value, time.monotonic()
            else:
                return kind, value

    def _kill(self) -> None:
        for conn in (self._send, self._recv):
            if conn is not None:
                conn.close()
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait(5)
            for pipe in (self._proc.stdin, self._proc.stdout):
                if pipe is not None:
                    pipe.close()
        self._proc, self._send, self._recv = None, None, None

    def close(self) -> None:
        with self._lock:
            if self._send is not None:
                self._send.close()  # the worker sees EOF and exits
                self._send = None
            if self._proc is not None:
                if self._proc.stdin is not None:
                    self._proc.stdin.close()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(2)
            self._kill()
