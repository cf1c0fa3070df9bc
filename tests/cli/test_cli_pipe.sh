#!/usr/bin/env bash
# test_cli_pipe.sh KVI -- `kvi pipe ID [--batch N]`: shell lines without
# their ID read from standard input, run in batches, results printed in the
# order of the lines as the shell prints them, a summary on standard error,
# exit status 0 unless a command failed (then the first failure's).  Against
# local:// always, and against a real redis-server started here when the
# redis module and server are there (else that part is a loud skip).
set -u

KVI=${1:?usage: test_cli_pipe.sh PATH_TO_KVI}
MODDIR=${KVI_MODULE_PATH:-${KVI_BUILD_DIR:-.}/modules}
. "$(dirname "$0")/../support/testlib.sh"
t_init cli-pipe
KVI_CMD=("$KVI" -u local://)

# ---- local: results in order, outcomes are not failures ----------------------
SCRIPT='store a 1\nfetch a\nadd n 5\nsub n 2 --min 10\nfetch nope\nstore "b c" "x y" 60\nfetch "b c"\ncounter n\nstore a 2 --nx\nremove a\nremove a\nadd m 1 0 --max 5 # a comment\n'
WANT_OUT='1\n5\nx y\n5\n1\n'
run_in "$SCRIPT" pipe local
expect "pipe mixed" 0 "$WANT_OUT" '*'
expect_err_has "pipe refusal reported" "kvi: change refused: result would leave [min, max] (value 5)"
expect_err_has "pipe key exists reported" "kvi: key exists; not stored"
expect_err_has "pipe not found reported" "kvi: key not found"
expect_err_has "pipe summary" "kvi pipe: 12 commands in "
expect_err_has "pipe summary counts" "8 ok, 2 not found, 2 refused, 0 failed"
for n in 1 2 3 1000000; do
    run_in "$SCRIPT" pipe local --batch "$n"
    expect "pipe --batch $n: same output" 0 "$WANT_OUT" '*'
done

# ---- failures: the rest still runs, the first failure is the exit status --------
run_in 'store t text\nadd t 1\nfetch t\nttl t\nadd t x\ncounter t\n' pipe local
expect "pipe failures" 13 'text\n' '*'
expect_err_has "pipe not a counter" "kvi: value is not an integer counter"
expect_err_has "pipe refuses other commands" 'pipe runs only store, fetch, remove, add, sub, counter and raw "ttl"'
expect_err_has "pipe bad number" 'DELTA is not a 64-bit integer "x"'
expect_err_has "pipe failure summary" "2 ok, 0 not found, 0 refused, 4 failed"
run_in 'fetch a "unterminated\nstore k v\nfetch k\n' pipe local
expect "pipe bad quoting" 2 'v\n' '*'
expect_err_has "pipe bad quoting reported" "bad quoting"
run_in 'store "" v\nstore k v -5\nstore k2 v\n' pipe local
expect "pipe argument refused by the library" 3 '' '*'
expect_err_has "pipe empty key" "kvi: invalid argument"
expect_err_has "pipe library refusal summary" "1 ok, 0 not found, 0 refused, 2 failed"

# ---- usage of pipe itself ---------------------------------------------------
for bad in 0 -1 x 1000001; do
    run_in '' pipe local --batch "$bad"
    expect "pipe --batch $bad" 2 '' '*'
done
run_in '' pipe
expect "pipe without ID" 2 '' '*'
run_in 'pipe local\n' shell
expect "pipe inside the shell" 2 '' '*'
expect_err_has "pipe inside the shell says why" "already in the shell"
run_in '' pipe local
expect "pipe of nothing" 0 '' '*'
expect_err_has "pipe of nothing summary" "kvi pipe: 0 commands"
run_in 'fetch k\n' pipe nosuch
expect "pipe unknown id" 5 '' '*'

# ---- --json: one document per line, in order ------------------------------------
run_in 'store a 1\nfetch a\nadd n 5\nfetch zz\nsub n 9 --min 0\nadd a x\n' --json pipe local --batch 2
expect "pipe --json" 2 '{"status":"ok"}\n{"status":"ok","value":"1"}\n{"status":"ok","value":5}\n{"status":"not_found"}\n{"status":"out_of_bounds","value":5}\n{"status":"error","error":"usage","exit":2,"message":"DELTA is not a 64-bit integer \\"x\\""}\n' '*'

# ---- many lines -------------------------------------------------------------------
seq 1 5000 | sed 's/.*/store k& v&/' >"$T/many"
seq 1 5000 | sed 's/.*/fetch k&/' >>"$T/many"
"$KVI" -u local:// pipe local --batch 300 <"$T/many" >"$T/out" 2>"$T/err"
rc=$?
seq 1 5000 | sed 's/.*/v&/' >"$T/want"
expect "pipe 10000 lines" 0 '*' '*'
check "pipe 10000 lines: every fetch in order" cmp -s "$T/want" "$T/out"

# ---- redis ----------------------------------------------------------------------
if ! command -v redis-server >/dev/null 2>&1 || [ ! -e "$MODDIR/kvi_redis.so" ]; then
    if [ "${KVI_REQUIRE_SERVERS:-0}" = 1 ]; then
        fail "redis-server or the redis module is missing (KVI_REQUIRE_SERVERS=1)"
    else
        echo "SKIP (loud): the redis part needs redis-server and $MODDIR/kvi_redis.so"
    fi
    t_done
fi
export KVI_MODULE_PATH=$MODDIR
PW='p1pe-Pa55'
t_redis_start --requirepass "$PW"
KVI_CMD=("$KVI" -u "redis://:$PW@127.0.0.1:$REDIS_PORT/0")
run_in 'store a 1\nfetch a\nadd n 5\nsub n 2 --min 10\nraw SET r "x y"\nraw GET r\nraw NOSUCH\nfetch nope\nadd a 1\ncounter n\n' pipe redis
expect "pipe redis" 17 '1\n5\nOK\n"x y"\n(error) ERR unknown command '"'"'NOSUCH'"'"', with args beginning with: \n2\n5\n' '*'
expect_err_has "pipe redis summary" "kvi pipe: 10 commands"
seq 1 20000 | sed 's/.*/store key:& value:&/' >"$T/bulk"
"${KVI_CMD[@]}" pipe redis <"$T/bulk" >"$T/out" 2>"$T/err"
rc=$?
expect "pipe redis 20000 stores" 0 '' '*'
expect_err_has "pipe redis 20000 summary" "20000 ok, 0 not found, 0 refused, 0 failed"
run fetch redis key:17777
expect "pipe redis stored" 0 'value:17777'
seq 1 3000 | sed 's/.*/add total &/' | "${KVI_CMD[@]}" pipe redis --batch 700 >"$T/out" 2>"$T/err"
rc=$?
expect "pipe redis adds" 0 '*' '*'
check "pipe redis adds: each new value in order" diff <(seq 1 3000 | awk '{s+=$1; print s}') "$T/out"
run counter redis total
expect "pipe redis total" 0 "4501500\n"
t_no_secret "$PW"
t_done
