#!/usr/bin/env bash
# Runs the client-compatibility tests (tests/clients/*.test.mjs: the official,
# unmodified `openai`, `ollama` and `@anthropic-ai/sdk` npm clients against
# `llamactl serve`, the curl transcripts of tests/golden/ollama, and the
# official MCP TypeScript SDK against `llamactl mcp`) with the binaries
# of BUILD_DIR (llamactl, tests/fake_llama_server, tests/fake_nvidia_smi).
# Installs the pinned npm packages (package-lock.json) first when needed.
# Usage: scripts/client-tests.sh BUILD_DIR
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

for f in "$build/llamactl" "$build/tests/fake_llama_server" "$build/tests/fake_nvidia_smi"; do
  if [[ ! -x $f ]]; then
    echo "$0: $f is missing; build the targets llamactl fake_llama_server fake_nvidia_smi" >&2
    exit 2
  fi
done

# npm writes node_modules/.package-lock.json last: an install that was cut
# short (an empty or half-filled node_modules) has none and is done again.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi

# The shell expands the file list: `node --test DIR` searches DIR only on
# Node 20; from Node 21 on it takes the directory itself for a test file.
shopt -s nullglob
files=(tests/clients/*.test.mjs)
if [[ ${#files[@]} -eq 0 ]]; then
  echo "$0: no tests/clients/*.test.mjs" >&2
  exit 2
fi
rc=0
LLAMACTL_BIN="$build/llamactl" \
  FAKE_LLAMA_SERVER="$build/tests/fake_llama_server" \
  FAKE_NVIDIA_SMI="$build/tests/fake_nvidia_smi" \
  node --test "${files[@]}" || rc=$?
exit "$rc"
