#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for a bounded time,
# seeded with the fixtures. usage: fuzz/run.sh [SECONDS_PER_TARGET] [BUILD_DIR]
set -euo pipefail
secs=${1:-20}
build=${2:-build/fuzz}
root=$(cd "$(dirname "$0")/.." && pwd)
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DLLAMACTL_FUZZ=ON >/dev/null
cmake --build "$build"
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
mkdir -p "$corpus/gpu" "$corpus/gguf" "$corpus/duration" "$corpus/translate"
cp "$root"/fixtures/nvidia-smi/*.csv "$root"/fixtures/nvidia-smi/*table*.txt "$root"/fixtures/nvidia-smi/h100-580-*.txt "$corpus/gpu/"
printf 'GGUF\003\000\000\000' > "$corpus/gguf/header"
for d in 5m 1h30m 300 -1 0 250ms; do printf '%s' "$d" > "$corpus/duration/$d"; done
# Request bodies and llama-server replies: the committed seeds, and every
# body of the Ollama curl transcripts (tests/golden/ollama, "-d '...'").
cp "$root"/fuzz/seeds/translate/* "$corpus/translate/"
n=0
for f in "$root"/tests/golden/ollama/*.txt; do
  body=$(sed -n "s/^\$ curl .* -d '\(.*\)'\$/\1/p" "$f" | head -n 1)
  if [ -n "$body" ]; then
    n=$((n + 1))
    printf '%s' "$body" > "$corpus/translate/golden-$n.json"
  fi
done
for t in gpu_csv gpu_table; do
  echo "fuzz_$t: ${secs}s"
  "$build/fuzz_$t" -max_total_time="$secs" -max_len=65536 -timeout=5 "$corpus/gpu" 2>&1 | tail -n 2
done
echo "fuzz_gguf: ${secs}s"
"$build/fuzz_gguf" -max_total_time="$secs" -timeout=5 "$corpus/gguf" 2>&1 | tail -n 2
echo "fuzz_duration: ${secs}s"
"$build/fuzz_duration" -max_total_time="$secs" -timeout=5 "$corpus/duration" 2>&1 | tail -n 2
echo "fuzz_translate: ${secs}s"
"$build/fuzz_translate" -max_total_time="$secs" -max_len=65536 -timeout=5 "$corpus/translate" 2>&1 | tail -n 2
echo "fuzz: all targets ran ${secs}s without a crash"
