"""The grounded prompt: numbered sources, the question, and the rules."""

from __future__ import annotations

from typing import Any

from rag.store import Hit

SYSTEM = (
    "You answer questions using only the numbered sources. "
    "After each fact, cite its source number in square brackets, like [1]. "
    "If the sources do not contain the answer, say: I cannot find that in the documents."
)


def label(hit: Hit) -> str:
    return f"{hit.source}, page {hit.page}" if hit.page else hit.source


def build_messages(question: str, hits: list[Hit], history: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    # Sources first, then the bare question: the layout the tiny embedded model
    # (SmolLM2-135M) answered best from in our trials; larger models do not mind.
    blocks = [f"[{i}] {label(h)}\n{h.text.strip()}" for i, h in enumerate(hits, start=1)]
    user = "\n\n".join(blocks) + f"\n\n{question}"
    return [{"role": "system", "content": SYSTEM}, *(history or []), {"role": "user", "content": user}]
