#!/bin/sh
# check-skips.sh LOG -- after a ctest run whose output went to LOG
# (ctest --output-log LOG): lists the tests CTest skipped, loudly, and fails
# when KVI_REQUIRE_SERVERS=1 (set by `make test` once it has installed every
# server and library a test may need), so that CI never passes with a
# server test that did not run.
log=${1:?usage: check-skips.sh CTEST_LOG}
[ -f "$log" ] || { echo "check-skips.sh: no ctest log $log" >&2; exit 1; }
skipped=$(grep -E '^[[:space:]]*[0-9]+ - .* \(Skipped\)$' "$log" | sed 's/^[[:space:]]*//')
[ -z "$skipped" ] && exit 0
echo "== tests skipped (their output above says what is missing):"
printf '%s\n' "$skipped" | sed 's/^/   /'
if [ "${KVI_REQUIRE_SERVERS:-0}" = 1 ]; then
    echo "== FAILED: KVI_REQUIRE_SERVERS=1: every test must run here, none may be skipped" >&2
    exit 1
fi
exit 0
