#!/usr/bin/env bash
# Builds the packages of a release build dir (default build/release) with
# CPack, installs the .deb with dpkg, checks what a user gets (the binary,
# the completions, the man page, the example config, the systemd unit, the
# fixtures), and removes it again. scripts/test.sh runs it after the release
# build; it can run by itself. Needs root or sudo (dpkg), and man-db
# (scripts/setup-debian.sh --tests installs it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/build/release}
[ -d "$dir" ] || { echo "package test: no build dir $dir" >&2; exit 1; }
dir=$(cd "$dir" && pwd)
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
fail() { echo "package test: $*" >&2; exit 1; }

[ -f "$dir/CPackConfig.cmake" ] || fail "$dir is not a configured build dir (scripts/build.sh release first)"
if dpkg-query -W -f='${Status}' llamactl 2>/dev/null | grep -q "install ok installed"; then
  fail "a llamactl package is already installed on this machine; remove it first (dpkg -r llamactl)"
fi

# The packages, in their own folder so that old ones are not picked up.
out="$dir/packages"
rm -rf "$out"
(cd "$dir" && cpack -B "$out" >"$out.log" 2>&1) || { cat "$out.log"; fail "cpack failed (log above)"; }
debs=("$out"/llamactl_*.deb)
tgzs=("$out"/llamactl-*.tar.gz)
[ -f "${debs[0]}" ] || fail "cpack made no .deb in $out"
[ -f "${tgzs[0]}" ] || fail "cpack made no .tar.gz in $out"
deb=${debs[0]}
echo "package test: $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB), $(basename "${tgzs[0]}")"

# The .deb's control fields: no runtime dependencies (the binary is static).
deps=$(dpkg-deb -f "$deb" Depends)
[ -z "$deps" ] || fail "the .deb depends on '$deps'; the static binary needs nothing"
[ "$(dpkg-deb -f "$deb" Section)" = utils ] || fail "the .deb's section is not utils"
[ -n "$(dpkg-deb -f "$deb" Maintainer)" ] || fail "the .deb names no maintainer"
tar -tzf "${tgzs[0]}" | grep -q '/bin/llamactl$' || fail "the .tar.gz holds no bin/llamactl"

expected=(
  /usr/bin/llamactl
  /usr/share/bash-completion/completions/llamactl
  /usr/share/zsh/vendor-completions/_llamactl
  /usr/share/fish/vendor_completions.d/llamactl.fish
  /usr/share/man/man1/llamactl.1
  /usr/share/doc/llamactl/examples/config.toml
  /usr/lib/systemd/user/llamactl-serve.service
  /usr/lib/systemd/user/llamactl-load@.service
  /usr/share/llamactl/fixtures/two-idle-gpus.txt
  /usr/share/llamactl/fixtures/nvidia-smi/h100-580-plain-idle.txt
)
listing=$(dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's|^\./|/|')
for f in "${expected[@]}"; do
  grep -qxF "$f" <<<"$listing" || fail "the .deb lacks $f"
done

# Installed, and removed again whatever happens.
installed=0
cleanup() { [ "$installed" = 0 ] || "${sudo_cmd[@]}" dpkg -r llamactl >/dev/null || echo "package test: dpkg -r llamactl failed" >&2; }
trap cleanup EXIT
"${sudo_cmd[@]}" dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb failed"
installed=1

version=$(/usr/bin/llamactl --version) || fail "/usr/bin/llamactl --version failed"
[[ "$version" == "llamactl "* ]] || fail "llamactl --version printed '$version'"
for f in "${expected[@]}"; do
  # A minimal image may tell dpkg to leave out /usr/share/man and /usr/share/doc
  # (path-exclude in /etc/dpkg/dpkg.cfg.d): those were checked in the .deb above.
  if [ ! -e "$f" ] && grep -qsE "^path-exclude=$(dirname "$(dirname "$f")")|^path-exclude=/usr/share/(man|doc)/" /etc/dpkg/dpkg.cfg.d/*; then
    echo "package test: $f not installed (dpkg path-exclude on this machine); it is in the .deb"
    continue
  fi
  [ -e "$f" ] || fail "$f is missing after dpkg -i"
done
# The fixture reads as two idle GPUs.
gpus=$(LLAMACTL_GPU_FIXTURE=/usr/share/llamactl/fixtures/two-idle-gpus.txt /usr/bin/llamactl --state-dir "$dir/packages/state" gpus) ||
  fail "llamactl gpus on the two-idle-gpus fixture failed"
grep -q "Total GPUs: 2" <<<"$gpus" || fail "the two-idle-gpus fixture does not read as two GPUs: $gpus"

# man llamactl finds the installed page and renders it without a warning.
if [ -e /usr/share/man/man1/llamactl.1 ]; then
  command -v man >/dev/null || fail "man is not installed (apt-get install man-db)"
  [ "$(man -w llamactl)" = /usr/share/man/man1/llamactl.1 ] || fail "man -w llamactl: $(man -w llamactl 2>&1)"
  page=$(MANPAGER=cat MANWIDTH=80 man --warnings=w llamactl 2>"$out/man.err") || fail "man llamactl failed: $(cat "$out/man.err")"
  [ ! -s "$out/man.err" ] || fail "man llamactl warns: $(cat "$out/man.err")"
  grep -q "^COMMANDS" <<<"$page" || fail "man llamactl shows no COMMANDS section"
fi

# The systemd units parse, and name the installed binary (where systemd-analyze
# is there; a minimal machine may have no systemd). The template is checked as
# an instance of itself.
if command -v systemd-analyze >/dev/null; then
  units="$out/units"
  mkdir -p "$units"
  cp /usr/lib/systemd/user/llamactl-serve.service "$units/"
  cp "/usr/lib/systemd/user/llamactl-load@.service" "$units/llamactl-load@tiny.service"
  verify=$(cd "$units" && timeout 30 systemd-analyze verify --system ./llamactl-serve.service ./llamactl-load@tiny.service 2>&1 |
    grep -E "llamactl-(serve|load)" || true)
  [ -z "$verify" ] || fail "systemd-analyze verify: $verify"
fi

"${sudo_cmd[@]}" dpkg -r llamactl >/dev/null || fail "dpkg -r llamactl failed"
installed=0
[ ! -e /usr/bin/llamactl ] || fail "/usr/bin/llamactl is still there after dpkg -r"
echo "package test: the .deb installs llamactl ($version), its completions, man page, example config, systemd units and fixtures, and removes cleanly"
