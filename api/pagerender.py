"""One PDF page rendered to PNG, in a child process (``python -c "from api.pagerender import main;
main()" PDF PAGE OUT SCALE MEMORY_MB``): a hostile or broken PDF can hang or crash the renderer,
and it must not take ``rag serve`` with it. :func:`render` starts the child with a time limit; the
child limits its own memory and writes the PNG to ``OUT`` (the caller renames it into place).

The PNG is encoded here (zlib, no filter), so no imaging library is needed beside ``pypdfium2``.
"""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

HERE = str(Path(__file__).resolve().parent.parent)


def png(rgb: bytes, width: int, height: int) -> bytes:
    """A PNG of ``height`` rows of ``width`` RGB pixels (8 bits each)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    stride = width * 3
    raw = b"".join(b"\x00" + rgb[y * stride : (y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def page_count(pdf_path: str) -> int:
    import pypdfium2 as pdfium

    with pdfium.PdfDocument(pdf_path) as pdf:
        return len(pdf)


def render_here(pdf_path: str, page: int, scale: float) -> bytes:
    """Page ``page`` (1-based) of the PDF as PNG bytes, in this process. IndexError: no such page."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(pdf_path)
    try:
        if not 1 <= page <= len(pdf):
            raise IndexError(page)
        bitmap = pdf[page - 1].render(scale=scale, rev_byteorder=True, may_draw_forms=True)
        array = bitmap.to_numpy()
        height, width = array.shape[0], array.shape[1]
        return png(array[:, :, :3].tobytes(), width, height)
    finally:
        pdf.close()


def main() -> None:
    pdf_path, page, out, scale, memory_mb = sys.argv[1:6]
    limit = int(memory_mb) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        data = render_here(pdf_path, int(page), float(scale))
    except IndexError:
        sys.exit(3)
    Path(out).write_bytes(data)


def render(
    pdf_path: str, page: int, out: Path, *, scale: float = 1.5, timeout: float = 30, memory_mb: int = 1024
) -> int:
    """Render in a child process into ``out``; returns its exit code (0 done, 3 no such page,
    anything else a failure), -9 when it ran out of time."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")])))
    args = [sys.executable, "-c", "from api.pagerender import main; main()", pdf_path, str(page), str(out)]
    args += [str(scale), str(memory_mb)]
    try:
        done = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -9
    return done.returncode
