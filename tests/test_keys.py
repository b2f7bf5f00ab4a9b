"""Issue 15 item 1: the keys file (rag/keys.py) and `rag keys create|list|revoke`; `rag serve`
refusing a non-loopback address with no keys."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from conftest import clean_env, invoke_cli

from rag import keys
from rag.cli_query import _loopback


def env_for(path: Path) -> dict[str, str]:
    return clean_env(RAG_API_KEYS_FILE=str(path))


def test_create_list_revoke(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "keys.json"
    made = invoke_cli(
        "keys", "create", "--name", "alice", "--collection", "docs", "--access", "write", env=env_for(path)
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("rag_") and len(key) >= 40 and "\n" not in key
    assert "shown only now" in made.stderr and key not in made.stderr
    bob = invoke_cli("keys", "create", "--name", "bob", env=env_for(path))
    assert bob.returncode == 0, bob.stderr

    text = path.read_text()
    assert key not in text and keys.hash_key(key) in text
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    entries = {e.name: e for e in keys.load(path)}
    assert entries["alice"].collections == ("docs",) and entries["alice"].access == "write"
    assert entries["bob"].collections == ("*",) and entries["bob"].access == "read"

    listed = invoke_cli("keys", "list", env=env_for(path))
    assert listed.returncode == 0 and "alice" in listed.stdout and "docs" in listed.stdout and key not in listed.stdout
    as_json = json.loads(invoke_cli("keys", "list", "--json", env=env_for(path)).stdout)
    assert [k["name"] for k in as_json] == ["alice", "bob"] and all("sha256" not in k for k in as_json)

    assert invoke_cli("keys", "revoke", "alice", env=env_for(path)).returncode == 0
    assert [e.name for e in keys.load(path)] == ["bob"]
    again = invoke_cli("keys", "revoke", "alice", env=env_for(path))
    assert again.returncode == 1 and "no key named 'alice'" in again.stderr


def test_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    assert invoke_cli("keys", "create", "--name", "a", env=env_for(path)).returncode == 0
    dup = invoke_cli("keys", "create", "--name", "a", env=env_for(path))
    assert dup.returncode == 1 and "exists" in dup.stderr and "Traceback" not in dup.stderr
    bad = invoke_cli("keys", "create", "--name", "a b/c", env=env_for(path))
    assert bad.returncode == 1 and "Invalid key name" in bad.stderr
    nofile = invoke_cli("keys", "list", env=clean_env())
    assert nofile.returncode == 1 and "RAG_API_KEYS_FILE" in nofile.stderr
    path.write_text("{broken")
    broken = invoke_cli("keys", "list", env=env_for(path))
    assert broken.returncode == 1 and "not valid JSON" in broken.stderr and "Traceback" not in broken.stderr


def test_a_toml_file_and_the_file_option(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    made = invoke_cli(
        "keys", "create", "--name", "ci", "--collection", "a", "--collection", "b", "--file", str(path), env=clean_env()
    )
    assert made.returncode == 0, made.stderr
    data = tomllib.loads(path.read_text())
    assert data["keys"][0]["name"] == "ci" and data["keys"][0]["collections"] == ["a", "b"]
    ring = keys.KeyRing(path=path)
    found = ring.lookup(made.stdout.strip())
    assert found is not None and found[0] == "ci"
    assert found[1].can("a", "read") and not found[1].can("a", "write") and not found[1].can("c", "read")


def test_keyring_full_keys_and_reload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    path = tmp_path / "keys.json"
    ring = keys.KeyRing(["s3cret-full"], path, clock=lambda: now[0])
    assert ring.enabled and ring.lookup("nope") is None
    full = ring.lookup("s3cret-full")
    assert full is not None and full[0].startswith("key-") and "s3cret" not in full[0] and full[1] == keys.FULL
    key = keys.create(path, "late", ["x"], "write")
    assert ring.lookup(key) is None  # read at most once a second
    now[0] += 1.5
    found = ring.lookup(key)
    assert found is not None and found[1].can("x", "write")
    keys.revoke(path, "late")
    now[0] += 1.5
    assert ring.lookup(key) is None
    assert not keys.KeyRing.from_settings(" , ", None).enabled
    assert keys.KeyRing.from_settings("a, b", None).lookup("b") is not None


def test_serve_refuses_a_public_address_without_keys() -> None:
    proc = invoke_cli("serve", "--host", "0.0.0.0", "--port", "1", env=clean_env(), timeout=60)
    assert proc.returncode == 1
    for fix in ("RAG_API_KEYS", "rag keys create", "--insecure"):
        assert fix in proc.stderr
    assert _loopback("127.0.0.1") and _loopback("::1") and _loopback("localhost") and _loopback("127.0.0.2")
    assert not _loopback("0.0.0.0") and not _loopback("192.168.1.5") and not _loopback("example.org")
