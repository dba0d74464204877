#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install the packages, build the
# static release binary, and show the GPUs and instances. Without NVIDIA
# GPUs (or nvidia-smi) llamactl says "CPU Mode (No GPU Detected)".
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup-debian.sh"
"$root/scripts/build.sh" release llamactl
bin="$root/build/release/llamactl"
file "$bin"
"$bin" --version
"$bin" gpus
"$bin" status
