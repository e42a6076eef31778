#!/usr/bin/env bash
# Builds the site and tests it in Debian's headless chromium (WebGPU and CPU paths); see
# web/tests/page.test.mjs. Needs: chromium (apt), node + npm.
set -euo pipefail
cd "$(dirname "$0")"
./build.sh
cd tests
npm ci --no-audit --no-fund --silent
node page.test.mjs
