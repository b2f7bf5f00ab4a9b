"""Check the retrieval-evaluation question sets against the corpora they point into.

Usage: check_eval_sets.py CORPUS_DIR... [--sets FILE.jsonl...]

Each CORPUS_DIR is made by scripts/eval_corpora.sh (OUTDIR/sqlite3-doc, OUTDIR/gnuplot-doc,
OUTDIR/debian-edu-doc-zh, OUTDIR/linuxcnc-doc-zh); its questions are data/eval/<folder name>.jsonl
unless --sets names the files (same order; the demo set: `data --sets data/eval/demo.jsonl`).

An answerable line must have valid fields, existing expected files (pages in range), and its
evidence in every expected location's text (PDF: the page as the ingest loader reads it; anything
else: tags stripped with html.parser), compared case-insensitively with whitespace normalised. The evidence is
the location's own "evidence" (for pages that say it in other words), else the line's "evidence",
else its "answer_text", else its "answer" when that is a string. "answer" is either free text (the
older lines) or a list of regular expressions, any of which matching means a right answer: they
must compile, and one must match (case-insensitively) the evidence or "answer_text". An
unanswerable line ("unanswerable": true) has a question and no "expected". Exit 1 on failure.
"""

import argparse
import json
import re
import sys
from collections import Counter
from functools import cache
from html.parser import HTMLParser
from pathlib import Path

SETS_DIR = Path(__file__).resolve().parent.parent / "data" / "eval"
KINDS = {"exact", "paraphrase"}
UNANSWERABLE_KINDS = {"unanswerable", "offtopic"}


class _Text(HTMLParser):
    SKIP = {"script", "style", "noscript", "template", "svg", "head"}
    BLOCK = {"p", "div", "li", "tr", "td", "th", "br", "pre", "table", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, 1)

    def handle_endtag(self, tag: str) -> None:
        self._tag(tag, -1)

    def _tag(self, tag: str, step: int) -> None:
        if tag in self.SKIP:
            self.skip = max(0, self.skip + step)
        elif tag in self.BLOCK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def norm(text: str) -> str:
    return " ".join(text.split()).casefold()


@cache
def html_text(path: Path) -> str:
    parser = _Text()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    return norm("".join(parser.parts))


@cache
def pdf_pages(path: Path) -> tuple[str, ...]:
    from ingest.loaders import load_pdf

    return tuple(norm(unit.text) for unit in load_pdf(path))


def check_answer(obj: dict[str, object]) -> list[str]:
    """``answer``: free text, or regexes of which one matches the evidence or ``answer_text``."""
    answer = obj.get("answer")
    if isinstance(answer, str):
        return [] if answer.strip() else ["empty 'answer'"]
    if not isinstance(answer, list) or not answer or not all(isinstance(a, str) and a for a in answer):
        return ["'answer' must be text or a non-empty list of regular expressions"]
    errors = []
    for a in answer:
        try:
            re.compile(a)
        except re.error as exc:
            errors.append(f"answer regex {a!r}: {exc}")
    if errors:
        return errors
    said = " ".join(str(obj.get(k) or "") for k in ("answer_text", "evidence"))
    if not any(re.search(a, said, re.IGNORECASE) for a in answer):
        errors.append(f"no answer regex matches the answer_text/evidence {said!r}")
    return errors


def check_line(obj: object, root: Path) -> list[str]:
    if not isinstance(obj, dict):
        return ["not a JSON object"]
    if not isinstance(obj.get("question"), str) or not obj["question"].strip():
        return ["missing or empty 'question'"]
    if obj.get("unanswerable") is not None:
        if obj["unanswerable"] is not True:
            return ["'unanswerable' must be true when present"]
        errors = ["an unanswerable line has no 'expected'"] if obj.get("expected") else []
        if obj.get("kind", "unanswerable") not in UNANSWERABLE_KINDS:
            errors.append(f"kind of an unanswerable line must be one of {sorted(UNANSWERABLE_KINDS)}")
        return errors
    errors = check_answer(obj)
    if obj.get("kind") not in KINDS:
        errors.append(f"kind must be one of {sorted(KINDS)}")
    expected = obj.get("expected")
    if not isinstance(expected, list) or not expected:
        return [*errors, "'expected' must be a non-empty list"]
    answer = obj.get("answer")
    default = obj.get("evidence") or obj.get("answer_text") or (answer if isinstance(answer, str) else "")
    for loc in expected:
        source = loc.get("source") if isinstance(loc, dict) else None
        if not isinstance(source, str) or not source:
            errors.append(f"bad expected entry {loc!r}")
            continue
        needle = norm(str(loc.get("evidence") or default))
        if not needle:
            continue
        path = root / source
        if not path.is_file():
            errors.append(f"{source}: no such file under {root}")
            continue
        if path.suffix.lower() == ".pdf":
            pages = pdf_pages(path)
            page = loc.get("page")
            if not isinstance(page, int) or not 1 <= page <= len(pages):
                errors.append(f"{source}: page {page!r} not in 1..{len(pages)}")
                continue
            text, where = pages[page - 1], f"{source} p.{page}"
        else:
            text, where = html_text(path), source
        if needle not in text:
            errors.append(f"{where}: evidence {needle!r} not found")
    return errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpora", nargs="+", type=Path, help="corpus root folders (OUTDIR/sqlite3-doc ...)")
    ap.add_argument("--sets", nargs="+", type=Path, help="question files, one per corpus, in the same order")
    args = ap.parse_args(argv)
    sets = args.sets or [SETS_DIR / f"{c.resolve().name}.jsonl" for c in args.corpora]
    if len(sets) != len(args.corpora):
        ap.error("give one --sets file per corpus folder")
    failed = 0
    for root, set_path in zip(args.corpora, sets, strict=True):
        kinds: Counter[str] = Counter()
        sources: set[tuple[str, int | None]] = set()
        questions: Counter[str] = Counter()
        lines = set_path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                errors = [f"invalid JSON: {exc}"]
            else:
                errors = check_line(obj, root)
                if isinstance(obj, dict):
                    kinds[str(obj.get("kind") or ("unanswerable" if obj.get("unanswerable") else None))] += 1
                    questions[norm(str(obj.get("question")))] += 1
                    for loc in obj.get("expected") or []:
                        if isinstance(loc, dict):
                            sources.add((str(loc.get("source")), loc.get("page")))
            for err in errors:
                print(f"FAIL {set_path.name}:{number}: {err}")
            failed += bool(errors)
        dupes = [q for q, n in questions.items() if n > 1]
        print("".join(f"FAIL {set_path.name}: duplicate question {q!r}\n" for q in dupes), end="")
        failed += len(dupes)
        by_kind = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        unanswerable = sum(n for k, n in kinds.items() if k in UNANSWERABLE_KINDS)
        print(
            f"{set_path.name}: {sum(kinds.values())} questions ({by_kind}; answerable "
            f"{sum(kinds.values()) - unanswerable}, unanswerable {unanswerable}); {len(sources)} expected locations"
        )
    print("all lines pass" if not failed else f"{failed} failing line(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
