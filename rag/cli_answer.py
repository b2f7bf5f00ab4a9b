"""``rag ask`` (one question) and ``rag chat`` (a conversation in the terminal): the answer streams,
then its sources; sentences the check finds unsupported by the passages are marked, and a refusal
shows the closest passages instead."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from rag.cli_common import _rag
from rag.cli_query import label_of, retrieval_options
from rag.settings import ANSWER_MODES

if TYPE_CHECKING:
    from rag.answer import Answer
    from rag.engine import Rag


def answer_options(f: Any) -> Any:
    f = click.option("--strict", is_flag=True, help="Leave out sentences the check finds unsupported by the passages.")(
        f
    )
    f = click.option(
        "--answer",
        "answer_mode",
        type=click.Choice(ANSWER_MODES),
        help="generate (the chat model writes it), quote (the passages' own sentences; no model) or auto "
        "(quote on the embedded model, generate on a configured backend) [default RAG_ANSWER_MODE, auto].",
    )(f)
    f = click.option(
        "-k", "--k", "k", type=click.IntRange(1, 100), help="How many chunks to retrieve [default RAG_TOP_K, 3]."
    )(f)
    return f


def run(rag: Rag, question: str, k: int | None, options: dict[str, Any], as_json: bool) -> Answer:
    """Stream one answer to the terminal (or print it as JSON) and return it."""
    stream = rag.start(question, k, **options)
    for event in stream:
        if event.type == "sources" and not as_json and event.data["query"] != question:
            click.secho(f"(searched for: {event.data['query']})", dim=True, err=True)
        elif event.type == "token" and not as_json:
            click.echo(event.data["text"], nl=False)
            sys.stdout.flush()
        elif event.type == "error" and stream.error is not None:
            raise stream.error
    answer = stream.answer
    assert answer is not None
    if as_json:
        click.echo(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
    else:
        show(answer)
    return answer


def show(answer: Answer) -> None:
    click.echo("\n")
    for note in answer.notes:
        click.secho(note, fg="yellow")
    if answer.refused:
        click.secho("Closest passages (not relevant enough to answer from):", bold=True)
        for i, h in enumerate(answer.sources, start=1):
            click.echo(f"  [{i}] {label_of(h.to_dict())}  (relevance {h.relevance:.2f})")
        return
    for claim in answer.unsupported:
        why = f" ({claim.reason})" if claim.reason else ""
        click.secho(f"✗ Not supported by the sources{why}: ", fg="red", bold=True, nl=False)
        click.secho(claim.text, fg="red")
    if answer.omitted:
        click.secho(f"{len(answer.omitted)} unsupported sentence(s) left out (--strict).", fg="yellow")
    if answer.citations:
        click.secho("Sources:", bold=True)
        for c in answer.citations:
            how = "  (matched by content)" if c["inferred"] else ""
            click.echo(f"  [{c['n']}] {label_of(c)}{how}")
    else:
        click.secho("No source was cited. Retrieved:", bold=True)
        for i, h in enumerate(answer.sources, start=1):
            click.echo(f"  [{i}] {label_of(h.to_dict())}  (relevance {h.relevance:.2f})")
    t = answer.timings
    if answer.mode == "generate":
        click.secho(f"first token {t['first_token_ms']:.0f} ms, {t['tokens_per_s']:.1f} tokens/s", dim=True, err=True)
    else:
        click.secho(f"quoted in {t['total_ms']:.0f} ms (no model call)", dim=True, err=True)


@click.command()
@click.argument("question")
@answer_options
@retrieval_options
@click.option("--json", "as_json", is_flag=True, help="Print the answer, claims, citations and timings as JSON.")
@click.pass_context
def ask(
    ctx: click.Context,
    question: str,
    k: int | None,
    answer_mode: str | None,
    strict: bool,
    search: dict[str, Any],
    as_json: bool,
) -> None:
    """Answer QUESTION from the index, streaming tokens, then the sources.

    Each sentence is checked against the passages; unsupported ones are marked
    (or left out with --strict). When no passage is relevant enough
    (RAG_MIN_RELEVANCE) the answer says the documents do not hold it, and no
    model is asked.

    \b
    Examples:
      rag ask "How do I enable WAL mode?"
      rag ask "What does set logscale do?" --type pdf --pages 100-200
      rag ask "Q7 的滤网多久更换一次？" --answer quote
    """
    run(_rag(ctx), question, k, search | {"answer": answer_mode, "strict": strict}, as_json)


@click.command()
@answer_options
@retrieval_options
@click.pass_context
def chat(ctx: click.Context, k: int | None, answer_mode: str | None, strict: bool, search: dict[str, Any]) -> None:
    """Ask questions in a conversation: follow-ups may refer to earlier turns
    ("Is it waived if the item is damaged?"); each is rewritten to stand alone
    for the search (shown when it differs).

    Type a question and press Enter; /new starts a new conversation; /quit,
    Ctrl-D or an empty line at the start ends.
    """
    rag = _rag(ctx)
    history: list[dict[str, str]] = []
    options = search | {"answer": answer_mode, "strict": strict}
    click.secho("Ask a question (/new: new conversation, /quit: end).", dim=True, err=True)
    while True:
        try:
            line = click.prompt("›", prompt_suffix=" ", default="", show_default=False, err=True)
        except (EOFError, click.Abort):
            break
        question = line.strip()
        if question in ("", "/quit", "/exit"):
            break
        if question == "/new":
            history = []
            click.secho("New conversation.", dim=True, err=True)
            continue
        answer = run(rag, question, k, options | {"history": history}, as_json=False)
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": answer.text}]
