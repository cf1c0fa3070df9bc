#!/bin/sh
# check-skips.sh LOG [LASTTEST] -- after a ctest run whose output went to LOG
# (ctest --output-log LOG): lists the cases skipped inside test programs
# (cmocka's "[  SKIPPED ]", from LASTTEST = Testing/Temporary/LastTest.log,
# by design: a conformance row an engine has no capability for), then the
# tests CTest skipped as a whole, loudly, and fails
# when KVI_REQUIRE_SERVERS=1 (set by `make test` once it has installed every
# server and library a test may need), so that CI never passes with a
# server test that did not run.
log=${1:?usage: check-skips.sh CTEST_LOG}
[ -f "$log" ] || { echo "check-skips.sh: no ctest log $log" >&2; exit 1; }
if [ -n "${2:-}" ] && [ -f "$2" ]; then
    cases=$(awk '/^[0-9]+\/[0-9]+ Test: / { t = $3 }
                 /^\[  SKIPPED \] test_/ { print "   " t ": " $4 }' "$2" | sort -u)
    if [ -n "$cases" ]; then
        echo "== cases skipped inside test programs, by design (why: in $2):"
        printf '%s\n' "$cases"
    fi
fi
skipped=$(grep -E '^[[:space:]]*[0-9]+ - .* \(Skipped\)$' "$log" | sed 's/^[[:space:]]*//')
[ -z "$skipped" ] && exit 0
echo "== tests skipped (their output above says what is missing):"
printf '%s\n' "$skipped" | sed 's/^/   /'
if [ "${KVI_REQUIRE_SERVERS:-0}" = 1 ]; then
    echo "== FAILED: KVI_REQUIRE_SERVERS=1: every test must run here, none may be skipped" >&2
    exit 1
fi
exit 0
