#!/usr/bin/env bash
# Builds the browser demo into web/dist/: the wasm module (cargo for wasm32-unknown-unknown, then
# wasm-bindgen-cli pinned to Cargo.lock's wasm-bindgen version, installed here if missing), the
# static page, and the built-in model (trained once by `starling quiet demo`, then reused).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/starling-target}"

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
want=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
  echo "+ cargo install wasm-bindgen-cli --version $want (the lock file's wasm-bindgen)"
  # --locked first (the CLI's own lock file); if a locked crate is missing from the registry,
  # resolve its dependencies afresh — the CLI version, which must match, stays pinned.
  cargo install wasm-bindgen-cli --version "$want" --locked || cargo install wasm-bindgen-cli --version "$want"
fi

# The `dist` profile: release without debug info (the module is a download).
cargo build --profile dist --target wasm32-unknown-unknown -p starling-web
rm -rf web/dist
mkdir -p web/dist
wasm-bindgen --target web --no-typescript --out-dir web/dist/pkg "$CARGO_TARGET_DIR/wasm32-unknown-unknown/dist/starling_web.wasm"
cp web/static/* web/dist/

# The built-in model: the Quiet-STaR sums model of `starling quiet demo` (about 2 minutes once).
if [ ! -f web/.built-in/model/quiet_config.json ]; then
  cargo run --release --bin starling -- --device cpu quiet demo --out web/.built-in
fi
mkdir -p web/dist/model
for f in config.json model.safetensors tokenizer.json quiet.safetensors quiet_config.json; do
  cp "web/.built-in/model/$f" web/dist/model/
done

# The built-in model of Rationalize and STaR live: the base model of `starling star` (a 0.86M
# parameter transformer pretrained on worked sums, about 3 minutes once; reused when its recipe
# is unchanged).
cargo run --release --bin starling -- --device cpu star --base-only --base-dir web/.built-in/star-base
mkdir -p web/dist/star-model
for f in config.json model.safetensors tokenizer.json; do
  cp "web/.built-in/star-base/model/$f" web/dist/star-model/
done
echo "built web/dist ($(du -sh web/dist | cut -f1); wasm $(du -h web/dist/pkg/starling_web_bg.wasm | cut -f1), Think model $(du -ch web/dist/model/* | tail -1 | cut -f1), arithmetic model $(du -ch web/dist/star-model/* | tail -1 | cut -f1)); serve it with: python3 -m http.server --directory web/dist 8080"
