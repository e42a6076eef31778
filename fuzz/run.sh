#!/usr/bin/env bash
# Runs fuzz targets coverage-guided with cargo-fuzz (libFuzzer), seeded with every target's
# starting inputs (fuzz/tests/replay.rs writes them). Needs the nightly toolchain (rustup) and
# cargo-fuzz (installed here if missing). Without a sanitizer: the targets are safe Rust, so
# out-of-bounds reads and overflows panic by themselves (overflow checks are on).
#
#   fuzz/run.sh TARGET [RUNS]   one target, RUNS executions (default 1000000)
#   fuzz/run.sh all [RUNS]      every target in turn
#
# A crash lands in fuzz/artifacts/TARGET/; after the fix, copy it to fuzz/regressions/TARGET/ so
# `cargo test -p starling-fuzz` replays it forever. The corpus grows in
# $STARLING_FUZZ_WORK/corpus/TARGET (default ~/.cache/starling-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: fuzz/run.sh TARGET|all [RUNS]}
runs=${2:-1000000}
work=${STARLING_FUZZ_WORK:-$HOME/.cache/starling-fuzz}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/starling-target}"

rustup toolchain list | grep -q '^nightly' || {
  echo "error: cargo-fuzz needs the nightly toolchain: rustup toolchain install nightly" >&2
  exit 1
}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

STARLING_FUZZ_CORPUS="$work/corpus" cargo test --release -p starling-fuzz --test replay -- --ignored write_corpus --quiet

if [ "$target" = all ]; then
  targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^starling-fuzz$')
else
  targets=$target
fi
for t in $targets; do
  mkdir -p "fuzz/artifacts/$t"
  echo "== $t: $runs runs"
  # A separate target folder: the instrumented build must not replace the normal one.
  status=0
  cargo +nightly fuzz run --sanitizer none --features libfuzzer --target-dir "$HOME/.cache/starling-fuzz-target" \
    "$t" "$work/corpus/$t" -- -runs="$runs" -max_len=65536 -malloc_limit_mb=1024 -rss_limit_mb=2048 \
    -timeout=10 -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 >"$work/$t.log" 2>&1 || status=$?
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY)|panicked at' "$work/$t.log" || true
  if [ $status != 0 ]; then
    echo "$t: failed (exit $status); log: $work/$t.log, input: fuzz/artifacts/$t/" >&2
    exit $status
  fi
done
