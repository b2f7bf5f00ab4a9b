"""What an ingest run reports: one ``FileResult`` per file, and the run's summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("added", "updated", "unchanged", "removed", "failed", "skipped")


@dataclass
class FileResult:
    source: str
    status: str  # one of STATUSES
    chunks: int = 0
    error: str | None = None  # why it failed, was skipped or removed
    warning: str | None = None  # ingested, but worth knowing (e.g. decoded as Latin-1)
    embedded: int = 0  # chunks sent to the embedding model
    reused: int = 0  # chunks whose vectors were found in the index by content hash
    bytes: int = 0
    root: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "status": self.status, "chunks": self.chunks}
        if self.root:
            out["root"] = self.root
        if self.error:
            out["error"] = self.error
        if self.warning:
            out["warning"] = self.warning
        if self.status in ("added", "updated"):
            out["embedded"], out["reused"] = self.embedded, self.reused
        return out


@dataclass
class IngestReport:
    roots: list[str] = field(default_factory=list)
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    recovered: int = 0  # files re-queued because an earlier run was interrupted
    notes: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def chunks(self) -> int:
        """Chunks written by this run (new and changed files)."""
        return sum(f.chunks for f in self.files if f.status in ("added", "updated"))

    @property
    def embedded(self) -> int:
        return sum(f.embedded for f in self.files)

    @property
    def reused(self) -> int:
        return sum(f.reused for f in self.files)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    def summary(self) -> dict[str, Any]:
        return {
            **{s: self.count(s) for s in STATUSES},
            "chunks_written": self.chunks,
            "chunks_embedded": self.embedded,
            "chunks_reused": self.reused,
            "seconds": round(self.seconds, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "roots": self.roots,
            "summary": self.summary(),
            "recovered": self.recovered,
            "notes": self.notes,
            "files": [f.to_dict() for f in self.files if f.status != "unchanged"],
        }


class ProgressSink:
    """Receives progress from a run. Subclass what you need; calls come from one thread."""

    def started(self, files: int, total_bytes: int) -> None:
        """The work is known: files to look at and their total size."""

    def file_done(self, result: FileResult) -> None:
        """One file is finished (any status)."""

    def finished(self, report: IngestReport) -> None:
        """The run is over."""


class CallbackProgress(ProgressSink):
    def __init__(self, callback: Callable[[FileResult], None]) -> None:
        self.callback = callback

    def file_done(self, result: FileResult) -> None:
        self.callback(result)


def as_sink(progress: ProgressSink | Callable[[FileResult], None] | None) -> ProgressSink:
    if progress is None:
        return ProgressSink()
    if isinstance(progress, ProgressSink):
        return progress
    return CallbackProgress(progress)
