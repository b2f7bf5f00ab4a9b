"""Loaders turn a file into text units: one per PDF page, one for anything else.

Each unit carries the headings found in it (offset, level, title) so the chunker
can split at them and record a heading path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from ingest.pdftext import PdfiumText

# Bumped when a loader reads files differently (2: PDF text laid out by PDFium): every file is read
# and chunked again on the next run; chunks whose text did not change keep their stored vectors.
TEXT_VERSION = 2

MARKDOWN = {".md", ".markdown", ".mdx", ".rst"}
TEXT = {".txt", ".text", ".log", ".csv", ".tsv"}
HTML = {".html", ".htm", ".xhtml"}
PDF = {".pdf"}
SOURCE = {
    ".py",
    ".pyi",
    ".js",
    ".jsx",
    ".ts",
    ".tsx",
    ".java",
    ".kt",
    ".scala",
    ".go",
    ".rs",
    ".c",
    ".h",
    ".cc",
    ".cpp",
    ".hpp",
    ".cs",
    ".rb",
    ".php",
    ".swift",
    ".m",
    ".sh",
    ".bash",
    ".zsh",
    ".sql",
    ".r",
    ".lua",
    ".pl",
    ".hs",
    ".ex",
    ".exs",
    ".erl",
    ".clj",
    ".toml",
    ".yaml",
    ".yml",
    ".json",
    ".ini",
    ".cfg",
    ".css",
    ".scss",
    ".vue",
}


@dataclass
class Heading:
    offset: int
    level: int
    title: str


@dataclass
class Unit:
    text: str
    page: int | None = None  # 1-based for PDFs
    headings: list[Heading] = field(default_factory=list)


@dataclass
class LoadedDocument:
    kind: str
    units: list[Unit]


class LoadError(Exception):
    """A file that cannot be read; the message is the reason shown to the user."""


def kind_of(path: Path) -> str | None:
    ext = path.suffix.lower()
    for kind, exts in (("pdf", PDF), ("markdown", MARKDOWN), ("html", HTML), ("text", TEXT), ("code", SOURCE)):
        if ext in exts:
            return kind
    return None


def load(path: Path) -> LoadedDocument:
    kind = kind_of(path)
    if kind is None:
        raise LoadError(f"unsupported file type '{path.suffix or path.name}'")
    if kind == "pdf":
        return LoadedDocument(kind, load_pdf(path))
    return parse_text(kind, read_text(path))


def parse_text(kind: str, text: str) -> LoadedDocument:
    if kind == "markdown":
        return LoadedDocument(kind, [Unit(text, headings=markdown_headings(text))])
    if kind == "html":
        return LoadedDocument(kind, [html_to_unit(text)])
    return LoadedDocument(kind, [Unit(text)])


def read_text(path: Path) -> str:
    return decode_text(path.read_bytes())[0]


def decode_text(data: bytes) -> tuple[str, str | None]:
    """The text of a file's bytes, and a warning when it was not UTF-8."""
    if b"\x00" in data:
        raise LoadError("binary content (NUL bytes) in a text file")
    warning = None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Latin-1 decodes anything; it is the usual encoding of non-UTF-8 text we meet.
        text = data.decode("latin-1")
        controls = sum(1 for ch in text[:65536] if ord(ch) < 32 and ch not in "\t\n\r\f" or 0x7F <= ord(ch) < 0xA0)
        if controls > len(text[:65536]) * 0.05:
            raise LoadError("binary content (not text in any encoding we read)") from None
        warning = "not UTF-8; read as Latin-1"
    return text.replace("\r\n", "\n").replace("\r", "\n"), warning


def load_pdf(path: Path, report: Callable[[tuple[str, int]], None] | None = None) -> list[Unit]:
    """One unit per page. ``report`` gets ``("pages", n)`` once the file is open and ``("page", i)``
    after each page, so a caller can tell a slow file from a stuck one (``ingest.pdfworker``)."""
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PdfReadError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            raise LoadError("encrypted PDF (remove the password to index it)")
        if report is not None:
            report(("pages", len(reader.pages)))
        units = []
        with PdfiumText(path) as laid_out:
            for number, page in enumerate(reader.pages, start=1):
                # pypdf parses the page first, under its limits; PDFium's text is the better one.
                text = (page.extract_text() or "").replace("\r\n", "\n")
                units.append(Unit(laid_out.page(number - 1) or text, page=number))
                if report is not None:
                    report(("page", number))
    except LoadError:
        raise
    except LimitReachedError as exc:
        raise LoadError(f"PDF content too large to decompress safely (possible decompression bomb): {exc}") from exc
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise LoadError(f"unreadable PDF: {exc}") from exc
    if not any(u.text.strip() for u in units):
        raise LoadError("PDF has no text layer (scanned images need OCR first)")
    return units


_MD_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def markdown_headings(text: str) -> list[Heading]:
    fenced = [(m.start(), m.end()) for m in _FENCE.finditer(text)]
    return [
        Heading(m.start(), len(m.group(1)), m.group(2).strip())
        for m in _MD_HEADING.finditer(text)
        if not any(a <= m.start() < b for a, b in fenced)
    ]


class _HtmlText(HTMLParser):
    BLOCK = {
        "p",
        "div",
        "section",
        "article",
        "li",
        "tr",
        "table",
        "br",
        "pre",
        "blockquote",
        "ul",
        "ol",
        "header",
        "footer",
        "main",
        "nav",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "title",
        "dt",
        "dd",
    }
    SKIP = {"script", "style", "noscript", "template", "svg", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.headings: list[Heading] = []
        self._skip = 0
        self._heading: tuple[int, int] | None = None  # (level, offset)
        self._title: list[str] = []
        self._in_title = False

    def _len(self) -> int:
        return sum(len(p) for p in self.parts)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in self.SKIP:
            self._skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n\n" if tag not in {"br", "td", "th", "li", "tr"} else "\n")
            if re.fullmatch(r"h[1-6]", tag):
                self._heading = (int(tag[1]), self._len())
        elif tag in {"td", "th"}:
            self.parts.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self.BLOCK:
            if self._heading and re.fullmatch(r"h[1-6]", tag):
                level, start = self._heading
                title = "".join(self.parts)[start:].strip()
                if title:
                    self.headings.append(Heading(start, level, " ".join(title.split())))
                self._heading = None
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title.append(data)
        if not self._skip:
            self.parts.append(re.sub(r"[ \t\r\n]+", " ", data))


def html_to_unit(html: str) -> Unit:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n[ \t]+", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    # Headings were recorded in document order; find each after the previous one.
    headings, start = [], 0
    for h in parser.headings:
        idx = text.find(h.title, start)
        if idx >= 0:
            headings.append(Heading(idx, h.level, h.title))
            start = idx + len(h.title)
    title = " ".join("".join(parser._title).split())
    if title and not headings:
        headings = [Heading(0, 1, title)]
    return Unit(text, headings=headings)
