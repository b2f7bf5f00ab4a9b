"""PDFs written by hand, for the PDF worker's limits: pages whose content streams are exactly
what a test needs (e.g. one page with enough text operators to keep pypdf busy for seconds)."""

from __future__ import annotations

from pathlib import Path

# pypdf's extract_text costs ~25 us per "1 0 Td (x) Tj" operator here: 200k ops take ~5 s.
SLOW_OP = b"1 0 Td (x) Tj "


def text_stream(text: str) -> bytes:
    """A content stream showing ``text`` (plain ASCII) on one line."""
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"BT /F1 12 Tf 72 720 Td (" + escaped.encode("ascii") + b") Tj ET"


def slow_stream(operators: int) -> bytes:
    """A content stream of ``operators`` tiny text-showing operators: slow to extract, small to store."""
    return b"BT /F1 12 Tf " + SLOW_OP * operators + b"ET"


def hand_pdf(path: Path, pages: list[list[bytes]], flate: bool = False) -> Path:
    """A PDF whose page i has the content streams ``pages[i]``, with a correct xref."""
    objs: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, filled in below
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    filt = b" /Filter /FlateDecode" if flate else b""
    kids = []
    for streams in pages:
        refs = []
        for s in streams:
            objs.append(b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(s), filt, s))
            refs.append(b"%d 0 R" % len(objs))
        objs.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            b"/Contents [" + b" ".join(refs) + b"] >>"
        )
        kids.append(b"%d 0 R" % len(objs))
    objs[1] = b"<< /Type /Pages /Kids [" + b" ".join(kids) + b"] /Count %d >>" % len(pages)
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    path.write_bytes(bytes(out))
    return path
