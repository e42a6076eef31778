#!/usr/bin/env bash
# The crash experiment: tests/crash.rs with 20 trials per command instead of CI's 2 — each
# command killed with SIGKILL at 20–40 seeded random moments, resumed, and compared bit for bit
# with an uninterrupted run; then run on a full disk. Prints the table README's Reliability
# section and experiments/crash/README.md quote. About 12 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/starling-target}"
STARLING_CRASH_TRIALS="${1:-20}" cargo test --release --workspace --test crash -- --nocapture 2>&1 |
  grep -E '^\||failures|trial|panicked|test result'
