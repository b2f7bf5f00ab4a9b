"""``POST /ingest``'s paths: only files and folders under ``RAG_INGEST_ROOTS``.

A path is resolved first, symlinks included (``Path.resolve(strict=True)``), and only then compared
with the roots (resolved too), so neither ``..`` nor a symlink leads out. NUL bytes, device files,
FIFOs and sockets are refused. Inside a folder, links that lead out of the roots are left out of the
walk (:func:`links_out`: excluded by the ``Selection``). Every refusal is logged on ``rag.serve``
(the path as given, ``repr``-quoted so control characters stay visible).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from rag.errors import InvalidRequestError, RagError
from rag.settings import Settings

log = logging.getLogger("rag.serve")
MAX_PATHS = 100


class OutsideRootsError(RagError):
    code = "forbidden_path"
    status = 403


def roots_of(settings: Settings) -> list[Path]:
    """The allowlist, resolved; an empty list: ``POST /ingest`` is off (403 naming the setting)."""
    roots = []
    for root in settings.ingest_root_list:
        try:
            roots.append(root.resolve(strict=True))
        except (OSError, RuntimeError):
            log.warning("RAG_INGEST_ROOTS: %r does not exist; left out", str(root))
    if not roots:
        raise RagError(
            "POST /ingest is off: set RAG_INGEST_ROOTS to the folders the service may read "
            "(separated by ',' or the path separator).",
            code="ingest_off",
            status=403,
        )
    return roots


def _refuse(raw: str, why: str, error: type[RagError] = InvalidRequestError) -> RagError:
    log.warning("POST /ingest refused %r: %s", raw, why)
    return error(f"Refused path {raw!r}: {why}.")


def check_path(raw: object, roots: list[Path]) -> Path:
    """``raw`` resolved, if it is a file or folder under one of ``roots`` (a relative path is taken
    relative to the first root). 400: not a string, a NUL byte, missing, a loop, not a regular file
    or folder; 403: outside the roots."""
    if not isinstance(raw, str) or not raw:
        raise _refuse(str(raw), "not a non-empty string")
    if "\x00" in raw:
        raise _refuse(raw, "it contains a NUL byte")
    given = Path(raw).expanduser() if raw.startswith("~") else Path(raw)
    if not given.is_absolute():
        given = roots[0] / given
    try:
        resolved = given.resolve(strict=True)
    except RuntimeError:
        raise _refuse(raw, "a symlink loop") from None
    except FileNotFoundError:
        # Say nothing about what lies outside the roots: a missing path there is refused like any other.
        if not any(Path(os.path.abspath(given)).is_relative_to(r) for r in roots):
            raise _refuse(raw, "outside RAG_INGEST_ROOTS", OutsideRootsError) from None
        raise _refuse(raw, "no such file or folder") from None
    except OSError as exc:
        raise _refuse(raw, exc.strerror or "cannot be resolved") from None
    if not any(resolved.is_relative_to(r) for r in roots):
        raise _refuse(raw, "outside RAG_INGEST_ROOTS", OutsideRootsError)
    mode = resolved.stat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise _refuse(raw, "not a regular file or folder (a device, FIFO or socket)")
    return resolved


def check_paths(raw: object, roots: list[Path]) -> list[Path]:
    if not isinstance(raw, list) or not raw:
        raise InvalidRequestError("'paths' must be a non-empty list of files or folders under RAG_INGEST_ROOTS.")
    if len(raw) > MAX_PATHS:
        raise InvalidRequestError(f"At most {MAX_PATHS} paths per request.")
    return [check_path(p, roots) for p in raw]


def _escape(rel: str) -> str:
    """A path as a .gitignore pattern matching only itself (anchored, wildcards escaped)."""
    return "/" + "".join("\\" + c if c in "*?[]!#\\" else c for c in rel)


def links_out(folder: Path, roots: list[Path]) -> list[str]:
    """Exclude patterns for the symlinks under ``folder`` that lead outside ``roots`` (or nowhere):
    the walk follows links, and must not follow these. Each is logged."""
    if not folder.is_dir():
        return []
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):  # does not descend into linked folders
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                continue
            try:
                target = path.resolve(strict=True)
                ok = any(target.is_relative_to(r) for r in roots)
            except (OSError, RuntimeError):
                ok = False
            if not ok:
                rel = path.relative_to(folder).as_posix()
                log.warning("POST /ingest left out %r: a symlink leading outside RAG_INGEST_ROOTS", str(path))
                out.append(_escape(rel))
    return out
