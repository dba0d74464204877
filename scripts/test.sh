#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: install the packages,
# then build and run the unit and end-to-end tests (release), again under
# AddressSanitizer + UBSan, run the official openai npm client against serve,
# cross-build for Windows and run its unit and end-to-end tests under Wine,
# fuzz every parser for a bounded time, and check formatting, clang-tidy and
# the static link.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
fuzz_seconds=${LLAMACTL_FUZZ_SECONDS:-30}

step() { printf '\n==== %s\n' "$*"; }
passed=0
failed=0
# Runs ctest in a build dir and adds its counts to the totals.
run_ctest() {
  local dir=$1 log
  shift
  log=$(mktemp)
  local rc=0
  (cd "$dir" && env "$@" ctest --output-on-failure --timeout 600) 2>&1 | tee "$log" || rc=$?
  local total fails
  total=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' "$log" | tail -n 1)
  fails=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -n 1)
  rm -f "$log"
  passed=$((passed + ${total:-0} - ${fails:-0}))
  failed=$((failed + ${fails:-0}))
  if [ "$rc" != 0 ] || [ -z "$total" ]; then
    printf '%d passed, %d failed\n' "$passed" "$((failed > 0 ? failed : 1))"
    exit 1
  fi
}

# Runs a GoogleTest binary once (argv: a runner such as wine64, then the
# binary) and adds its counts to the totals: under Wine one process for the
# whole suite, not one per test as ctest would start (13 minutes instead of
# seconds).
run_gtest() {
  local log rc=0 total fails skipped
  log=$(mktemp)
  timeout 900 "$@" 2>&1 | tee "$log" || rc=$?
  total=$(sed -n 's/^\[==========\] \([0-9]*\) tests\{0,1\} from .* ran\..*/\1/p' "$log" | tail -n 1)
  fails=$(sed -n 's/^ *\([0-9]*\) FAILED TESTS\{0,1\}$/\1/p' "$log" | tail -n 1)
  skipped=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) tests\{0,1\}, listed below:$/\1/p' "$log" | tail -n 1)
  rm -f "$log"
  fails=${fails:-0}
  passed=$((passed + ${total:-0} - fails - ${skipped:-0}))
  failed=$((failed + fails))
  if [ "$rc" != 0 ] || [ -z "$total" ]; then
    printf '%d passed, %d failed\n' "$passed" "$((failed > 0 ? failed : 1))"
    exit 1
  fi
}

step "setup"
scripts/setup-debian.sh

# The project's C++ files: from git when this is a checkout, else from the tree.
list_sources() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files "$@"
  else
    local pattern
    for pattern in "$@"; do
      find . -path ./build -prune -o -type f -path "./$pattern" -print | sed 's|^\./||'
    done
  fi
}

step "format check"
mapfile -t sources < <(list_sources '*.cpp' '*.h')
if ! clang-format --dry-run --Werror "${sources[@]}"; then
  echo "clang-format: files differ from .clang-format (run clang-format -i)"
  exit 1
fi

step "release build + tests"
scripts/build.sh release
file build/release/llamactl | grep -q "statically linked" || { echo "llamactl is not statically linked"; exit 1; }
run_ctest build/release CI_BUILD=release

step "client compatibility: the official openai npm client against serve"
client_log=$(mktemp)
rc=0
scripts/client-tests.sh build/release 2>&1 | tee "$client_log" || rc=$?
client_pass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$client_log" | tail -n 1)
client_fail=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$client_log" | tail -n 1)
rm -f "$client_log"
passed=$((passed + ${client_pass:-0}))
failed=$((failed + ${client_fail:-0}))
if [ "$rc" != 0 ] || [ -z "$client_pass" ]; then
  printf '%d passed, %d failed\n' "$passed" "$((failed > 0 ? failed : 1))"
  exit 1
fi

step "asan+ubsan build + tests"
scripts/build.sh asan
run_ctest build/asan ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

step "windows: MinGW-w64 cross-build; unit and end-to-end tests under Wine"
scripts/build.sh windows llamactl unit_tests windows_e2e_tests
# Static: the exe needs no MinGW DLL (libstdc++, libgcc, libwinpthread), only Windows' own.
dlls=$(x86_64-w64-mingw32-objdump -p build/windows/llamactl.exe | sed -n 's/^\s*DLL Name: //p' | tr '[:upper:]' '[:lower:]')
for dll in $dlls; do
  case "$dll" in
    kernel32.dll | advapi32.dll | ws2_32.dll | mswsock.dll | msvcrt.dll) ;;
    *) echo "llamactl.exe imports $dll (only Windows' own DLLs are allowed)"; exit 1 ;;
  esac
done
# A Wine prefix of the build's own; no Mono or Gecko prompts.
export WINEPREFIX="$root/build/wine-prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree=;mshtml="
run_gtest /usr/lib/wine/wine64 build/windows/tests/unit_tests.exe
run_gtest /usr/lib/wine/wine64 build/windows/tests/windows_e2e_tests.exe
# In a console: run on a pseudo-terminal, a Windows program gets one from Wine
# (watch's full screen and keys, Ctrl-C typed at the keyboard).
run_gtest env LLAMACTL_WINDOWS_EXE=build/windows/llamactl.exe WINE=/usr/lib/wine/wine64 \
  build/asan/tests/windows_console_tests

step "fuzz (${fuzz_seconds}s per parser)"
fuzz/run.sh "$fuzz_seconds" build/fuzz

step "clang-tidy"
mapfile -t tidy < <(list_sources 'src/*.cpp' 'cmd/*.cpp' | grep -v '_win32\.cpp$')
clang-tidy -p build/release --quiet "${tidy[@]}"

step "done: all checks passed (unit and end-to-end tests counted for each build: release, sanitizers, Windows)"
printf '%d passed, %d failed\n' "$passed" "$failed"
