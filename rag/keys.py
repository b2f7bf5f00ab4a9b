"""API keys: the keys file (``RAG_API_KEYS_FILE``), its scopes, and the keys in force (:class:`KeyRing`).

The file holds no secret, only the SHA-256 of each key, with a name, scopes and a creation time::

    {"keys": [{"name": "alice", "sha256": "…", "collections": ["*"], "access": "read",
               "created": "2025-01-01T00:00:00Z"}]}

(a ``.toml`` file holds the same as ``[[keys]]`` tables). Why a plain SHA-256 and not a slow, salted
hash: the keys we make are 32 random bytes (``rag keys create``), so no dictionary or brute force can
reach them and a slow hash would only slow every request; an unsalted hash also keeps the lookup one
dictionary access. Keys chosen by people belong in ``RAG_API_KEYS`` (full access), not here.

``access`` is ``read`` or ``write`` (write implies read); ``collections`` lists names, ``*`` all.
The file is written atomically (a temporary file renamed over it) with mode 0600, under a lock so
two ``rag keys`` commands never lose each other's change. A running service re-reads it when its
modification time changes (a stat at most once a second), so a revoked key stops working at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from rag.errors import ConfigError, InvalidRequestError

Access = Literal["read", "write"]
ACCESS: tuple[Access, ...] = get_args(Access)
ALL = "*"
KEY_PREFIX = "rag_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
RELOAD_SECONDS = 1.0

log = logging.getLogger("rag.keys")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> str:
    """A new key: 32 random bytes, URL-safe (``rag_`` + 43 characters)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Scope:
    """What a key may do: ``access`` on ``collections`` (``("*",)``: every collection)."""

    collections: tuple[str, ...] = (ALL,)
    access: Access = "write"

    def can(self, collection: str, access: Access) -> bool:
        if access == "write" and self.access != "write":
            return False
        return ALL in self.collections or collection in self.collections


FULL = Scope()


@dataclass(frozen=True)
class KeyEntry:
    name: str
    sha256: str
    collections: tuple[str, ...]
    access: Access
    created: str

    @property
    def scope(self) -> Scope:
        return Scope(self.collections, self.access)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"collections": list(self.collections)}


def _entry(raw: Any, path: Path) -> KeyEntry:
    try:
        name, digest, access = raw["name"], raw["sha256"], raw.get("access", "read")
        collections = tuple(raw.get("collections", [ALL]))
    except (TypeError, KeyError) as exc:
        raise ConfigError(f"{path}: a key without {exc}; fix it or recreate it with `rag keys create`.") from None
    if access not in ACCESS or not re.fullmatch(r"[0-9a-f]{64}", str(digest)):
        raise ConfigError(f"{path}: key '{name}' has an invalid access or sha256.")
    if not all(isinstance(c, str) and c for c in collections):
        raise ConfigError(f"{path}: key '{name}' has an invalid collection list.")
    return KeyEntry(str(name), str(digest), collections, access, str(raw.get("created", "")))


def load(path: Path) -> list[KeyEntry]:
    """The keys of ``path``; none if it does not exist. A ``ConfigError`` if it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"Cannot read the keys file {path}: {exc.strerror}.") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else (json.loads(text) if text.strip() else {})
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise ConfigError(f"The keys file {path} is not valid {kind}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys", []), list):
        raise ConfigError(f"The keys file {path} must hold an object with a 'keys' list.")
    return [_entry(raw, path) for raw in data.get("keys", [])]


def _toml(entries: list[KeyEntry]) -> str:
    out = []
    for e in entries:
        out.append("[[keys]]")
        for field, value in e.to_dict().items():
            out.append(f"{field} = {json.dumps(value)}")
        out.append("")
    return "\n".join(out)


def save(path: Path, entries: list[KeyEntry]) -> None:
    """Write ``entries`` to ``path`` atomically, mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".toml":
        text = _toml(entries)
    else:
        text = json.dumps({"keys": [e.to_dict() for e in entries]}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def create(path: Path, name: str, collections: Iterable[str] = (ALL,), access: Access = "read") -> str:
    """Add a key named ``name`` to the file and return it (the only time it is seen)."""
    if not NAME.match(name):
        raise InvalidRequestError(f"Invalid key name '{name}': letters, digits, '.', '_', '-', '@', up to 64.")
    if access not in ACCESS:
        raise InvalidRequestError(f"Access must be one of {', '.join(ACCESS)}, not '{access}'.")
    cols = tuple(dict.fromkeys(collections)) or (ALL,)
    with _locked(path):
        entries = load(path)
        if any(e.name == name for e in entries):
            raise InvalidRequestError(f"A key named '{name}' exists; revoke it first or choose another name.")
        key = new_key()
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        save(path, [*entries, KeyEntry(name, hash_key(key), cols, access, created)])
    return key


def revoke(path: Path, name: str) -> bool:
    """Remove the key named ``name``; False if there is none."""
    with _locked(path):
        entries = load(path)
        kept = [e for e in entries if e.name != name]
        if len(kept) == len(entries):
            return False
        save(path, kept)
    return True


class KeyRing:
    """The keys in force: ``full`` keys (``RAG_API_KEYS``, every collection, read and write) and the
    keys file, re-read when it changes. Auth is on when either is configured, even if the file is
    empty or missing (then only the full keys work, or none)."""

    def __init__(self, full: Iterable[str] = (), path: Path | None = None, clock: Callable[[], float] = time.monotonic):
        self._full = [hash_key(k) for k in full if k]
        self.path = path
        self._clock = clock
        self._checked = -RELOAD_SECONDS
        self._stamp: tuple[int, int, int] | None = None
        self._by_hash: dict[str, KeyEntry] = {}

    @classmethod
    def from_settings(cls, api_keys: str | None, api_keys_file: Path | None) -> KeyRing:
        return cls([k.strip() for k in (api_keys or "").split(",") if k.strip()], api_keys_file)

    @property
    def enabled(self) -> bool:
        return bool(self._full) or self.path is not None

    def _refresh(self) -> None:
        now = self._clock()
        if self.path is None or now - self._checked < RELOAD_SECONDS:
            return
        self._checked = now
        try:
            st = self.path.stat()
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._by_hash = {e.sha256: e for e in load(self.path)}
        except ConfigError as exc:  # fail closed: no file key works until the file is fixed
            log.error("%s; no key of the file is accepted until it is fixed", exc.message)
            self._by_hash = {}

    def lookup(self, key: str) -> tuple[str, Scope] | None:
        """The (key id, scope) of ``key``; None if it is not a key in force. The key id is the file
        entry's name, or ``key-`` and 8 hex digits of the hash for a full key: never the key."""
        self._refresh()
        digest = hash_key(key)
        # Every full key is compared (no early exit), each in constant time; the file's lookup is by
        # hash, which tells a timing observer nothing about the key itself.
        full = False
        for h in self._full:
            full |= hmac.compare_digest(digest, h)
        if full:
            return "key-" + digest[:8], FULL
        entry = self._by_hash.get(digest)
        if entry is not None and hmac.compare_digest(digest, entry.sha256):
            return entry.name, entry.scope
        return None
