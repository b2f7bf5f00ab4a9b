"""``rag verify TEXT``: check every sentence of any text (an answer from any model) against the index."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from rag.cli_common import _rag
from rag.errors import InvalidRequestError
from rag.prompt import label

if TYPE_CHECKING:
    from rag.claims import Claim


def verify_text(ctx: click.Context, text: str, k: int | None) -> list[Claim]:
    return _rag(ctx).verify(text, k)


@click.command()
@click.argument("text")
@click.option(
    "-k", "--k", "k", type=click.IntRange(1, 100), help="Passages retrieved per sentence [default RAG_TOP_K, 3]."
)
@click.option("--json", "as_json", is_flag=True, help='Print {"claims": [...]} as JSON, each with its passages.')
@click.pass_context
def verify(ctx: click.Context, text: str, k: int | None, as_json: bool) -> None:
    """Check each sentence of TEXT against your documents (TEXT '-' reads stdin).

    Numbers, dates, versions, names, commands and negations must agree with a
    retrieved passage, and its meaning must be supported. Supported sentences are
    marked ✓ with the passage backing them, unsupported ones ✗ with the reason.

    \b
    Examples:
      rag verify "The X200 warranty lasts 3 years."
      llm-answer | rag verify - --json
    """
    if text == "-":
        text = sys.stdin.read()
    if not text.strip():
        raise InvalidRequestError("Nothing to verify: TEXT is empty.")
    claims = verify_text(ctx, text, k)
    if as_json:
        click.echo(json.dumps({"claims": [c.to_dict() for c in claims]}, ensure_ascii=False, indent=2))
        return
    for c in claims:
        click.echo(_line(c))
    bad = sum(1 for c in claims if not c.supported)
    checked = sum(1 for c in claims if c.checked)
    click.secho(f"{checked - bad} of {checked} checked sentences supported", dim=True, err=True)


def _line(c: Claim) -> str:
    if not c.checked:
        return click.style("  · ", dim=True) + c.text
    mark = click.style("✓ ", fg="green") if c.supported else click.style("✗ ", fg="red", bold=True)
    out = mark + c.text
    if c.supported and c.passages:
        out += click.style(f"\n    {label(c.passages[0])}  (score {c.score:.2f})", dim=True)
    elif not c.supported:
        where = f"; closest: {label(c.passages[0])}" if c.passages else ""
        out += click.style(f"\n    {c.reason}{where}", fg="red")
    return out
