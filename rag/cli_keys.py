"""``rag keys create|list|revoke``: the API keys file of ``rag serve`` (:mod:`rag.keys`).

The file is ``--file``, else ``RAG_API_KEYS_FILE`` (what ``rag serve`` reads). ``create`` prints the
new key alone on stdout, once: only its hash is kept.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from rag import keys
from rag.cli_common import EXIT_ERROR
from rag.errors import ConfigError
from rag.settings import Settings


def _file(ctx: click.Context, path: Path | None) -> Path:
    if path is not None:
        return path
    configured = Settings(**ctx.obj["overrides"]).api_keys_file
    if configured is None:
        raise ConfigError(
            "No keys file: set RAG_API_KEYS_FILE (what `rag serve` reads), e.g. "
            "RAG_API_KEYS_FILE=$HOME/.config/rag/keys.json, or pass --file."
        )
    return configured


file_option = click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The keys file (JSON, or TOML if it ends in .toml) [env RAG_API_KEYS_FILE].",
)


@click.group("keys")
def keys_group() -> None:
    """API keys of `rag serve`: each with a name, the collections it may use and read or write access.

    \b
    rag serve turns authentication on when RAG_API_KEYS_FILE (this file) or RAG_API_KEYS
    (comma-separated keys with full access) is set; clients send `Authorization: Bearer KEY`.
    """


@keys_group.command("create")
@click.option("--name", required=True, help="A name for the key (who or what uses it); shown in logs.")
@click.option(
    "--collection",
    "collections",
    multiple=True,
    metavar="NAME",
    help="A collection the key may use; repeatable [default *: every collection].",
)
@click.option(
    "--access",
    type=click.Choice(keys.ACCESS),
    default="read",
    show_default=True,
    help="read (questions, search, /v1) or write (also uploads, ingest, forgetting).",
)
@file_option
@click.pass_context
def create(ctx: click.Context, name: str, collections: tuple[str, ...], access: keys.Access, path: Path | None) -> None:
    """Make a key and print it (once: the file keeps only its hash)."""
    target = _file(ctx, path)
    key = keys.create(target, name, collections or (keys.ALL,), access)
    click.echo(key)
    scope = ", ".join(collections) if collections else "every collection"
    click.echo(f"Created key '{name}' ({access} on {scope}) in {target}. It is shown only now.", err=True)


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
@file_option
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool, path: Path | None) -> None:
    """The keys: name, access, collections, created (no secrets)."""
    entries = keys.load(_file(ctx, path))
    if as_json:
        fields = ("name", "access", "collections", "created")
        click.echo(json.dumps([{f: e.to_dict()[f] for f in fields} for e in entries], indent=2))
        return
    if not entries:
        click.echo("No keys.", err=True)
        return
    width = max(4, *(len(e.name) for e in entries))
    click.echo(f"{'NAME':<{width}}  {'ACCESS':<6}  {'CREATED':<20}  COLLECTIONS")
    for e in entries:
        click.echo(f"{e.name:<{width}}  {e.access:<6}  {e.created:<20}  {', '.join(e.collections)}")


@keys_group.command("revoke")
@click.argument("name")
@file_option
@click.pass_context
def revoke(ctx: click.Context, name: str, path: Path | None) -> None:
    """Remove the key NAME; a running `rag serve` stops accepting it within a second."""
    target = _file(ctx, path)
    if not keys.revoke(target, name):
        click.echo(f"Error: no key named '{name}' in {target}.", err=True)
        ctx.exit(EXIT_ERROR)
    click.echo(f"Revoked '{name}'.", err=True)
