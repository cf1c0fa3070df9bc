#!/usr/bin/env bash
# test_cli.sh KVI -- the `kvi` command, end to end: every command and alias,
# exact outputs and exit codes, persistence across runs of the default local
# store, usage errors that write nothing, strict numbers, binary values from
# standard input, --json, url redaction, the shell in batch mode and two
# processes incrementing one counter at once.
#
# Each run of KVI is a separate process, so every check after a store also
# checks persistence.  The state lives in a temporary XDG_STATE_HOME.
set -u

KVI=${1:?usage: test_cli.sh PATH_TO_KVI}
# run/run_in/expect/fail/... and the temp dir come from the shell tests'
# library.
. "$(dirname "$0")/../support/testlib.sh"
t_init cli-test

# snapshot / unchanged NAME: the state directory is byte-for-byte as it was.
snapshot() {
    rm -rf "$T/snap"
    cp -a "$STATE" "$T/snap"
}
unchanged() {
    checks=$((checks + 1))
    diff -r "$T/snap" "$STATE" >/dev/null || fail "$1: the store changed"
}

# ---- help, version, usage ---------------------------------------------------

run --help
checks=$((checks + 1))
[ "$rc" = 0 ] && grep -q '^usage: kvi \[-u URL\]\.\.\. \[-c FILE\] \[--json\] COMMAND \[ARGS\]$' "$T/out" ||
    fail "--help: rc $rc or no usage line"
for cmd in "store ID KEY VALUE \[EXPIRE\] \[--nx\]" "fetch ID KEY" "remove ID KEY" \
    "add ID KEY DELTA \[EXPIRE\] \[--min N\] \[--max N\]" \
    "sub ID KEY DELTA \[EXPIRE\] \[--min N\] \[--max N\]" "counter ID KEY" \
    "raw ID QUERY" "ttl ID KEY" "keys ID \[GLOB\]" "remove-chunk ID GLOB" "ping ID" \
    "stats \[ID\]" "engines" "url URL" "shell" "pipe ID \[--batch N\]" cache_store cache_fetch cache_remove \
    cache_add cache_sub cache_counter_fetch cache_raw_query cache_remove_chunk; do
    checks=$((checks + 1))
    grep -q -- "$cmd" "$T/out" || fail "--help does not mention $cmd"
done
# Every exit status 0..25 is listed with its meaning.
for code in $(seq 0 25); do
    checks=$((checks + 1))
    grep -Eq "^  $code +[A-Za-z]" "$T/out" || fail "--help does not list exit status $code"
done
grep -Eq '^  13 +value is not an integer counter \(KVI_E_NOT_A_COUNTER\)$' "$T/out" ||
    fail "--help: exit 13 line"
# The man page lists every row of KVI_STATUS_MAP with its exit code.
SRC=${KVI_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
rows=0
while read -r name code; do
    rows=$((rows + 1))
    checks=$((checks + 1))
    awk -v c="$code" -v n="(KVI_$name)" \
        'prev == ".B " c && index($0, n) { found = 1 } { prev = $0 } END { exit !found }' \
        "$SRC/docs/kvi.1" || fail "kvi.1 does not list exit $code for KVI_$name"
    checks=$((checks + 1))
    grep -Eq "^  $code +.*\(KVI_$name\)$" "$T/out" || fail "--help does not list KVI_$name as $code"
done < <(sed -nE 's/^ *X\((E_[A-Z_]+|OUT_OF_BOUNDS|KEY_EXISTS), *[0-9]+, *"[^"]*", *([0-9]+)\).*/\1 \2/p' \
    "$SRC/include/kvi/kvi.h")
checks=$((checks + 1))
[ "$rows" -ge 21 ] || fail "read only $rows error rows from kvi.h"

run -h
checks=$((checks + 1))
[ "$rc" = 0 ] && grep -q '^usage: kvi' "$T/out" || fail "-h"

run --version
checks=$((checks + 1))
[ "$rc" = 0 ] && grep -Eq '^kvi [0-9]+\.[0-9]+\.[0-9]+ \(libkvi [0-9]+\.[0-9]+\.[0-9]+\)$' "$T/out" ||
    fail "--version: $(cat "$T/out")"

# --json is honoured by --help and --version wherever it stands among the
# options (and by the shell's help, below): one line, one JSON object.
# one_json_line REGEX: the last run exited 0 and wrote one line matching REGEX.
one_json_line() {
    [ "$rc" = 0 ] && [ "$(wc -l <"$T/out")" = 1 ] && grep -Eq -- "$1" "$T/out"
}
for args in "--json --version" "--version --json"; do
    # shellcheck disable=SC2086
    run $args
    check "$args: one JSON line ($(head -c 100 "$T/out"))" one_json_line \
        '^\{"status":"ok","version":"[0-9]+\.[0-9]+\.[0-9]+","libkvi":"[0-9]+\.[0-9]+\.[0-9]+"\}$'
done
for args in "--json --help" "-h --json"; do
    # shellcheck disable=SC2086
    run $args
    check "$args: one JSON line ($(head -c 100 "$T/out"))" one_json_line \
        '^\{"status":"ok","help":"usage: kvi \[-u URL\]\.\.\. .*\\n  store ID KEY VALUE .*\\n"\}$'
done

run
expect "no command" 2 "" 'kvi: no command given\nusage: kvi [OPTIONS] COMMAND [ARGS]   (kvi --help for more)\n'
run frobnicate local
expect "unknown command" 2 "" 'kvi: unknown command "frobnicate"\nusage: kvi [OPTIONS] COMMAND [ARGS]   (kvi --help for more)\n'
run -x fetch local a
expect "unknown option" 2 "" '*'
expect_err_has "unknown option" 'kvi: unknown option "-x"'
expect_err_has "unknown option" 'usage: kvi'
run -u
expect "-u without value" 2 "" '*'
expect_err_has "-u without value" "usage:"

# The state directory does not exist before the first command that needs it.
checks=$((checks + 1))
[ ! -e "$STATE" ] || fail "state directory created by help/usage"

# ---- store / fetch / remove and persistence --------------------------------

run store local a 1
expect "store" 0 ""
checks=$((checks + 1))
[ "$(stat -c %a "$STATE")" = 700 ] || fail "state directory mode is $(stat -c %a "$STATE")"
run fetch local a
expect "fetch after store (next run)" 0 "1"
run store local a "hello world"
expect "store overwrite" 0 ""
run fetch local a
expect "fetch overwritten" 0 "hello world"
run store local empty ""
expect "store empty value" 0 ""
run fetch local empty
expect "fetch empty value is found" 0 ""
run fetch local missing
expect "fetch missing" 1 "" 'kvi: key not found\n'
run remove local a
expect "remove" 0 ""
run remove local a
expect "remove missing" 1 "" 'kvi: key not found\n'
run fetch local a
expect "fetch removed" 1 "" 'kvi: key not found\n'

# ---- aliases -------------------------------------------------------------------

run cache_store local al v1
expect "cache_store" 0 ""
run cache_fetch local al
expect "cache_fetch" 0 "v1"
run cache_remove local al
expect "cache_remove" 0 ""
run cache_fetch local al
expect "cache_fetch after cache_remove" 1 "" 'kvi: key not found\n'
run cache_add local alc 5
expect "cache_add" 0 "5\n"
run cache_sub local alc 7
expect "cache_sub" 0 "-2\n"
run cache_counter_fetch local alc
expect "cache_counter_fetch" 0 "-2\n"
# The local engine has no query language: the alias is recognised (not a
# usage error) and the core's UNSUPPORTED comes back as exit 7.
run cache_store local alr:1 x
run cache_store local alr:2 y
run cache_remove_chunk local 'alr:*'
expect "cache_remove_chunk" 0 "2\n"
run cache_raw_query local PING
expect "cache_raw_query on local" 7 "" '*'
expect_err_has "cache_raw_query on local" "kvi: operation not supported by this engine"
run raw local PING
expect "raw on local" 7 "" '*'

# ---- counters ------------------------------------------------------------------

run add local n 5
expect "add creates" 0 "5\n"
run add local n -3
expect "add negative delta" 0 "2\n"
run sub local n 10
expect "sub below zero" 0 "-8\n"
run counter local n
expect "counter" 0 "-8\n"
run fetch local n
expect "counter fetches as text" 0 "-8"
run counter local nothere
expect "counter missing" 1 "" 'kvi: key not found\n'
run store local seventeen 17
run add local seventeen 1
expect "stored 17 then add 1" 0 "18\n"
run store local word abc
run add local word 1
expect "add on non-counter" 13 "" '*'
expect_err_has "add on non-counter" "kvi: value is not an integer counter"
run fetch local word
expect "non-counter unchanged" 0 "abc"
run store local big 9223372036854775807
run add local big 1
expect "overflow" 14 "" '*'
expect_err_has "overflow" "kvi: counter overflow"
run counter local big
expect "overflow changes nothing" 0 "9223372036854775807\n"
run add local minc -9223372036854775808
expect "INT64_MIN delta" 0 "-9223372036854775808\n"

# ---- ttl -----------------------------------------------------------------------

run ttl local n
expect "ttl without expiry" 0 "-1\n"
run ttl local nothere
expect "ttl missing" 1 "" 'kvi: key not found\n'
run store local t v 100
run ttl local t
checks=$((checks + 1))
case "$(cat "$T/out")" in 100 | 99) ;; *) fail "ttl after store with 100: $(cat "$T/out")" ;; esac
run add local tc 1 100
run ttl local tc
checks=$((checks + 1))
case "$(cat "$T/out")" in 100 | 99) ;; *) fail "ttl of counter created with 100: $(cat "$T/out")" ;; esac
run store local t v 0
run ttl local t
expect "store with 0 clears expiry" 0 "-1\n"
# A short lifetime survives the round trips through the state file without
# being stretched, and the key is gone once it has passed.
run store local short v 2
for i in 1 2 3 4 5; do run fetch local short; done
expect "short-lived key alive" 0 "v"
sleep 2.3
run fetch local short
expect "short-lived key expired across runs" 1 "" 'kvi: key not found\n'

# ---- numbers are strict; usage errors write nothing ------------------------------

snapshot
for bad in x 1x " 1" "1 " "" + - 1.5 0x10 9223372036854775808 -9223372036854775809 \
    99999999999999999999999 +5 007 -0 -07 +0; do
    run add local nk "$bad"
    expect "add DELTA '$bad'" 2 "" '*'
    expect_err_has "add DELTA '$bad'" "kvi: DELTA is not a 64-bit integer \"$bad\""
    expect_err_has "add DELTA '$bad'" "usage: kvi [OPTIONS] add ID KEY DELTA [EXPIRE]"
    run sub local nk "$bad"
    expect "sub DELTA '$bad'" 2 "" '*'
done
for bad in x -1 1x 1.5 " 5" 9223372036854775808 +5 007 -0 00; do
    run store local nk v "$bad"
    expect "store EXPIRE '$bad'" 2 "" '*'
    expect_err_has "store EXPIRE '$bad'" "kvi: EXPIRE is not a non-negative integer \"$bad\""
    expect_err_has "store EXPIRE '$bad'" "usage: kvi [OPTIONS] store ID KEY VALUE [EXPIRE]"
    run add local nk 1 "$bad"
    expect "add EXPIRE '$bad'" 2 "" '*'
done
run store local nk
expect "store missing VALUE" 2 "" 'kvi: missing arguments\nusage: kvi [OPTIONS] store ID KEY VALUE [EXPIRE] [--nx]\n'
run store local nk v 1 extra
expect "store extra argument" 2 "" 'kvi: too many arguments\nusage: kvi [OPTIONS] store ID KEY VALUE [EXPIRE] [--nx]\n'
run fetch local
expect "fetch missing KEY" 2 "" 'kvi: missing arguments\nusage: kvi [OPTIONS] fetch ID KEY\n'
run fetch local a b
expect "fetch extra" 2 "" 'kvi: too many arguments\nusage: kvi [OPTIONS] fetch ID KEY\n'
run remove local
expect "remove missing KEY" 2 "" '*'
run counter local
expect "counter missing KEY" 2 "" '*'
run ttl local
expect "ttl missing KEY" 2 "" '*'
run raw local
expect "raw missing QUERY" 2 "" '*'
run keys
expect "keys missing ID" 2 "" '*'
run keys local a b
expect "keys extra" 2 "" '*'
run remove-chunk local
expect "remove-chunk missing GLOB" 2 "" 'kvi: missing arguments\nusage: kvi [OPTIONS] remove-chunk ID GLOB\n'
run ping
expect "ping missing ID" 2 "" '*'
run stats local extra
expect "stats extra" 2 "" '*'
run engines extra
expect "engines extra" 2 "" 'kvi: too many arguments\nusage: kvi [OPTIONS] engines\n'
run url
expect "url missing" 2 "" '*'
run shell extra
expect "shell extra" 2 "" '*'
run store "" k v
expect "empty engine id" 2 "" '*'
unchanged "usage errors"
run fetch local nk
expect "nothing stored by usage errors" 1 "" 'kvi: key not found\n'

# ---- engine ids and URLs ---------------------------------------------------------

run fetch nosuch a
expect "undefined engine id" 5 "" '*'
expect_err_has "undefined engine id" "kvi: unknown engine id"
run -u 'redis://127.0.0.1:0/' ping redis
expect "bad port in -u" 4 "" '*'
expect_err_has "bad port in -u" "kvi: bad URL"
run -u 'local://?nosuchoption=1' ping local
expect "unknown option in -u" 3 "" '*'
run -u local:sessions:// -u local:other:// engines
checks=$((checks + 1))
[ "$rc" = 0 ] && [ "$(cut -f1,2 "$T/out")" = "$(printf 'local:sessions\tlocal\nlocal:other\tlocal')" ] ||
    fail "engines with -u: $(cat "$T/out")"
expect_out_has "engines caps" "counters"
run -u local:sessions:// store local:sessions k v
expect "store in a collection" 0 ""
run -u local:sessions:// fetch local:sessions k
expect "-u stores are not persistent" 1 "" 'kvi: key not found\n'
printf '# comment\n\n  local:cfg://  \n' >"$T/conf"
run -c "$T/conf" engines
checks=$((checks + 1))
[ "$rc" = 0 ] && [ "$(cut -f1 "$T/out")" = "local:cfg" ] || fail "-c FILE: $(cat "$T/out" "$T/err")"
run --config="$T/conf" --url=local:two:// engines
checks=$((checks + 1))
[ "$rc" = 0 ] && [ "$(cut -f1 "$T/out" | tr '\n' ' ')" = "local:cfg local:two " ] ||
    fail "--config= --url=: $(cat "$T/out" "$T/err")"
run engines
checks=$((checks + 1))
[ "$rc" = 0 ] && grep -Eq $'^local\tlocal\t[a-z_,]*counters' "$T/out" || fail "engines: $(cat "$T/out")"

# url: every part shown, the password never.
PW=SeCrEt99pw
run url "redis:billing://bob:$PW@127.0.0.1:7001,[::1]:7002/3?cluster=yes"
expect "url" 0 '*'
# The parts exactly; then the options the engine knows (or why it cannot
# be loaded, in a build without the redis module).
checks=$((checks + 1))
printf '%b' 'scheme    redis\ngroup     billing\nid        redis:billing\nuser      bob\npassword  ***\nhost      127.0.0.1:7001\nhost      [::1]:7002\ndatabase  3\noption    cluster=yes\nurl       redis:billing://bob:***@127.0.0.1:7001,[::1]:7002/3?cluster=yes\n' >"$T/want_head"
head -n 10 "$T/out" | cmp -s "$T/want_head" - || fail "url: parts differ: $(head -n 10 "$T/out")"
expect_out_has "url known options" 'known     '
run url local://
expect "url minimal" 0 '*'
# The parts exactly, then the options local knows: its own (the list grows
# with the engine) and the common ones, last.
checks=$((checks + 1))
printf '%b' 'scheme    local\ngroup     (none)\nid        local\nuser      (none)\npassword  (none)\nhost      (none)\ndatabase  (none)\nurl       local://\nknown     max_memory=' >"$T/want_head"
head -c "$(wc -c <"$T/want_head")" "$T/out" | cmp -s "$T/want_head" - || fail "url minimal: parts differ: $(head -n 9 "$T/out")"
expect_out_has "url minimal known" 'known     evict=none  [none|lru]  at the cap: none answers STORE_FULL, lru evicts cold keys'
checks=$((checks + 1))
printf '%b' 'known     connect_timeout=1000  [1..3600000 ms]  time limit for connecting to a server\nknown     timeout=1000  [1..3600000 ms]  time limit for one operation\nknown     lazy=no  [yes|no]  connect on first use instead of when the URL is added\n' >"$T/want_tail"
tail -n 3 "$T/out" | cmp -s "$T/want_tail" - || fail "url minimal: common options differ: $(tail -n 3 "$T/out")"
run --json url "redis://:$PW@h:6380/"
expect "url --json" 0 '*'
expect_out_has "url --json" '{"status":"ok","url":{"scheme":"redis","group":null,"id":"redis","user":null,"password":"***","hosts":[{"host":"h","port":6380,"ipv6":false}],"database":null,"options":{},"url":"redis://:***@h:6380","known_options":['
run --json url local://
expect_out_has "url --json known" '{"name":"lazy","kind":"bool","default":"no","allowed":"yes|no","help":"connect on first use instead of when the URL is added","common":true}]}}'
run url "redis://u:$PW@h:99999/"
expect "bad url" 4 "" '*'
expect_err_has "bad url" "kvi: bad URL: "
run --json url "redis://u:$PW@h:99999/"
expect "bad url --json" 4 '*' '*'
expect_out_has "bad url --json" '{"status":"error","error":"KVI_E_BAD_URL","exit":4,"message":"bad URL: '
checks=$((checks + 1))
grep -q 'bad URL: bad URL' "$T/out" "$T/err" && fail "status text repeated in the message"
run -u "redis://u:$PW@h:99999/" ping redis
expect "bad url in -u" 4 "" '*'
run -u "redis:pw://u:$PW@h:abc/" ping redis:pw
expect "bad port text in -u" 4 "" '*'
run -u "redis://u:$PW@h:1/?nosuch=1" ping redis
checks=$((checks + 1))
[ "$rc" -ge 3 ] || fail "unknown redis option: rc $rc"

# ---- keys, remove-chunk, ping, stats -----------------------------------------------

export XDG_STATE_HOME=$T/state2
STATE=$XDG_STATE_HOME/kvi
run keys local
expect "keys on an empty store" 0 ""
run store local user:1 a
run store local user:2 b
run store local other c
run store local $'tab\there' d
run store local $'bin\xff\x01' e
run store local 'back\slash' f
run store local 'café' g
run keys local
expect "keys sorted and escaped" 0 'back\\\\slash\nbin\\xff\\x01\ncafé\nother\ntab\\x09here\nuser:1\nuser:2\n'
run keys local 'user:*'
expect "keys GLOB" 0 'user:1\nuser:2\n'
# A listed key pasted back between double quotes in the shell is the same
# key: a double quote is escaped too.
run store local 'say "hi" x' h
run keys local 'say*'
expect "keys escapes a double quote" 0 'say \\"hi\\" x\n'
listed=$(cat "$T/out")
printf 'fetch local "%s"\nremove local "%s"\n' "$listed" "$listed" >"$T/paste"
"$KVI" shell <"$T/paste" >"$T/out" 2>"$T/err"
rc=$?
expect "a listed key pasted back" 0 'h\n' ''
run keys local 'user:[2]'
expect "keys GLOB class" 0 'user:2\n'
run --json keys local
expect "keys --json" 0 '{"status":"ok","keys":["back\\\\slash",{"base64":"Ymlu/wE="},"café","other","tab\\there","user:1","user:2"]}\n'
run remove-chunk local 'user:*'
expect "remove-chunk" 0 "2\n"
run remove-chunk local 'user:*'
expect "remove-chunk nothing left" 0 "0\n"
run --json remove-chunk local 'nothing*'
expect "remove-chunk --json" 0 '{"status":"ok","removed":0}\n'
run keys local 'user:*'
expect "keys after remove-chunk" 0 ""
run ping local
expect "ping" 0 "PONG\n"
run --json ping local
expect "ping --json" 0 '{"status":"ok"}\n'
run stats local
checks=$((checks + 1))
[ "$rc" = 0 ] && [ "$(head -3 "$T/out")" = "$(printf 'local:\n  ops       0\n  errors    0')" ] ||
    fail "stats local: $(cat "$T/out" "$T/err")"
expect_out_has "stats entries" "  entries   5"
run stats
checks=$((checks + 1))
[ "$rc" = 0 ] && [ "$(head -1 "$T/out")" = "local:" ] || fail "stats: $(cat "$T/out")"
run --json stats local
checks=$((checks + 1))
[ "$rc" = 0 ] && grep -Eq '^\{"status":"ok","stats":\{"local":\{"ops":0,"errors":0,"misses":0,"slow_ops":0,"rejected":0,"total_us":[0-9]+,"entries":5,' "$T/out" ||
    fail "stats --json: $(cat "$T/out")"
run stats nosuch
expect "stats of an undefined id" 5 "" '*'

# ---- VALUE - reads standard input, binary-safe -------------------------------------

run_in 'a\0b\377\n\0' store local bin -
expect "store -" 0 ""
run fetch local bin
printf 'a\0b\377\n\0' >"$T/want"
checks=$((checks + 1))
[ "$rc" = 0 ] && cmp -s "$T/want" "$T/out" || fail "binary value does not round-trip"
run --json fetch local bin
expect "fetch --json binary" 0 '{"status":"ok","value_base64":"YQBi/woA"}\n'
run_in '' store local emptyin -
run fetch local emptyin
expect "empty stdin value" 0 ""
head -c 1048576 /dev/urandom >"$T/mib"
"$KVI" store local mib - <"$T/mib" >"$T/out" 2>"$T/err"
rc=$?
expect "store 1 MiB from stdin" 0 ""
run fetch local mib
checks=$((checks + 1))
cmp -s "$T/mib" "$T/out" || fail "1 MiB value does not round-trip"
run remove local mib

# ---- --json ---------------------------------------------------------------------------

run --json store local j 'say "hi"\'
expect "store --json" 0 '{"status":"ok"}\n'
run --json fetch local j
expect "fetch --json escaping" 0 '{"status":"ok","value":"say \\"hi\\"\\\\"}\n'
run store local j2 $'line1\nline2\ttab\x01\x7f é'
run --json fetch local j2
expect "fetch --json control chars" 0 '{"status":"ok","value":"line1\\nline2\\ttab\\u0001\\u007f é"}\n'
run --json fetch local nope
expect "fetch --json missing" 1 '{"status":"not_found"}\n' ""
run --json add local jc 5
expect "add --json" 0 '{"status":"ok","value":5}\n'
run --json sub local jc 7
expect "sub --json" 0 '{"status":"ok","value":-2}\n'
run --json counter local jc
expect "counter --json" 0 '{"status":"ok","value":-2}\n'
run --json ttl local jc
expect "ttl --json" 0 '{"status":"ok","ttl":-1}\n'
run --json remove local jc
expect "remove --json" 0 '{"status":"ok"}\n'
run --json add local j 1
expect "error --json" 13 '*' '*'
expect_out_has "error --json" '{"status":"error","error":"KVI_E_NOT_A_COUNTER","exit":13,"message":"value is not an integer counter'
run --json add local j x
expect "usage error --json" 2 '{"status":"error","error":"usage","exit":2,"message":"DELTA is not a 64-bit integer \\"x\\""}\n' '*'
run --json engines
checks=$((checks + 1))
grep -Eq '^\{"status":"ok","engines":\[\{"id":"local","engine":"local","caps":\["ttl","counters",' "$T/out" ||
    fail "engines --json: $(cat "$T/out")"

# ---- standard output errors are reported ---------------------------------------------------

if [ -w /dev/full ]; then
    "$KVI" fetch local j >/dev/full 2>"$T/err"
    rc=$?
    checks=$((checks + 1))
    [ "$rc" = 11 ] || fail "fetch to /dev/full: exit $rc, want 11"
fi

# ---- a terminal gets a newline after fetch (util-linux script gives a pty) ----

if command -v script >/dev/null; then
    run store local tty hello
    script -qc "'$KVI' fetch local tty" /dev/null </dev/null >"$T/out" 2>&1
    checks=$((checks + 1))
    [ "$(od -An -c "$T/out" | tr -s ' ')" = " h e l l o \r \n" ] ||
        fail "fetch on a terminal: $(od -c "$T/out")"
fi

# ---- shell (batch) ----------------------------------------------------------------------------

cat >"$T/script" <<'EOF'
# a comment, then a blank line

store local "x y" "hello world"
fetch local "x y"
add local sc 5
bogus
counter local sc
fetch local missing
store local q 'its "quoted"'
fetch local q
store local nul "a\x00\xffb\n"
store local "" v
keys local 'x*'
store local open "unterminated
ttl local sc
add local sc 1x
help
remove local "x y"
EOF
"$KVI" shell <"$T/script" >"$T/out" 2>"$T/err"
rc=$?
sed -i '/^Commands:$/,/the engine reads them back\.$/d' "$T/out"
expect "shell batch" 0 'hello world\n5\n5\nits "quoted"\nx y\n-1\n' '*'
printf 'kvi: unknown command "bogus"\nusage: COMMAND [ARGS]   ("help" lists the commands)\nkvi: key not found\n' >"$T/want_err"
checks=$((checks + 1))
head -3 "$T/err" | cmp -s - "$T/want_err" || fail "shell stderr: $(cat "$T/err")"
expect_err_has "shell empty key" "kvi: invalid argument"
expect_err_has "shell unterminated quote" 'kvi: bad quoting: a quote is not closed'
expect_err_has "shell bad number" 'usage: add ID KEY DELTA [EXPIRE]'
run fetch local nul
printf 'a\0\377b\n' >"$T/want"
checks=$((checks + 1))
cmp -s "$T/want" "$T/out" || fail "shell \\x escapes do not give the bytes"
run fetch local "x y"
expect "shell changes persist" 1 "" 'kvi: key not found\n'
run counter local sc
expect "shell counter persisted" 0 "5\n"
run_in 'fetch local nothere\n' shell
expect "shell exit status is the last command's" 1 "" 'kvi: key not found\n'
run_in 'fetch local q\nquit\nfetch local q\n' shell
expect "shell quit" 0 "its \"quoted\"\n"
run_in 'add local sc 1\nfetch local nothere\nshell\n' --json shell
expect "shell --json" 2 '{"status":"ok","value":6}\n{"status":"not_found"}\n{"status":"error","error":"usage","exit":2,"message":"already in the shell"}\n' '*'
# A command word or URL with a NUL byte, or an empty command word, is a
# usage error, not a lookup of a shorter name.
run_in '"fe\\x00tch" local a\n"" local a\nurl "redis://h\\x00x/"\n' shell
expect "shell: NUL or empty command words" 2 "" '*'
expect_err_has "shell: NUL in a command word" 'kvi: unknown command "fe\x00tch"'
expect_err_has "shell: empty command word" 'kvi: unknown command ""'
expect_err_has "shell: NUL in a URL" 'kvi: bad URL'
# A line the tokenizer refuses is a JSON usage error too, and the shell goes on.
run_in 'store local "open\nfetch local nothere\n' --json shell
expect "shell --json bad quoting" 1 '{"status":"error","error":"usage","exit":2,"message":"bad quoting: a quote is not closed, or a closing quote is not followed by a blank"}\n{"status":"not_found"}\n' '*'
run_in 'help\n' --json shell
check "shell help --json: one JSON line ($(head -c 100 "$T/out"))" one_json_line \
    '^\{"status":"ok","help":"Commands:\\n.*quit, exit .*"\}$'
run_in 'raw local PING "a b"\n' shell
expect "shell raw on local" 7 "" '*'
# One tokenizer for every shell line (the raw-query rules): a quote inside a
# word, \' in single quotes, \xHH, a closing quote that must end the word.
cat >"$T/script2" <<'EOS'
store local t1 pre"fix x"
store local t2 'it\'s'
store local t3 "tab\there"
store local t4 "a"b
fetch local t1
fetch local t2
fetch local t3
fetch local t4
EOS
"$KVI" shell <"$T/script2" >"$T/out" 2>"$T/err"
rc=$?
expect "shell uses the raw-query tokenizer" 1 'prefix x\nit'"'"'s\ntab\there\n' '*'
expect_err_has "shell: closing quote must end the word" "kvi: bad quoting"
# A word that starts with an unquoted # starts a comment to the end of the
# line; quoted, or inside a word, # is an ordinary byte.
cat >"$T/script3" <<'EOS'
store local cm v # a trailing comment
fetch local cm	# after a tab
store local "#h" 'x # y' #"unclosed
store local a#b z
fetch local "#h"
fetch local a#b
EOS
"$KVI" shell <"$T/script3" >"$T/out" 2>"$T/err"
rc=$?
expect "shell: trailing comments are not words" 0 'v
x # y
z
' ''

# ---- a damaged state file is an error and is left alone -------------------------------------------

export XDG_STATE_HOME=$T/state3
STATE=$XDG_STATE_HOME/kvi
run store local k v
for f in "$STATE/local.kvis.cli" "$STATE/local.kvis"; do
    if [ -f "$f" ]; then
        printf 'garbage' >"$f"
        run fetch local k
        expect "corrupt state file" 20 "" '*'
        checks=$((checks + 1))
        [ "$(cat "$f")" = garbage ] || fail "corrupt state file was overwritten"
        break
    fi
done

# ---- default state directory without XDG_STATE_HOME -----------------------------------------------

(
    unset XDG_STATE_HOME
    export HOME=$T/home
    "$KVI" store local h 1 && "$KVI" fetch local h >"$T/out"
)
checks=$((checks + 1))
[ -d "$T/home/.local/state/kvi" ] && [ "$(cat "$T/out")" = 1 ] || fail "HOME/.local/state/kvi"

# ---- bounded add/sub and store --nx: refusals exit 22/23, print nothing on stdout --------------------

export XDG_STATE_HOME=$T/state5
STATE=$XDG_STATE_HOME/kvi
run store local cr 2
run sub local cr 3 --min 0
expect "sub below --min refused" 22 "" 'kvi: change refused: result would leave [min, max] (value 2)\n'
run counter local cr
expect "refused sub left the value" 0 "2\n"
run sub local cr 2 --min 0
expect "sub to exactly --min" 0 "0\n"
run --json sub local cr 1 --min 0
expect "json refusal" 22 '{"status":"out_of_bounds","value":0}\n' '*'
run add local cr 5 --max 5
expect "add to exactly --max" 0 "5\n"
run add local cr 1 --min -10 --max 5
expect "add above --max refused" 22 "" '*'
run add local fresh 7 30 --max 5
expect "missing key outside bounds not created" 22 "" 'kvi: change refused: result would leave [min, max] (value 0)\n'
run fetch local fresh
expect "missing key still missing" 1 "" '*'
run add local fresh 4 30 --max 5
expect "missing key created within bounds" 0 "4\n"
run ttl local fresh
# ttl rounds down (never more than the key has): 29 once a ms has passed.
expect "created with its expiry" 0 '*'
grep -Eqx '29|30' "$T/out" || fail "created with its expiry: ttl $(cat "$T/out")"
run store local word abc
run sub local word 1 --min 0
expect "bounded sub of a non-counter" 13 "" '*'
run store local big 9223372036854775807
run add local big 1 --min 0
expect "bounded add overflow" 14 "" '*'
snapshot
for args in "--min" "--min x" "--max 1.5" "--min 1 --min 2" "--min 3 --max 2" "--nx" \
    "--min +5" "--max 007" "--min -0"; do
    # shellcheck disable=SC2086
    run sub local cr 1 $args
    expect "sub usage '$args'" 2 "" '*'
    expect_err_has "sub usage '$args'" "usage: kvi [OPTIONS] sub ID KEY DELTA [EXPIRE] [--min N] [--max N]"
done
run store local nxk v --min 0
expect "store takes no --min" 2 "" '*'
run store local nxk v --nx --nx
expect "store --nx twice" 2 "" '*'
unchanged "bad flags change nothing"
run store local nxk first 40 --nx
expect "store --nx absent" 0 ""
run store local nxk second --nx
expect "store --nx present refused" 23 "" 'kvi: key exists; not stored\n'
run --json store local nxk second --nx
expect "json store --nx refused" 23 '{"status":"key_exists"}\n' '*'
run fetch local nxk
expect "store --nx left the value" 0 "first"
run ttl local nxk
expect "store --nx set the expiry" 0 '*'
grep -Eqx '39|40' "$T/out" || fail "store --nx set the expiry: ttl $(cat "$T/out")"
run --json store local nxk2 v --nx
expect "json store --nx ok" 0 '{"status":"ok"}\n'
run_in 'sub local cr 9 --min 0\ncounter local cr\nstore local nxk x --nx\nsub local cr 1 --min 0 --max 9\n' shell
expect "shell: refusals and bounded sub" 0 "5\n4\n" '*'
expect_err_has "shell: refusal reported" "kvi: change refused: result would leave [min, max] (value 5)"
expect_err_has "shell: key exists reported" "kvi: key exists; not stored"

# ---- two processes increment one counter at once -------------------------------------------------------

export XDG_STATE_HOME=$T/state4
N=60
worker() {
    local i
    for i in $(seq $N); do
        "$KVI" add local hits 1 >/dev/null || echo "add failed: $?"
    done
}
worker >"$T/w1" 2>&1 &
p1=$!
worker >"$T/w2" 2>&1 &
p2=$!
wait $p1 $p2
run counter local hits
expect "concurrent adds from two processes" 0 "$((2 * N))\n"
checks=$((checks + 1))
[ ! -s "$T/w1" ] && [ ! -s "$T/w2" ] || fail "concurrent workers: $(cat "$T/w1" "$T/w2")"

# ---- looking at a shared collection never creates one ---------------------
# (issue 21 item 5) keys, fetch, ttl, counter and stats attach only: a
# missing segment is "no such shared collection", and none appears.
SHM=kvi-cli-look-$$
SEG=/dev/shm/kvi.$SHM
rm -f "$SEG"
KVI_CMD=("$KVI" -u "local://?shm=$SHM&max_memory=4m")
for look in "keys local" "fetch local a" "ttl local a" "counter local a" "stats local"; do
    run $look
    expect "$look on a missing shared collection" 11 '' '*'
    expect_err_has "$look names the missing collection" "no such shared collection"
    check "$look created no segment" test ! -e "$SEG"
done
run store local a 7
expect "store creates the shared collection" 0 ''
check "the store made the segment" test -e "$SEG"
run counter local a
expect "counter then reads it" 0 '7\n'
run keys local
expect "keys lists it" 0 'a\n'
KVI_CMD=("$KVI" -u "local://?shm=$SHM&max_memory=4m&shm_create=yes")
run fetch local a
expect "an explicit shm_create is kept" 0 '7'
KVI_CMD=("$KVI" -u "local://?shm%5Fcreate=yes&max_memory=4m&shm=$SHM")
run fetch local a
expect "an explicit, percent-encoded shm_create is kept" 0 '7'
rm -f "$SEG"
KVI_CMD=()

# The password of the URLs above never appeared in any output of any run.
checks=$((checks + 1))
if grep -aqF "$PW" "$T/all_output"; then fail "password appears in output"; fi

echo "$checks checks, $fails failed"
[ "$fails" = 0 ]
