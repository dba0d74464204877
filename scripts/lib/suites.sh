# Helpers for scripts/test.sh, sourced (bash). Kept in a file of their own so
# that tests/scripts/suites_test.sh can prove them without running the suite.
#
# Why output goes to a file and never through a pipe: a program can leave a
# process behind that inherited its standard handles. Wine does exactly that in
# a new prefix (wineserver, conhost.exe --headless, services.exe ...), and a
# reader at the other end of a pipe (`... | tee`) then never sees end-of-file:
# the step waits forever, after the test program itself has long exited.

# run_logged LIMIT LOG CMD...
#   Runs CMD with stdin on /dev/null and stdout+stderr in the file LOG, shows
#   LOG as it grows, and ends CMD after LIMIT seconds (TERM, then KILL 10 s
#   later). Returns CMD's exit status; 124 (or 137) when it ran out of time.
#   Returns as soon as CMD exits, whatever it left running.
run_logged() {
  local limit=$1 log=$2 pid tail_pid rc=0
  shift 2
  : >"$log"
  timeout -k 10 "$limit" "$@" </dev/null >"$log" 2>&1 &
  pid=$!
  # tail checks once a second whether pid is still there and then stops
  # after printing what is left; its own output is this script's.
  tail -n +1 -f --pid="$pid" "$log" &
  tail_pid=$!
  # timeout runs in a process group of its own, so a Ctrl-C or a CI job's
  # TERM does not reach the command: pass it on (timeout forwards TERM to
  # the command's group), and stop the tail.
  trap 'kill -TERM "$pid" "$tail_pid" 2>/dev/null; exit 130' INT TERM
  wait "$pid" || rc=$?
  wait "$tail_pid" 2>/dev/null || true
  trap - INT TERM
  return "$rc"
}

# timed_out RC: true when RC is what run_logged returns for a command that ran
# out of time.
timed_out() { [ "$1" = 124 ] || [ "$1" = 137 ]; }

# The Windows step's bound: every Wine command in it runs within what is left
# of this budget, so a misbehaving Wine fails the step with a message instead
# of waiting silently.
wine_deadline=0
wine_budget_start() { wine_deadline=$((SECONDS + $1)); }
# wine_limit CAP: seconds the next Wine command may take (at most CAP).
wine_limit() {
  local left=$((wine_deadline - SECONDS))
  [ "$left" -lt "$1" ] || left=$1
  [ "$left" -gt 0 ] || left=1
  echo "$left"
}

# wine_start PREFIX: a Wine prefix of its own with a persistent wineserver.
#   The server is started first (-p300), detached, with its standard handles on
#   /dev/null, so no Wine process that outlives a test holds a test's output
#   open; then the prefix is made (wineboot --init) within a bound. Exports
#   WINE (the loader), WINEPREFIX, WINESERVER, WINEDEBUG and WINEDLLOVERRIDES
#   for what follows.
wine_start() {
  local prefix=$1 log rc=0
  export WINE=${WINE:-/usr/lib/wine/wine64}
  export WINEPREFIX=$prefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree=;mshtml="
  # The real server, not Debian's wrapper (which adds -p0: exit at once when
  # the last client leaves, which is what lets helpers race the tests).
  WINESERVER=$(wine_server_binary) || return 1
  export WINESERVER
  mkdir -p "$prefix"
  # Persistent for 5 minutes after the last Wine process ends: if this
  # script is killed before wine_stop, the server still goes away by itself.
  if ! timeout -k 5 "$(wine_limit 30)" "$WINESERVER" -p300 </dev/null >/dev/null 2>&1; then
    echo "windows: wineserver -p for $prefix did not start (see: WINEPREFIX=$prefix $WINESERVER -f -d1)" >&2
    return 1
  fi
  log="$prefix.wineboot.log"
  run_logged "$(wine_limit 180)" "$log" "$WINE" wineboot --init || rc=$?
  if [ "$rc" != 0 ]; then
    if timed_out "$rc"; then
      echo "windows: making the Wine prefix $prefix (wineboot --init) did not finish in time; log: $log" >&2
    else
      echo "windows: making the Wine prefix $prefix (wineboot --init) failed with status $rc; log: $log" >&2
    fi
    return 1
  fi
}

# wine_stop: ends the wineserver of $WINEPREFIX (and with it every Wine
# process of that prefix), by prefix, never by process name; waits for it to
# be gone, within a bound.
wine_stop() {
  [ -n "${WINEPREFIX:-}" ] && [ -n "${WINESERVER:-}" ] || return 0
  timeout -k 5 20 "$WINESERVER" -k </dev/null >/dev/null 2>&1 || true
  timeout -k 5 20 "$WINESERVER" -w </dev/null >/dev/null 2>&1 || true
}

wine_server_binary() {
  local s
  for s in /usr/lib/wine/wineserver64 /usr/lib/wine/wineserver32 "$(command -v wineserver64 || true)"; do
    if [ -n "$s" ] && [ -x "$s" ]; then
      echo "$s"
      return 0
    fi
  done
  echo "windows: no wineserver found (install Debian's wine64)" >&2
  return 1
}
