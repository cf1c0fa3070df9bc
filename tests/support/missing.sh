#!/bin/sh
# missing.sh TEST WHY -- the stand-in for a test this build tree cannot run
# (tests/CMakeLists.txt, kvi_add_missing_test): says loudly what is missing
# and exits 77 (CTest: skipped), or fails when KVI_REQUIRE_SERVERS=1 (set by
# `make test`, which has installed everything a test may need).
echo "SKIPPED: $1 $2" >&2
if [ "${KVI_REQUIRE_SERVERS:-0}" = 1 ]; then
    echo "FAILED: $1 must run here (KVI_REQUIRE_SERVERS=1); re-run cmake after installing what is missing" >&2
    exit 1
fi
exit 77
