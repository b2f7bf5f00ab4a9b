"""Progress for people: a live bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

from ingest.report import FileResult, IngestReport, ProgressSink


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class ConsoleProgress(ProgressSink):
    """Reports to ``stream`` (stderr by default). On a terminal: one redrawn bar line
    (files, chunks, rate, ETA) with problems printed above it. Otherwise: a line per
    file that changed or failed, and a progress line every ``every`` seconds."""

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None, every: float = 5.0) -> None:
        self.out = stream or sys.stderr
        self.tty = self.out.isatty() if tty is None else tty
        self.every = every
        self.files = self.total_bytes = 0
        self.done = self.done_bytes = self.chunks = 0
        self.t0 = time.monotonic()
        self._last = 0.0
        self._bar_shown = False
        self.unsupported: dict[str, int] = {}

    def started(self, files: int, total_bytes: int) -> None:
        self.files, self.total_bytes = files, max(total_bytes, 1)
        self.t0 = self._last = time.monotonic()
        if not self.tty:
            self._line(f"ingesting {files} files ({total_bytes / 1024 / 1024:.1f} MB)")

    def file_done(self, result: FileResult) -> None:
        self.done += 1
        self.done_bytes += result.bytes
        self.chunks += result.chunks if result.status in ("added", "updated") else 0
        if result.status == "skipped" and (result.error or "").startswith("unsupported file type"):
            ext = (result.error or "").split("'")[1] if "'" in (result.error or "") else "?"
            self.unsupported[ext] = self.unsupported.get(ext, 0) + 1
        elif self._worth_a_line(result):
            self._line(self._describe(result))
        now = time.monotonic()
        if self.tty and now - self._last >= 0.1:
            self._last = now
            self._draw()
        elif not self.tty and now - self._last >= self.every and self.done < self.files:
            self._last = now
            self._line("progress: " + self._status())

    def finished(self, report: IngestReport) -> None:
        if self.tty and self._bar_shown:
            self.out.write("\r" + " " * (shutil.get_terminal_size().columns - 1) + "\r")
        if self.unsupported:
            kinds = ", ".join(f"{ext} {n}" for ext, n in sorted(self.unsupported.items(), key=lambda x: -x[1]))
            self._line(f"skipped {sum(self.unsupported.values())} files of unsupported types ({kinds})")
        self.out.flush()

    # -- formatting ---------------------------------------------------------------------
    def _worth_a_line(self, r: FileResult) -> bool:
        if self.tty:  # the bar shows the flow; only problems get their own line
            return r.status == "failed" or bool(r.warning)
        return r.status != "unchanged"

    @staticmethod
    def _describe(r: FileResult) -> str:
        if r.status in ("added", "updated"):
            detail = f"({r.chunks} chunks" + (f", {r.reused} reused" if r.reused else "") + ")"
        else:
            detail = f"({r.error})" if r.error else ""
        warn = f"  warning: {r.warning}" if r.warning else ""
        return f"  {r.status:<9} {r.source} {detail}{warn}"

    def _status(self) -> str:
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        rate = self.chunks / elapsed
        frac = min(self.done_bytes / self.total_bytes, 1.0)
        eta = elapsed * (1 - frac) / frac if frac > 0.001 else None
        eta_s = _duration(eta) if eta is not None else "?"
        return f"{self.done}/{self.files} files, {self.chunks} chunks, {rate:.1f} chunks/s, ETA {eta_s}"

    def _draw(self) -> None:
        width = shutil.get_terminal_size().columns
        frac = min(self.done_bytes / self.total_bytes, 1.0) if self.files else 1.0
        bar_w = 24
        fill = int(frac * bar_w)
        text = f"[{'#' * fill}{'.' * (bar_w - fill)}] {self._status()}"
        self.out.write("\r" + text[: width - 1].ljust(width - 1))
        self.out.flush()
        self._bar_shown = True

    def _line(self, text: str) -> None:
        if self.tty and self._bar_shown:
            self.out.write("\r" + " " * (shutil.get_terminal_size().columns - 1) + "\r")
        self.out.write(text + "\n")
        self.out.flush()
        if self.tty and self._bar_shown:
            self._draw()
