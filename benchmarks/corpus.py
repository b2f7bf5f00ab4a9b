"""A deterministic synthetic corpus for ingest benchmarks and tests.

``generate(dst, files, seed)`` writes a mix of Markdown (with headings), plain
text and multi-page PDFs (fpdf2, core fonts, so Latin-1 text) in nested folders.
Files are sized so that with the default chunking (128 tokens, 16 overlap) the
average file gives ~10 chunks (``python benchmarks/corpus.py DST --files N --count``
checks that). ``touch(dst, fraction, seed)`` rewrites the content of that share of
the files. Same arguments, same bytes.

    .venv/bin/python benchmarks/corpus.py /tmp/corpus --files 2000 [--seed 0] [--count]
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def _words(text: str) -> list[str]:
    return text.split()


WORDS = _words("""
account action address agent amount answer area array audit backup balance batch battery board boundary
branch budget buffer build cable cache calendar camera capacity carrier center channel charge check
circuit claim client cluster column command comment company config contract control copy cost counter
country coupon credit customer cycle damage data date dealer default delivery deposit design detail
device digit disk display document domain draft driver duration effect engine entry error estimate event
export factor failure feature fee field figure file filter finance folder format frame freight function
gateway grade graph group guide handle header health history holder host image import incident index
input invoice issue item journal kernel label layer layout ledger level license limit line link list
load location lock log machine manual margin market matrix measure memory message method metric mode
model module monitor network node notice number object offer office order output owner package page
panel parcel partner patch payment period permit phase pipeline plan platform policy port power price
printer process product profile project query queue quota range rate reader record region release
report request resource result return review route rule sample scale schedule schema screen script
section sector segment sensor sequence server service session setting shelf shipment signal size source
stage standard state station status storage store stream supplier supply support switch system table
target task team template term test thread ticket timer token total trace track transfer tree trigger
unit update usage user value vendor version volume voucher warehouse warranty window worker zone
""")
VERBS = _words("accepts adds blocks builds checks clears closes covers defines delays drops exports fills holds keeps")
VERBS += _words("limits lists loads logs marks moves needs opens passes reads records rejects repeats returns sends")
VERBS += _words("shows sorts starts stores tracks updates uses validates writes")
ADJ = _words("active annual broken central daily default empty external final fixed global hidden initial")
ADJ += _words("internal large local manual monthly new old open optional primary private public quick regional")
ADJ += _words("remote secondary shared short small spare standard temporary total weekly")
TOPICS = ["Overview", "Setup", "Configuration", "Operation", "Maintenance", "Troubleshooting", "Billing", "Policy"]
FIXED_DATE = datetime(2026, 1, 1, tzinfo=UTC)
# Mean sentences per file: ~10 chunks of 128 tokens (measured with the E5 tokenizer).
MEAN_SENTENCES = 52


def sentence(rng: random.Random) -> str:
    n = rng.randint(7, 16)
    words = [rng.choice(ADJ) if i % 4 == 1 else rng.choice(WORDS) for i in range(n)]
    words.insert(2, rng.choice(VERBS))
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words)), f"{rng.choice(WORDS)}-{rng.randint(10, 9999)}")
    return " ".join(words).capitalize() + rng.choice(".....?!")


def paragraphs(rng: random.Random, sentences: int) -> list[str]:
    out: list[str] = []
    while sentences > 0:
        k = min(sentences, rng.randint(2, 7))
        out.append(" ".join(sentence(rng) for _ in range(k)))
        sentences -= k
    return out


def sections(rng: random.Random, sentences: int) -> list[tuple[str, list[str]]]:
    """(heading, paragraphs) pairs with ``sentences`` sentences in all."""
    out = []
    while sentences > 0:
        k = min(sentences, rng.randint(8, 24))
        title = f"{rng.choice(TOPICS)}: {rng.choice(ADJ)} {rng.choice(WORDS)}".title()
        out.append((title, paragraphs(rng, k)))
        sentences -= k
    return out


def write_markdown(path: Path, rng: random.Random, sentences: int) -> None:
    title = f"{rng.choice(ADJ)} {rng.choice(WORDS)} {rng.choice(WORDS)}".title()
    lines = [f"# {title}", ""]
    for i, (heading, paras) in enumerate(sections(rng, sentences)):
        lines += [f"{'##' if i % 3 else '###'} {heading}", ""]
        for p in paras:
            lines += [f"- {p}" if rng.random() < 0.15 else p, ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def write_text(path: Path, rng: random.Random, sentences: int) -> None:
    path.write_text("\n\n".join(paragraphs(rng, sentences)) + "\n", encoding="utf-8")


def write_pdf(path: Path, rng: random.Random, sentences: int) -> None:
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_producer("fpdf2")
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.set_margins(20, 20, 20)
    for heading, paras in sections(rng, sentences):
        pdf.add_page()  # one section per page at least: multi-page PDFs
        pdf.set_font("Helvetica", style="B", size=14)
        pdf.multi_cell(0, 8, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)
        for p in paras:
            pdf.multi_cell(0, 5, p, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
    pdf.output(str(path))


def _file_path(dst: Path, rng: random.Random, i: int) -> tuple[Path, str]:
    kind = rng.choices(["md", "txt", "pdf"], weights=[5, 3, 2])[0]
    depth = rng.randint(0, 2)
    parts = [f"area-{rng.randrange(8):02d}"] + [f"{rng.choice(WORDS)}-{rng.randrange(4)}" for _ in range(depth)]
    return dst.joinpath(*parts, f"doc-{i:05d}.{kind}"), kind


def _write(path: Path, kind: str, rng: random.Random) -> None:
    # Sizes vary (0.2x - 2.6x the mean) like a real folder; the mean stays ~MEAN_SENTENCES.
    sentences = max(3, round(MEAN_SENTENCES * rng.choice([0.2, 0.4, 0.7, 1.0, 1.0, 1.2, 1.5, 2.6]) * 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    {"md": write_markdown, "txt": write_text, "pdf": write_pdf}[kind](path, rng, sentences)


def generate(dst: Path, files: int, seed: int = 0) -> dict[str, Any]:
    """Write ``files`` documents under ``dst``; returns counts by kind, bytes and seconds."""
    started = time.perf_counter()
    dst = Path(dst)
    kinds: dict[str, int] = {}
    total = 0
    for i in range(files):
        rng = random.Random(f"{seed}:{i}")
        path, kind = _file_path(dst, rng, i)
        _write(path, kind, rng)
        kinds[kind] = kinds.get(kind, 0) + 1
        total += path.stat().st_size
    return {"files": files, "kinds": kinds, "bytes": total, "seconds": round(time.perf_counter() - started, 2)}


def touch(dst: Path, fraction: float, seed: int = 0) -> list[Path]:
    """Rewrite the content of ``fraction`` of the files under ``dst`` (at least one); returns them."""
    paths = sorted(p for p in Path(dst).rglob("*") if p.is_file())
    rng = random.Random(f"touch:{seed}")
    chosen = sorted(rng.sample(paths, max(1, round(fraction * len(paths)))))
    for path in chosen:
        _write(path, path.suffix[1:], random.Random(f"touch:{seed}:{path.name}"))
    return chosen


def count_chunks(dst: Path) -> int:
    """Chunks the project's own loader and chunker make of ``dst`` with the default settings."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from ingest.chunker import Chunker
    from ingest.loaders import load
    from ingest.tokens import default_counter

    chunker = Chunker(default_counter(), 128, 16)
    return sum(len(chunker.chunk(u)) for p in sorted(Path(dst).rglob("*")) if p.is_file() for u in load(p).units)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", action="store_true", help="also count chunks with the project's chunker")
    a = ap.parse_args()
    info = generate(a.dst, a.files, a.seed)
    if a.count:
        info["chunks"] = count_chunks(a.dst)
        info["chunks_per_file"] = round(info["chunks"] / a.files, 2)
    print(info)
