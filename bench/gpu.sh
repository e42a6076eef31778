#!/usr/bin/env bash
# The one-shot GPU benchmark: every Starling build in the bundle on every shader compiler it can
# use, beside PyTorch on the same GPU, in one call of a few minutes, printing one table and
# writing it as JSON.
#
#   bench/gpu.sh [--small] [--out DIR] [--bundle DIR]
#
# Where it runs: a Linux machine with a GPU, no network and no Rust (see bench/README.md). The
# binaries come from the bundle that bench/pack-gpu.sh makes here (`.gpu-bundle/`: a default
# build, whose wgpu kernels are WGSL, and a `--features gpu` build: SPIR-V on Vulkan, CUDA,
# autotune); STARLING=/path/to/starling runs one binary instead. The model is SmolLM2-135M's shape
# with random weights, written by `starling init-model` and loaded by PyTorch from the same folder.
#
# --small: tiny sizes and the built-in arithmetic model's shape, to check the script end to end
# on any machine (lavapipe, CPU) in a minute or two. Each measurement has a time budget; one
# that fails or overruns is reported as such and the rest go on.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
small=0
out=${OUT:-$root/runs/gpu-bench}
bundle=$root/.gpu-bundle
while [ $# -gt 0 ]; do
  case $1 in
    --small) small=1 ;;
    --out) out=$2; shift ;;
    --bundle) bundle=$2; shift ;;
    *) echo "usage: $0 [--small] [--out DIR] [--bundle DIR]" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log=$out/gpu-bench.log
: >"$log"
say() { printf '%s\n' "$*" | tee -a "$log" >&2; }

# --- sizes ------------------------------------------------------------------------------------
if [ $small = 1 ]; then
  config=$root/models/star-arithmetic-base/model/config.json
  tokenizer=$root/models/star-arithmetic-base/model/tokenizer.json
  batch=2; seq=32; runs=2; prompt=8; new=8; gen_batches=1,4
  thought_l=64; thought_s=4; thought_heads="--heads 4 --kv-heads 2 --head-dim 32"
  quiet="--batch-size 1 --seq-len 32 --steps 3 --n-thought 4"
  budget_bench=300; budget_thought=120; budget_quiet=300; budget_torch=120
else
  config=$root/bench/smollm2-135m.config.json
  tokenizer=$bundle/tokenizer.json
  batch=8; seq=256; runs=5; prompt=32; new=64; gen_batches=1,16,64
  thought_l=1024; thought_s=16; thought_heads=""
  quiet="--batch-size 2 --seq-len 256 --steps 3"
  budget_bench=100; budget_thought=45; budget_quiet=60; budget_torch=90
fi

# --- binaries ---------------------------------------------------------------------------------
builds=()
if [ -n "${STARLING:-}" ]; then
  builds+=("starling=$STARLING")
else
  for gz in "$bundle"/starling-*.gz; do
    [ -e "$gz" ] || continue
    name=$(basename "$gz" .gz)
    gunzip -c "$gz" >"$work/$name" && chmod +x "$work/$name" && builds+=("$name=$work/$name")
  done
fi
if [ ${#builds[@]} = 0 ]; then
  echo "error: no starling binary: run bench/pack-gpu.sh first, or set STARLING=/path/to/starling" >&2
  exit 1
fi
first_bin=${builds[0]#*=}

# NVIDIA's Vulkan driver, where the machine has it (the loader itself must be installed).
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -z "${VK_DRIVER_FILES:-}" ] && [ -e $icd ] && export VK_DRIVER_FILES=$icd

# --- the model --------------------------------------------------------------------------------
model=$work/model
if ! "$first_bin" init-model --config "$config" --tokenizer "$tokenizer" --out "$model" >>"$log" 2>&1; then
  echo "error: could not write the benchmark model (see $log)" >&2
  exit 1
fi
corpus=$work/corpus.txt
python3 -c "
import random
r = random.Random(0)
lines = []
for _ in range(4000):
    a, b = r.randrange(10**6), r.randrange(10**6)
    lines.append(f'{a}+{b}={a+b}')
print('\n'.join(lines))" >"$corpus"

# --- one measurement: a budget, its output kept ---------------------------------------------
# measure NAME BUDGET CMD...: stdout to $out/NAME.txt, stderr to $out/NAME.err (and the log); a
# line in $work/status.
measure() {
  local name=$1 budget=$2
  shift 2
  local t0=$SECONDS
  timeout --kill-after=10 "$budget" "$@" >"$out/$name.txt" 2>"$out/$name.err"
  local rc=$?
  cat "$out/$name.err" >>"$log"
  local status=ok
  if [ $rc = 124 ] || [ $rc = 137 ]; then
    status="over its ${budget} s budget"
  elif [ $rc -gt 128 ]; then
    status="crashed (signal $((rc - 128)))"
  elif [ $rc = 3 ]; then
    status="skipped: $(tail -n 1 "$out/$name.err" | cut -c1-160)"
  elif [ $rc != 0 ]; then
    status="failed (exit $rc): $(grep -m1 -i 'error' "$out/$name.err" | cut -c1-160)"
  fi
  say "$name: $status in $((SECONDS - t0)) s"
  printf '%s\t%s\n' "$name" "$status" >>"$work/status"
}

for entry in "${builds[@]}"; do
  name=${entry%%=*}
  bin=${entry#*=}
  # wgpu (`gpu`: WGSL, or SPIR-V in a `vulkan` build on a Vulkan adapter that supports it), and
  # CUDA when the build has it (a build without it says so at once).
  devices=gpu
  probe=$("$bin" --device cuda bench-thought --lengths 4 --thoughts 1 --kernels split --runs 1 2>&1)
  case $probe in
    *"this build has no CUDA runtime"*) ;;
    *) devices="gpu cuda" ;;
  esac
  for device in $devices; do
    tag=$name.$device
    measure "$tag.model" $budget_bench "$bin" --device $device bench -m "$model" --batch $batch \
      --seq-len $seq --runs $runs --prompt-len $prompt --new-tokens $new --gen-batches $gen_batches \
      --json "$out/$tag.model.json"
    measure "$tag.thought" $budget_thought "$bin" --device $device bench-thought --lengths $thought_l \
      --thoughts $thought_s --kernels fused,split --runs 3 $thought_heads
    rm -rf "$work/quiet"
    measure "$tag.quiet" $budget_quiet "$bin" --device $device quiet train -m "$model" \
      --text "$corpus" --out "$work/quiet" --fresh $quiet
    [ -e "$work/quiet/metrics.jsonl" ] && cp "$work/quiet/metrics.jsonl" "$out/$tag.quiet.jsonl"
  done
done

# --- PyTorch on the same GPU ------------------------------------------------------------------
PYTHONUNBUFFERED=1 measure torch $budget_torch python3 "$root/bench/torch_bench.py" --model "$model" \
  --batch $batch --seq-len $seq --runs $runs --prompt-len $prompt --new-tokens $new \
  --gen-batches $gen_batches --json "$out/torch.json"

python3 "$root/bench/gpu_report.py" --dir "$out" --status "$work/status" --small $small
