#!/usr/bin/env bash
# Runs every fuzz target of fuzz/Cargo.toml for a bounded time from the committed seed corpora,
# and fails if any target crashes, panics, times out or runs out of memory.
#
# Usage: fuzz/run-all.sh [TARGET...]    (all targets when none is named)
# Environment:
#   FUZZ_SECONDS    seconds per target (default 20)
#   FUZZ_SANITIZER  cargo-fuzz sanitizer: none (default) or address
#
# cargo-fuzz needs nightly-only compiler flags; the machine has only the stable toolchain, which
# accepts them with RUSTC_BOOTSTRAP=1. The build keeps cargo-fuzz's defaults otherwise: release
# optimizations with debug assertions and overflow checks on, so an arithmetic overflow in a
# decoder is a crash, not a silently wrapped value.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

seconds=${FUZZ_SECONDS:-20}
sanitizer=${FUZZ_SANITIZER:-none}
export RUSTC_BOOTSTRAP=1
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# The version this script was written and measured with.
cargo_fuzz_version=0.13.2
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run-all: installing cargo-fuzz $cargo_fuzz_version"
    cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked \
        || cargo install cargo-fuzz --version "$cargo_fuzz_version"
fi
echo "run-all: $(cargo fuzz --version), $(rustc --version), sanitizer $sanitizer, ${seconds}s per target"

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

start=$SECONDS
cargo fuzz build --sanitizer "$sanitizer"
echo "run-all: build took $((SECONDS - start))s"

failed=()
for target in "${targets[@]}"; do
    seeds="$root/fuzz/corpus-seeds/$target"
    if [ ! -d "$seeds" ]; then
        echo "run-all: $target has no seed directory $seeds" >&2
        failed+=("$target")
        continue
    fi
    # libFuzzer writes new inputs into the first corpus directory: a scratch one (git-ignored),
    # so the committed seeds are only read.
    corpus="$root/fuzz/corpus/$target"
    mkdir -p "$corpus" "$root/fuzz/artifacts/$target"
    log="$root/fuzz/artifacts/$target.log"
    echo "run-all: fuzzing $target for ${seconds}s (log: ${log#"$root"/})"
    status=0
    cargo fuzz run --sanitizer "$sanitizer" "$target" "$corpus" "$seeds" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E '^Done [0-9]+ runs|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$log" \
        | sed "s/^/run-all: $target: /" || true
    if [ "$status" -ne 0 ]; then
        echo "run-all: $target FAILED (exit $status); the end of its log:" >&2
        tail -n 60 "$log" >&2
        ls "$root/fuzz/artifacts/$target" >&2 || true
        failed+=("$target")
    fi
done

echo "run-all: build and runs took $((SECONDS - start))s"
echo "run-all: $((${#targets[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "run-all: failed: ${failed[*]} (crash inputs under fuzz/artifacts/; fuzz/README.md says what next)" >&2
    exit 1
fi
