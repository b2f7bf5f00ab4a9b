"""Streamed answers that stop the model when the response ends for any reason (finished, client
gone, write timeout): :class:`ClosingStream`, so the model does not generate for nobody (issue 15)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class ClosingStream(StreamingResponse):
    """A streaming response over a blocking iterator that is closed, with ``close`` (e.g. the
    upstream HTTP response), however the response ends: Starlette leaves an abandoned iterator open,
    so the model would go on generating for nobody and its socket would stay in CLOSE-WAIT."""

    def __init__(self, content: Iterable[Any], close: Callable[[], None] | None = None, **kwargs: Any) -> None:
        self._content = content
        self._close = close
        super().__init__(content, **kwargs)

    def _shut(self) -> None:
        try:
            shut = getattr(self._content, "close", None)
            if shut is not None:
                shut()
        finally:
            if self._close is not None:
                self._close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # No thread is inside the iterator now: Starlette waits for the one it started.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._shut)


def answer_closer(stream: Any) -> Callable[[], None]:
    """What closes an answer stream's open chat stream (``AnswerStream.close``), even when the
    stream was never iterated (a generator that never started ignores ``close``)."""
    close: Callable[[], None] = stream.close
    return close
