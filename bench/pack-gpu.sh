#!/usr/bin/env bash
# Builds what bench/gpu.sh needs on a GPU machine without Rust or network, into .gpu-bundle/
# (git-ignored; under 64 MiB so it can travel with the working tree):
#   starling-wgsl.gz  the default build (wgpu kernels compiled to WGSL), stripped
#   starling-gpu.gz   built with --features vulkan,autotune (SPIR-V on Vulkan), stripped; with
#                     --cuda, --features gpu (CUDA too)
#   tokenizer.json    SmolLM2's tokenizer (the benchmark model has its shape, random weights)
# and, with --vulkan-loader, the Debian packages of the Vulkan/EGL loaders into .gl/ (a machine
# without them has no Vulkan; unpack there with `dpkg -x`, see bench/README.md).
#
#   bench/pack-gpu.sh --tokenizer path/to/SmolLM2/tokenizer.json [--vulkan-loader] [--cuda]
#
# Both builds use the release profile and CARGO_TARGET_DIR (default ~/.cache/starling-target);
# the first GPU build compiles burn again with the extra runtimes (~20 minutes on 2 cores).
# --cuda needs network access to GitHub at build time: cubecl-cuda 0.11.3 always pulls in
# cubecl-llvm, whose build script downloads an LLVM bundle (tracel-ai/tracel-llvm releases).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tokenizer=
loader=0
gpu_features=starling-cli/vulkan,starling-cli/autotune
while [ $# -gt 0 ]; do
  case $1 in
    --tokenizer) tokenizer=$2; shift ;;
    --vulkan-loader) loader=1 ;;
    --cuda) gpu_features=starling-cli/gpu ;;
    *) echo "usage: $0 --tokenizer FILE [--vulkan-loader] [--cuda]" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$tokenizer" ] || [ ! -f "$tokenizer" ]; then
  echo "error: pass SmolLM2's tokenizer.json with --tokenizer (from a SmolLM2-135M model folder)" >&2
  exit 2
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/starling-target}
bundle=$root/.gpu-bundle
mkdir -p "$bundle"

pack() { # pack NAME CARGO_ARGS...: build, strip, compress
  local name=$1
  shift
  cargo build --release --workspace "$@"
  objcopy --strip-all "$CARGO_TARGET_DIR/release/starling" "$bundle/$name"
  gzip -9f "$bundle/$name"
  echo "packed $bundle/$name.gz ($(du -h "$bundle/$name.gz" | cut -f1))"
}
[ -e "$bundle/starling-wgsl.gz" ] || pack starling-wgsl
pack starling-gpu --features "$gpu_features"
# Leave the default binary in place for everything else that runs target/release/starling.
cargo build --release --workspace
cp "$tokenizer" "$bundle/tokenizer.json"

if [ $loader = 1 ]; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  apt-get $o update >/dev/null
  # shellcheck disable=SC2086
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh "$bundle"
