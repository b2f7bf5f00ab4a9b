"""Cut a small, deterministic slice of both eval corpora and their question sets (for CI).

    python scripts/eval_slice.py SQLITE_DIR GNUPLOT_DIR OUTDIR [--questions 12]

sqlite3-doc: the first N questions whose expected pages are all small files, those files, and
small distractor files (every 12th of the rest). gnuplot-doc: the first N questions with pages;
the PDF keeps every page (so page numbers stay true) but only the expected pages and every 20th
page as distractors keep their text; the others are blank. Writes OUTDIR/sqlite3-doc/,
OUTDIR/gnuplot-doc/gnuplot.pdf and OUTDIR/{sqlite3-doc,gnuplot-doc}.jsonl, and prints
``name=corpus_dir=qa_file`` per set. Each slice's questions end with the set's first N/3
unanswerable lines (``"unanswerable": true``), for the refusal figures. About 800 chunks in all:
a couple of minutes with the embedded model.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SMALL = 24_000  # bytes of HTML


def split(name: str, n: int) -> tuple[list[str], list[str]]:
    """(answerable lines, the first n // 3 unanswerable lines) of a set."""
    lines = [line for line in (REPO / f"data/eval/{name}.jsonl").read_text().splitlines() if line.strip()]
    unanswerable = [line for line in lines if json.loads(line).get("unanswerable")]
    return [line for line in lines if not json.loads(line).get("unanswerable")], unanswerable[: n // 3]


def sqlite_slice(src: Path, out: Path, n: int) -> tuple[Path, Path]:
    lines, unanswerable = split("sqlite3-doc", n)
    chosen: list[str] = []
    files: set[str] = set()
    for line in lines:
        q = json.loads(line)
        sources = {e["source"] for e in q["expected"]}
        if all((src / s).is_file() and (src / s).stat().st_size <= SMALL for s in sources):
            chosen.append(line)
            files |= sources
        if len(chosen) == n:
            break
    rest = sorted(
        p.relative_to(src).as_posix()
        for p in src.rglob("*.html")
        if p.stat().st_size <= SMALL and p.relative_to(src).as_posix() not in files
    )
    files |= set(rest[::12])
    dst = out / "sqlite3-doc"
    shutil.rmtree(dst, ignore_errors=True)
    for rel in sorted(files):
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dst / rel)
    qa = out / "sqlite3-doc.jsonl"
    qa.write_text("\n".join(chosen + unanswerable) + "\n")
    return dst, qa


def gnuplot_slice(src: Path, out: Path, n: int) -> tuple[Path, Path]:
    from pypdf import PdfReader, PdfWriter

    lines, unanswerable = split("gnuplot-doc", n)
    chosen = [line for line in lines if all(e.get("page") for e in json.loads(line)["expected"])][:n]
    keep = {e["page"] for line in chosen for e in json.loads(line)["expected"]}
    reader = PdfReader(src / "gnuplot.pdf")
    keep |= set(range(21, len(reader.pages) - 10, 20))  # distractors, past the table of contents
    writer = PdfWriter()
    for i, page in enumerate(reader.pages, start=1):
        if i in keep:
            writer.add_page(page)
        else:
            writer.add_blank_page(float(page.mediabox.width), float(page.mediabox.height))
    dst = out / "gnuplot-doc"
    dst.mkdir(parents=True, exist_ok=True)
    with open(dst / "gnuplot.pdf", "wb") as f:
        writer.write(f)
    qa = out / "gnuplot-doc.jsonl"
    qa.write_text("\n".join(chosen + unanswerable) + "\n")
    return dst, qa


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sqlite_dir", type=Path)
    ap.add_argument("gnuplot_dir", type=Path)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--questions", type=int, default=12, help="questions per set [12]")
    a = ap.parse_args()
    a.outdir.mkdir(parents=True, exist_ok=True)
    for name, (corpus, qa) in {
        "sqlite3-doc": sqlite_slice(a.sqlite_dir, a.outdir, a.questions),
        "gnuplot-doc": gnuplot_slice(a.gnuplot_dir, a.outdir, a.questions),
    }.items():
        print(f"{name}={corpus}={qa}")


if __name__ == "__main__":
    main()
