#!/usr/bin/env bash
# The web page's browser tests (headless Chromium, real `rag serve` processes): screenshots of each
# state at desktop (1280x900) and phone (375x812) width into test-artifacts/web/, the first-paint
# figures into test-artifacts/web/metrics.json; then the two README screenshots into docs/img/.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest tests/test_web.py -q -s "$@"
mkdir -p docs/img
cp test-artifacts/web/passage-desktop.png docs/img/web-passage.png
cp test-artifacts/web/unsupported-desktop.png docs/img/web-unsupported.png
cat test-artifacts/web/metrics.json
