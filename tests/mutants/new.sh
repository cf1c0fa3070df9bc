#!/bin/sh
# new.sh -- turns the uncommitted change of one or more source files into a
# mutant of tests/mutants/ and reverts those files.
#
#   (edit src/core/breaker.c: break one thing)
#   sh tests/mutants/new.sh NAME 'CTEST-REGEX' 'what the change breaks' FILE...
#
# writes tests/mutants/NAME.patch (header + `git diff -U1 -- FILE...`), then
# `git checkout -- FILE...`.  Check it with `sh tests/mutants/run.sh NAME`.
set -eu
if [ $# -lt 4 ]; then
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
name=$1 regex=$2 what=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$here/$name.patch
cd "$root"
if git diff --quiet -- "$@"; then
    echo "new.sh: no change in $*" >&2
    exit 1
fi
{
    echo "Mutant: $what"
    echo "Test: $regex"
    echo
    git diff -U1 --no-color --no-prefix --src-prefix=a/ --dst-prefix=b/ -- "$@"
} >"$out"
git checkout -- "$@"
echo "new.sh: wrote $out"
