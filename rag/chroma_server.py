"""The Chroma server (``chroma run``, ``RAG_CHROMA_URL``) behind ``ChromaStore``: an ``HttpClient``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import urlparse

from rag.chroma import ChromaStore, _Conn
from rag.errors import StoreError


class ServerChroma(ChromaStore):
    """A collection on a Chroma server (``chroma run``): it holds no index in this process, so
    there is nothing to reopen or refresh."""

    def _open(self) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        url = self._settings.chroma_url or ""
        self.location = url
        parsed = urlparse(url)
        try:
            client = chromadb.HttpClient(
                host=parsed.hostname or "127.0.0.1",
                port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                ssl=parsed.scheme == "https",
                settings=ChromaSettings(anonymized_telemetry=False),
            )
        except Exception as exc:
            raise StoreError(f"Cannot open the Chroma index at {url}: {exc}") from exc
        self._conn = _Conn(client, None)

    def _current(self) -> _Conn:
        return self._conn

    @contextlib.contextmanager
    def _hold(self) -> Iterator[_Conn]:
        yield self._conn
