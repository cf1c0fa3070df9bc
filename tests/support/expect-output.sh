#!/bin/sh
# expect-output.sh REGEX CMD [ARGS...] -- runs CMD and passes only when it
# exits 0 AND its standard output matches REGEX (a Perl regular expression
# over the whole output, `.` matching newlines too).  CTest's
# PASS_REGULAR_EXPRESSION alone ignores the exit status: a program that
# printed the expected line and then failed (a sanitizer report, exit 1)
# would pass.  The output is copied through for the test log; standard
# error passes unchanged.
re=${1:?usage: expect-output.sh REGEX CMD [ARGS...]}
shift
[ $# -gt 0 ] || { echo "expect-output.sh: no command" >&2; exit 2; }
out=$(mktemp "${TMPDIR:-/tmp}/kvi-expect.XXXXXX") || exit 1
trap 'rm -f "$out"' EXIT
"$@" >"$out"
rc=$?
cat "$out"
if [ "$rc" != 0 ]; then
    echo "FAILED: $1 exited with status $rc (the output is not enough: it must also exit 0)" >&2
    exit 1
fi
if ! KVI_EXPECT_RE=$re perl -0777 -ne 'exit(/$ENV{KVI_EXPECT_RE}/s ? 0 : 1)' "$out"; then
    echo "FAILED: the output of $1 does not match: $re" >&2
    exit 1
fi
exit 0
