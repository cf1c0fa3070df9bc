#!/usr/bin/env bash
# test_cli_args.sh KVI -- a table of `kvi` invocations with missing, extra
# and invalid arguments, complementing tests/cli/test_cli.sh (which covers
# store/fetch/add DELTA/EXPIRE and a few arities): every command and alias
# not covered there.  Each usage error must exit 2, print a usage line
# naming the command, print nothing on standard output (text mode) and
# leave the state directory byte-for-byte unchanged.  Arguments the
# command accepts but the library refuses (an empty or 1025-byte key) exit
# 3 (KVI_E_INVALID) and change nothing either.
set -u
KVI=${1:?usage: test_cli_args.sh PATH_TO_KVI}
# Temp dir, state dir, fail() and the tally: the shell tests' library.
. "$(dirname "$0")/../support/testlib.sh"
t_init cli-args

# Create the store with one key so that there is state to compare.
"$KVI" store local keep v >/dev/null 2>&1 || { echo "cannot create the store"; exit 1; }
cp -a "$STATE" "$T/snap"

LONGKEY=$(head -c 1025 /dev/zero | tr '\0' k)

# usage WANT_CMD ARGS... : exit 2, "usage: kvi [OPTIONS] WANT_CMD" (or the
# generic line when WANT_CMD is "-"), empty stdout.
usage() {
    local want=$1
    shift
    checks=$((checks + 1))
    "$KVI" "$@" >"$T/out" 2>"$T/err" </dev/null
    local rc=$?
    local line="usage: kvi [OPTIONS] $want"
    [ "$want" = - ] && line="usage: kvi"
    if [ "$rc" != 2 ]; then
        fail "kvi $*: exit $rc, want 2 ($(head -c 200 "$T/err"))"
    elif ! grep -qF -- "$line" "$T/err"; then
        fail "kvi $*: no '$line' in: $(head -c 200 "$T/err")"
    elif [ -s "$T/out" ]; then
        fail "kvi $*: wrote to stdout: $(head -c 200 "$T/out")"
    fi
}

# refused RC ARGS... : exits RC, empty stdout.
refused() {
    local want=$1
    shift
    checks=$((checks + 1))
    "$KVI" "$@" >"$T/out" 2>"$T/err" </dev/null
    local rc=$?
    [ "$rc" = "$want" ] || fail "kvi ${*:0:4}...: exit $rc, want $want ($(head -c 200 "$T/err"))"
    [ -s "$T/out" ] && fail "kvi ${*:0:4}...: wrote to stdout"
}

# ---- missing arguments ------------------------------------------------------
usage "add ID KEY DELTA" add
usage "add ID KEY DELTA" add local
usage "add ID KEY DELTA" add local k
usage "sub ID KEY DELTA" sub local
usage "sub ID KEY DELTA" sub local k
usage "counter ID KEY" counter
usage "remove ID KEY" remove
usage "ttl ID KEY" ttl
usage "raw ID QUERY" raw
usage "remove-chunk ID GLOB" remove-chunk
usage "fetch ID KEY" fetch
usage "store ID KEY VALUE" store
usage "store ID KEY VALUE" store local
for alias in "cache_store store ID KEY VALUE" "cache_fetch fetch ID KEY" \
    "cache_remove remove ID KEY" "cache_add add ID KEY DELTA" "cache_sub sub ID KEY DELTA" \
    "cache_counter_fetch counter ID KEY" "cache_raw_query raw ID QUERY"; do
    set -- $alias
    a=$1
    shift
    usage "$*" "$a" local
done

# ---- extra arguments ---------------------------------------------------------
usage "add ID KEY DELTA" add local k 1 5 extra
usage "sub ID KEY DELTA" sub local k 1 5 extra
usage "counter ID KEY" counter local k extra
usage "remove ID KEY" remove local k extra
usage "ttl ID KEY" ttl local k extra
usage "raw ID QUERY" raw local PING extra
usage "remove-chunk ID GLOB" remove-chunk local 'k*' extra
usage "ping ID" ping local extra
usage "url URL" url local:// extra
usage "stats [ID]" stats local extra
usage "engines" engines a b
usage "add ID KEY DELTA" cache_add local k 1 5 extra
usage "sub ID KEY DELTA" cache_sub local k 1 5 extra
usage "remove ID KEY" cache_remove local k extra
usage "fetch ID KEY" cache_fetch local k extra
usage "counter ID KEY" cache_counter_fetch local k extra
usage "raw ID QUERY" cache_raw_query local PING extra
usage "store ID KEY VALUE" cache_store local k v 1 extra

# ---- invalid arguments -------------------------------------------------------
for cmd in "fetch ID KEY|fetch '' k" "remove ID KEY|remove '' k" \
    "add ID KEY DELTA|add '' k 1" "sub ID KEY DELTA|sub '' k 1" \
    "counter ID KEY|counter '' k" "raw ID QUERY|raw '' PING" "ttl ID KEY|ttl '' k" \
    "keys ID|keys ''" "remove-chunk ID GLOB|remove-chunk '' '*'" "ping ID|ping ''" \
    "stats [ID]|stats ''"; do
    want=${cmd%%|*}
    eval "set -- ${cmd#*|}"
    usage "$want" "$@"
done
for bad in x -1 1.5 ' 5' 9223372036854775808 -0; do
    usage "sub ID KEY DELTA" sub local k 1 "$bad"
    usage "add ID KEY DELTA" cache_add local k 1 "$bad"
    usage "store ID KEY VALUE" cache_store local k v "$bad"
done
for bad in x '' 1e3 0x1 '1 '; do
    usage "sub ID KEY DELTA" cache_sub local k "$bad"
done
# Options of the command itself.
usage - --bogus fetch local keep
usage - -c
usage - --url
usage - --config
checks=$((checks + 1))
"$KVI" --json >"$T/out" 2>"$T/err" </dev/null
rc=$?
[ "$rc" = 2 ] && grep -q '^{"status":"error","error":"usage","exit":2,' "$T/out" ||
    fail "kvi --json without a command: exit $rc, stdout $(head -c 200 "$T/out")"
# Library-level refusals: no usage error, KVI_E_INVALID (exit 3).
refused 3 store local "" v
refused 3 store local "$LONGKEY" v
refused 3 add local "$LONGKEY" 1
refused 3 sub local "" 1
refused 3 fetch local "$LONGKEY"
refused 3 remove local ""
refused 3 counter local ""
refused 3 ttl local "$LONGKEY"
refused 3 remove-chunk local ''

# ---- the store is unchanged ---------------------------------------------------
checks=$((checks + 1))
diff -r "$T/snap" "$STATE" >/dev/null || fail "the state directory changed: $(diff -r "$T/snap" "$STATE" | head -5)"
checks=$((checks + 1))
[ "$("$KVI" keys local 2>&1)" = keep ] || fail "keys after the table: $("$KVI" keys local 2>&1)"

t_done
