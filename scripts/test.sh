#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: install the packages,
# then build and run the unit and end-to-end tests (release), again under
# AddressSanitizer + UBSan, run the official openai npm client against serve,
# cross-build for Windows and run its unit and end-to-end tests under Wine,
# fuzz every parser for a bounded time, and check formatting, clang-tidy and
# the static link; build the .deb and install it (scripts/package-test.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
fuzz_seconds=${LLAMACTL_FUZZ_SECONDS:-30}

step() { printf '\n==== %s\n' "$*"; }
passed=0
failed=0
# shellcheck source=lib/suites.sh
. "$root/scripts/lib/suites.sh"
logs="$root/build/test-logs"
mkdir -p "$logs"

# Prints the totals and a failure line, and ends the run.
fail_run() {
  [ $# -eq 0 ] || echo "$*"
  printf '%d passed, %d failed\n' "$passed" "$((failed > 0 ? failed : 1))"
  exit 1
}

# Runs ctest in a build dir and adds its counts to the totals. Its output goes
# to a file, not through a pipe (see scripts/lib/suites.sh).
run_ctest() {
  local dir=$1 log rc=0 total fails
  shift
  log="$logs/ctest-$(basename "$dir").log"
  run_logged 3600 "$log" sh -c 'cd "$1" && shift && exec env "$@" ctest --output-on-failure --timeout 600' \
    sh "$dir" "$@" || rc=$?
  total=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' "$log" | tail -n 1)
  fails=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -n 1)
  passed=$((passed + ${total:-0} - ${fails:-0}))
  failed=$((failed + ${fails:-0}))
  if timed_out "$rc"; then
    fail_run "ctest in $dir did not finish within 3600 s; log: $log"
  fi
  if [ "$rc" != 0 ] || [ -z "$total" ]; then
    fail_run
  fi
}

# Runs a GoogleTest binary once (LIMIT in seconds, then argv: a runner such as
# wine64, then the binary) and adds its counts to the totals: under Wine one
# process for the whole suite, not one per test as ctest would start (13
# minutes instead of seconds).
run_gtest() {
  local limit=$1 log rc=0 total fails skipped name
  shift
  name=$(basename "${*: -1}")
  log="$logs/gtest-$name.log"
  run_logged "$limit" "$log" "$@" || rc=$?
  total=$(sed -n 's/^\[==========\] \([0-9]*\) tests\{0,1\} from .* ran\..*/\1/p' "$log" | tail -n 1)
  fails=$(sed -n 's/^ *\([0-9]*\) FAILED TESTS\{0,1\}$/\1/p' "$log" | tail -n 1)
  skipped=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) tests\{0,1\}, listed below:$/\1/p' "$log" | tail -n 1)
  fails=${fails:-0}
  passed=$((passed + ${total:-0} - fails - ${skipped:-0}))
  failed=$((failed + fails))
  if timed_out "$rc"; then
    fail_run "$name did not finish within $limit s and was stopped (Wine hung?); log: $log"
  fi
  if [ "$rc" != 0 ] || [ -z "$total" ]; then
    fail_run "$name failed (status $rc); log: $log"
  fi
}

step "setup"
scripts/setup-debian.sh --tests

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

step "packages: the .deb and .tar.gz (cpack), installed with dpkg -i, checked, removed"
scripts/package-test.sh build/release || fail_run "package test failed (the message above says what)"

step "client compatibility: the official openai npm client against serve"
client_log="$logs/client-tests.log"
rc=0
run_logged 1800 "$client_log" scripts/client-tests.sh build/release || rc=$?
client_pass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$client_log" | tail -n 1)
client_fail=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$client_log" | tail -n 1)
passed=$((passed + ${client_pass:-0}))
failed=$((failed + ${client_fail:-0}))
if [ "$rc" != 0 ] || [ -z "$client_pass" ]; then
  fail_run "client tests failed (status $rc); log: $client_log"
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
# A Wine prefix of the build's own, with a persistent wineserver started
# first (scripts/lib/suites.sh: wine_start) and ended by prefix at the end,
# whatever happens. The whole step has a bound: a Wine that misbehaves fails
# it with a message within minutes instead of waiting silently.
wine_seconds=${LLAMACTL_WINE_SECONDS:-600}
wine_budget_start "$wine_seconds"
trap wine_stop EXIT
wine_start "$root/build/wine-prefix" || fail_run "windows: Wine could not be set up"
# The .zip a Windows user downloads (cpack): what it holds, and its exe runs.
rm -rf build/windows/packages build/windows/unzipped
(cd build/windows && cpack -B packages >packages.log 2>&1) || { cat build/windows/packages.log; fail_run "windows: cpack failed (log above)"; }
zips=(build/windows/packages/llamactl-*-win64.zip)
[ -f "${zips[0]}" ] || fail_run "windows: cpack made no .zip"
mkdir -p build/windows/unzipped
(cd build/windows/unzipped && cmake -E tar xf "../packages/$(basename "${zips[0]}")")
for f in llamactl.exe llamactl.ps1 llamactl-keep-loaded.xml llamactl-serve-at-logon.xml config.toml two-idle-gpus.txt; do
  found=(build/windows/unzipped/*/"$f")
  [ -f "${found[0]}" ] || fail_run "windows: the .zip lacks $f"
done
zip_version=$(timeout "$(wine_limit 60)" "$WINE" build/windows/unzipped/*/llamactl.exe --version | tr -d '\r') ||
  fail_run "windows: llamactl.exe --version from the .zip failed"
[[ "$zip_version" == "llamactl "* ]] || fail_run "windows: llamactl.exe from the .zip printed '$zip_version'"
echo "windows: $(basename "${zips[0]}") ($(du -k "${zips[0]}" | cut -f1) KiB): $zip_version"
run_gtest "$(wine_limit 240)" "$WINE" build/windows/tests/unit_tests.exe
run_gtest "$(wine_limit 180)" "$WINE" build/windows/tests/windows_e2e_tests.exe
# In a console: run on a pseudo-terminal, a Windows program gets one from Wine
# (watch's full screen and keys, Ctrl-C typed at the keyboard).
run_gtest "$(wine_limit 180)" env LLAMACTL_WINDOWS_EXE=build/windows/llamactl.exe WINE="$WINE" \
  build/asan/tests/windows_console_tests
wine_stop
trap - EXIT
echo "windows: step took $((SECONDS - (wine_deadline - wine_seconds))) s of its $wine_seconds s bound"

step "fuzz (${fuzz_seconds}s per parser)"
fuzz/run.sh "$fuzz_seconds" build/fuzz

step "clang-tidy"
mapfile -t tidy < <(list_sources 'src/*.cpp' 'cmd/*.cpp' | grep -v '_win32\.cpp$')
clang-tidy -p build/release --quiet "${tidy[@]}"

step "done: all checks passed (unit and end-to-end tests counted for each build: release, sanitizers, Windows)"
printf '%d passed, %d failed\n' "$passed" "$failed"
