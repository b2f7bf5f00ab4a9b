"""A PDF page's text as PDFium lays it out.

pypdf parses every PDF first (``ingest.loaders.load_pdf``): it enforces the decompression limits
and gives the errors users see. Its text, though, glues words together on PDFs that position each
word instead of writing a space (LaTeX, DocBook/FOP and asciidoc manuals among them):
"Itcansimultaneouslymoveupto9axes" in LinuxCNC's manuals, which no keyword and hardly any
embedding can match. PDFium, already here for the web page's page images, puts the spaces back
from the glyphs' positions, joins words hyphenated across lines, and is 10-50x faster, so its text
is used for every page it can read; pypdf's stays the fallback.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

# PDFium marks a hyphen it removed at a line break (U+FFFE; U+0002 in older builds) and may emit NULs.
_DROP = dict.fromkeys(map(ord, "\ufffe\x02\x00"))


class PdfiumText:
    """An open document (or none, when PDFium cannot read the file: pypdf's text is used then)."""

    def __init__(self, path: Path) -> None:
        self._pdf: Any = None
        try:
            import pypdfium2 as pdfium

            self._pdf = pdfium.PdfDocument(str(path))
        except Exception:  # any failure here only means pypdf's text is used
            self._pdf = None

    def page(self, index: int) -> str | None:
        """Text of page ``index`` (0-based), or None when PDFium has none for it."""
        if self._pdf is None or index >= len(self._pdf):
            return None
        try:
            page = self._pdf[index]
            try:
                textpage = page.get_textpage()
                try:
                    text = textpage.get_text_range()
                finally:
                    textpage.close()
            finally:
                page.close()
        except Exception:
            return None
        text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_DROP)
        return text if text.strip() else None

    def close(self) -> None:
        if self._pdf is not None:
            with contextlib.suppress(Exception):
                self._pdf.close()
            self._pdf = None

    def __enter__(self) -> PdfiumText:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
