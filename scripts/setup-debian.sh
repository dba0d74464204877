#!/usr/bin/env bash
# Installs every Debian 12 package that llamactl's build and tests need.
# Idempotent; safe to run again. Needs root (or sudo) for apt-get.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config file
  libspdlog-dev libfmt-dev nlohmann-json3-dev libcli11-dev libtomlplusplus-dev
  libboost-dev libgtest-dev
  clang lld libclang-rt-14-dev clang-format clang-tidy
  git curl tmux zsh fish bash-completion
  g++-mingw-w64-x86-64-posix wine64
  chromium fonts-dejavu-core
)

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

# npm packages for the client-compatibility tests (the official openai client),
# from the committed lockfile. Node.js and npm come with the machine.
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
