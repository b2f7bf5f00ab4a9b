"""``rag`` commands that read the index: ask, search, eval, serve."""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from rag.cli_common import SERVE_PARALLEL, _rag
from rag.prompt import label
from rag.retrieval import MODES, Filters, parse_pages
from rag.settings import ANSWER_MODES, Settings


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


def label_of(c: dict[str, Any]) -> str:
    where = f"{c['source']}, page {c['page']}" if c.get("page") else c["source"]
    return f"{where} — {c['heading']}" if c.get("heading") else where


@click.command()
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
        click.secho(f"[{i}] {label(h)}  score {h.score:.3f}", bold=True)
        click.echo("    " + " ".join(h.text.split())[:300])


@click.command(name="eval")
@click.argument("qa_file", metavar="QA.jsonl", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--mode", "modes", multiple=True, type=click.Choice(MODES), help="Modes to score (repeatable) [default: all]."
)
@click.option("--path", "paths", multiple=True, metavar="PREFIX|GLOB", help="Search only these sources.")
@click.option("--limit", type=click.IntRange(1), help="Only the first N questions.")
@click.option(
    "--answers",
    "answer_modes",
    multiple=True,
    type=click.Choice(ANSWER_MODES),
    help="Also score whole answers made in this answer mode (repeatable): accuracy against the lines' "
    "answer keys, citation precision, refusals, unsupported sentences, time to first token.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the scores (and each question's first hit rank) as JSON.")
@click.pass_context
def evaluate_cmd(
    ctx: click.Context,
    qa_file: Path,
    modes: tuple[str, ...],
    paths: tuple[str, ...],
    limit: int | None,
    answer_modes: tuple[str, ...],
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
    answers = []
    if answer_modes:
        from rag.evaluate_answers import evaluate_answers

        answers = evaluate_answers(rag, questions, answer_modes, progress=progress)
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
        if answers:
            out["answers"] = {a.mode: a.to_dict() for a in answers}
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"{len(questions)} questions, {rag.count()} chunks in '{rag.settings.collection}'")
    click.echo(f"{'mode':<8} {'hit@1':>6} {'hit@5':>6} {'hit@10':>6} {'MRR':>6} {'nDCG@10':>8} {'ms/q':>7}")
    for s in scores:
        click.echo(
            f"{s.mode:<8} {s.hit1:6.3f} {s.hit5:6.3f} {s.hit10:6.3f} {s.mrr:6.3f} {s.ndcg10:8.3f} {s.ms_mean:7.1f}"
        )
    if answers:
        click.echo("")
        cols = ("accuracy", "citation_precision", "refusal_rate", "wrong_refusal_rate", "unsupported_rate")
        click.echo(
            f"{'answer':<9} {'accuracy':>8} {'cite-prec':>9} {'refused':>8} {'wrong-ref':>9} {'unsupp':>7} "
            f"{'TTFT ms':>8}"
        )
        for a in answers:
            d = a.to_dict()
            figures = " ".join(
                f"{d[c]:>{w}.3f}" if d[c] is not None else f"{'-':>{w}}"
                for c, w in zip(cols, (8, 9, 8, 9, 7), strict=True)
            )
            ttft = d["first_token_ms_p50"]
            click.echo(f"{a.mode:<9} {figures} {ttft if ttft is not None else '-':>8}")


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--host", default=None, help="Interface to bind [default 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default 8000].")
@click.option("--insecure", is_flag=True, help="Allow a non-loopback --host with no API keys (anyone can read).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, insecure: bool) -> None:
    """Run the HTTP API: POST /query, POST /search, GET /health, the OpenAI-compatible /v1
    (models, chat/completions, completions, embeddings), docs at /docs.

    API keys (RAG_API_KEYS, RAG_API_KEYS_FILE: see `rag keys`) are required to listen on anything
    but loopback, unless --insecure."""
    import uvicorn

    from api.app import create_app

    overrides = dict(ctx.obj["overrides"])
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    settings = Settings(**overrides)
    keyed = bool((settings.api_keys or "").strip()) or settings.api_keys_file is not None
    if not keyed and not _loopback(settings.host):
        click.echo(
            f"Error: refusing to serve on {settings.host} with no API keys: anyone who can reach it could read "
            "every collection. Create a key with `RAG_API_KEYS_FILE=PATH rag keys create --name NAME` and serve "
            "with RAG_API_KEYS_FILE=PATH, or set RAG_API_KEYS=KEY1,KEY2 (full access), or pass --insecure.",
            err=True,
        )
        ctx.exit(1)
    if settings.embedded_parallel is None:  # a service answers many questions at once
        settings = settings.model_copy(update={"embedded_parallel": SERVE_PARALLEL})
    click.echo(f"Serving on http://{settings.host}:{settings.port} (docs at /docs)", err=True)
    # SIGTERM / Ctrl-C: requests in flight get 5 s to finish, then are cut, so the process ends promptly.
    uvicorn.run(
        create_app(settings, warm=True),
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=5,
        # Longer than clients' own idle limit (httpx: 5 s, uvicorn's default too): with equal limits the
        # server could close an idle connection just as a client reused it (a ReadError under load).
        timeout_keep_alive=20,
    )
