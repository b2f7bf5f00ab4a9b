"""Issue 15 item 1: API keys and scopes. Every route x {no key, wrong key, a key for another
collection, a read-only key on a write route, the right key} through the app (TestClient, a fake
OpenAI backend in this process); the collection a request names; and one real `rag serve` process
with a keys file (the openai SDK's AuthenticationError, scoped /v1/models, revoking without restart).

Adding a route to the matrix is one line in ROUTES."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import BIN, ServerProcess, clean_env, free_port
from fakes import FakeOpenAIServer
from fastapi.testclient import TestClient

from api.app import create_app
from rag import Rag, Settings, keys

Q = "How long is the warranty?"
CHAT = [{"role": "user", "content": Q}]
FULL_KEY = "full-access-key-0123456789"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    json: dict[str, Any] | None = None
    collection: str | None = "rag"  # the collection it touches; None: any valid key will do
    access: keys.Access = "read"
    ok: tuple[int, ...] = (200,)  # the right key's status (past auth: a job running may make it a 409)
    files: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        model = f" {self.json['model']}" if self.json and "model" in self.json else ""
        col = f" [{self.json['collection']}]" if self.json and "collection" in self.json else ""
        return f"{self.method} {self.path}{model}{col}"


ROUTES = [
    Route("POST", "/query", {"question": Q}),
    Route("POST", "/search", {"query": Q}),
    Route("POST", "/search", {"query": Q, "collection": "other"}, "other"),
    Route("POST", "/verify", {"text": "The warranty is 3 years."}),
    Route("POST", "/verify", {"text": "The warranty is 3 years.", "collection": "other"}, "other"),
    Route("GET", "/v1/models", collection=None),
    Route("POST", "/v1/chat/completions", {"model": "rag", "messages": CHAT}),
    Route("POST", "/v1/chat/completions", {"model": "rag:other", "messages": CHAT}, "other"),
    Route("POST", "/v1/chat/completions", {"model": "fake-chat-model", "messages": CHAT, "stream": True}, None),
    Route("POST", "/v1/embeddings", {"model": "fake-embed-a", "input": "hello"}, None),
    Route("GET", "/collections", collection=None),
    Route("GET", "/collections/rag/status"),
    Route("GET", "/collections/other/status", collection="other"),
    Route("GET", "/openapi.json", collection=None),
    Route("GET", "/docs", collection=None),
    Route("GET", "/redoc", collection=None),
    Route("GET", "/documents"),
    Route("GET", "/documents?collection=other", collection="other"),
    Route("GET", "/jobs", collection=None),
    Route("GET", "/jobs?collection=other", collection="other"),
    Route("POST", "/ingest", {"paths": ["missing.md"]}, access="write", ok=(400,)),
    Route("POST", "/documents", access="write", ok=(202, 409), files={"files": ("note.md", b"# Note\n\nHello.\n")}),
    Route("DELETE", "/documents/no-such-file.md", access="write", ok=(404, 409)),
]
CASES = ("no key", "wrong key", "another collection", "read-only on write", "right key", "full key")


@pytest.fixture(scope="module")
def backend() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def build_index(root: Path, fake: FakeOpenAIServer) -> Path:
    index = root / "index"
    for name, text in (("rag", "The X200 warranty lasts 3 years."), ("other", "The Z9 warranty lasts 5 years.")):
        docs = root / f"docs-{name}"
        docs.mkdir()
        (docs / f"{name}.md").write_text(f"# {name}\n\n{text}\n")
        settings = Settings(index_dir=index, collection=name, base_url=fake.base_url, embed_model="fake-embed-a")
        with Rag(settings) as r:
            r.ingest([docs])
    return index


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, backend: FakeOpenAIServer) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("auth")
    index = build_index(root, backend)
    keyfile = root / "keys.json"
    made = {
        "reader": keys.create(keyfile, "reader", ["rag", "other"], "read"),
        "writer": keys.create(keyfile, "writer", ["rag", "other"], "write"),
        "stranger": keys.create(keyfile, "stranger", ["third"], "write"),
    }
    (root / "allowed").mkdir()
    settings = Settings(
        index_dir=index,
        base_url=backend.base_url,
        embed_model="fake-embed-a",
        chat_model="fake-chat-model",
        min_relevance=0.0,
        api_keys=FULL_KEY,
        api_keys_file=keyfile,
        ingest_roots=str(root / "allowed"),
        rate_per_minute=0,
    )
    with Rag(settings) as rag, TestClient(create_app(rag=rag)) as client:
        yield {"client": client, "keys": made, "keyfile": keyfile, "root": root}


def call(client: TestClient, route: Route, key: str | None, header: str = "authorization") -> Any:
    headers = {} if key is None else {header: f"Bearer {key}" if header == "authorization" else key}
    files = {k: v for k, v in route.files.items()} or None
    return client.request(route.method, route.path, json=route.json, files=files, headers=headers)


def key_for(case: str, route: Route, made: dict[str, str]) -> str | None:
    return {
        "no key": None,
        "wrong key": "rag_not-a-key-of-ours",
        "another collection": made["stranger"],
        "read-only on write": made["reader"],
        "right key": made["writer" if route.access == "write" else "reader"],
        "full key": FULL_KEY,
    }[case]


def expected(case: str, route: Route) -> tuple[int, ...]:
    if case in ("no key", "wrong key"):
        return (401,)
    if case == "another collection" and route.collection is not None:
        return (403,)
    if case == "read-only on write" and route.access == "write":
        return (403,)
    return route.ok


def assert_shape(route: Route, resp: Any) -> None:
    err = resp.json()["error"]
    if route.path.startswith("/v1/"):  # OpenAI's shape: SDKs raise AuthenticationError / PermissionDeniedError
        assert set(err) == {"message", "type", "param", "code"}
        assert err["type"] == {401: "authentication_error", 403: "permission_error"}[resp.status_code]
    else:
        assert err["code"] == {401: "invalid_api_key", 403: "forbidden"}[resp.status_code]
    if resp.status_code == 401:
        assert resp.headers["www-authenticate"] == "Bearer"


DOCS = ("/openapi.json", "/docs", "/redoc")


def served(client: TestClient, route: Route) -> bool:
    """Whether the app has ``route`` (by its OpenAPI paths: routes come and go as the service grows)."""
    path = route.path.split("?")[0]
    if path in DOCS:
        return True
    for template, operations in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^?]+", re.escape(template))
        if re.fullmatch(pattern, path) and route.method.lower() in operations:
            return True
    return False


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("route", ROUTES, ids=[r.id for r in ROUTES])
def test_route_matrix(env: dict[str, Any], route: Route, case: str) -> None:
    client = env["client"]
    if not served(client, route):
        pytest.skip(f"{route.id} is not served (yet)")
    key = key_for(case, route, env["keys"])
    resp = call(client, route, key)
    want = expected(case, route)
    assert resp.status_code in want, (route.id, case, resp.status_code, resp.text[:300])
    if resp.status_code in (401, 403):
        assert_shape(route, resp)
        assert key is None or key not in resp.text


def test_x_api_key_header_and_bearer_scheme_case(env: dict[str, Any]) -> None:
    client, key = env["client"], env["keys"]["reader"]
    search = ROUTES[1]
    assert call(client, search, key, header="x-api-key").status_code == 200
    assert client.post("/search", json=search.json, headers={"Authorization": f"bearer {key}"}).status_code == 200
    assert client.post("/search", json=search.json, headers={"Authorization": f"Basic {key}"}).status_code == 401


def test_health_is_open_and_says_only_ok(env: dict[str, Any]) -> None:
    client = env["client"]
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/health", headers={"authorization": f"Bearer {FULL_KEY}"}).json() == {"status": "ok"}


def test_the_web_page_stays_open(env: dict[str, Any]) -> None:
    resp = env["client"].get("/")
    if resp.status_code == 404:
        pytest.skip("no web page (yet)")
    assert resp.status_code == 200


def test_models_lists_only_readable_collections(env: dict[str, Any]) -> None:
    client, made = env["client"], env["keys"]

    def ids(key: str) -> set[str]:
        return {m["id"] for m in client.get("/v1/models", headers={"x-api-key": key}).json()["data"]}

    assert {"rag", "rag:rag", "rag:other", "fake"} <= ids(FULL_KEY)
    assert {"rag", "rag:rag", "rag:other"} <= ids(made["reader"])
    stranger = ids(made["stranger"])
    assert not {"rag", "rag:rag", "rag:other"} & stranger and "fake" in stranger


def test_collections_list_is_scoped_and_names_no_paths(env: dict[str, Any]) -> None:
    client, made, root = env["client"], env["keys"], env["root"]
    listed = client.get("/collections", headers={"x-api-key": made["reader"]}).json()["collections"]
    by_name = {c["name"]: c for c in listed}
    assert set(by_name) == {"rag", "other"} and by_name["rag"]["default"] is True
    assert by_name["other"]["files"] == 1 and by_name["other"]["chunks"] >= 1 and by_name["other"]["failed"] == 0
    assert client.get("/collections", headers={"x-api-key": made["stranger"]}).json() == {"collections": []}
    status = client.get("/collections/other/status", headers={"x-api-key": FULL_KEY})
    assert status.status_code == 200 and status.json()["failures"] == []
    listing = client.get("/collections", headers={"x-api-key": FULL_KEY})
    assert str(root) not in status.text and str(root) not in listing.text


def test_a_collection_in_the_body(env: dict[str, Any]) -> None:
    client, made = env["client"], env["keys"]
    hits = client.post("/search", json={"query": "Z9", "collection": "other"}, headers={"x-api-key": made["reader"]})
    assert hits.status_code == 200 and {h["source"] for h in hits.json()["hits"]} == {"other.md"}
    bad = client.post("/search", json={"query": "x", "collection": "../etc"}, headers={"x-api-key": FULL_KEY})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
    missing = client.post("/search", json={"query": "x", "collection": "nope"}, headers={"x-api-key": FULL_KEY})
    assert missing.status_code == 404
    # Out of scope is 403 whether or not the collection exists: a key learns nothing about others.
    hidden = client.post("/search", json={"query": "x", "collection": "nope"}, headers={"x-api-key": made["reader"]})
    assert hidden.status_code == 403
    model = client.post(
        "/v1/chat/completions", json={"model": "rag:nope", "messages": CHAT}, headers={"x-api-key": FULL_KEY}
    )
    assert model.status_code == 404 and model.json()["error"]["code"] == "model_not_found"


def test_revoked_and_rewritten_keys_apply_without_restart(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    client, keyfile = env["client"], env["keyfile"]
    monkeypatch.setattr(keys, "RELOAD_SECONDS", 0.0)
    key = keys.create(keyfile, "temp", ["rag"], "read")
    search = ROUTES[1]
    assert call(client, search, key).status_code == 200
    assert keys.revoke(keyfile, "temp")
    assert call(client, search, key).status_code == 401
    # A broken file fails closed (no file key works), the full keys still do; fixed, it works again.
    text = keyfile.read_text()
    keyfile.write_text("{not json")
    assert call(client, search, env["keys"]["reader"]).status_code == 401
    assert call(client, search, FULL_KEY).status_code == 200
    keyfile.write_text(text)
    assert call(client, search, env["keys"]["reader"]).status_code == 200


def test_keys_are_hashed_in_the_file(env: dict[str, Any]) -> None:
    text = env["keyfile"].read_text()
    assert all(k not in text for k in env["keys"].values())
    assert oct(env["keyfile"].stat().st_mode & 0o777) == "0o600"


@pytest.mark.slow
def test_a_real_server_with_a_keys_file(tmp_path: Path, backend: FakeOpenAIServer) -> None:
    """openai SDK -> `rag serve` (a real process) with RAG_API_KEYS_FILE: 401 is AuthenticationError,
    403 PermissionDeniedError, /v1/models is scoped, and a revoked key stops working without a restart."""
    index = build_index(tmp_path, backend)
    keyfile = tmp_path / "keys.json"
    reader = keys.create(keyfile, "reader", ["other"], "read")
    env = clean_env(
        RAG_INDEX_DIR=str(index),
        RAG_BASE_URL=backend.base_url,
        RAG_EMBED_MODEL="fake-embed-a",
        RAG_CHAT_MODEL="fake-chat-model",
        RAG_MIN_RELEVANCE="0",
        RAG_API_KEYS_FILE=str(keyfile),
    )
    port = free_port()
    log = tmp_path / "serve.log"
    server = ServerProcess([str(BIN / "rag"), "serve", "--port", str(port)], port, "/health", env=env, log=log)
    try:
        assert httpx.get(server.url + "/health").json() == {"status": "ok"}
        anon = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            anon.models.list()
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=reader, max_retries=0)
        ids = {m.id for m in client.models.list()}
        assert "rag:other" in ids and not {"rag", "rag:rag"} & ids
        answer = client.chat.completions.create(model="rag:other", messages=CHAT)  # type: ignore[arg-type]
        assert answer.choices[0].message.content
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="rag", messages=CHAT)  # type: ignore[arg-type]
        assert keys.revoke(keyfile, "reader")
        time.sleep(keys.RELOAD_SECONDS + 0.2)
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
        assert reader not in log.read_text(errors="replace")  # never logged
    finally:
        server.stop()
