#!/bin/sh
# check-skips.sh LOG [LASTTEST] -- after a ctest run whose output went to LOG
# (ctest --output-log LOG): lists the cases skipped inside test programs
# (cmocka's "[  SKIPPED ]", from LASTTEST = Testing/Temporary/LastTest.log),
# then the tests CTest skipped as a whole, loudly, and fails on either when
# KVI_REQUIRE_SERVERS=1 (set by `make test` for every phase once it has
# installed every server and library a test may need), so that CI never
# passes with a test or a case that did not run.  A row that does not apply
# to an engine (it lacks the capability the row is about) is not a skip: it
# prints "N/A: ..." and passes on what it checked; they are counted here.
log=${1:?usage: check-skips.sh CTEST_LOG}
[ -f "$log" ] || { echo "check-skips.sh: no ctest log $log" >&2; exit 1; }
required=${KVI_REQUIRE_SERVERS:-0}
rc=0
if [ -n "${2:-}" ] && [ -f "$2" ]; then
    cases=$(awk '/^[0-9]+\/[0-9]+ Test: / { t = $3 }
                 /^\[  SKIPPED \] test_/ { print "   " t ": " $4 }' "$2" | sort -u)
    if [ -n "$cases" ]; then
        echo "== cases skipped inside test programs (why: in $2):"
        printf '%s\n' "$cases"
        if [ "$required" = 1 ]; then
            echo "== FAILED: KVI_REQUIRE_SERVERS=1: no case may be skipped inside a test program either" >&2
            rc=1
        fi
    fi
    na=$(grep -c '^N/A: ' "$2" 2>/dev/null || true)
    [ "${na:-0}" = 0 ] || echo "== $na rows did not apply to an engine (N/A: it lacks the capability the row is about; in $2)"
fi
skipped=$(grep -E '^[[:space:]]*[0-9]+ - .* \(Skipped\)$' "$log" | sed 's/^[[:space:]]*//')
[ -z "$skipped" ] && exit $rc
echo "== tests skipped (their output above says what is missing):"
printf '%s\n' "$skipped" | sed 's/^/   /'
if [ "$required" = 1 ]; then
    echo "== FAILED: KVI_REQUIRE_SERVERS=1: every test must run here, none may be skipped" >&2
    exit 1
fi
exit $rc
