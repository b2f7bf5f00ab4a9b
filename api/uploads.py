"""Uploads: the names they may take and the bytes they may bring.

- :func:`clean_name` / :func:`clean_folder`: a file name (basename only) and a folder inside the
  collection's upload folder, made safe to join to it (no path parts, control characters, leading
  dots or ``..``; NFC; length-capped). Look-alikes of ``/`` such as ``∕`` (U+2215) stay characters.
- :class:`Receiver`: a ``multipart/form-data`` body parsed as it arrives, each file streamed to a
  hidden temporary file beside the collection's uploads and capped at ``RAG_MAX_UPLOAD_MB`` while
  it streams (413 beyond); :meth:`Receiver.store` moves them into place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from fastapi.concurrency import run_in_threadpool
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from ingest.loaders import kind_of
from rag.errors import InvalidRequestError, RagError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_NAME_BYTES = 200  # a file system takes 255; room for the temporary name's prefix
MAX_FOLDER_DEPTH = 16
MAX_FILES = 100  # files per request
MAX_FIELD_BYTES = 4096  # a form field that is not a file (``folder``)
TEMP_PREFIX = ".upload-"  # hidden: the walker never ingests a file still arriving
# Unicode's format characters that reorder what a name shows (bidirectional overrides and isolates).
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)}


class TooLargeError(RagError):
    code = "too_large"
    status = 413


class UnsupportedTypeError(RagError):
    code = "unsupported_type"
    status = 415


class DiskFullError(RagError):
    code = "insufficient_storage"
    status = 507


def _bad_chars(text: str) -> str | None:
    if "\x00" in text:
        return "a NUL byte"
    for ch in text:
        if unicodedata.category(ch) == "Cc" or ch in _BIDI:
            return f"a control character (U+{ord(ch):04X})"
    return None


def clean_name(raw: str) -> str:
    """The name an uploaded file is stored under: its last path part (``/`` and ``\\`` separate),
    NFC-normalised, leading dots and spaces and trailing dots and spaces removed, at most
    ``MAX_NAME_BYTES`` of UTF-8 (the end of the stem is cut, the extension kept). A NUL byte, a
    control character, or nothing left is a 400."""
    bad = _bad_chars(raw)
    if bad:
        raise InvalidRequestError(f"The file name {raw!r} contains {bad}.")
    name = unicodedata.normalize("NFC", re.split(r"[/\\]", raw)[-1]).lstrip(". ").rstrip(". ")
    if not name:
        raise InvalidRequestError(f"The file name {raw!r} has no usable name in it.")
    if len(name.encode()) > MAX_NAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        if not dot or len(ext.encode()) > 16:
            stem, dot, ext = name, "", ""
        budget = MAX_NAME_BYTES - len((dot + ext).encode())
        stem = stem.encode()[:budget].decode("utf-8", "ignore").rstrip(". ")
        name = stem + dot + ext
    return name


def clean_folder(raw: str | None) -> list[str]:
    """The parts of a folder inside the collection's uploads: relative, ``/``-separated, each part
    a plain name (no ``.``, ``..``, leading dot, ``\\``, NUL or control character, at most
    ``MAX_NAME_BYTES``). Anything else is a 400, never silently changed: it would store the file
    somewhere the caller did not ask for."""
    if raw is None or raw.strip("/") == "":
        if raw and raw.startswith("/"):
            raise InvalidRequestError("'folder' must be a relative folder inside the collection's uploads.")
        return []
    bad = _bad_chars(raw)
    if bad:
        raise InvalidRequestError(f"The folder {raw!r} contains {bad}.")
    if raw.startswith("/") or "\\" in raw or re.match(r"^[A-Za-z]:", raw):
        raise InvalidRequestError(f"The folder {raw!r} must be relative, with '/' between its parts.")
    parts = [unicodedata.normalize("NFC", p) for p in raw.strip("/").split("/")]
    if len(parts) > MAX_FOLDER_DEPTH:
        raise InvalidRequestError(f"The folder {raw!r} is deeper than {MAX_FOLDER_DEPTH} levels.")
    for part in parts:
        if part in ("", ".", "..") or part.startswith(".") or part != part.strip():
            raise InvalidRequestError(f"The folder {raw!r} has an invalid part {part!r}.")
        if len(part.encode()) > MAX_NAME_BYTES:
            raise InvalidRequestError(f"A part of the folder {raw!r} is longer than {MAX_NAME_BYTES} bytes.")
    return parts


def inside(path: Path, root: Path) -> bool:
    """Whether ``path``, resolved (symlinks included), is ``root`` or under it (``root`` resolved)."""
    return path.resolve().is_relative_to(root.resolve())


@dataclass
class Incoming:
    name: str
    temp: Path
    handle: IO[bytes] | None
    bytes: int = 0


@dataclass
class Stored:
    name: str
    source: str  # relative to the collection's upload folder: the name the index shows
    bytes: int


@dataclass
class Receiver:
    """Parses one multipart body into hidden temporary files in ``folder`` (the collection's upload
    folder). Use as a context manager: whatever was not stored is removed on the way out."""

    folder: Path
    max_bytes: int
    files: list[Incoming] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _header: bytes = b""
    _value: bytes = b""
    _field: tuple[str, bytearray] | None = None

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        for f in self.files:
            if f.handle is not None:
                f.handle.close()
            with contextlib.suppress(FileNotFoundError):
                f.temp.unlink()

    async def read(self, content_type: str, body: AsyncIterator[bytes]) -> None:
        ctype, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            raise InvalidRequestError("Send the files as multipart/form-data, in fields named 'files'.")
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }
        parser = MultipartParser(boundary, callbacks, max_header_count=8)
        try:
            async for chunk in body:
                await run_in_threadpool(parser.write, chunk)  # file writes off the event loop
            await run_in_threadpool(parser.finalize)
        except FormParserError as exc:
            raise InvalidRequestError(f"The multipart body is malformed: {exc}") from None
        if not self.files:
            raise InvalidRequestError("No file in the request: send one or more in fields named 'files'.")

    # -- parser callbacks (raising stops the parse; __exit__ cleans up) --------------------------
    def _part_begin(self) -> None:
        self._headers, self._header, self._value = {}, b"", b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header.lower()] = self._value
        self._header, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b"").decode("latin-1"))
        try:
            name = options.get(b"name", b"").decode()
            filename = options[b"filename"].decode() if b"filename" in options else None
        except UnicodeDecodeError:
            raise InvalidRequestError("A part's name or file name is not UTF-8.") from None
        if filename is None:
            self._field = (name, bytearray())
            return
        self._field = None
        if name != "files":
            raise InvalidRequestError(f"Files go in fields named 'files', not {name!r}.")
        if len(self.files) >= MAX_FILES:
            raise InvalidRequestError(f"At most {MAX_FILES} files per request.")
        clean = clean_name(filename)
        if kind_of(Path(clean)) is None:
            raise UnsupportedTypeError(f"{clean!r}: this type of file cannot be indexed.")
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".part", dir=self.folder)
        self.files.append(Incoming(clean, Path(temp), os.fdopen(fd, "wb")))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._field is not None:
            self._field[1].extend(data[start:end])
            if len(self._field[1]) > MAX_FIELD_BYTES:
                raise InvalidRequestError(f"The form field {self._field[0]!r} is too long.")
            return
        f = self.files[-1]
        f.bytes += end - start
        if f.bytes > self.max_bytes:
            raise TooLargeError(
                f"{f.name!r} is larger than {self.max_bytes / 1024 / 1024:g} MB (RAG_MAX_UPLOAD_MB): not stored."
            )
        assert f.handle is not None
        _write(f.handle, data[start:end])

    def _part_end(self) -> None:
        if self._field is not None:
            try:
                self.fields[self._field[0]] = self._field[1].decode()
            except UnicodeDecodeError:
                raise InvalidRequestError(f"The form field {self._field[0]!r} is not UTF-8.") from None
            self._field = None
        elif self.files and self.files[-1].handle is not None:
            handle, self.files[-1].handle = self.files[-1].handle, None
            try:
                handle.flush()
                os.fsync(handle.fileno())
            except OSError as exc:
                raise _disk_error(exc) from None
            finally:
                handle.close()

    # -- into place ---------------------------------------------------------------------------
    def store(self, parts: list[str]) -> list[Stored]:
        """Move every file to ``folder/parts.../name`` (replacing a file of that name)."""
        target = self.folder.joinpath(*parts)
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise InvalidRequestError("Two files in the request have the same name.")
        try:
            target.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise InvalidRequestError("The folder names an uploaded file, not a folder.") from None
        except OSError as exc:
            raise _disk_error(exc) from None
        if not inside(target, self.folder):
            raise InvalidRequestError("The folder leads outside the collection's uploads.")
        out = []
        for f in self.files:
            dest = target / f.name
            if dest.is_symlink() or dest.is_dir():
                raise InvalidRequestError(f"{'/'.join([*parts, f.name])!r} is a folder or a link: not replaced.")
            os.replace(f.temp, dest)
            out.append(Stored(f.name, "/".join([*parts, f.name]), f.bytes))
        self.files = []
        return out


def _write(handle: IO[bytes], data: bytes) -> None:
    try:
        handle.write(data)
    except OSError as exc:
        raise _disk_error(exc) from None


def _disk_error(exc: OSError) -> RagError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError("The server's disk is full: the upload was not stored, and nothing was indexed.")
    return RagError(f"Could not store the upload: {exc.strerror or 'I/O error'}.", code="upload_failed")
