"""Loaders, chunker and walker on real files: the repo's data/ and files made in tmp_path
(PDFs built with fpdf2 through scripts/make_sample_pdf.py), counted with the real
E5 tokenizer."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

import pytest

from ingest.chunker import Chunk, Chunker
from ingest.loaders import LoadError, Unit, kind_of, load
from ingest.tokens import E5TokenCounter
from ingest.walker import walk
from rag import Rag, Settings
from tests.conftest import DATA, REPO
from tests.fakes import FakeChat, FakeEmbedder

_spec = importlib.util.spec_from_file_location("make_sample_pdf", REPO / "scripts" / "make_sample_pdf.py")
assert _spec and _spec.loader
_make_sample_pdf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_make_sample_pdf)
build_pdf = _make_sample_pdf.build_pdf

X200 = DATA / "x200-user-guide.pdf"
HOURS = DATA / "support-hours.html"
Q7 = DATA / "zh" / "q7-air-purifier.md"
Q7_ROOT = "青松 Q7 空气净化器使用说明"


@pytest.fixture(scope="module")
def counter() -> E5TokenCounter:
    return E5TokenCounter()


def assert_exact_slices(unit: Unit, chunks: list[Chunk]) -> None:
    assert chunks, "no chunks produced"
    for c in chunks:
        assert 0 <= c.start < c.end <= len(unit.text)
        assert unit.text[c.start : c.end] == c.text
        assert c.text == c.text.strip(), "chunks are stripped of surrounding whitespace"
        assert c.page == unit.page


# -- PDF -----------------------------------------------------------------------------------


def test_pdf_sample_one_unit_per_page_with_1_based_numbers() -> None:
    doc = load(X200)
    assert doc.kind == "pdf"
    assert [u.page for u in doc.units] == [1, 2, 3, 4]
    pages_with_fact = [u.page for u in doc.units if "3 years (36 months)" in u.text]
    assert pages_with_fact == [3]
    assert doc.units[0].text.startswith("X200 Portable Projector - Overview")
    assert "Error code E42" in doc.units[3].text


def test_pdf_built_in_tmp_keeps_page_order_and_blank_pages(tmp_path: Path) -> None:
    pages = [
        ("Alpha page", ["The marker ALPHA-ONE lives on the first page."]),
        ("", []),  # a page with no text at all still is a page
        ("Gamma page", ["The marker GAMMA-THREE lives on the third page."]),
        ("Delta page", ["The marker DELTA-FOUR lives on the fourth page. " * 3]),
    ]
    pdf = build_pdf(tmp_path / "guide.pdf", pages)
    units = load(pdf).units
    assert [u.page for u in units] == [1, 2, 3, 4]
    for marker, page in (("ALPHA-ONE", 1), ("GAMMA-THREE", 3), ("DELTA-FOUR", 4)):
        assert [u.page for u in units if marker in u.text] == [page]
    assert units[1].text.strip() == ""


def test_pdf_encrypted_raises_load_error(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(str(X200)))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    path = tmp_path / "locked.pdf"
    with open(path, "wb") as fh:
        writer.write(fh)
    assert PdfReader(str(path)).is_encrypted  # the fixture really is encrypted
    with pytest.raises(LoadError, match="encrypted"):
        load(path)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9])
def test_pdf_truncated_raises_load_error(tmp_path: Path, fraction: float) -> None:
    data = X200.read_bytes()
    path = tmp_path / "cut.pdf"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(LoadError, match="unreadable PDF"):
        load(path)


def test_pdf_without_text_layer_raises_load_error(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    path = tmp_path / "scan.pdf"
    with open(path, "wb") as fh:
        writer.write(fh)
    with pytest.raises(LoadError, match="no text layer"):
        load(path)


# -- HTML ------------------------------------------------------------------------------------


def test_html_text_without_style_script_or_tags() -> None:
    doc = load(HOURS)
    assert doc.kind == "html"
    [unit] = doc.units
    text = unit.text
    assert "+49 30 1234567" in text
    assert "Monday-Friday 08:00-18:00 CET" in text
    assert "STYLE-BLOCK-MARKER" not in text
    assert "SCRIPT-BLOCK-MARKER" not in text
    assert "font-family" not in text and "openChat" not in text
    assert "<" not in text and ">" not in text
    assert "©" in text and "&copy;" not in text  # character references decoded
    assert "Customer Support Hours - Northwind Devices" not in text  # <title> lives in <head>


def test_html_headings_found_at_their_offsets() -> None:
    unit = load(HOURS).units[0]
    assert [(h.level, h.title) for h in unit.headings] == [
        (1, "Customer Support Hours"),
        (2, "Contact channels"),
        (2, "Public holidays"),
        (2, "Before you call"),
    ]
    for h in unit.headings:
        assert unit.text[h.offset : h.offset + len(h.title)] == h.title


def test_html_headings_give_chunk_heading_paths(counter: E5TokenCounter) -> None:
    unit = load(HOURS).units[0]
    chunks = Chunker(counter, max_tokens=64, overlap=8).chunk(unit)
    assert_exact_slices(unit, chunks)
    [phone] = [c for c in chunks if "+49 30 1234567" in c.text]
    assert phone.heading == "Customer Support Hours > Contact channels"
    [holidays] = [c for c in chunks if "German public holidays" in c.text]
    assert holidays.heading == "Customer Support Hours > Public holidays"


# -- Markdown ---------------------------------------------------------------------------------


def test_markdown_headings_on_chinese_guide() -> None:
    unit = load(Q7).units[0]
    assert [(h.level, h.title) for h in unit.headings] == [
        (1, Q7_ROOT),
        (2, "产品概述"),
        (2, "滤网更换"),
        (2, "保修政策"),
        (2, "常见问题"),
    ]


def test_markdown_heading_paths_on_chinese_chunks(counter: E5TokenCounter) -> None:
    doc = load(Q7)
    assert doc.kind == "markdown"
    unit = doc.units[0]
    chunks = Chunker(counter, max_tokens=64, overlap=8).chunk(unit)
    assert_exact_slices(unit, chunks)
    assert all(c.heading.startswith(Q7_ROOT + " > ") for c in chunks)
    filter_chunks = [c for c in chunks if c.heading == f"{Q7_ROOT} > 滤网更换"]
    assert len(filter_chunks) >= 2, "the filter section is long enough to need several chunks"
    assert any("每六个月更换一次" in c.text for c in filter_chunks)
    assert any("即可完成复位" in c.text for c in filter_chunks)
    [warranty] = [c for c in chunks if "保修期为两年" in c.text]
    assert warranty.heading == f"{Q7_ROOT} > 保修政策"
    # Sections are never mixed: a chunk holds at most one second-level heading, at its top.
    for c in chunks:
        body = c.text.removeprefix(f"# {Q7_ROOT}").lstrip("\n")
        assert "\n## " not in body, c.text


def test_markdown_hashes_inside_fences_are_not_headings(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text("# Title\n\n```sh\n# not a heading\nls\n```\n\n~~~\n## nor this\n~~~\n\n## Real\n\ntext\n")
    unit = load(path).units[0]
    assert [h.title for h in unit.headings] == ["Title", "Real"]


# -- plain text and file types ---------------------------------------------------------------


def test_latin1_text_decodes(tmp_path: Path) -> None:
    path = tmp_path / "legacy.txt"
    path.write_bytes("Café naïve – größer\r\nzweite Zeile\r\n".replace("–", "-").encode("latin-1"))
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")  # really not UTF-8
    doc = load(path)
    assert doc.kind == "text"
    assert doc.units[0].text == "Café naïve - größer\nzweite Zeile\n"


def test_utf8_bom_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffÜberschrift\n".encode())
    assert load(path).units[0].text == "Überschrift\n"


def test_text_with_nul_bytes_raises_load_error(tmp_path: Path) -> None:
    path = tmp_path / "blob.txt"
    path.write_bytes(b"looks like text\x00\x01\x02 but is not")
    with pytest.raises(LoadError, match="NUL"):
        load(path)


def test_text_with_late_nul_byte_raises_load_error(tmp_path: Path) -> None:
    path = tmp_path / "crash.log"
    path.write_bytes(b"log line ok\n" * 1000 + b"\x00\x00 crash\n" + b"more log\n" * 10)
    with pytest.raises(LoadError, match="NUL"):
        load(path)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.pdf", "pdf"),
        ("A.PDF", "pdf"),
        ("notes.md", "markdown"),
        ("page.htm", "html"),
        ("log.txt", "text"),
        ("main.py", "code"),
        ("conf.YAML", "code"),
        ("photo.png", None),
        ("archive.tar.gz", None),
        ("Makefile", None),
        ("setup.exe", None),
    ],
)
def test_kind_of(name: str, kind: str | None) -> None:
    assert kind_of(Path(name)) == kind


def test_load_unsupported_extension_raises(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(LoadError, match="unsupported file type '.png'"):
        load(path)


# -- chunker ---------------------------------------------------------------------------------

ENGLISH_DATA = [
    DATA / "x200-user-guide.pdf",
    DATA / "returns-policy.md",
    DATA / "support-hours.html",
    DATA / "z10-release-notes.txt",
    DATA / "tools" / "export_report.py",
]


@pytest.mark.parametrize("path", ENGLISH_DATA, ids=lambda p: p.name)
@pytest.mark.parametrize(("max_tokens", "overlap"), [(24, 0), (64, 16), (160, 40)])
def test_chunks_are_exact_slices_within_the_token_limit(
    counter: E5TokenCounter, path: Path, max_tokens: int, overlap: int
) -> None:
    doc = load(path)
    chunker = Chunker(counter, max_tokens=max_tokens, overlap=overlap)
    for unit in doc.units:
        chunks = chunker.chunk(unit, code=doc.kind == "code")
        assert_exact_slices(unit, chunks)
        for c in chunks:
            # The recorded count is the sum of the pieces' counts: an upper bound of the real one.
            assert counter.count(c.text) <= c.tokens <= max_tokens, (c.tokens, c.text)


@pytest.mark.parametrize(
    ("text", "max_tokens"),
    [
        ("他来了！" * 150, 128),  # observed: chunks reported as 128 tokens really have up to 191
        (Q7.read_text(encoding="utf-8"), 47),  # observed: a 47-token chunk really has 48
    ],
    ids=["short-sentences", "q7-guide"],
)
def test_cjk_chunks_within_the_token_limit(counter: E5TokenCounter, text: str, max_tokens: int) -> None:
    unit = Unit(text)
    chunks = Chunker(counter, max_tokens=max_tokens, overlap=0).chunk(unit)
    assert_exact_slices(unit, chunks)
    assert all(c.tokens <= max_tokens for c in chunks)  # what the chunker believes
    assert max(counter.count(c.text) for c in chunks) <= max_tokens  # what the tokenizer says
    assert all(counter.count(c.text) <= c.tokens for c in chunks)


def test_token_counter_counts_a_word_as_at_least_one_token(counter: E5TokenCounter) -> None:
    assert counter.count("") == 0
    assert counter.count("the") >= 1
    assert counter.count("！") >= 1


def _prose(n: int) -> str:
    words = ["battery", "projector", "warranty", "service", "screen", "remote", "cable", "lamp"]
    sentences = [f"Sentence {i} is about the {words[i % len(words)]} and number {i * 7}." for i in range(n)]
    paragraphs = [" ".join(sentences[i : i + 5]) for i in range(0, n, 5)]
    return "\n\n".join(paragraphs)


def test_consecutive_chunks_overlap_when_overlap_is_set(counter: E5TokenCounter) -> None:
    unit = Unit(_prose(80))
    chunks = Chunker(counter, max_tokens=64, overlap=24).chunk(unit)
    assert_exact_slices(unit, chunks)
    assert len(chunks) >= 5
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        assert prev.start < nxt.start < prev.end, "next chunk starts inside the previous one"
        assert nxt.end > prev.end, "chunks move forward"
    # Overlap is whole sentences: the repeated text is a sentence boundary.
    for nxt in chunks[1:]:
        assert nxt.text.startswith("Sentence ")
    assert chunks[0].start == 0 and chunks[-1].end == len(unit.text)


def test_chunks_never_overlap_without_overlap(counter: E5TokenCounter) -> None:
    unit = Unit(_prose(80))
    chunks = Chunker(counter, max_tokens=64, overlap=0).chunk(unit)
    assert_exact_slices(unit, chunks)
    assert len(chunks) >= 5
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        assert nxt.start >= prev.end
        assert unit.text[prev.end : nxt.start].strip() == "", "nothing is lost between chunks"
    assert chunks[0].start == 0 and chunks[-1].end == len(unit.text)


def test_overlap_must_be_smaller_than_chunk_size(counter: E5TokenCounter) -> None:
    with pytest.raises(ValueError):
        Chunker(counter, max_tokens=32, overlap=32)


def test_chunking_is_deterministic(counter: E5TokenCounter) -> None:
    for path in (X200, Q7, HOURS):
        doc = load(path)
        first = [Chunker(counter, 48, 12).chunk(u) for u in doc.units]
        second = [Chunker(E5TokenCounter(), 48, 12).chunk(u) for u in load(path).units]
        assert first == second
        assert sum(len(cs) for cs in first) > len(doc.units)


_ZH_SENTENCES = [
    "青松空气净化器适用于家庭卧室和小型办公室",
    "滤网建议每六个月更换一次",
    "如果家中有宠物和吸烟者建议缩短为每四个月更换一次",
    "睡眠模式下运行噪音低于二十五分贝几乎不会打扰您的休息",
    "为什么净化器运行时有异味",
    "新滤网在刚开始使用的几天内可能会有轻微气味这是正常现象",
    "请先关闭电源并拔下插头然后打开机身背部的后盖",
]


def test_chinese_without_spaces_splits_at_sentence_ends(counter: E5TokenCounter) -> None:
    ends = "。！？"
    text = "".join(s + ends[i % 3] for i, s in enumerate(_ZH_SENTENCES * 12))
    assert " " not in text and "\n" not in text
    unit = Unit(text)
    chunks = Chunker(counter, max_tokens=48, overlap=0).chunk(unit)
    assert_exact_slices(unit, chunks)
    assert len(chunks) >= 4
    for c in chunks[:-1]:
        assert c.text[-1] in ends, c.text
    for c in chunks[1:]:
        assert unit.text[c.start - 1] in ends, "each chunk starts at a sentence start"
    assert "".join(c.text for c in chunks) == text


@pytest.mark.parametrize(
    "line",
    [
        "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(80))[:5000],
        ("的空气净化器滤网" * 700)[:5000],
    ],
    ids=["hex", "cjk"],
)
def test_single_long_line_without_spaces_is_hard_split(counter: E5TokenCounter, line: str) -> None:
    assert len(line) == 5000 and " " not in line
    unit = Unit(line)
    chunks = Chunker(counter, max_tokens=128, overlap=0).chunk(unit)
    assert_exact_slices(unit, chunks)
    assert len(chunks) > 2
    for c in chunks:
        assert counter.count(c.text) <= 128
    assert chunks[0].start == 0 and chunks[-1].end == 5000
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        assert nxt.start == prev.end
    assert "".join(c.text for c in chunks) == line


def test_code_mode_splits_at_lines(counter: E5TokenCounter) -> None:
    lines = [f'    log.info("Step {i} done. Next step starts now. Really.")  # note {i}' for i in range(60)]
    text = "def run(log):\n" + "\n".join(lines) + "\n"
    unit = Unit(text)
    code_chunks = Chunker(counter, max_tokens=40, overlap=0).chunk(unit, code=True)
    assert_exact_slices(unit, code_chunks)
    assert len(code_chunks) > 3
    for c in code_chunks:
        assert text[: c.start].rsplit("\n", 1)[-1].strip() == "", "starts at a line start"
        assert text[c.end :].split("\n", 1)[0] == "", "ends at a line end"
        assert counter.count(c.text) <= 40
    # Prose mode on the same text splits inside lines, at the sentences in the strings.
    prose_chunks = Chunker(counter, max_tokens=40, overlap=0).chunk(unit)
    assert any(text[c.end :].split("\n", 1)[0] != "" for c in prose_chunks)


def test_code_file_from_data_splits_at_lines(counter: E5TokenCounter) -> None:
    doc = load(DATA / "tools" / "export_report.py")
    assert doc.kind == "code"
    unit = doc.units[0]
    text = unit.text
    chunks = Chunker(counter, max_tokens=48, overlap=8).chunk(unit, code=True)
    assert_exact_slices(unit, chunks)
    assert len(chunks) > 2
    for c in chunks:
        assert text[: c.start].rsplit("\n", 1)[-1].strip() == ""
        assert text[c.end :].split("\n", 1)[0] == ""


# -- walker ----------------------------------------------------------------------------------


def test_walker_skips_hidden_and_junk(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    files = {
        "a.txt": "a",
        "guide.md": "# g",
        "image.png": "x",
        "sub/b.md": "b",
        "sub/deeper/c.py": "c = 1",
        ".hidden.md": "h",
        ".secret/inside.md": "s",
        ".git/config.txt": "g",
        "node_modules/pkg/index.js": "j",
        ".venv/lib/site.py": "v",
        "venv/lib/x.py": "v",
        "sub/__pycache__/m.py": "p",
        "sub/.cache/x.md": "c",
    }
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    found_root, candidates = walk(root)
    cands = list(candidates)
    assert found_root == root.resolve()
    sources = [c.source for c in cands]
    assert sorted(sources) == ["a.txt", "guide.md", "image.png", "sub/b.md", "sub/deeper/c.py"]
    assert all("\\" not in s and not s.startswith("/") for s in sources)
    kinds = {c.source: c.kind for c in cands}
    assert kinds["image.png"] is None and kinds["sub/deeper/c.py"] == "code"
    assert all(c.path.is_absolute() and c.path.is_file() for c in cands)


def test_walker_on_a_single_file(tmp_path: Path) -> None:
    path = tmp_path / "one" / "notes.md"
    path.parent.mkdir()
    path.write_text("# n")
    root, candidates = walk(path)
    [cand] = list(candidates)
    assert root == path.parent.resolve()
    assert cand.source == "notes.md" and cand.kind == "markdown"


def test_walker_on_data_dir() -> None:
    root, candidates = walk(DATA)
    sources = sorted(c.source for c in candidates)
    assert "zh/q7-air-purifier.md" in sources
    assert "tools/export_report.py" in sources
    assert "x200-user-guide.pdf" in sources
    assert all(re.fullmatch(r"[\w./-]+", s) for s in sources)


# -- PDF text layout ---------------------------------------------------------------------------
GLUED = Path(__file__).parent / "data" / "pdf" / "linuxcnc-about.pdf"  # a real manual page, see its README


def test_pdf_words_kept_apart_where_pypdf_glues_them() -> None:
    from pypdf import PdfReader

    glued = PdfReader(str(GLUED)).pages[0].extract_text()
    assert "controlledmachinesupto9axes" in glued  # the fixture shows the problem ...
    (unit,) = load(GLUED).units
    # ... and the loader's text has the words apart, the line-end hyphen joined, the page kept.
    assert "controlled machines up to 9 axes." in unit.text
    assert "Current versions of LinuxCNC are entirely licensed under the GNU General Public License" in unit.text
    assert "\ufffe" not in unit.text and "\r" not in unit.text
    assert unit.page == 1


def test_pdf_words_apart_reach_the_keyword_index(settings: Settings, tmp_path: Path) -> None:
    # Through the real ingest (PDF worker process, Chroma in tmp_path, keyword index): a word
    # that pypdf would have glued to its neighbours is found by a keyword search.
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / GLUED.name).write_bytes(GLUED.read_bytes())
    with Rag(settings, embedder=FakeEmbedder(settings.embed_model_name), chat=FakeChat()) as r:
        assert r.ingest([folder]).count("added") == 1
        hits = r.search("lathes up to 9 axes", k=3, mode="keyword")
    assert hits and hits[0].source == GLUED.name and hits[0].page == 1
    assert "machines up to 9 axes" in hits[0].text
