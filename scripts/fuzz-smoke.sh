#!/usr/bin/env bash
# Fuzz smoke test: builds lastmile's cargo-fuzz targets (fuzz/) on stable Rust and runs
# each one briefly from the committed seeds. Exits non-zero if any target crashes or a
# committed regression input fails.
#
#   FUZZ_SECONDS=30   seconds of fuzzing per target (default 30)
#   FUZZ_TARGETS="…"  space-separated subset of targets (default: all)
#   FUZZ_JOBS=N       targets fuzzed at once (default 2 when CI=true, else 1)
#
# Stable Rust has no -Zsanitizer, so targets are built with `--sanitizer none`: libFuzzer's
# coverage instrumentation (stable -C flags) plus debug assertions and overflow checks.
# Writes under fuzz/ (target/, corpus/, artifacts/, Cargo.lock), cargo's own caches
# ($CARGO_HOME: registry, and bin/ for cargo-fuzz) and, when $CARGO_TARGET_DIR is set
# (scripts/test.sh sets it), the fuzz build in $CARGO_TARGET_DIR/fuzz: a build cache
# outside the clone, so a fresh clone does not rebuild the instrumented targets (~11
# minutes on two cores).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="$root/fuzz"
cd "$root"

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
FUZZ_TARGETS="${FUZZ_TARGETS:-remote_write_decode remote_write_body wal_frames wal_record chunk_decode promql_query span_record go_binary loki_push_decode loki_push_body logql_query otlp_protobuf otlp_json rules_file}"
# Targets fuzzed at once: both cores on CI (which has the machine to itself), one
# elsewhere (a shared development machine).
if [[ ${CI:-} == true ]]; then
    FUZZ_JOBS="${FUZZ_JOBS:-2}"
else
    FUZZ_JOBS="${FUZZ_JOBS:-1}"
fi
CARGO_FUZZ_VERSION="0.13.2"
# -rss_limit_mb catches decompression bombs; -timeout flags a single input that hangs.
libfuzzer_flags=(-max_total_time="$FUZZ_SECONDS" -rss_limit_mb=512 -timeout=20 -print_final_stats=1)
logs="$fuzz/target/smoke-logs"
build_dir="${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/fuzz}"
build_dir="${build_dir:-$fuzz/target}"

started=$SECONDS
section() { printf '\n==== %s [%ds] ====\n' "$*" "$((SECONDS - started))"; }

section "1/4 cargo-fuzz"
if cargo fuzz --version >/dev/null 2>&1; then
    echo "already installed: $(cargo fuzz --version)"
else
    if ! command -v c++ >/dev/null 2>&1; then
        echo "error: a C++ compiler (c++) is needed to build libFuzzer" >&2
        exit 1
    fi
    # Built under fuzz/target (not in $CARGO_TARGET_DIR or a temporary dir).
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" --target-dir "$fuzz/target/cargo-fuzz-install"
    cargo fuzz --version
fi

section "2/4 build fuzz targets (release, debug assertions, --sanitizer none)"
cargo fuzz build --fuzz-dir "$fuzz" --target-dir "$build_dir" --sanitizer none
# The binaries just built are run directly: the same build for every target, whatever
# changes in the work tree meanwhile.
triple="$(rustc -vV | sed -n 's/^host: //p')"
bin="$build_dir/$triple/release"
rm -rf "$logs"
mkdir -p "$logs"

section "3/4 regression inputs (fuzz/regressions/<target>/)"
failed=()
for t in $FUZZ_TARGETS; do
    inputs=()
    if [[ -d "$fuzz/regressions/$t" ]]; then
        while IFS= read -r -d '' f; do inputs+=("$f"); done < <(find "$fuzz/regressions/$t" -type f ! -name '*.md' -print0 | sort -z)
    fi
    if ((${#inputs[@]} == 0)); then
        echo "$t: none"
        continue
    fi
    mkdir -p "$fuzz/artifacts/$t"
    bad=()
    for f in "${inputs[@]}"; do
        # A file (not a directory) argument makes libFuzzer run just that input once.
        if ! "$bin/$t" -artifact_prefix="$fuzz/artifacts/$t/" "$f" >"$logs/regression.log" 2>&1; then
            bad+=("${f#"$root"/}")
            grep -m1 -A1 -E "panicked at|ERROR: libFuzzer" "$logs/regression.log" | sed 's/^/    /' || true
        fi
    done
    if ((${#bad[@]} == 0)); then
        echo "$t: ${#inputs[@]} passed"
    else
        echo "$t: ${#bad[@]} of ${#inputs[@]} FAILED: ${bad[*]}"
        failed+=("$t (regressions)")
    fi
done

section "4/4 fuzz each target for ${FUZZ_SECONDS}s from fuzz/seeds/, ${FUZZ_JOBS} at a time"
fuzz_one() {
    local t="$1"
    mkdir -p "$fuzz/corpus/$t" "$fuzz/artifacts/$t"
    # New inputs go to the first (git-ignored) corpus dir; the seeds dir is only read.
    if timeout $((FUZZ_SECONDS + 300)) "$bin/$t" -artifact_prefix="$fuzz/artifacts/$t/" "${libfuzzer_flags[@]}" \
        "$fuzz/corpus/$t" "$fuzz/seeds/$t" >"$logs/$t.log" 2>&1; then
        echo ok >"$logs/$t.status"
    else
        echo CRASHED >"$logs/$t.status"
    fi
}
running=0
for t in $FUZZ_TARGETS; do
    if ((running >= FUZZ_JOBS)); then
        wait -n || true
        running=$((running - 1))
    fi
    echo "started $t [$((SECONDS - started))s]"
    fuzz_one "$t" &
    running=$((running + 1))
done
wait || true

summary=()
for t in $FUZZ_TARGETS; do
    log="$logs/$t.log"
    status="$(cat "$logs/$t.status" 2>/dev/null || echo CRASHED)"
    execs="$(grep -m1 'stat::average_exec_per_sec' "$log" | awk '{print $2}' || true)"
    section "$t: $status"
    grep -E '^#[0-9]+ +(INITED|DONE)' "$log" | sed -E 's/ +/ /g' || true
    if [[ $status != ok ]]; then
        failed+=("$t")
        echo "end of the log ($log):"
        tail -n 60 "$log" | sed 's/^/    /'
    fi
    summary+=("$(printf '%-20s %-8s %8s exec/s' "$t" "$status" "${execs:-?}")")
done

section "summary"
printf '%s\n' "${summary[@]}"
echo "total time: $((SECONDS - started))s"
if ((${#failed[@]} > 0)); then
    echo "FAILED: ${failed[*]}"
    echo "Crashing inputs are in fuzz/artifacts/<target>/; reproduce one with"
    echo "  cargo fuzz run --fuzz-dir fuzz -s none <target> fuzz/artifacts/<target>/<file>"
    exit 1
fi
echo "all fuzz targets passed"
