#!/bin/sh
# run.sh -- builds the libFuzzer targets with clang (-DKVI_FUZZ=ON) into
# build-fuzz and runs each for FUZZ_SECONDS (default 60) on a temporary copy
# of its seed corpus (the repository's corpus is never written to, so new
# inputs the fuzzer finds do not pollute it).
#
#   sh tests/fuzz/run.sh                 (the Makefile's `make fuzz`)
#   FUZZ_SECONDS=10 FUZZ_TARGETS="url snapshot" sh tests/fuzz/run.sh
#
# A crash, leak, timeout or out-of-memory input is saved as
# tests/fuzz/corpus/<target>/crash-regression-<n> (so that the replay tests
# of every normal build run it from then on) and the script exits 1.
# Prints one line per target: executions, seconds, result.
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${FUZZ_BUILD:-$ROOT/build-fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-60}
CC_FUZZ=${FUZZ_CC:-clang}
JOBS=${FUZZ_JOBS:-2}
TARGETS=${FUZZ_TARGETS:-$(sed -n 's/^set(KVI_FUZZ_TARGETS \(.*\))$/\1/p' "$ROOT/tests/fuzz/CMakeLists.txt")}

if ! command -v "$CC_FUZZ" >/dev/null 2>&1; then
    echo "run.sh: $CC_FUZZ not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
    exit 1
fi
if [ -z "$TARGETS" ]; then
    echo "run.sh: no fuzz targets found in tests/fuzz/CMakeLists.txt" >&2
    exit 1
fi

CC=$CC_FUZZ cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVI_FUZZ=ON \
    >"$BUILD.configure.log" 2>&1 || {
    cat "$BUILD.configure.log" >&2
    echo "run.sh: configure failed" >&2
    exit 1
}
for t in $TARGETS; do
    cmake --build "$BUILD" -j"$JOBS" --target "fuzz_$t" >/dev/null || {
        cmake --build "$BUILD" -j1 --target "fuzz_$t" >&2
        echo "run.sh: building fuzz_$t failed" >&2
        exit 1
    }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kvi-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT INT TERM
status=0
printf '%-10s %14s %8s  %s\n' target executions seconds result
for t in $TARGETS; do
    corpus=$WORK/$t/corpus
    art=$WORK/$t/artifacts
    mkdir -p "$corpus" "$art"
    if [ -d "$ROOT/tests/fuzz/corpus/$t" ]; then
        cp -R "$ROOT/tests/fuzz/corpus/$t/." "$corpus/"
    fi
    start=$(date +%s)
    "$BUILD/tests/fuzz/fuzz_$t" -max_total_time="$SECONDS_EACH" -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$art/" "$corpus" >"$WORK/$t/log" 2>&1
    rc=$?
    took=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$WORK/$t/log" | tail -1)
    result=ok
    if [ "$rc" -ne 0 ]; then
        result="FAILED (exit $rc)"
        status=1
        n=1
        for f in "$art"/*; do
            [ -f "$f" ] || continue
            while [ -e "$ROOT/tests/fuzz/corpus/$t/crash-regression-$n" ]; do
                n=$((n + 1))
            done
            mkdir -p "$ROOT/tests/fuzz/corpus/$t"
            cp "$f" "$ROOT/tests/fuzz/corpus/$t/crash-regression-$n"
            result="$result; saved tests/fuzz/corpus/$t/crash-regression-$n ($(basename "$f"))"
        done
        echo "---- fuzz_$t log (tail) ----" >&2
        tail -40 "$WORK/$t/log" >&2
    fi
    printf '%-10s %14s %8s  %s\n' "$t" "${execs:-?}" "$took" "$result"
done
exit $status
