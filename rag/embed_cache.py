"""Vectors remembered on the answer path, so the same text is not embedded twice.

Quote mode embeds every sentence of the passages it is given to pick the ones to quote, and the
claim check embeds every sentence of the passages again (split its own way) to check the answer
against them: hundreds of milliseconds of CPU per answer, for sentences that do not change
between questions. Related questions retrieve the same passages, so :class:`CachedEmbedder`
remembers vectors by text: a bounded LRU (``max_items``; float64 arrays, so a vector comes back
exactly as the server gave it). Queries and documents are kept apart (a model such as e5 embeds
them differently). It wraps the searching and answering embedder only: ingest embeds each chunk
once and would only fill it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from rag.models import Embedder

MAX_ITEMS = 8192  # ~3 KB each at 384 dimensions: ~25 MB per collection at most


class CachedEmbedder:
    """An ``Embedder`` over ``inner`` that remembers the last ``max_items`` vectors it made."""

    def __init__(self, inner: Embedder, max_items: int = MAX_ITEMS) -> None:
        self.inner = inner
        self.model = inner.model
        self.max_items = max_items
        self._vectors: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        found = self._get("d", texts)
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            vectors = self.inner.embed_documents(missing)
            found.update(self._put("d", missing, vectors))
        return [found[t].tolist() for t in texts]

    def embed_query(self, text: str) -> list[float]:
        found = self._get("q", [text])
        if text not in found:
            found.update(self._put("q", [text], [self.inner.embed_query(text)]))
        out: list[float] = found[text].tolist()
        return out

    def _get(self, kind: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        with self._lock:
            for text in texts:
                vector = self._vectors.get((kind, text))
                if vector is None:
                    self.misses += 1
                    continue
                self._vectors.move_to_end((kind, text))
                out[text] = vector
                self.hits += 1
        return out

    def _put(self, kind: str, texts: list[str], vectors: Sequence[Sequence[float]]) -> dict[str, np.ndarray]:
        made = {t: np.asarray(v, dtype=np.float64) for t, v in zip(texts, vectors, strict=True)}
        with self._lock:
            for text, vector in made.items():
                self._vectors[(kind, text)] = vector
                self._vectors.move_to_end((kind, text))
            while len(self._vectors) > self.max_items:
                self._vectors.popitem(last=False)
        return made
