"""The PDF parser's time limits (issue 13): a stall limit per page (RAG_PDF_TIMEOUT) and a whole-file
cap that grows with the page count (RAG_PDF_TIMEOUT + pages x RAG_PDF_SECONDS_PER_PAGE). A long file
on a busy machine must pass; a file stuck on one page, or slow on every page, must still be stopped.

Real parser processes on real PDFs (tests/pdfs.py writes pages of known cost); embeddings come from
the deterministic server benchmarks/instant_embeddings.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fpdf import FPDF

from ingest.loaders import LoadError, Unit
from ingest.pdfworker import PdfWorker
from rag import Rag
from tests.conftest import DATA, ServerProcess, instant_settings, stored_metadata
from tests.pdfs import hand_pdf, slow_stream, text_stream

# Seconds a CPU burner runs at most, should the test's own cleanup never run.
BURN_SECONDS = 300


@contextmanager
def busy_cpus(n: int) -> Iterator[None]:
    """``n`` processes spinning on the CPU (at normal priority) for as long as the block runs."""
    code = f"import time\nend = time.monotonic() + {BURN_SECONDS}\nwhile time.monotonic() < end: pass\n"
    burners = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]
    try:
        yield
    finally:
        for p in burners:
            p.kill()
        for p in burners:
            p.wait()


def manual_pdf(path: Path, pages: int) -> Path:
    """A long manual: ``pages`` pages of 80 lines (~8 KB of text) each, page n starting "Manual page n."
    (~5 ms per page for pypdf here, ~1.5 s for the file when nothing else runs)."""
    pdf = FPDF()
    pdf.set_font("Helvetica", size=7)
    for n in range(1, pages + 1):
        pdf.add_page()
        pdf.text(10, 10, f"Manual page {n}.")
        for i in range(80):
            line = f"Pump P{n}-{i} moves {i * 7} litres of water per minute at valve {n}; check its seal weekly."
            pdf.text(10, 14 + i * 3.3, line)
    pdf.output(str(path))
    return path


def timed_loads(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Records how long each real ``PdfWorker.load`` takes (the parse as the pipeline sees it)."""
    seconds: list[float] = []
    load = PdfWorker.load

    def timed(self: PdfWorker, path: Path) -> list[Unit]:
        t = time.perf_counter()
        try:
            return load(self, path)
        finally:
            seconds.append(time.perf_counter() - t)

    monkeypatch.setattr(PdfWorker, "load", timed)
    return seconds


def test_long_pdf_passes_when_every_page_is_quick(tmp_path: Path) -> None:
    # 40 pages of ~75 ms each: the file takes ~3 s, three times the stall limit; no page comes near it.
    pdf = hand_pdf(tmp_path / "long.pdf", [[text_stream(f"page {n}"), slow_stream(3000)] for n in range(1, 41)])
    worker = PdfWorker(timeout=1.0, memory_mb=1024)
    try:
        worker.load(DATA / "x200-user-guide.pdf")  # the parser process is up: its start is not timed
        t = time.perf_counter()
        units = worker.load(pdf)
        took = time.perf_counter() - t
    finally:
        worker.close()
    assert [u.page for u in units] == list(range(1, 41))
    assert all(u.text.startswith(f"page {u.page}") for u in units)
    assert took > 1.0, f"the file parsed in {took:.2f}s: it does not show that the limit is per page"


def test_pdf_stuck_on_one_page_is_stopped_by_the_stall_limit(tmp_path: Path) -> None:
    # Three quick pages, then one that keeps pypdf busy ~5 s (measured), far past the 2 s stall limit.
    quick = [[text_stream(f"page {n} about pumps")] for n in range(1, 4)]
    stuck = hand_pdf(tmp_path / "stuck.pdf", [*quick, [slow_stream(200_000)], [text_stream("never reached")]])
    worker = PdfWorker(timeout=2.0, memory_mb=1024)
    try:
        worker.load(DATA / "x200-user-guide.pdf")
        t = time.perf_counter()
        with pytest.raises(LoadError) as caught:
            worker.load(stuck)
        took = time.perf_counter() - t
        assert len(worker.load(DATA / "x200-user-guide.pdf")) == 4  # a new parser took over
    finally:
        worker.close()
    message = str(caught.value)
    assert "no progress for 2s, stuck on page 4 of 5 (RAG_PDF_TIMEOUT" in message, message
    assert "the parser was stopped" in message
    assert 2.0 <= took < 4.0, f"stopped after {took:.2f}s: the stall limit is 2 s and the page takes ~5 s"


def test_pdf_slow_on_every_page_is_stopped_by_the_whole_file_cap(tmp_path: Path) -> None:
    # 100 pages of ~0.08 s each (~8 s in all, measured): none stalls for the 3 s limit, but the
    # file passes its cap of 3 s + 100 x 0.005 s = 3.5 s.
    slow = hand_pdf(tmp_path / "slow.pdf", [[slow_stream(5000)] for _ in range(100)])
    worker = PdfWorker(timeout=3.0, memory_mb=1024, seconds_per_page=0.005)
    try:
        worker.load(DATA / "x200-user-guide.pdf")
        t = time.perf_counter()
        with pytest.raises(LoadError) as caught:
            worker.load(slow)
        took = time.perf_counter() - t
        assert len(worker.load(DATA / "x200-user-guide.pdf")) == 4
    finally:
        worker.close()
    message = str(caught.value)
    assert "parsing took longer than 3.5s, the limit for 100 pages" in message, message
    assert "RAG_PDF_TIMEOUT 3s + 0.005s per page, RAG_PDF_SECONDS_PER_PAGE" in message
    assert "the parser was stopped at page " in message
    stopped_at = int(message.rsplit("page ", 1)[1])
    assert 2 <= stopped_at <= 100, message  # it was making progress: the stall limit did not fire
    assert 3.5 <= took < 5.5, took


# Pages of the long manual: its parse must outlast the stall limit many times over on a busy machine
# (150 pages: 50-90 s of parsing here under two CPU burners, ten times the 5 s limit or more).
MANUAL_PAGES = 150


@pytest.mark.slow
def test_long_pdf_ingests_whole_on_a_busy_machine(
    tmp_path: Path, instant_embeddings: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The defect: a long manual was failed when the whole file outlasted RAG_PDF_TIMEOUT."""
    docs = tmp_path / "docs"
    docs.mkdir()
    manual_pdf(docs / "manual.pdf", MANUAL_PAGES)
    (docs / "notes.md").write_text("# Notes\n\nThe manual covers the pumps.\n")
    loads = timed_loads(monkeypatch)
    # The parser runs niced: with both cores busy a long PDF took ~10x as long as on an idle machine
    # (here ~1.5 s). With another test suite running too (load 6-8 on 2 cores) pages of 2-5 ms took
    # up to ~1.2 s each and opening the file once 2.2 s, the whole file 30-90 s (all measured).
    stall_limit = 5.0
    settings = instant_settings(tmp_path / "index", instant_embeddings, pdf_timeout=stall_limit)
    # Every core busy at normal priority (here: 2); the parser runs niced, as it does in every ingest.
    with busy_cpus(len(os.sched_getaffinity(0))), Rag(settings) as r:
        report = r.ingest([docs])
    by = {f.source: f for f in report.files}
    assert by["manual.pdf"].status == "added", by["manual.pdf"].error
    assert by["notes.md"].status == "added" and not report.failed
    # The old limit on the whole file would have failed it: its parse outlasted the limit, page by page.
    assert len(loads) == 1 and loads[0] > stall_limit, loads
    print(f"manual.pdf: {MANUAL_PAGES} pages parsed in {loads[0]:.1f}s under a {stall_limit:g}s stall limit")
    with Rag(settings) as r:
        chunks = stored_metadata(r, {"source": "manual.pdf"})
        assert {m["page"] for m in chunks.values()} == set(range(1, MANUAL_PAGES + 1))
        last = [c.text for c in r.store.get_chunks([i for i, m in chunks.items() if m["page"] == MANUAL_PAGES])]
        assert any(f"Manual page {MANUAL_PAGES}." in text for text in last)
        row = r.manifest.get(str(docs / "manual.pdf"))
        assert row is not None and row.status == "ok" and row.chunks == len(chunks)
