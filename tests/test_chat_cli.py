"""`rag chat`: a conversation in the terminal (click's CliRunner feeding stdin), against the fake
OpenAI-compatible server (a real HTTP server on 127.0.0.1) and a real Chroma index."""

from __future__ import annotations

from pathlib import Path

from conftest import DATA, clean_env, invoke_cli
from fakes import FakeOpenAIServer, fake_server_fixture  # noqa: F401 - provides the fake_server fixture


def test_chat_follow_ups_are_searched_standalone_until_a_new_conversation(
    tmp_path: Path, fake_server: FakeOpenAIServer
) -> None:
    env = clean_env(
        RAG_INDEX_DIR=str(tmp_path / "index"),
        RAG_BASE_URL=fake_server.base_url,
        RAG_EMBED_MODEL="fake-embed",
        RAG_CHAT_MODEL="fake-chat",
        RAG_MIN_RELEVANCE="0",  # the fake's hashed vectors carry no meaning
        RAG_REWRITE="rules",  # the fake chat would answer the rewrite prompt with its canned answer
    )
    assert invoke_cli("ingest", str(DATA), env=env).returncode == 0
    follow_up = "Is it waived if the item is damaged?"
    session = f"What is the restocking fee for opened items?\n{follow_up}\n/new\n{follow_up}\n/quit\n"
    out = invoke_cli("chat", env=env, input=session)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    searched = [line for line in out.stderr.splitlines() if line.startswith("(searched for:")]
    # Only the follow-up inside the first conversation is rewritten; after /new it stands alone.
    assert len(searched) == 1 and "restocking" in searched[0].lower(), out.stderr
    assert out.stdout.count("The answer") == 3  # three answers from the chat server
    assert "New conversation." in out.stderr
