#!/bin/sh
# demo.sh BUILD_DIR -- the main job: kvi on the embedded local engine, from C
# and from the command line, then the two use cases when they are built.
set -eu
build=${1:-build}
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
export XDG_STATE_HOME=$state

echo "== the API, from C (examples/api/hello.c)"
"$build/kvi-hello"

echo
echo "== the kvi command on the default local engine (state in \$XDG_STATE_HOME/kvi)"
# fetch writes the value's bytes exactly (no newline unless on a terminal);
# the demo ends each output with one so the transcript stays readable.
run() {
    echo "\$ kvi $*"
    rc=0
    out=$("$build/kvi" "$@") || rc=$?
    [ -n "$out" ] && printf '%s\n' "$out"
    [ "$rc" = 0 ] || echo "(exit $rc)"
}
run store local passwd_alice s3cret 7200
run fetch local passwd_alice
run ttl local passwd_alice
run add local credit_alice 100
run sub local credit_alice 130
run counter local credit_alice
run fetch local nobody
run keys local '*alice'
run url 'redis:billing://:secret@127.0.0.1:7001,127.0.0.1:7002/?cluster=yes'

for ex in password_cache billing; do
    if [ -x "$build/$ex" ]; then
        echo
        echo "== examples/$ex on local://"
        "$build/$ex"
    fi
done
