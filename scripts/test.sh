#!/usr/bin/env bash
# The whole test suite of a fresh clone, in one command:
#   deps (Debian packages) -> rustfmt -> clippy -> cargo test -> UI in Chromium -> fuzz
#   harness tests -> fuzz smoke
# Stops at the first failure. CI runs it through .ci/run.
#
# Tests build in the dev profile (dependencies at opt-level 1, see Cargo.toml): on two
# cores that is several minutes faster than a release build and the tests run the same
# way (the kill -9 test exercises the real binary and its fsync path either way).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:-/root}/.cache/lastmile-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
# Incremental state is large and buys little here: CI builds each commit once.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

SUITE_START=$(date +%s)
STEP_START=$SUITE_START
section() {
    STEP_START=$(date +%s)
    printf '\n==================== %s ====================\n' "$*"
}
took() {
    printf -- '---- %s: %ss\n' "$1" "$(($(date +%s) - STEP_START))"
}

section "install test dependencies"
"$ROOT/scripts/install-test-deps.sh"
took "dependencies"

section "build cache"
"$ROOT/scripts/prune-build-cache.sh"
took "build cache"

section "toolchain"
cargo --version
rustc --version
echo "CARGO_TARGET_DIR=$CARGO_TARGET_DIR"

section "cargo fmt --all -- --check"
cargo fmt --all -- --check
took "fmt"

section "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
took "clippy"

section "cargo test --workspace"
cargo test --workspace --no-run
took "test build"
STEP_START=$(date +%s)
cargo test --workspace
took "tests"

section "web UI end-to-end (Chromium + playwright-core)"
"$ROOT/scripts/ui-e2e.sh"
took "ui e2e"

# The fuzz workspace's own tests: every target has a valid seed, committed seeds and
# regression inputs pass (the fuzz crate is a separate workspace, so `--workspace` above
# does not build it).
section "fuzz harness tests"
cargo test --manifest-path "$ROOT/fuzz/Cargo.toml" --tests
took "fuzz harness tests"

# ---- fuzz smoke --------------------------------------------------------------------
# Owned by the fuzzing work: scripts/fuzz-smoke.sh, when it exists, runs each fuzz target
# briefly on its seeds. This script only calls it.
section "fuzz smoke"
if [ -x "$ROOT/scripts/fuzz-smoke.sh" ]; then
    "$ROOT/scripts/fuzz-smoke.sh"
    took "fuzz smoke"
elif [ -f "$ROOT/scripts/fuzz-smoke.sh" ]; then
    bash "$ROOT/scripts/fuzz-smoke.sh"
    took "fuzz smoke"
else
    echo "no scripts/fuzz-smoke.sh: skipped"
fi

printf '\n==================== all checks passed in %ss ====================\n' "$(($(date +%s) - SUITE_START))"
