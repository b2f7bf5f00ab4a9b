"""``rag`` commands that change or describe the index: ingest, forget, reindex, status, reset."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from rag.cli_common import EXIT_SOME_FAILED, _rag
from rag.errors import RagError


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--include", multiple=True, metavar="GLOB", help="Only files matching GLOB (repeatable; .gitignore syntax)."
)
@click.option("--exclude", multiple=True, metavar="GLOB", help="Leave out files/folders matching GLOB (repeatable).")
@click.option("--gitignore", is_flag=True, help="Honour .gitignore files found in the folders.")
@click.option("--hidden", is_flag=True, help="Also ingest dot-files and dot-folders.")
@click.option("--all-folders", is_flag=True, help="Also walk .git, node_modules, virtual environments and caches.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary (and every file not unchanged) as JSON.")
@click.pass_context
def ingest(
    ctx: click.Context,
    paths: tuple[Path, ...],
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    gitignore: bool,
    hidden: bool,
    all_folders: bool,
    as_json: bool,
) -> None:
    """Index files and folders (PDF, Markdown, text, HTML, source code).

    Reruns are cheap: unchanged files are skipped (size and mtime, then content
    hash), changed ones re-chunked (only new text is embedded), renamed ones
    reuse their vectors, and files deleted from an ingested folder are removed.
    A run that was killed is repaired by the next one. Files that cannot be read
    are reported by name with the reason; the rest is still ingested.

    \b
    Globs match paths relative to the folder:  --include '*.md' --exclude 'drafts/'
    Tuning (environment): RAG_EMBED_BATCH_SIZE (32), RAG_EMBED_CONCURRENCY (2),
    RAG_PARSE_WORKERS (2), RAG_PDF_TIMEOUT (60 s without a page parsed),
    RAG_PDF_SECONDS_PER_PAGE (5 s, whole-file cap), RAG_PDF_MEMORY_MB (1024),
    RAG_MAX_FILE_MB (20, non-PDF files), RAG_CHUNK_TOKENS (128), RAG_CHUNK_OVERLAP (16),
    RAG_EMBED_MAX_TOKENS (512: your embedding model's input limit; chunks stay below it).

    \b
    Exit status: 0 every file ingested (skipped files: unsupported type, empty,
                   or a folder link walked once, are not failures),
                 3 some files failed (listed, and kept in `rag status`),
                 1 the run could not proceed: model server down, or another
                   ingest/forget/reindex/reset is writing to this collection
                   (nothing is lost: run it again).
    """
    from rag.indexing import ConsoleProgress, Selection

    rag = _rag(ctx)
    selection = Selection(include, exclude, hidden=hidden, junk=all_folders, gitignore=gitignore)
    report = rag.ingest(list(paths), progress=ConsoleProgress(), selection=selection)
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    summary = ", ".join(
        f"{report.count(s)} {s}" for s in ("added", "updated", "unchanged", "removed", "failed", "skipped")
    )
    reused = f" ({report.reused} vectors reused)" if report.reused else ""
    if report.recovered:
        click.echo(f"Repaired an interrupted run: {report.recovered} file(s) re-ingested.", err=True)
    click.echo(
        f"Ingested in {report.seconds:.1f}s: {summary}; {report.embedded} chunks embedded{reused}; "
        f"{rag.count()} chunks in '{rag.settings.collection}'.",
        err=True,
    )
    if report.failed:
        click.secho(f"{len(report.failed)} file(s) failed:", fg="red", err=True)
        for f in report.failed:
            click.echo(f"  {f.source}: {f.error}", err=True)
        ctx.exit(EXIT_SOME_FAILED)


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.pass_context
def forget(ctx: click.Context, path: Path) -> None:
    """Remove PATH (a file, or everything under a folder) from the index.

    PATH need not exist any more: use it for a folder you deleted or moved.
    Files on disk are not touched.
    """
    dropped = _rag(ctx).forget(path)
    if not dropped:
        raise RagError(f"Nothing in the index is under {path}. `rag status` lists the ingested folders.")
    click.echo(f"Removed {len(dropped)} file(s) under {path} from the index.", err=True)


@click.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def reindex(ctx: click.Context, yes: bool, as_json: bool) -> None:
    """Rebuild the collection with the current settings.

    Needed after changing RAG_EMBED_MODEL: vectors from two models cannot be
    mixed. Drops the collection and re-ingests every folder ingested before,
    with the same --include/--exclude choices. Searches see a partial index
    until it finishes; an interrupted reindex is finished by running it again.
    """
    from rag.indexing import ConsoleProgress

    rag = _rag(ctx)
    roots = rag.roots()
    if not yes:
        click.confirm(
            f"Re-embed {len(roots)} folder(s) into '{rag.settings.collection}' with "
            f"'{rag.settings.embed_model_name}'? ({', '.join(roots) or 'none'})",
            abort=True,
        )
    report = rag.reindex(progress=ConsoleProgress())
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    click.echo(
        f"Re-indexed in {report.seconds:.1f}s: {report.count('added')} files, {report.chunks} chunks, "
        f"{report.count('failed')} failed.",
        err=True,
    )
    if report.failed:
        ctx.exit(EXIT_SOME_FAILED)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON (with every file and its chunk count).")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the index: files, chunks, failures with reasons, settings, last run."""
    rag = _rag(ctx)
    info = rag.status()
    if as_json:
        info["sources"] = [{"source": s, "chunks": n} for s, n in rag.sources()]
        click.echo(json.dumps(info, ensure_ascii=False, indent=2))
        return
    failures, last, roots = info.pop("failures"), info.pop("last_run"), info.pop("roots")
    for key, value in info.items():
        click.echo(f"{key:>14}: {value}")
    click.echo(f"{'folders':>14}: {', '.join(roots) or 'none yet'}")
    if last:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["started"]))
        counts = ", ".join(f"{last[k]} {k}" for k in ("added", "updated", "unchanged", "removed", "failed"))
        click.echo(f"{'last run':>14}: {when}, {last['seconds']:.1f}s: {counts}")
    if failures:
        click.secho(f"{len(failures)} file(s) failed:", fg="red")
        for f in failures:
            click.echo(f"  {f['source']}: {f['error']}")


@click.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def reset(ctx: click.Context, yes: bool) -> None:
    """Delete the collection and its manifest (everything ingested into it)."""
    rag = _rag(ctx)
    if not yes:
        click.confirm(f"Delete collection '{rag.settings.collection}' at {rag.location}?", abort=True)
    rag.reset()
    click.echo(f"Deleted collection '{rag.settings.collection}'.", err=True)
