#!/bin/sh
# run.sh -- the mutation check (`make test-mutants`): every mutant kept in
# tests/mutants/*.patch must be caught, quickly, by the tests it names.
#
#   sh tests/mutants/run.sh                 every mutant: apply, build, run its tests, revert
#   sh tests/mutants/run.sh --check         only check that every patch still applies (seconds)
#   sh tests/mutants/run.sh --list          the mutants and the tests that must catch them
#   sh tests/mutants/run.sh NAME...         only these mutants (file names, with or without .patch)
#
# A mutant is a small patch (`diff -U1`, paths a/... b/... from the
# repository root) with a header before the diff, read by this script:
#
#   Mutant: what the change breaks, in words
#   Test: ^conformance_memcached$          the CTest regex of the tests that must fail
#
# (git apply and patch ignore text before the first "--- " line.)
#
# The mutants never touch the source tree: it is copied (only files whose
# content changed since the last run, so the build stays incremental) to
# $KVI_MUTANT_DIR/tree (default build-mutants/tree, built in
# build-mutants/build).  Each mutant is applied there with patch --fuzz=0,
# the tree is built, only the named tests run (ctest --stop-on-failure)
# under a time limit, and the patched files are copied back from the
# source.  A crash or Ctrl-C in the middle leaves the source untouched; the
# next run copies the original files over the mutated copy.
#
# Exit status 1 when any mutant survives (its tests pass), is stale (does
# not apply), does not build, names no test, or is not caught within
# KVI_MUTANT_LIMIT_S seconds (default 300).  Per mutant it prints the
# build time and the time its tests took to catch it; then a summary.
set -u

# The whole script is one brace group, read before anything runs: editing
# this file (or pulling) while a run is going on cannot change that run.
{
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
work=${KVI_MUTANT_DIR:-$src/build-mutants}
limit=${KVI_MUTANT_LIMIT_S:-300}
jobs=${JOBS:-2}
mode=run
names=""

for a in "$@"; do
    case "$a" in
    --check) mode=check ;;
    --list) mode=list ;;
    -h | --help)
        sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    -*)
        echo "run.sh: unknown option $a (try --help)" >&2
        exit 2
        ;;
    *) names="$names ${a%.patch}" ;;
    esac
done

# The mutants to use, in name order.
patches=""
if [ -n "$names" ]; then
    for n in $names; do
        n=$(basename "$n")
        if [ ! -f "$here/$n.patch" ]; then
            echo "run.sh: no mutant $here/$n.patch" >&2
            exit 2
        fi
        patches="$patches $here/$n.patch"
    done
else
    patches=$(ls "$here"/*.patch 2>/dev/null | sort)
fi
if [ -z "$patches" ]; then
    echo "run.sh: no mutants in $here" >&2
    exit 2
fi

# header FIELD FILE: the value of "FIELD: value" before the diff.
header() {
    sed -n "/^--- /q; s/^$1:[[:space:]]*//p" "$2" | head -n 1
}

# files PATCH: the repository paths a patch changes.
files() {
    sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$1"
}

if [ "$mode" = list ]; then
    for p in $patches; do
        printf '%-40s %-45s %s\n' "$(basename "$p" .patch)" "$(header Test "$p")" "$(header Mutant "$p")"
    done
    exit 0
fi

if [ "$mode" = check ]; then
    bad=0
    count=0
    for p in $patches; do
        count=$((count + 1))
        name=$(basename "$p" .patch)
        if [ -z "$(header Test "$p")" ]; then
            echo "NO TEST   $name: no 'Test:' header line"
            bad=$((bad + 1))
        elif ! out=$(patch -p1 --dry-run --fuzz=0 --force --no-backup-if-mismatch -s -d "$src" <"$p" 2>&1); then
            echo "STALE     $name: $(echo "$out" | head -n 3 | tr '\n' ' ')"
            bad=$((bad + 1))
        else
            echo "applies   $name"
        fi
    done
    echo "mutants: $count checked, $bad stale or without a test"
    [ "$bad" -eq 0 ]
    exit
fi

# ---- the copy of the tree ------------------------------------------------

tree=$work/tree
build=$work/build
mkdir -p "$tree" "$build" || exit 1
# One run at a time per copy.
exec 9>"$work/lock"
if ! flock -n 9; then
    echo "run.sh: another mutation run is using $work (set KVI_MUTANT_DIR for a second copy)" >&2
    exit 2
fi

# The files of the source: tracked and untracked-but-not-ignored when it is
# a git checkout, otherwise everything outside build*/ and .git.
list_sources() {
    if git -C "$src" rev-parse --show-toplevel >/dev/null 2>&1 &&
        [ "$(git -C "$src" rev-parse --show-toplevel)" = "$src" ]; then
        git -C "$src" ls-files --cached --others --exclude-standard
    else
        (cd "$src" && find . -path ./.git -prune -o -path './build*' -prune -o -type f -print |
            sed 's|^\./||')
    fi
}

# Copies each file whose content differs (cp gives it a new mtime, so make
# rebuilds what depends on it); removes files the source no longer has.
sync_tree() {
    list_sources | sort >"$work/files.new"
    while IFS= read -r f; do
        [ -f "$src/$f" ] || continue
        if ! cmp -s "$src/$f" "$tree/$f"; then
            mkdir -p "$(dirname "$tree/$f")" && cp -p "$src/$f" "$tree/$f" && touch "$tree/$f" ||
                return 1
        fi
    done <"$work/files.new"
    if [ -f "$work/files" ]; then
        comm -23 "$work/files" "$work/files.new" | while IFS= read -r f; do
            rm -f "$tree/$f"
        done
    fi
    mv "$work/files.new" "$work/files"
}

# save PATCH / restore PATCH: keep the copy's own version of every file the
# patch changes, and put it back afterwards (not the source's: the source
# may have changed since the copy was made, e.g. a pull during the run).
orig=$work/orig
save() {
    rm -rf "$orig"
    for f in $(files "$1"); do
        if [ -f "$tree/$f" ]; then
            mkdir -p "$(dirname "$orig/$f")" && cp -p "$tree/$f" "$orig/$f" || return 1
        fi
    done
}
restore() {
    for f in $(files "$1"); do
        if [ -f "$orig/$f" ]; then
            cp -p "$orig/$f" "$tree/$f" && touch "$tree/$f"
        else
            rm -f "$tree/$f"
        fi
    done
}

now() { date +%s; }

# The tests matching regex, cheapest first: by the seconds each took when
# this script last ran it ($work/costs; else CTest's recorded average), a
# test never timed first, ties in CTest's order (unit tests before the
# server tests).  One name a line.
costs=$work/costs
tests_by_cost() {
    touch "$costs"
    ctest --test-dir "$build" -N -R "$1" 2>/dev/null | sed -n 's/^ *Test *#[0-9]*: *//p' |
        while IFS= read -r t; do
            c=$(awk -v t="$t" '$1 == t { print $2; exit }' "$costs")
            # Else CTest's own average, from runs outside this script.
            [ -n "$c" ] || c=$(awk -v t="$t" '/^---/ { exit } $1 == t && NF >= 3 { print int($3); exit }' \
                "$build/Testing/Temporary/CTestCostData.txt" 2>/dev/null)
            echo "${c:-0} $t"
        done | sort -s -k1,1n | cut -d' ' -f2-
}

# note_cost TEST SECONDS: remembers how long TEST took.
note_cost() {
    awk -v t="$1" '$1 != t' "$costs" >"$costs.new"
    echo "$1 $2" >>"$costs.new"
    mv "$costs.new" "$costs"
}

# run_tests REGEX LOG: runs the matching tests one by one, cheapest first,
# until one fails, within $limit seconds in all (timeout kills the whole
# process group, servers the tests started included).  Sets run_result to
# the failed test's name, "passed", "slow" or "none".
run_tests() {
    run_result=none
    : >"$2"
    start=$(now)
    for t in $(tests_by_cost "$1"); do
        left=$((limit - ($(now) - start)))
        if [ "$left" -le 0 ]; then
            run_result=slow
            return
        fi
        t1=$(now)
        shm_before=$(ls /dev/shm 2>/dev/null)
        timeout -k 10 "$left" ctest --test-dir "$build" -R "^$t\$" --output-on-failure \
            --timeout "$left" >>"$2" 2>&1
        rc=$?
        # A mutant that crashes or hangs a test kills it before its teardown:
        # the shared segments it made would stay in /dev/shm.  A new segment
        # that a live process still maps is not ours to remove (tests run
        # elsewhere on this machine at the same time).
        for f in $(ls /dev/shm 2>/dev/null); do
            case "$f" in kvi.*) ;; *) continue ;; esac
            printf '%s\n' "$shm_before" | grep -qxF "$f" && continue
            cat /proc/[0-9]*/maps 2>/dev/null | grep -qF "/dev/shm/$f" || rm -f "/dev/shm/$f"
        done
        note_cost "$t" $(($(now) - t1))
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] || [ $(($(now) - start)) -gt "$limit" ]; then
            run_result=slow
            return
        fi
        if [ "$rc" -ne 0 ]; then
            run_result=$t
            return
        fi
        run_result=passed
    done
}

log=$work/log
mkdir -p "$log"
t_start=$(now)
echo "mutants: copying $src to $tree"
sync_tree || {
    echo "run.sh: cannot copy the tree" >&2
    exit 1
}
if [ ! -f "$build/CMakeCache.txt" ]; then
    # No -Werror: a mutant may leave a variable unused.
    cmake -S "$tree" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVI_WERROR=OFF \
        >"$log/configure.log" 2>&1 || {
        echo "run.sh: cmake failed (log: $log/configure.log)" >&2
        exit 1
    }
fi
echo "mutants: building the unmutated tree in $build"
cmake --build "$build" -j"$jobs" >"$log/build.log" 2>&1 || {
    tail -n 30 "$log/build.log"
    echo "run.sh: the unmutated tree does not build (log: $log/build.log)" >&2
    exit 1
}

killed=0
bad=0
count=0
report=$work/summary.txt
: >"$report"
for p in $patches; do
    count=$((count + 1))
    name=$(basename "$p" .patch)
    regex=$(header Test "$p")
    what=$(header Mutant "$p")
    result=""
    build_s=-
    catch_s=-
    echo "== $name: $what"
    if [ -z "$regex" ]; then
        result="NO TEST"
    elif ! save "$p"; then
        result="NO COPY"
    elif ! patch -p1 --fuzz=0 --force --no-backup-if-mismatch -r - -s -d "$tree" <"$p" >"$log/$name.apply" 2>&1; then
        result="STALE"
        restore "$p"
        cat "$log/$name.apply"
    else
        t0=$(now)
        if ! cmake --build "$build" -j"$jobs" >"$log/$name.build" 2>&1; then
            result="NO BUILD"
            tail -n 20 "$log/$name.build"
        fi
        build_s=$(($(now) - t0))
        if [ -z "$result" ]; then
            t0=$(now)
            run_tests "$regex" "$log/$name.test"
            catch_s=$(($(now) - t0))
            case "$run_result" in
            none) result="NO TEST" ;;
            slow) result="SLOW" ;;
            passed) result="SURVIVED" ;;
            *)
                result="killed"
                failed=$run_result
                ;;
            esac
        fi
        restore "$p"
    fi
    if [ "$result" = killed ]; then
        killed=$((killed + 1))
        line=$(printf '%-9s %-40s build %4ss  caught in %4ss by %s' "$result" "$name" "$build_s" \
            "$catch_s" "$failed")
    else
        bad=$((bad + 1))
        line=$(printf '%-9s %-40s build %4ss  tests %4ss  (%s; log %s)' "$result" "$name" \
            "$build_s" "$catch_s" "$regex" "$log/$name.test")
    fi
    echo "$line"
    echo "$line" >>"$report"
done

# Leave the copy built as the source is (the next run starts from there).
cmake --build "$build" -j"$jobs" >"$log/build.log" 2>&1

echo
echo "==== mutation check summary ($(($(now) - t_start)) s in all, limit ${limit} s per mutant)"
sort "$report"
echo "mutants: $count, killed $killed, not killed $bad"
[ "$bad" -eq 0 ]
exit
}
