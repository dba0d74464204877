#!/usr/bin/env bash
# Configures and builds one configuration. usage: scripts/build.sh release|asan|windows [target...]
#   release: optimised, statically linked llamactl (build/release)
#   asan:    debug build with AddressSanitizer + UBSan (build/asan)
#   windows: llamactl.exe and its tests cross-built with MinGW-w64 (build/windows)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kind=${1:-release}
shift || true
case "$kind" in
  release) flags=(-DCMAKE_BUILD_TYPE=Release) ;;
  asan) flags=(-DCMAKE_BUILD_TYPE=Debug -DLLAMACTL_SANITIZE=ON) ;;
  windows) flags=(-DCMAKE_BUILD_TYPE=Release "-DCMAKE_TOOLCHAIN_FILE=$root/cmake/mingw-w64.cmake") ;;
  *) echo "usage: $0 release|asan|windows [target...]" >&2; exit 2 ;;
esac
# One job per core: the Beast and toml++ translation units are heavy.
jobs=${LLAMACTL_JOBS:-$(nproc)}
cmake -S "$root" -B "$root/build/$kind" -G Ninja "${flags[@]}" >/dev/null
if [ $# -gt 0 ]; then
  cmake --build "$root/build/$kind" -j "$jobs" --target "$@"
else
  cmake --build "$root/build/$kind" -j "$jobs"
fi
