"""Finding the files to ingest under the paths a user names."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "site-packages",
    ".idea",
    ".vscode",
}


@dataclass
class Candidate:
    root: Path  # absolute; sources are stored relative to it
    path: Path
    kind: str | None  # None: unsupported, reported as skipped

    @property
    def source(self) -> str:
        return self.path.relative_to(self.root).as_posix()


def walk(target: Path) -> tuple[Path, Iterator[Candidate]]:
    """The root for ``target`` and its candidate files, sorted for a stable order."""
    target = target.resolve()
    if target.is_file():
        root = target.parent
        return root, iter([Candidate(root, target, kind_of(target))])
    return target, _walk_dir(target)


def _walk_dir(root: Path) -> Iterator[Candidate]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in JUNK_DIRS)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            yield Candidate(root, path, kind_of(path))
