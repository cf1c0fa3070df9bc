#!/bin/bash
# sip_bench_must_fail: the SIP benchmark can fail.  bench/sip/sip_bench.sh
# --quick with SIP_BENCH_CORRUPT=1 overwrites the cached passwords of the
# three kvi setups after the warm-up, so every credentialed REGISTER there is
# answered 401: the bench must say so and exit 1 (it used to count a 401 as
# a successful call and exit 0).
set -u
. "${KVI_SOURCE_DIR:?}/integrations/kamailio/harness.sh"
kh_require kvi
out=$(mktemp "${TMPDIR:-/tmp}/kvi-sip-bench-XXXXXX") || kh_die "mktemp failed"
trap 'rm -f "$out"' EXIT
SIP_BENCH_CORRUPT=1 SIP_BENCH_OUT="$KVI_BUILD_DIR/sip-bench-must-fail" \
    bash "$KVI_SOURCE_DIR/bench/sip/sip_bench.sh" --quick >"$out" 2>&1
rc=$?
grep -E "SKIPPED" "$out" && exit 77
failed=0
[ $rc = 1 ] || { echo "the bench exited $rc with corrupted cached passwords, want 1"; failed=1; }
for s in '(a) kvi, shared local' '(b) kvi, redis' '(e) kvi, redis, near cache'; do
    grep -qF "FAIL: $s, 100 calls/s: 100 REGISTERs with the right password got 401/403" "$out" ||
        { echo "the bench did not report the 401s of $s"; failed=1; }
done
if grep -qF "FAIL: (c)" "$out" || grep -qF "FAIL: (d)" "$out"; then
    echo "the bench reported a failure of an uncorrupted setup"
    failed=1
fi
[ $failed = 0 ] || { cat "$out"; kh_die "sip_bench_must_fail"; }
echo "sip_bench_must_fail: OK (the bench failed as it must)"
