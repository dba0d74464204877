#!/usr/bin/env bash
# Proves scripts/lib/suites.sh, the helpers scripts/test.sh runs every suite
# with: a program that leaves a process behind holding its output cannot make
# the step wait (issue: the Windows step hung for 70 minutes in `... | tee`
# on a machine whose Wine prefix was new), a program that hangs is stopped
# within its bound, and a Wine prefix's server is ended by prefix.
# Exit 0 when all passed, 1 when a check failed. The Wine part is skipped,
# with its reason, where Wine is not installed.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/lib/suites.sh
. "$root/scripts/lib/suites.sh"

tmp=$(mktemp -d)
leftover=""
cleanup() {
  # Every process this test started is stopped here, by pid.
  if [ -n "$leftover" ]; then kill "$leftover" 2>/dev/null || true; fi
  if [ -n "${WINEPREFIX:-}" ]; then wine_stop; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

passed=0
failed=0
check() {
  local what=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
    echo "ok: $what"
  else
    failed=$((failed + 1))
    echo "FAILED: $what"
  fi
}

# 1. A program that prints, leaves a child holding its stdout and stderr for
#    five minutes, and exits 3: run_logged returns its status at once.
start=$SECONDS
rc=0
run_logged 60 "$tmp/orphan.log" bash -c 'echo "[==========] 2 tests from 1 test suite ran."; sleep 300 & echo $! >"$0"; exit 3' \
  "$tmp/orphan.pid" >"$tmp/orphan.shown" || rc=$?
took=$((SECONDS - start))
leftover=$(cat "$tmp/orphan.pid" 2>/dev/null || true)
check "a left-behind child does not hold the step (took ${took}s)" test "$took" -le 10
check "the program's own status comes back (got $rc)" test "$rc" = 3
check "the log has the program's output" grep -q '2 tests from 1 test suite ran' "$tmp/orphan.log"
check "the output is shown as well" grep -q '2 tests from 1 test suite ran' "$tmp/orphan.shown"
check "the child is still there (so the test above meant something)" kill -0 "$leftover"
kill "$leftover" 2>/dev/null
leftover=""

# 2. The same program through a pipe, as test.sh ran it before: it is held
#    for as long as the child lives (here cut at 3 s by the child's own end).
start=$SECONDS
bash -c 'echo x; sleep 3 & exit 0' | cat >/dev/null
took=$((SECONDS - start))
check "through a pipe the same program holds the reader (took ${took}s)" test "$took" -ge 2

# 3. A program that never ends is stopped at its bound, and the caller can
#    tell a time-out from a failure.
start=$SECONDS
rc=0
run_logged 2 "$tmp/hang.log" sleep 120 >/dev/null || rc=$?
took=$((SECONDS - start))
check "a hung program is stopped at its bound (took ${took}s)" test "$took" -le 8
check "its status says it timed out (got $rc)" timed_out "$rc"
check "a plain failure is not a time-out" bash -c '! { . "$0"; timed_out 1; }' "$root/scripts/lib/suites.sh"

# 4. The step's budget caps every command in it.
wine_budget_start 100
check "a command gets its cap while the budget lasts" test "$(wine_limit 30)" = 30
check "and no more than what is left of the budget" test "$(wine_limit 500)" -le 100
wine_deadline=$((SECONDS - 5))
check "a spent budget leaves one second, never zero or less" test "$(wine_limit 30)" = 1

# 5. A new Wine prefix: the server is up and persistent before the first
#    program, and wine_stop ends every Wine process of that prefix.
prefix_processes() {
  local f n=0
  for f in /proc/[0-9]*/environ; do
    if { tr '\0' '\n' <"$f"; } 2>/dev/null | grep -qx "WINEPREFIX=$1"; then n=$((n + 1)); fi
  done
  echo "$n"
}
if [ ! -x /usr/lib/wine/wine64 ]; then
  echo "skipped: the Wine checks (no /usr/lib/wine/wine64; Debian's wine64 installs it)"
else
  prefix="$tmp/wine-prefix"
  wine_budget_start 300
  rc=0
  wine_start "$prefix" >"$tmp/wine-start.log" 2>&1 || rc=$?
  check "wine_start makes a new prefix (status $rc)" test "$rc" = 0
  check "the prefix exists" test -d "$prefix/drive_c/windows/system32"
  check "the prefix's server runs" test "$(prefix_processes "$prefix")" -gt 0
  rc=0
  start=$SECONDS
  run_logged 120 "$tmp/wine-cmd.log" "$WINE" cmd /c echo from-wine >/dev/null || rc=$?
  took=$((SECONDS - start))
  check "a Windows program's output comes back and the step goes on (status $rc, ${took}s)" \
    grep -q from-wine "$tmp/wine-cmd.log"
  wine_stop
  check "wine_stop leaves no process of the prefix (found $(prefix_processes "$prefix"))" \
    test "$(prefix_processes "$prefix")" = 0
  unset WINEPREFIX
fi

printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" = 0 ]
