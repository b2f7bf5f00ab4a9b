"""What the ``rag`` commands share: exit codes, the error handling of the group, and the ``Rag``
a command works on (built once per invocation from the global options)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from rag.errors import RagError
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


def _rag(ctx: click.Context) -> Rag:
    from rag.engine import Rag

    obj = ctx.ensure_object(dict)
    if "rag" not in obj:
        obj["rag"] = Rag(Settings(**obj["overrides"]))
        ctx.call_on_close(obj["rag"].close)
    rag: Rag = obj["rag"]
    return rag
