"""Ingestion: walk folders, load files, chunk, embed, store."""

from ingest.chunker import Chunk, Chunker
from ingest.loaders import LoadedDocument, LoadError, Unit, kind_of, load
from ingest.pipeline import FileResult, Ingestor, IngestReport
from ingest.tokens import E5TokenCounter, HeuristicTokenCounter, TokenCounter, default_counter
from ingest.walker import walk

__all__ = [
    "Chunk",
    "Chunker",
    "E5TokenCounter",
    "FileResult",
    "HeuristicTokenCounter",
    "IngestReport",
    "Ingestor",
    "LoadError",
    "LoadedDocument",
    "TokenCounter",
    "Unit",
    "default_counter",
    "kind_of",
    "load",
    "walk",
]
