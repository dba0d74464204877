#!/usr/bin/env bash
# The manual page cannot drift from --help: every command, option and
# positional that `llamactl --help` and `llamactl COMMAND --help` list must be
# in `llamactl __man`'s page, and groff must render the page without a
# warning. usage: tests/scripts/man_page_test.sh path/to/llamactl
set -euo pipefail
bin=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" __man >"$work/page"
failed=0
missing() { echo "man page: $1 is listed by '$2' but not in the page"; failed=1; }

# roff writes every '-' as '\-'.
escaped() { printf '%s' "$1" | sed 's/-/\\-/g'; }

# The names in a --help section ("Options:", "Positionals:", "Subcommands:"):
# each entry's first column, one name a line ("-h,--help" gives two).
section() {
  sed -n "/^$1:\$/,/^\$/p" "$2" | sed -n 's/^  \([^ ]\{1,\}\).*/\1/p' | tr ',' '\n'
}

check_help() {
  local label=$1 help="$work/help" name
  shift
  "$bin" "$@" --help >"$help"
  while IFS= read -r name; do
    # As the page writes an option's name: in bold, whole (--gpu is not --gpus).
    grep -qF -- "\\fB$(escaped "$name")\\fR" "$work/page" || missing "option $name" "$label"
  done < <(section Options "$help")
  while IFS= read -r name; do
    grep -qF -- "\\fI$(escaped "$name")\\fR" "$work/page" || missing "argument $name" "$label"
  done < <(section Positionals "$help")
}

check_help "llamactl --help"
mapfile -t commands < <("$bin" --help >"$work/top" && section Subcommands "$work/top")
[ ${#commands[@]} -ge 5 ] || { echo "man page test: found only ${#commands[@]} commands in --help"; exit 1; }
for c in "${commands[@]}"; do
  grep -qxF ".SS \"$(escaped "$c")\"" "$work/page" || missing "command $c" "llamactl --help"
  check_help "llamactl $c --help" "$c"
done

# It renders, and without a warning (-ww: all of them).
groff -man -ww -z "$work/page" 2>"$work/groff" || { echo "groff failed:"; cat "$work/groff"; failed=1; }
if [ -s "$work/groff" ]; then
  echo "groff warns about the man page:"
  cat "$work/groff"
  failed=1
fi
# And as man shows it in an 80-column terminal (man-db, where installed).
if command -v man >/dev/null; then
  MANWIDTH=80 MANPAGER=cat man --warnings=w -l "$work/page" >/dev/null 2>"$work/man" || failed=1
  if [ -s "$work/man" ]; then
    echo "man -l warns about the man page at 80 columns:"
    cat "$work/man"
    failed=1
  fi
fi
[ "$failed" = 0 ] && echo "man page: ${#commands[@]} commands and their options all listed; renders without warnings"
exit "$failed"
