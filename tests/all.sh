#!/usr/bin/env bash
# Every check of the project, from a fresh clone: installs what the tests need when it is missing,
# then runs the cheap checks first (format, lints, docs: a failure there costs seconds) and the
# slow ones after (the Rust test suite on the CPU backend and on wgpu, then the browser tests in
# headless chromium). README's test command is this script; CI (.ci/run) runs README's line.
#
# Needs Rust >= 1.95 (rustup). What it installs when missing:
#   - Debian packages: mesa-vulkan-drivers + libvulkan1 (a CPU Vulkan driver, so every wgpu test
#     runs for real without a GPU), python3 and python3-venv (bench/gpu.sh; the manifest
#     validator), chromium, nodejs and npm (the browser tests). Installed with apt-get when run as root or with password-less sudo; otherwise it
#     stops and prints the command to run.
#   - rustup components clippy and rustfmt, and the wasm32-unknown-unknown target.
#   - wasm-bindgen-cli at the version pinned in Cargo.lock (web/build.sh, into ~/.cargo/bin).
#   - kubernetes-validate from PyPI (pinned; Kubernetes' own OpenAPI schemas, offline once
#     installed) in a virtual environment under ~/.cache, to check deploy/k8s/.
#
# STARLING_SKIP_WEB=1 leaves out the browser build and tests (and their packages).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

# --- Rust -------------------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found. Install Rust >= 1.95 with rustup (https://rustup.rs), then rerun $0" >&2
  exit 1
fi
rust_version=$(rustc --version | awk '{ print $2 }')
if [ "$(printf '%s\n1.95.0\n' "$rust_version" | sort -V | head -n 1)" != "1.95.0" ]; then
  echo "error: rustc $rust_version is older than 1.95: run 'rustup update stable', then rerun $0" >&2
  exit 1
fi
web=1
[ "${STARLING_SKIP_WEB:-0}" = 1 ] && web=0

# --- Debian packages ----------------------------------------------------------------------------
packages=(mesa-vulkan-drivers libvulkan1 python3 python3-venv)
[ $web = 1 ] && packages+=(chromium nodejs)
missing=()
if command -v dpkg >/dev/null 2>&1; then
  for pkg in "${packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  # Some nodejs builds bundle npm; Debian's own splits it into its package.
  [ $web = 1 ] && ! command -v npm >/dev/null 2>&1 && missing+=(npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    sudo_cmd=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo_cmd=(sudo)
  else
    echo "error: the tests need these Debian packages: ${missing[*]}" >&2
    echo "install them with:  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    echo "then rerun $0 (or set STARLING_SKIP_WEB=1 to leave out the browser tests)" >&2
    exit 1
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- rustup components and targets -------------------------------------------------------------
if command -v rustup >/dev/null 2>&1; then
  installed=$(rustup component list --installed)
  for component in clippy rustfmt; do
    grep -q "^$component" <<<"$installed" || rustup component add "$component"
  done
  if [ $web = 1 ]; then
    rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  fi
fi

# Reuse the developers' build cache when present (a cold burn build takes ~20 minutes on 2 cores).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/starling-target}"

# --- cheap checks first ---------------------------------------------------------------------------
say "cargo fmt --check"
cargo fmt --all --check
say "cargo clippy (native)"
cargo clippy --workspace --all-targets --quiet -- -D warnings
if [ $web = 1 ]; then
  say "cargo clippy (wasm32, the browser crate)"
  cargo clippy -p starling-web --target wasm32-unknown-unknown --quiet -- -D warnings
fi
say "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
say "deploy/: Kubernetes manifests against the API schemas, shell scripts parse"
venv="$HOME/.cache/starling-venv"
[ -x "$venv/bin/kubernetes-validate" ] || {
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
}
"$venv/bin/kubernetes-validate" --strict --quiet deploy/k8s/*.yaml
for script in deploy/slurm/star.sbatch deploy/slurm/submit.sh deploy/k8s/run.sh; do bash -n "$script"; done

# --- the test suite ------------------------------------------------------------------------------
say "cargo test --release --workspace"
cargo test --release --workspace
say "bench/gpu.sh --small (the GPU benchmark, dry run on this machine's wgpu adapter)"
gpu_bench=$(mktemp -d)
STARLING="$CARGO_TARGET_DIR/release/starling" bench/gpu.sh --small --out "$gpu_bench" >/dev/null
# Every Starling measurement of the WGSL column must hold a number (a failed one shows "–").
python3 - "$gpu_bench/gpu-bench.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
wgsl = [c for c in r["columns"] if c.get("compiler") == "wgpu<wgsl>"]
assert wgsl, "no WGSL column in the GPU benchmark"
c = wgsl[0]
missing = [k for k in ("thought_fused_s", "thought_split_s", "quiet_step_s") if not c.get(k)]
missing += [k for k in ("forward_s", "forward_backward_s") if not (c.get("model") or {}).get(k)]
assert not missing, f"gpu.sh --small measured nothing for {missing}: {c['status']}"
print("gpu.sh --small: every measurement of the WGSL column present")
PY
rm -rf "$gpu_bench"
if [ $web = 1 ]; then
  say "browser tests (web/test.sh)"
  web/test.sh
fi
say "all checks passed"
