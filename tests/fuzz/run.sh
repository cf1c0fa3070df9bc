#!/bin/sh
# Builds the libFuzzer targets with clang (KVI_FUZZ=ON) and fuzzes each one
# for a while, starting from a scratch copy of its seed corpus, so the seeds
# in the repository stay small.  Used by `make fuzz`.
#
# Environment: FUZZ_SECONDS per target (default 60), FUZZ_TARGETS (default
# "url words config glob"), FUZZ_BUILD build directory (default build-fuzz),
# JOBS for the build (default 2).
#
# A crash stops the run with the input in $FUZZ_BUILD/artifacts/<target>/;
# once fixed, copy that file into tests/fuzz/corpus/<target>/ so that the
# replay test of every normal build keeps checking it.
set -eu
cd "$(dirname "$0")/../.."

build=${FUZZ_BUILD:-build-fuzz}
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-url words config glob}
jobs=${JOBS:-2}

CC=clang cmake -S . -B "$build" -DKVI_FUZZ=ON -DKVI_WERROR=ON >/dev/null
names=""
for t in $targets; do
    names="$names fuzz_$t"
done
# shellcheck disable=SC2086 # one target name per word
cmake --build "$build" -j"$jobs" --target $names

for t in $targets; do
    work="$build/fuzz-work/$t"
    art="$build/artifacts/$t"
    mkdir -p "$work" "$art"
    cp tests/fuzz/corpus/"$t"/* "$work"/
    dict=""
    case $t in
    url | config) dict="-dict=tests/fuzz/url.dict" ;;
    esac
    echo "== fuzz_$t for ${seconds}s"
    # shellcheck disable=SC2086 # $dict is empty or one option
    "$build/tests/fuzz/fuzz_$t" $dict -max_total_time="$seconds" -artifact_prefix="$art/" \
        -print_final_stats=1 "$work" 2>&1 | grep -E '^(stat::number_of_executed_units|==|SUMMARY)|check failed' || true
    if ls "$art"/crash-* "$art"/leak-* "$art"/timeout-* >/dev/null 2>&1; then
        echo "fuzz_$t found a problem: see $art" >&2
        exit 1
    fi
done
echo "fuzzing done: no crash"
