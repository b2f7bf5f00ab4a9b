"""Where a small rerun's time goes: the capacity corpus (2,000 files) ingested once, then reruns with
nothing changed and with 1% (``--fraction``) of the files rewritten, each timed by stage (store calls, writer,
planning, the walk), side by side in one run.

    .venv/bin/python benchmarks/rerun_breakdown.py [--workdir DIR] [--rounds 2]

It explains the 1% figure of ``ingest_pipeline.py --parts reruns``: what is fixed per run, and what
a changed file costs in Chroma (its new chunks added, its old ones deleted).
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

SPENT: dict[str, float] = {}


def timed(owner: Any, name: str) -> None:
    """Wrap ``owner.name`` (a class's method or a module's function) to add its wall time, from
    every thread, to SPENT."""
    f: Callable[..., Any] = getattr(owner, name)
    key = f"{owner.__name__.rsplit('.', 1)[-1]}.{name}"

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            SPENT[key] = SPENT.get(key, 0.0) + time.perf_counter() - t

    setattr(owner, name, wrapper)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, help="default: a temporary folder, removed at the end")
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2, help="pairs of (nothing changed, some changed) reruns")
    ap.add_argument("--fraction", type=float, default=0.01, help="of the files rewritten (default 0.01)")
    a = ap.parse_args()

    from corpus import generate, touch
    from instant_embeddings import running

    import ingest.manifest as manifest
    import ingest.pipeline as pipeline
    import ingest.writer as writer
    import rag.store as store
    from rag import Rag, Settings

    for name in ("upsert", "delete", "count", "info"):
        timed(store.ChromaStore, name)
    for name in ("_write", "_commit"):
        timed(writer.Writer, name)
    for name in ("recover", "_plan", "_run", "_remove_missing"):
        timed(pipeline.Ingestor, name)
    timed(manifest.Manifest, "commit")
    timed(pipeline, "walk")  # the pipeline's own reference to ingest.walker.walk

    work = a.workdir or Path(tempfile.mkdtemp(prefix="rag-rerun-"))
    corpus, index = work / "corpus", work / "index"
    try:
        with running() as url:
            settings = Settings(index_dir=index, embed_base_url=url, embed_model="instant")
            with Rag(settings) as r:
                r.store.count()  # Chroma's import and first open are not part of any run
                if not corpus.exists():
                    generate(corpus, a.files, seed=0)
                t = time.perf_counter()
                first = r.ingest([corpus])
                t_first = time.perf_counter() - t
                print(f"first run: {t_first:.1f} s, {first.chunks} chunks ({len(first.files)} files)")
                for k in range(a.rounds):
                    for frac in (0.0, a.fraction):
                        if frac:
                            touch(corpus, frac, seed=100 + k)
                        SPENT.clear()
                        t = time.perf_counter()
                        rep = r.ingest([corpus])
                        dt = time.perf_counter() - t
                        share = f", {dt / (frac * t_first):.2f} x its share of the first run" if frac else ""
                        print(f"rerun, {frac:.0%} changed: {dt:.2f} s, {rep.chunks} chunks embedded{share}")
                        parts = sorted(SPENT.items(), key=lambda kv: -kv[1])
                        print("    " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in parts if v >= 0.001))
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
