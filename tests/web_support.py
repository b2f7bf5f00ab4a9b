"""Helpers of the browser tests (tests/test_web.py).

- :func:`browser`: headless Chromium from Debian (``chromium``, ``chromium-driver``) driven by
  Selenium; :func:`missing` says why it cannot run (the tests skip with that reason).
- :func:`shoot`: a screenshot of the page at desktop (1280x900) and phone (375x812) size into
  ``test-artifacts/web/``.
- A fake OpenAI-compatible backend, run as a process (``python tests/web_support.py --port N``):
  embeddings are ``fakes.FakeEmbedder``'s hashed bags of words; chat streams :data:`ANSWER`, whose
  second sentence is invented (nothing in data/ says it), so the answer check marks it unsupported.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts" / "web"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DESKTOP = (1280, 900)
PHONE = (375, 812)
ANSWER = (
    "The X200 is covered by a limited warranty of 3 years [1]. "
    "The warranty also covers accidental damage from swimming underwater with the projector [1]."
)


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists() and shutil.which(path.name) is None:
            return f"{path} not found: install the Debian package {package} (.ci/run does)"
    return None


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium"))
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--lang=en-US"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = str(CHROMEDRIVER if CHROMEDRIVER.exists() else shutil.which("chromedriver"))
    d = webdriver.Chrome(service=Service(driver), options=options)
    d.set_script_timeout(30)
    viewport(d, DESKTOP)
    return d


def viewport(driver: Any, size: tuple[int, int]) -> None:
    """Make the page's viewport exactly ``size`` (a phone is a mobile viewport)."""
    width, height = size
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def shoot(driver: Any, name: str, focus: str | None = None) -> list[Path]:
    """Screenshots of the current state, desktop then phone; ``focus``: a CSS selector scrolled
    into view first (the phone's single column puts the side panel below the answer)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = []
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        viewport(driver, size)
        time.sleep(0.3)
        if focus:
            driver.execute_script(
                "const e = document.querySelector(arguments[0]); if (e) e.scrollIntoView({block: 'start'});", focus
            )
            time.sleep(0.2)
        path = ARTIFACTS / f"{name}-{label}.png"
        driver.save_screenshot(str(path))
        out.append(path)
    viewport(driver, DESKTOP)
    return out


def wait(predicate: Callable[[], Any], timeout: float = 120, what: str = "the page") -> Any:
    """Poll ``predicate`` until it returns something truthy; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # a stale element while the page re-renders
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" ({last!r})" if last else ""))


def errors(driver: Any) -> list[str]:
    """The browser console's errors (a 401 answered on purpose and a missing favicon aside)."""
    return [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and "favicon" not in e["message"] and "401" not in e["message"]
    ]


# -- the fake backend ------------------------------------------------------------------------------
def fake_backend() -> Any:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fakes import FakeEmbedder

    app = FastAPI()
    embedder = FakeEmbedder("fake-embed")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "fake-chat", "object": "model"}]}

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> dict[str, Any]:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": embedder.vector(t)} for i, t in enumerate(texts)]
        return {"object": "list", "data": data, "model": body.get("model"), "usage": {"prompt_tokens": 1}}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> StreamingResponse:
        await request.json()

        async def stream() -> AsyncIterator[str]:
            words = ANSWER.split(" ")
            for i, word in enumerate(words):
                delta = {"content": word + (" " if i + 1 < len(words) else "")}
                chunk = {
                    "id": "x",
                    "object": "chat.completion.chunk",
                    "model": "fake-chat",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
            end = {
                "id": "x",
                "object": "chat.completion.chunk",
                "model": "fake-chat",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": len(words), "total_tokens": 100 + len(words)},
            }
            yield f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(fake_backend(), host="127.0.0.1", port=args.port, log_level="warning")
