"""A small error hierarchy. Every message says what went wrong and how to fix it;
the CLI prints it on one line, the HTTP API returns it as JSON with ``status``."""

from __future__ import annotations


class RagError(Exception):
    """Base class. ``code`` is a stable machine-readable name, ``status`` the HTTP status."""

    code = "rag_error"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, object]:
        return {"message": self.message, "type": type(self).__name__, "code": self.code}


class ConfigError(RagError):
    """Settings that cannot work together."""

    code = "config_error"
    status = 500


class InvalidRequestError(RagError):
    """The caller asked for something malformed (an empty question, k out of range)."""

    code = "invalid_request"
    status = 400


class ModelServerError(RagError):
    """The embedding or chat server is down, refused us, or answered nonsense."""

    code = "model_server_error"
    status = 502


class ModelNotFoundError(ModelServerError):
    code = "model_not_found"


class ModelAuthError(ModelServerError):
    code = "model_auth_failed"


class ModelUnreachableError(ModelServerError):
    """Nothing answers at the configured URL (same code as other server failures)."""


class ModelTimeoutError(ModelServerError):
    code = "model_timeout"
    status = 504


class EngineError(ModelServerError):
    """An embedded model engine (a child process of ours) is missing, failed to start, or died
    and could not be restarted."""

    code = "engine_unavailable"
    status = 503


class IndexStateError(RagError):
    """Base for problems with the index itself."""

    code = "index_error"
    status = 409


class EmptyIndexError(IndexStateError):
    code = "empty_index"


class IndexMismatchError(IndexStateError):
    code = "index_mismatch"


class IndexBusyError(IndexStateError):
    """Another process is writing to the same collection."""

    code = "index_busy"


class StoreError(RagError):
    """The vector store (embedded Chroma or a Chroma server) failed."""

    code = "store_error"
    status = 503
