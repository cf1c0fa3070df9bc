# testlib.sh -- the support library of kvi's shell tests (bash).  Source it:
#
#     . "$KVI_SOURCE_DIR/tests/support/testlib.sh"    (or a path relative to $0)
#     t_init cli-redis                 # $T temp dir, $XDG_STATE_HOME in it, cleanup at exit
#     t_need_program redis-server redis-server      # or a loud skip
#     t_redis_start --requirepass pw   # $REDIS_PORT; stopped at exit
#     KVI_CMD=("$KVI" -u "redis://127.0.0.1:$REDIS_PORT/")
#     run fetch redis k; expect "fetch" 0 "v" '*'
#     t_done                           # "N checks, M failed"; the exit status
#
# Skips are loud ("SKIPPED: why", exit 77, which CTest shows as skipped) and
# become failures under KVI_REQUIRE_SERVERS=1 (set by `make test`).  Every
# process started with t_spawn/t_redis_start is stopped by its PID at exit,
# also when the test fails.

T_SKIP=77
checks=0
fails=0
rc=0
T_PIDS=()

t_cleanup() {
    local p
    for p in "${T_PIDS[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${T_PIDS[@]}"; do
        wait "$p" 2>/dev/null
    done
    [ -n "${T:-}" ] && rm -rf "$T"
}

# t_init TAG: a private temp dir $T (removed at exit), the default store's
# state in $T/state ($STATE), LC_ALL=C.
t_init() {
    T=$(mktemp -d "${TMPDIR:-/tmp}/kvi-$1.XXXXXX") || exit 1
    trap t_cleanup EXIT
    trap 'exit 130' INT TERM HUP
    export XDG_STATE_HOME=$T/state
    export LC_ALL=C
    STATE=$XDG_STATE_HOME/kvi
}

# t_skip WHY: loud skip (exit 77), or a failure under KVI_REQUIRE_SERVERS=1.
t_skip() {
    if [ "${KVI_REQUIRE_SERVERS:-0}" = 1 ]; then
        echo "FAILED: $* -- KVI_REQUIRE_SERVERS=1 says this test must run here"
        exit 1
    fi
    echo "SKIPPED: $*"
    exit $T_SKIP
}

# t_need_program PROG PACKAGE: skip unless PROG is on PATH.
t_need_program() {
    command -v "$1" >/dev/null 2>&1 || t_skip "$1 not found on PATH (Debian package $2)"
}

# t_need_module DIR NAME: skip unless the engine module DIR/kvi_NAME.so exists.
t_need_module() {
    [ -f "$1/kvi_$2.so" ] || t_skip "the $2 engine module is not built ($1/kvi_$2.so)"
}

# t_spawn CMD...: starts CMD in the background; its PID is in $T_LAST_PID and
# it is stopped at exit.
t_spawn() {
    "$@" &
    T_LAST_PID=$!
    T_PIDS+=("$T_LAST_PID")
}

# t_free_port: prints a TCP port of 127.0.0.1 that is free right now.
t_free_port() {
    local p try
    for try in $(seq 50); do
        p=$((20000 + (RANDOM * 7 + try * 131) % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# t_redis_start [ARGS...]: starts redis-server on a free port in $T (extra
# ARGS appended, e.g. --requirepass pw); sets REDIS_PORT and REDIS_PID.
# Fails the test when it does not answer within 5 s.
t_redis_start() {
    t_need_program redis-server redis-server
    local try i
    for try in 1 2 3 4 5; do
        REDIS_PORT=$(t_free_port) || break
        mkdir -p "$T/redis-$REDIS_PORT"
        t_spawn redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$T/redis-$REDIS_PORT" \
            --save '' --appendonly no --logfile "$T/redis-$REDIS_PORT/log" "$@"
        REDIS_PID=$T_LAST_PID
        for i in $(seq 50); do
            kill -0 "$REDIS_PID" 2>/dev/null || break
            if (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null; then
                return 0
            fi
            sleep 0.1
        done
        kill "$REDIS_PID" 2>/dev/null
        wait "$REDIS_PID" 2>/dev/null
    done
    echo "FAILED: could not start redis-server: $(tail -5 "$T"/redis-*/log 2>/dev/null)"
    exit 1
}

fail() {
    fails=$((fails + 1))
    echo "FAIL: $*"
}

# run ARGS...: runs "${KVI_CMD[@]}" ARGS (KVI_CMD defaults to $KVI) with
# stdout -> $T/out, stderr -> $T/err, status -> $rc; every output is kept
# in $T/all_output (to check that no password ever shows).
run() {
    local cmd=("${KVI_CMD[@]:-$KVI}")
    "${cmd[@]}" "$@" >"$T/out" 2>"$T/err" </dev/null
    rc=$?
    cat "$T/out" "$T/err" >>"$T/all_output"
}

# run_in INPUT ARGS...: the same with INPUT (printf %b escapes) on stdin.
run_in() {
    local input=$1 cmd=("${KVI_CMD[@]:-$KVI}")
    shift
    printf '%b' "$input" | "${cmd[@]}" "$@" >"$T/out" 2>"$T/err"
    rc=$?
    cat "$T/out" "$T/err" >>"$T/all_output"
}

# expect NAME RC STDOUT [STDERR]: the last run ended with RC and wrote
# exactly STDOUT (printf %b escapes; '*' = anything) and exactly STDERR
# (default: nothing; '*' = anything).
expect() {
    local name=$1 erc=$2 eout=$3 eerr=${4-}
    checks=$((checks + 1))
    printf '%b' "$eout" >"$T/want_out"
    local bad=""
    [ "$rc" = "$erc" ] || bad="$bad exit $rc, want $erc;"
    if [ "$eout" != '*' ]; then
        cmp -s "$T/want_out" "$T/out" || bad="$bad stdout differs;"
    fi
    if [ "$eerr" != '*' ]; then
        printf '%b' "$eerr" >"$T/want_err"
        cmp -s "$T/want_err" "$T/err" || bad="$bad stderr differs;"
    fi
    if [ -n "$bad" ]; then
        fail "$name:$bad"
        echo "  stdout:"
        od -c "$T/out" | head -8 | sed 's/^/    /'
        echo "  wanted:"
        od -c "$T/want_out" | head -8 | sed 's/^/    /'
        echo "  stderr:"
        sed 's/^/    /' "$T/err" | head -8
    fi
}

# expect_err_has NAME TEXT / expect_out_has NAME TEXT: the last run's
# stderr / stdout contains TEXT.
expect_err_has() {
    checks=$((checks + 1))
    grep -qF -- "$2" "$T/err" || fail "$1: stderr lacks '$2': $(cat "$T/err")"
}
expect_out_has() {
    checks=$((checks + 1))
    grep -qF -- "$2" "$T/out" || fail "$1: stdout lacks '$2': $(head -c 400 "$T/out")"
}

# Checks take a COMMAND, never a status: `check NAME CMD ARGS...` runs CMD
# and counts it failed unless CMD exits 0.  What such a check must not be
# written as (tests/support/lint-checks.sh fails the build's tests on both):
#   check NAME [ a ] && [ b ]      -- `[ b ]` runs outside the check
#   cmd; check NAME [ $? = 0 ]     -- after `check "$(...)"` $? is the
#                                     substitution's status, always 0
# Use check_all, check_between or check_ok instead.

# check NAME CMD [ARGS...]: one check; fails NAME unless CMD exits 0.
check() {
    local name=$1
    shift
    checks=$((checks + 1))
    "$@" || fail "$name"
}

# check_all NAME TEST1 -- TEST2 [-- TEST3...]: one check that passes only
# when every `test` expression holds, e.g.
#     check_all "x in range" "$x" -ge 2 -- "$x" -le 20
check_all() {
    local name=$1 ok=1 expr=()
    shift
    checks=$((checks + 1))
    while [ $# -gt 0 ]; do
        if [ "$1" = -- ]; then
            test "${expr[@]}" || ok=0
            expr=()
        else
            expr+=("$1")
        fi
        shift
    done
    [ ${#expr[@]} = 0 ] || test "${expr[@]}" || ok=0
    [ "$ok" = 1 ] || fail "$name"
}

# check_between NAME VALUE LOW HIGH: LOW <= VALUE <= HIGH (integers).
check_between() {
    check_all "$1 (got $2, want $3..$4)" "$2" -ge "$3" -- "$2" -le "$4"
}

# check_ok NAME LOG CMD [ARGS...]: runs CMD with its output in LOG and fails
# NAME (with LOG's last lines) unless CMD exits 0.
check_ok() {
    local name=$1 log=$2 st
    shift 2
    checks=$((checks + 1))
    "$@" >"$log" 2>&1
    st=$?
    [ "$st" = 0 ] || fail "$name: exit status $st: $(tail -3 "$log")"
}

# t_no_secret TEXT: TEXT appears in no output of any run.
t_no_secret() {
    checks=$((checks + 1))
    if grep -aqF -- "$1" "$T/all_output" 2>/dev/null; then fail "a password appears in output"; fi
}

# t_done: prints the tally; exits 0 when nothing failed (and something was
# checked), 1 otherwise.
t_done() {
    echo "$checks checks, $fails failed"
    [ "$checks" -gt 0 ] || { echo "FAIL: no checks ran"; exit 1; }
    [ "$fails" = 0 ] || exit 1
    exit 0
}
