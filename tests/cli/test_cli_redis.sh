#!/usr/bin/env bash
# test_cli_redis.sh KVI -- `kvi raw` reply printing (redis-cli style and
# JSON) and the ordinary commands against a real redis-server that this
# script starts on a free 127.0.0.1 port in a temporary directory (with a
# password, which must never show in any output) and always stops.
# Exits 77 (skipped) when redis-server or the redis engine module is missing.
set -u

KVI=${1:?usage: test_cli_redis.sh PATH_TO_KVI}
MODDIR=${KVI_MODULE_PATH:-${KVI_BUILD_DIR:-.}/modules}
. "$(dirname "$0")/../support/testlib.sh"
t_init cli-redis
t_need_program redis-server redis-server
t_need_module "$MODDIR" redis
export KVI_MODULE_PATH=$MODDIR
PW='r3dis-Pa55'
t_redis_start --requirepass "$PW"
port=$REDIS_PORT
URL="redis://:$PW@127.0.0.1:$port/0"
KVI_CMD=("$KVI" -u "$URL")

run raw redis 'SET k "a b"'
expect "raw status" 0 'OK\n'
run raw redis 'GET k'
expect "raw string" 0 '"a b"\n'
run raw redis 'GET nokey'
expect "raw nil" 0 '(nil)\n'
run raw redis 'INCRBY c 5'
expect "raw integer" 0 '(integer) 5\n'
run raw redis 'RPUSH l a "b\"q" c'
expect "raw rpush" 0 '(integer) 3\n'
run raw redis 'LRANGE l 0 -1'
expect "raw array" 0 '1) "a"\n2) "b\\"q"\n3) "c"\n'
run raw redis 'LRANGE none 0 -1'
expect "raw empty array" 0 '(empty array)\n'
run raw redis "EVAL \"return {1,{'x',2},{}}\" 0"
expect "raw nested array" 0 '1) (integer) 1\n2) 1) "x"\n   2) (integer) 2\n3) (empty array)\n'
run raw redis 'NOSUCHCOMMAND'
checks=$((checks + 1))
[ "$rc" = 17 ] && grep -q '^(error) ERR unknown command' "$T/out" || fail "raw error reply: $rc $(cat "$T/out")"
run cache_raw_query redis 'GET k'
expect "cache_raw_query alias" 0 '"a b"\n'
run --json raw redis 'LRANGE l 0 -1'
expect "raw --json array" 0 '{"status":"ok","reply":["a","b\\"q","c"]}\n'
run --json raw redis 'SET k2 v'
expect "raw --json status" 0 '{"status":"ok","reply":{"status":"OK"}}\n'
run --json raw redis 'GET nokey'
expect "raw --json nil" 0 '{"status":"ok","reply":null}\n'

run store redis sk "x y" 100
expect "store on redis" 0 ""
run fetch redis sk
expect "fetch on redis" 0 "x y"
run add redis rc 7
expect "add on redis" 0 "7\n"
run sub redis rc 10
expect "sub on redis" 0 "-3\n"
run keys redis 's*'
expect "keys on redis" 0 "sk\n"
run ping redis
expect "ping on redis" 0 "PONG\n"
# The shell's words go to the engine re-quoted: the same bytes arrive.
printf 'raw redis SET shk "v w"\nfetch redis shk\nraw redis SET bk "a\\x00\\"b"\nraw redis STRLEN bk\nraw redis APPEND bk "x y"\n' |
    "$KVI" -u "$URL" shell >"$T/out" 2>"$T/err"
rc=$?
expect "shell raw keeps redis quoting" 0 'OK\nv w\nOK\n(integer) 4\n(integer) 7\n'
# A trailing comment is not sent to the server (ECHO takes one argument).
printf 'raw redis ECHO hi # not for the server\nraw redis ECHO "#x" #y\n' |
    "$KVI" -u "$URL" shell >"$T/out" 2>"$T/err"
rc=$?
expect "shell raw: a comment is not sent" 0 '"hi"\n"#x"\n' ''

# A wrong password is an authentication error that does not show it.
"$KVI" -u "redis://:wrong-$PW@127.0.0.1:$port/" ping redis >"$T/out" 2>"$T/err"
rc=$?
cat "$T/out" "$T/err" >>"$T/all_output"
checks=$((checks + 1))
[ "$rc" = 10 ] || fail "wrong password: exit $rc, want 10 ($(cat "$T/err"))"

t_no_secret "$PW"
t_done
