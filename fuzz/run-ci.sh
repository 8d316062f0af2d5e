#!/usr/bin/env bash
# Run every fuzz target for a bounded time, when cargo-fuzz is installed.
#
#   LOGBOOK_FUZZ_SECONDS=30 bash fuzz/run-ci.sh
#   LOGBOOK_FUZZ_TARGETS=decode_record bash fuzz/run-ci.sh   # some targets only
#
# Each target starts from a temporary copy of its committed corpus
# (fuzz/corpus/<target>), so a run never grows the committed corpus. A
# crash leaves its input in fuzz/artifacts/<target>/ and makes the script
# exit non-zero after the other targets have run. Without cargo-fuzz, the
# corpus is still checked by `cargo test` (crates/testkit/tests/corpus.rs).
set -euo pipefail

cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
    if [ "${CI:-}" = "true" ]; then
        echo "cargo-fuzz not installed: under CI=true the fuzz runs are required" >&2
        exit 1
    fi
    echo "cargo-fuzz not installed: fuzz runs skipped (corpus regression tests still run under cargo test)"
    exit 0
fi

seconds="${LOGBOOK_FUZZ_SECONDS:-30}"
targets=(${LOGBOOK_FUZZ_TARGETS:-decode_record open_segment event_roundtrip replay_reduce wal_ops})
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# cargo fuzz builds in fuzz/target; a target dir meant for the main
# workspace must not leak into it.
unset CARGO_TARGET_DIR
export RUSTC_BOOTSTRAP=1

echo "fuzz: $(cargo fuzz --version), ${seconds}s per target"
# Debug assertions and overflow checks on (-a), as under cargo test.
cargo fuzz build -a

failed=()
for t in "${targets[@]}"; do
    cp -r "fuzz/corpus/$t" "$work/$t"
    log="$work/$t.log"
    echo "fuzz: $t"
    if cargo fuzz run -a "$t" "$work/$t" -- -max_total_time="$seconds" >"$log" 2>&1; then
        # libFuzzer's closing lines: "Done N runs in S second(s)".
        grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs)' "$log" || tail -n 3 "$log"
    else
        echo "fuzz: $t FAILED:"
        # The assertion that failed, then cargo-fuzz's summary of the input.
        grep -m 1 -A 6 'panicked at' "$log" || true
        grep -A 16 '^Failing input:' "$log" || tail -n 40 "$log"
        failed+=("$t")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz: failing targets: ${failed[*]} (inputs in fuzz/artifacts/; see fuzz/README.md)"
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${seconds}s without a failure"
