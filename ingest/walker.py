"""Finding the files to ingest under the paths a user names.

Directories are walked iteratively (any depth), in sorted order, following
directory symlinks once: a link back to an enclosing folder, or to a folder
already walked, is reported and not descended.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pathspec import GitIgnoreSpec

from ingest.loaders import kind_of

# Folders nobody means to index: VCS metadata, dependency trees, virtual environments, caches.
JUNK_DIRS = {
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "__pycache__",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "site-packages",
    ".idea",
    ".vscode",
}


@dataclass
class Selection:
    """Which files under a folder are ingested. Globs use .gitignore syntax and match
    the path relative to the folder (``*.md``, ``drafts/``, ``docs/**/*.pdf``)."""

    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    hidden: bool = False  # dot-files and dot-folders
    junk: bool = False  # .git, node_modules, virtual environments, caches
    gitignore: bool = False  # honour .gitignore files found while walking

    def __post_init__(self) -> None:
        self._include = GitIgnoreSpec.from_lines(self.include) if self.include else None
        self._exclude = GitIgnoreSpec.from_lines(self.exclude) if self.exclude else None

    def describe(self) -> dict[str, object]:
        return {
            "include": list(self.include),
            "exclude": list(self.exclude),
            "hidden": self.hidden,
            "junk": self.junk,
            "gitignore": self.gitignore,
        }


@dataclass
class Candidate:
    root: Path  # absolute; sources are stored relative to it
    path: Path  # absolute, not resolved (a symlink keeps its own name)
    kind: str | None  # None: unsupported type
    size: int = 0
    mtime_ns: int = 0
    error: str | None = None  # could not even stat it
    skip_reason: str | None = None  # not a file to ingest (reported, not failed)

    @property
    def key(self) -> str:
        return str(self.path)

    @property
    def source(self) -> str:
        return self.path.relative_to(self.root).as_posix()


@dataclass
class _Dir:
    path: Path
    ancestors: frozenset[tuple[int, int]]
    ignores: list[tuple[Path, GitIgnoreSpec]] = field(default_factory=list)


def walk(target: Path, selection: Selection | None = None) -> tuple[Path, list[Candidate]]:
    """The root for ``target`` and its candidate files, sorted by path."""
    selection = selection or Selection()
    target = Path(os.path.abspath(target))
    if not target.is_dir():
        root = target.parent.resolve()
        return root, [_candidate(root, root / target.name)]
    root = target.resolve()
    return root, _walk_dir(root, selection)


def _candidate(root: Path, path: Path) -> Candidate:
    cand = Candidate(root, path, kind_of(path))
    try:
        st = path.stat()
    except OSError as exc:
        cand.error = os_error_reason(path, exc)
        return cand
    cand.size, cand.mtime_ns = st.st_size, st.st_mtime_ns
    if not path.is_file():
        cand.skip_reason = "not a regular file"
    return cand


def os_error_reason(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.ENOENT and path.is_symlink():
        return f"broken symlink (points to {os.readlink(path)})"
    if exc.errno == errno.ENOENT:
        return "deleted while the run was in progress"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENAMETOOLONG:
        return "path too long"
    return exc.strerror or str(exc)


def _walk_dir(root: Path, sel: Selection) -> list[Candidate]:
    out: list[Candidate] = []
    st = root.stat()
    seen: dict[tuple[int, int], Path] = {(st.st_dev, st.st_ino): root}
    stack = [_Dir(root, frozenset(seen))]
    while stack:
        d = stack.pop()
        ignores = list(d.ignores)
        if sel.gitignore and (d.path / ".gitignore").is_file():
            try:
                lines = (d.path / ".gitignore").read_text(errors="replace").splitlines()
                ignores.append((d.path, GitIgnoreSpec.from_lines(lines)))
            except OSError:
                pass
        try:
            with os.scandir(d.path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            out.append(Candidate(root, d.path, None, error=f"cannot list folder: {os_error_reason(d.path, exc)}"))
            continue
        subdirs: list[_Dir] = []
        for entry in entries:
            path = Path(entry.path)
            rel = path.relative_to(root).as_posix()
            if entry.name.startswith(".") and not sel.hidden:
                continue
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                if (not sel.junk and _is_junk(path, entry.name)) or _ignored(sel, ignores, path, rel, True):
                    continue
                try:
                    dst = path.stat()
                except OSError as exc:
                    out.append(Candidate(root, path, None, error=os_error_reason(path, exc)))
                    continue
                ident = (dst.st_dev, dst.st_ino)
                if ident in d.ancestors:
                    out.append(Candidate(root, path, None, skip_reason="symlink loop: points to an enclosing folder"))
                elif ident in seen:
                    first = seen[ident].relative_to(root).as_posix()
                    out.append(Candidate(root, path, None, skip_reason=f"same folder as {first}/ (walked once)"))
                else:
                    seen[ident] = path
                    subdirs.append(_Dir(path, d.ancestors | {ident}, ignores))
                continue
            if _ignored(sel, ignores, path, rel, False):
                continue
            if sel._include is not None and not sel._include.match_file(rel):
                continue
            out.append(_candidate(root, path))
        stack.extend(reversed(subdirs))
    out.sort(key=lambda c: c.path.relative_to(root).parts)
    return out


def _is_junk(path: Path, name: str) -> bool:
    return name in JUNK_DIRS or (path / "pyvenv.cfg").is_file()


def _ignored(sel: Selection, ignores: list[tuple[Path, GitIgnoreSpec]], path: Path, rel: str, is_dir: bool) -> bool:
    suffix = "/" if is_dir else ""
    if sel._exclude is not None and sel._exclude.match_file(rel + suffix):
        return True
    # As git does: the deepest .gitignore with a matching pattern decides, so a nested
    # "!keep.log" re-includes what a parent's "*.log" ignored.
    for base, spec in reversed(ignores):
        decision = spec.check_file(path.relative_to(base).as_posix() + suffix).include
        if decision is not None:
            return bool(decision)
    return False
