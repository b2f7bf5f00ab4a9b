"""Ingestion: walk folders, load files, chunk, embed, store.

Names are imported on first use (PEP 562), so a light module such as the PDF
worker process (``ingest.pdfworker``) does not pull in the model clients and
the store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Chunk": "ingest.chunker",
    "Chunker": "ingest.chunker",
    "ConsoleProgress": "ingest.progress",
    "E5TokenCounter": "ingest.tokens",
    "FileResult": "ingest.report",
    "HeuristicTokenCounter": "ingest.tokens",
    "Index": "ingest.index",
    "IngestReport": "ingest.report",
    "Ingestor": "ingest.pipeline",
    "LoadError": "ingest.loaders",
    "LoadedDocument": "ingest.loaders",
    "Manifest": "ingest.manifest",
    "ProgressSink": "ingest.report",
    "Selection": "ingest.walker",
    "TokenCounter": "ingest.tokens",
    "Unit": "ingest.loaders",
    "default_counter": "ingest.tokens",
    "kind_of": "ingest.loaders",
    "load": "ingest.loaders",
    "walk": "ingest.walker",
}

__all__ = [
    "Chunk",
    "Chunker",
    "ConsoleProgress",
    "E5TokenCounter",
    "FileResult",
    "HeuristicTokenCounter",
    "Index",
    "IngestReport",
    "Ingestor",
    "LoadError",
    "LoadedDocument",
    "Manifest",
    "ProgressSink",
    "Selection",
    "TokenCounter",
    "Unit",
    "default_counter",
    "kind_of",
    "load",
    "walk",
]

if TYPE_CHECKING:
    from ingest.chunker import Chunk, Chunker
    from ingest.index import Index
    from ingest.loaders import LoadedDocument, LoadError, Unit, kind_of, load
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingestor
    from ingest.progress import ConsoleProgress
    from ingest.report import FileResult, IngestReport, ProgressSink
    from ingest.tokens import E5TokenCounter, HeuristicTokenCounter, TokenCounter, default_counter
    from ingest.walker import Selection, walk


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ingest' has no attribute {name!r}")
