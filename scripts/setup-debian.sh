#!/usr/bin/env bash
# Installs the Debian 12 packages llamactl needs. Idempotent; safe to run
# again. Needs root (or sudo) for apt-get.
#   scripts/setup-debian.sh           what building and running needs (the main command)
#   scripts/setup-debian.sh --tests   that, plus what the test suite needs (scripts/test.sh):
#                                     GoogleTest, clang tools, the shells, MinGW-w64 and Wine,
#                                     the browser, man-db, and the npm packages (npm ci)
set -euo pipefail

tests=0
case "${1:-}" in
  "") ;;
  --tests) tests=1 ;;
  *) echo "usage: $0 [--tests]" >&2; exit 2 ;;
esac

# Building the static release binary: the compiler, CMake and Ninja, and the
# header-only libraries. `file` is how the build is checked to be static.
packages=(
  build-essential cmake ninja-build pkg-config file
  libspdlog-dev libfmt-dev nlohmann-json3-dev libcli11-dev libtomlplusplus-dev
  libboost-dev
)
if [ "$tests" = 1 ]; then
  packages+=(
    libgtest-dev
    clang lld libclang-rt-14-dev clang-format clang-tidy
    git curl tmux zsh fish bash-completion man-db
    g++-mingw-w64-x86-64-posix wine64
    chromium fonts-dejavu-core fonts-noto-color-emoji
  )
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages already installed"
else
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ "$tests" = 1 ] || exit 0

# npm packages for the client-compatibility and web page tests (the official
# openai client, puppeteer-core), from the committed lockfile. Node.js and npm
# come with the test machine, not from Debian.
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -f "$root/package-lock.json" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: npm not found; the client-compatibility tests need Node.js and npm" >&2
    exit 1
  fi
  # npm writes node_modules/.package-lock.json last: an install that was cut
  # short has none and is done again.
  installed="$root/node_modules/.package-lock.json"
  if [ ! -f "$installed" ] || [ "$root/package-lock.json" -nt "$installed" ]; then
    echo "setup: npm ci"
    (cd "$root" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$installed"
  fi
fi
