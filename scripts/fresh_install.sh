#!/usr/bin/env bash
# Time the README's first command as a new user meets it: a fresh clone of this repository's HEAD,
# a fresh virtualenv, an empty pip cache (PIP_NO_CACHE_DIR=1) and an empty index (a fresh HOME).
#
#   bash scripts/fresh_install.sh [WORKDIR]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d /tmp/rag-fresh-XXXXXX)}"
git clone -q "$repo" "$work/clone"
cd "$work/clone"
cmd=$(awk '/^## Try it/{f=1;next} f && /^```sh/{g=1;next} g && /^```/{exit} g{print}' README.md)
echo "+ $cmd"
mkdir -p "$work/home"
start=$(date +%s.%N)
env PIP_NO_CACHE_DIR=1 HOME="$work/home" bash -c "$cmd"
end=$(date +%s.%N)
secs=$(python3 -c "print(round($end - $start, 1))")
echo "README first command: ${secs} s (install + ingest data/ + answer), load average now $(cut -d' ' -f1 /proc/loadavg)"
