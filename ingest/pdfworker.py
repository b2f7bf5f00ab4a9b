"""PDFs are parsed in a separate process with a time and memory limit, so one
pathological file (a decompression bomb, a parser loop) fails alone instead of
hanging or exhausting the whole run.

The worker is started once (``spawn``: safe beside the run's threads) and reused;
when a file overruns its limit the worker is killed and a new one started for
the next file.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import threading
from pathlib import Path
from typing import Any

from ingest.loaders import Heading, LoadError, Unit, load_pdf


def _serve(conn: multiprocessing.connection.Connection, memory_mb: int) -> None:
    import logging
    import resource

    # pypdf logs what it repairs; the outcome reaches the user through the reply instead.
    logging.getLogger("pypdf").setLevel(logging.CRITICAL)

    limit = memory_mb * 1024 * 1024
    with contextlib.suppress(ValueError, OSError):  # a platform without RLIMIT_AS
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import pypdf  # noqa: F401 - imported before "ready", so start-up is not charged to the first file

    conn.send(("ready", None))
    while True:
        try:
            path = conn.recv()
        except EOFError:
            return
        try:
            units = load_pdf(Path(path))
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
            conn.send(reply)
        except MemoryError:
            conn.send(("error", f"needs more than the {memory_mb} MB parser limit (RAG_PDF_MEMORY_MB)"))


class PdfWorker:
    """One parser process, used by one thread at a time."""

    def __init__(self, timeout: float, memory_mb: int) -> None:
        self.timeout = timeout
        self.memory_mb = memory_mb
        self._proc: Any = None
        self._conn: multiprocessing.connection.Connection | None = None
        self._lock = threading.Lock()

    def _start(self) -> multiprocessing.connection.Connection:
        if self._proc is None or not self._proc.is_alive():
            ctx = multiprocessing.get_context("spawn")
            parent, child = ctx.Pipe()
            self._proc = ctx.Process(target=_serve, args=(child, self.memory_mb), daemon=True, name="rag-pdf")
            self._proc.start()
            child.close()
            self._conn = parent
            try:
                ready = parent.poll(120) and parent.recv()[0] == "ready"
            except (EOFError, OSError):  # it died before "ready" (e.g. under its memory limit)
                ready = False
            if not ready:
                self._kill()
                raise LoadError("the PDF parser process did not start")
        assert self._conn is not None
        return self._conn

    def load(self, path: Path) -> list[Unit]:
        with self._lock:
            conn = self._start()
            conn.send(str(path))
            if not conn.poll(self.timeout):
                self._kill()
                raise LoadError(f"parsing took longer than {self.timeout:g}s (RAG_PDF_TIMEOUT); the parser was stopped")
            try:
                status, payload = conn.recv()
            except (EOFError, OSError):
                code = self._proc.exitcode if self._proc is not None else None
                self._kill()
                raise LoadError(f"the PDF parser crashed on this file (exit code {code})") from None
        if status != "ok":
            raise LoadError(payload)
        return [Unit(text, page=page, headings=[Heading(*h) for h in heads]) for text, page, heads in payload]

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc, self._conn = None, None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()  # the worker sees EOF and exits
            if self._proc is not None:
                self._proc.join(2)
                if self._proc.is_alive():
                    self._proc.kill()
                    self._proc.join(2)
            self._proc, self._conn = None, None
