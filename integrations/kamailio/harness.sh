# harness.sh -- run Kamailio with kvi_routing.lua, sipp and redis on
# 127.0.0.1 in a private temporary directory.  Sourced (bash) by the sip tests
# (tests/integration/kamailio/) and the benchmark (bench/sip/); usable by hand:
#
#     . integrations/kamailio/harness.sh
#     kh_init                             # temp dir, cleanup trap
#     kh_make_db "$KH_DIR/subscriber.db" 100 5   # users u0001..u0100 (+5 bad lines)
#     kh_kam_start p1 KVI_SIP_CACHE=kvi KVI_SIP_URLS="local://?shm=x&max_memory=16m"
#     kh_sipp_register p1 "$KH_DIR/users.csv" 200   # rate 200/s
#     kh_dbq p1                           # "user count" per user queried
#
# Every process is started with a parent-death signal and stopped by its PID
# at exit (also on failure, Ctrl-C or a test timeout); the directory is
# removed unless KH_KEEP=1.  Nothing listens beyond 127.0.0.1.

# kamailio and kamcmd live in /usr/sbin, which a non-root PATH may lack.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin:/sbin ;; esac
KH_SRC=${KH_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
KH_BUILD=${KH_BUILD:-${KVI_BUILD_DIR:-}}
declare -A KH_PID KH_PORT KH_MARIADB
KH_PIDS=()

kh_log() { printf '%s %s\n' "[$(date +%T)]" "$*" >&2; }
kh_die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
# A test that cannot run here says why and exits 77 (CTest: skipped).
kh_skip() { printf '\n*** SKIPPED: %s ***\n\n' "$*" >&2; exit 77; }

# Checks the programs and modules a Kamailio run needs; skips loudly when one
# is missing.  $1 = "kvi" also needs the kvi Lua module in the build tree.
kh_require() {
    local p
    for p in kamailio kamcmd sipp sqlite3 setpriv; do
        command -v "$p" >/dev/null 2>&1 ||
            kh_skip "$p not found (Debian: kamailio kamailio-lua-modules kamailio-sqlite-modules sip-tester sqlite3 util-linux; make deps-test installs them)"
    done
    local mdir=/usr/lib/x86_64-linux-gnu/kamailio/modules
    mdir=$(kamailio -h 2>/dev/null | sed -n 's/.*Modules search path (default: \(.*\)).*/\1/p')
    for p in app_lua db_sqlite auth_db dialog htable rtimer; do
        [ -e "$mdir/$p.so" ] ||
            kh_skip "Kamailio module $p.so missing in $mdir (Debian: kamailio-lua-modules, kamailio-sqlite-modules)"
    done
    [ -n "$KH_BUILD" ] || kh_die "KVI_BUILD_DIR (the kvi build tree) is not set"
    [ -e "$KH_BUILD/tests/integration/kamailio/kvi_sql_log.so" ] ||
        kh_die "$KH_BUILD/tests/integration/kamailio/kvi_sql_log.so (the query counter) is not built"
    if [ "${1:-}" = kvi ]; then
        [ -n "$KH_BUILD" ] || kh_die "KVI_BUILD_DIR (the kvi build tree) is not set"
        [ -e "$KH_BUILD/bindings/lua/5.1/kvi.so" ] ||
            kh_skip "kvi Lua 5.1 module $KH_BUILD/bindings/lua/5.1/kvi.so not built (needs liblua5.1-0-dev)"
    fi
}

kh_cleanup() {
    local i pid seg
    for ((i = ${#KH_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${KH_PIDS[$i]}
        kill -TERM "$pid" 2>/dev/null || continue
    done
    for pid in "${KH_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    KH_PIDS=()
    for seg in ${KH_SHM_SEGMENTS:-}; do kh_shm_unlink "$seg"; done
    # A sanitizer report from a Kamailio process (KVI_SIP_PRELOAD) fails the run.
    local rep san=0
    for rep in "${KH_DIR:-/nonexistent}"/*/asan.*; do
        [ -e "$rep" ] || continue
        echo "FAIL: sanitizer report $rep:" >&2
        cat "$rep" >&2
        san=1
    done
    # Kamailio out of shared memory answers 500 and says "out of mem": that
    # fails every test and benchmark run (-m sizes it, docs/kamailio.md).
    local oom
    for oom in "${KH_DIR:-/nonexistent}"/*/kamailio.log; do
        [ -e "$oom" ] || continue
        if grep -q "out of mem" "$oom"; then
            echo "FAIL: Kamailio ran out of shared memory: $oom" >&2
            grep -m 3 "out of mem" "$oom" >&2
            san=1
        fi
    done
    if [ -n "${KH_DIR:-}" ] && [ "${KH_KEEP:-0}" != 1 ]; then
        rm -rf "$KH_DIR"
    elif [ -n "${KH_DIR:-}" ]; then
        kh_log "kept $KH_DIR"
    fi
    [ $san = 0 ] || exit 1
}

kh_init() {
    KH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kvi-sip-XXXXXX") || kh_die "mktemp failed"
    trap kh_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM HUP
}

# Starts a background process (argv) with a parent-death signal; records its
# PID in KH_PIDS and prints nothing.  Output to file $1.
kh_spawn() {
    local out=$1
    shift
    setpriv --pdeathsig KILL -- "$@" >"$out" 2>&1 </dev/null &
    KH_LAST_PID=$!
    KH_PIDS+=("$KH_LAST_PID")
}

# Stops one process started by kh_spawn (TERM, up to 5 s, then KILL).
kh_stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    local keep=() p
    for p in "${KH_PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    KH_PIDS=("${keep[@]}")
}

# The shared-memory local engine (local://?shm=NAME): skips loudly when this
# build of kvi does not have it.
kh_require_shm() {
    local out
    out=$("$KH_BUILD/kvi" -u "local://?shm=kvi-sip-probe-$$&max_memory=1m" ping local 2>&1) ||
        kh_skip "this kvi has no shared local engine (local://?shm=...): $out"
    kh_shm_unlink "kvi-sip-probe-$$"
}

# kh_shm_url TAG: sets KH_SHM_URL to the URL of a shared local collection
# private to this run (its segment is unlinked at exit).  Not in $(...): the
# segment must be remembered by this shell.
kh_shm_url() {
    local seg="kvi-sip-$1-$$"
    KH_SHM_SEGMENTS="${KH_SHM_SEGMENTS:-} $seg"
    KH_SHM_URL="local://?shm=$seg&max_memory=${KH_SHM_SIZE:-32m}"
}

# Removes a segment: the engine unlinks it when a connection opened with
# shm_unlink=yes closes.
kh_shm_unlink() {
    [ -e "/dev/shm/kvi.$1" ] || return 0
    "$KH_BUILD/kvi" -u "local://?shm=$1&shm_unlink=yes" ping local >/dev/null 2>&1 ||
        echo "WARNING: could not remove shared-memory segment $1" >&2
}

# Local ports in use for protocol $1 (udp|tcp), decimal, from /proc/net (no
# iproute2 needed).
kh_ports_in_use() {
    local f
    for f in /proc/net/$1 /proc/net/${1}6; do
        [ -r "$f" ] && awk 'NR > 1 { split($2, a, ":"); print a[2] }' "$f"
    done | while read -r hex; do echo $((16#$hex)); done | tr '\n' ' '
}

# kh_free_port [udp|tcp [LO HI]]: a port in [LO, HI) (default 15000..32000,
# below Linux's ephemeral range, so no outgoing connection takes it between
# here and the bind) on 127.0.0.1 that nobody uses now, never the same twice
# in one run.
kh_free_port() {
    local proto=${1:-udp} lo=${2:-15000} hi=${3:-32000} port used
    # Called in $(...): the ports given out are remembered in a file.
    used="$(kh_ports_in_use "$proto") $(cat "$KH_DIR/ports-given" 2>/dev/null | tr '\n' ' ')"
    while :; do
        port=$((lo + RANDOM % (hi - lo)))
        case " $used " in *" $port "*) continue ;; esac
        echo "$port" >>"$KH_DIR/ports-given"
        echo "$port"
        return
    done
}

# kh_subscriber_sql DIALECT NGOOD NBAD [TABLE...]: the SQL of the subscriber
# database (Kamailio 5.6 schema, table version 7, plain passwords) for
# DIALECT sqlite or mysql, with users u0001..uNGOOD, password "pw-<user>",
# and u9001..u(9000+NBAD), in each TABLE (default: subscriber; more tables
# let several Kamailio instances share one server and be counted apart).
kh_subscriber_sql() {
    local dialect=$1 ngood=$2 nbad=$3 i t id
    shift 3
    [ $# -gt 0 ] || set -- subscriber
    id="id INTEGER PRIMARY KEY NOT NULL"
    [ "$dialect" = mysql ] && id="id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL"
    echo "BEGIN;"
    echo "CREATE TABLE version (table_name VARCHAR(32) NOT NULL, table_version INTEGER DEFAULT 0 NOT NULL, CONSTRAINT version_table_name_idx UNIQUE (table_name));"
    for t in "$@"; do
        echo "INSERT INTO version VALUES ('$t', 7);"
        echo "CREATE TABLE $t ($id, username VARCHAR(64) DEFAULT '' NOT NULL, domain VARCHAR(64) DEFAULT '' NOT NULL, password VARCHAR(64) DEFAULT '' NOT NULL, ha1 VARCHAR(128) DEFAULT '' NOT NULL, ha1b VARCHAR(128) DEFAULT '' NOT NULL, CONSTRAINT ${t}_account_idx UNIQUE (username, domain));"
        echo "CREATE INDEX ${t}_username_idx ON $t (username);"
        for ((i = 1; i <= ngood; i++)); do
            printf "INSERT INTO $t (username, domain, password) VALUES ('u%04d', 'kvi.test', 'pw-u%04d');\n" "$i" "$i"
        done
        for ((i = 1; i <= nbad; i++)); do
            printf "INSERT INTO $t (username, domain, password) VALUES ('u%04d', 'kvi.test', 'pw-u%04d');\n" $((9000 + i)) $((9000 + i))
        done
    done
    echo "COMMIT;"
}

# kh_users_csv NGOOD NBAD: the sipp injection file $KH_DIR/users.csv: every
# good user with its password, then NBAD lines of users u9001.. that are in
# the table but are sent with a wrong password.
kh_users_csv() {
    local ngood=$1 nbad=$2 i
    {
        echo "SEQUENTIAL"
        for ((i = 1; i <= ngood; i++)); do printf 'u%04d;pw-u%04d;good\n' "$i" "$i"; done
        for ((i = 1; i <= nbad; i++)); do printf 'u%04d;wrong-%d;bad\n' $((9000 + i)) "$i"; done
    } >"$KH_DIR/users.csv"
}

# kh_make_db FILE NGOOD NBAD [TABLE...]: the SQLite subscriber database
# (kh_subscriber_sql) in FILE and $KH_DIR/users.csv (kh_users_csv).
kh_make_db() {
    local db=$1 ngood=$2 nbad=${3:-0}
    shift 3 2>/dev/null || shift $#
    rm -f "$db"
    kh_subscriber_sql sqlite "$ngood" "$nbad" "$@" | sqlite3 "$db" || kh_die "sqlite3 could not make $db"
    kh_users_csv "$ngood" "$nbad"
}

# kh_mariadb_start NAME: a throwaway MariaDB server on a free 127.0.0.1 port
# (KH_PORT[NAME], KH_PID[NAME]) with its data, socket and general query log
# in $KH_DIR/NAME (every statement the server ran: the queries are counted
# there), a database "kamailio" and a user "kamailio" for it.  Sets
# KH_MY_URL (the Kamailio db_url) and KH_DBLOG (the query log).  Skips
# loudly without mariadbd or Kamailio's db_mysql module.
kh_mariadb_start() {
    local name=$1 dir=$KH_DIR/$1 port i me mdir
    # Full paths: Debian puts mariadbd in /usr/sbin, which a user's PATH may lack.
    for i in mariadbd mariadb-install-db mariadb; do
        KH_MARIADB[$i]=$(command -v "$i" 2>/dev/null) || KH_MARIADB[$i]=
        [ -n "${KH_MARIADB[$i]}" ] || { [ -x "/usr/sbin/$i" ] && KH_MARIADB[$i]=/usr/sbin/$i; } ||
            kh_skip "$i not found (Debian: mariadb-server; make deps-test installs it)"
    done
    mdir=$(kamailio -h 2>/dev/null | sed -n 's/.*Modules search path (default: \(.*\)).*/\1/p')
    [ -e "$mdir/db_mysql.so" ] || kh_skip "Kamailio module db_mysql.so missing in $mdir (Debian: kamailio-mysql-modules)"
    me=$(id -un)
    mkdir -p "$dir"
    "${KH_MARIADB[mariadb-install-db]}" --no-defaults --datadir="$dir/data" --user="$me" --auth-root-authentication-method=normal \
        --skip-test-db >"$dir/install.log" 2>&1 || { tail -n 20 "$dir/install.log" >&2; kh_die "mariadb-install-db failed"; }
    port=$(kh_free_port tcp)
    kh_spawn "$dir/server.log" "${KH_MARIADB[mariadbd]}" --no-defaults --datadir="$dir/data" --user="$me" --socket="$dir/sock" \
        --port="$port" --bind-address=127.0.0.1 --pid-file="$dir/pid" --skip-name-resolve \
        --general-log=1 --general-log-file="$dir/general.log" --innodb-buffer-pool-size=32M --max-connections=300
    KH_PID[$name]=$KH_LAST_PID
    KH_PORT[$name]=$port
    for ((i = 0; i < 150; i++)); do
        kh_mysql "$name" -e "SELECT 1" >/dev/null 2>&1 && break
        kill -0 "${KH_PID[$name]}" 2>/dev/null || break
        sleep 0.2
    done
    kh_mysql "$name" -e "CREATE DATABASE kamailio; CREATE USER 'kamailio'@'127.0.0.1' IDENTIFIED BY 'kvi-test'; GRANT ALL ON kamailio.* TO 'kamailio'@'127.0.0.1'" ||
        { tail -n 20 "$dir/server.log" >&2; kh_die "MariaDB $name did not start"; }
    KH_MY_URL="mysql://kamailio:kvi-test@127.0.0.1:$port/kamailio"
    KH_DBLOG=$dir/general.log
}

# kh_mysql NAME [mariadb args]: the client, as root over the server's socket.
kh_mysql() {
    local name=$1
    shift
    "${KH_MARIADB[mariadb]:-mariadb}" --no-defaults -S "$KH_DIR/$name/sock" -u root "$@"
}

# kh_mariadb_make_db NAME NGOOD NBAD [TABLE...]: the subscriber tables in
# NAME's database "kamailio" and $KH_DIR/users.csv.
kh_mariadb_make_db() {
    local name=$1 ngood=$2 nbad=$3
    shift 3
    kh_subscriber_sql mysql "$ngood" "$nbad" "$@" | kh_mysql "$name" kamailio ||
        kh_die "could not make the subscriber tables in MariaDB $name"
    kh_users_csv "$ngood" "$nbad"
}

# The server's own count of SELECT statements (Com_select).
kh_mariadb_selects() {
    kh_mysql "$1" -N -e "SHOW GLOBAL STATUS LIKE 'Com_select'" | awk '{ print $2 }'
}

# With KVI_SIP_PRELOAD set (a sanitizer build: the path of the ASan runtime),
# Kamailio runs with it preloaded, so that the instrumented kvi.so can load
# into Debian's uninstrumented kamailio; reports go to $KH_DIR/NAME/asan.*
# and fail the run (leak checking is off there: Kamailio never frees its Lua
# states).
# KH_KAM_ARGS: more kamailio options (e.g. "-u kamailio -g kamailio").
# kh_kam_start NAME [VAR=VALUE ...]: Kamailio instance NAME on a free UDP port
# of 127.0.0.1 (KH_PORT[NAME]) in $KH_DIR/NAME, foreground (-DD) under our
# PID, with kamailio.cfg + kvi_routing.lua and the settings given (see
# kvi_routing.lua; defaults: 8 workers, cache mode kvi, the database
# $KH_DIR/subscriber.db).  Waits until its control socket answers and every
# worker runs.
kh_kam_start() {
    local name=$1 dir=$KH_DIR/$1 try port
    shift
    mkdir -p "$dir"
    for try in 1 2 3; do
        port=$(kh_free_port udp)
        kh_spawn "$dir/kamailio.log" env \
            KVI_KAM_SCRIPT="${KH_SCRIPT:-$KH_SRC/kvi_routing.lua}" \
            KVI_KAM_DB_URL="sqlite:///$KH_DIR/subscriber.db" \
            KVI_KAM_CTL="unix:$dir/ctl" \
            KVI_KAM_CHILDREN=8 \
            KVI_KAM_HTABLE="auth=>size=12;autoexpire=${KVI_SIP_LIFETIME:-7200};" \
            KVI_KAM_MAX_CALL_S=60 \
            KVI_MODULE_PATH="${KVI_MODULE_PATH:-$KH_BUILD/modules}" \
            LUA_CPATH="$KH_BUILD/bindings/lua/5.1/?.so;;" \
            LD_PRELOAD="${KVI_SIP_PRELOAD:+$KVI_SIP_PRELOAD:}$KH_BUILD/tests/integration/kamailio/kvi_sql_log.so" \
            KVI_SQL_LOG="$dir/sql.log" \
            ${KVI_SIP_PRELOAD:+ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$dir/asan"} \
            "$@" \
            kamailio -f "$KH_SRC/kamailio.cfg" -DD -E -w "$dir" -Y "$dir" -P "$dir/kamailio.pid" \
            -l "udp:127.0.0.1:$port" -m "${KH_SHM_MB:-512}" -M 8 ${KH_KAM_ARGS:-}
        KH_PID[$name]=$KH_LAST_PID
        KH_PORT[$name]=$port
        local i
        for ((i = 0; i < 200; i++)); do
            if ! kill -0 "${KH_PID[$name]}" 2>/dev/null; then
                break
            fi
            if kamcmd -s "unix:$dir/ctl" core.psx >"$dir/psx" 2>/dev/null &&
                [ "$(grep -c 'udp receiver' "$dir/psx")" -ge "$(kh_env_children "$@")" ]; then
                return 0
            fi
            sleep 0.1
        done
        if grep -q "Address already in use" "$dir/kamailio.log" 2>/dev/null; then
            kh_stop_pid "${KH_PID[$name]}"
            continue
        fi
        tail -n 30 "$dir/kamailio.log" >&2
        kh_die "kamailio $name did not start (log above)"
    done
    kh_die "kamailio $name: no free port after 3 tries"
}

kh_env_children() {
    local a n=8
    for a in "$@"; do case $a in KVI_KAM_CHILDREN=*) n=${a#*=} ;; esac; done
    echo "$n"
}

kh_kam_stop() {
    kh_stop_pid "${KH_PID[$1]}"
}

kh_kamcmd() {
    local name=$1
    shift
    kamcmd -s "unix:$KH_DIR/$name/ctl" "$@"
}

# Per-user count of subscriber-table queries, counted at the database: the
# statements SQLite ran (tests/integration/kamailio/sql_log.c, preloaded into
# every Kamailio process, logs them to $KH_DIR/NAME/sql.log), or with
# MariaDB (KH_DBLOG set by kh_mariadb_start) the server's general query log.
# TABLE (default subscriber) tells apart instances that share a server.
# "user count" lines, sorted by user.
kh_dbq() {
    local log=${KH_DBLOG:-$KH_DIR/$1/sql.log} table=${2:-subscriber}
    sed -n "s/.* from \`\\?$table\`\\? where .*username\`\\? *= *'\\([^']*\\)'.*/\\1/Ip" "$log" 2>/dev/null |
        sort | uniq -c | awk '{ print $2, $1 }'
}

# Sum of the per-user counts (kh_dbq NAME [TABLE]).
kh_dbq_total() {
    kh_dbq "$@" | awk '{ s += $2 } END { print s + 0 }'
}

# CPU ticks (utime + stime, clock ticks) of an instance's main process and
# all its children, from /proc.
kh_cpu_ticks() {
    local main=${KH_PID[$1]} total=0 f stat
    for f in /proc/[0-9]*/stat; do
        { read -r stat <"$f"; } 2>/dev/null || continue
        set -- ${stat##*) }
        # fields after "pid (comm) ": state ppid ... utime is the 12th, stime the 13th
        if [ "$2" = "$main" ] || [ "$f" = "/proc/$main/stat" ]; then
            total=$((total + ${12} + ${13}))
        fi
    done
    echo "$total"
}

# PIDs of an instance: its main process and every child.
kh_kam_pids() {
    local main=${KH_PID[$1]} f stat
    echo "$main"
    for f in /proc/[0-9]*/stat; do
        { read -r stat <"$f"; } 2>/dev/null || continue
        set -- ${stat##*) }
        [ "$2" = "$main" ] && { f=${f#/proc/}; echo "${f%/stat}"; }
    done
}

# kh_sipp NAME TAG [sipp args...]: runs sipp against instance NAME in
# $KH_DIR/sipp-TAG (logs there), bounded by KH_SIPP_TIMEOUT seconds (60),
# from local port KH_SIPP_PORT (default: a free one).
# Returns sipp's status (0 = every call succeeded).
kh_sipp() {
    local name=$1 tag=$2 dir=$KH_DIR/sipp-$2 rc
    shift 2
    mkdir -p "$dir"
    (cd "$dir" && timeout -k 5 "${KH_SIPP_TIMEOUT:-60}" setpriv --pdeathsig KILL -- \
        sipp "127.0.0.1:${KH_PORT[$name]}" -i 127.0.0.1 -p "${KH_SIPP_PORT:-$(kh_free_port udp)}" -nostdin \
        -trace_logs -log_file "$dir/calls.log" -trace_err -error_file "$dir/errors.log" \
        -trace_stat -stf "$dir/stat.csv" -fd 3600 "$@" >"$dir/sipp.out" 2>&1)
    rc=$?
    return $rc
}

# kh_sipp_register NAME TAG CSV RATE [more sipp args]: one REGISTER call per
# injection line, at RATE calls/s.
kh_sipp_register() {
    local name=$1 tag=$2 csv=$3 rate=$4 n
    shift 4
    n=$(($(wc -l <"$csv") - 1))
    kh_sipp "$name" "$tag" -sf "$KH_SRC/sipp/register.xml" -inf "$csv" -r "$rate" -m "$n" "$@"
}

# Last value of a column of a sipp statistics file (cumulative counters such
# as SuccessfulCall(C), FailedCall(C), Retransmissions(C)).
kh_sipp_stat() {
    local file=$1 col=$2
    awk -F';' -v want="$col" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == want) c = i; next }
                              { last = $c } END { print last + 0 }' "$file"
}

# kh_check_register CSV LOG: every injection line of CSV has exactly one
# result line in the sipp log; "good" lines got 200, "bad" ones 401 or 403.
# Prints the counts; fails (status 1) with the offending lines otherwise.
kh_check_register() {
    awk -F'[; ]' '
        FNR == NR { if (FNR > 1) { want[$1] = $3; n++ } next }
        { got[$1]++; code[$1] = $3 }
        END {
            bad = 0; good200 = 0; bad40x = 0
            for (u in want) {
                if (got[u] != 1) { printf "user %s: %d results, want 1\n", u, got[u]; bad++; continue }
                if (want[u] == "good") {
                    if (code[u] == "200") good200++
                    else { printf "user %s (right password): got %s, want 200\n", u, code[u]; bad++ }
                } else {
                    if (code[u] == "401" || code[u] == "403") bad40x++
                    else { printf "user %s (wrong password): got %s, want 401/403\n", u, code[u]; bad++ }
                }
            }
            for (u in got) if (!(u in want)) { printf "unexpected user %s in the log\n", u; bad++ }
            printf "register results: %d lines, %d right passwords got 200, %d wrong got 401/403, %d wrong results\n",
                   n, good200, bad40x, bad
            exit bad != 0
        }' "$1" "$2"
}

# kh_redis_start NAME [extra redis-server args]: a throwaway redis-server on a
# free 127.0.0.1 port (KH_PORT[NAME]) in $KH_DIR/NAME, waits for PING.
kh_redis_start() {
    local name=$1 dir=$KH_DIR/$1 port i
    shift
    command -v redis-server >/dev/null 2>&1 || kh_skip "redis-server not found (Debian: redis-server)"
    mkdir -p "$dir"
    port=$(kh_free_port tcp)
    kh_spawn "$dir/redis.log" redis-server --port "$port" --bind 127.0.0.1 --save "" \
        --appendonly no --dir "$dir" "$@"
    KH_PID[$name]=$KH_LAST_PID
    KH_PORT[$name]=$port
    for ((i = 0; i < 100; i++)); do
        [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    tail -n 20 "$dir/redis.log" >&2
    kh_die "redis-server $name did not start"
}

# kh_redis_stop NAME: kills redis-server NAME at once (SIGKILL: no goodbye,
# like a crash); its port and directory stay for kh_redis_restart.
kh_redis_stop() {
    kill -KILL "${KH_PID[$1]}" 2>/dev/null
    kh_stop_pid "${KH_PID[$1]}"
}

# kh_redis_restart NAME [extra args]: starts redis-server NAME again on its
# port, in its directory (an append-only file there is loaded).
kh_redis_restart() {
    local name=$1 dir=$KH_DIR/$1 port=${KH_PORT[$1]} i
    shift
    kh_spawn "$dir/redis.log" redis-server --port "$port" --bind 127.0.0.1 --save "" --dir "$dir" "$@"
    KH_PID[$name]=$KH_LAST_PID
    for ((i = 0; i < 100; i++)); do
        [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    tail -n 20 "$dir/redis.log" >&2
    kh_die "redis-server $name did not start again"
}

# kh_uas_start NAME: the callee, a sipp running uas_call.xml on a free port
# (KH_PORT[NAME], KH_PID[NAME]) in $KH_DIR/NAME.
kh_uas_start() {
    local name=$1 dir=$KH_DIR/$1 port
    port=$(kh_free_port udp)
    mkdir -p "$dir"
    (cd "$dir" && exec setpriv --pdeathsig KILL -- sipp -sf "$KH_SRC/sipp/uas_call.xml" \
        -i 127.0.0.1 -p "$port" -nostdin -trace_err -error_file "$dir/errors.log" \
        >"$dir/sipp.out" 2>&1) &
    KH_PID[$name]=$!
    KH_PORT[$name]=$port
    KH_PIDS+=("$!")
    # Ready when its UDP port is bound (up to 10 s), not when 0.5 s passed.
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "${KH_PID[$name]}" 2>/dev/null || break
        case " $(kh_ports_in_use udp) " in *" $port "*) return 0 ;; esac
        sleep 0.1
    done
    cat "$dir/sipp.out" >&2
    kh_die "the callee sipp $name did not bind 127.0.0.1:$port"
}

# kh_log_lines NAME REGEX: how many lines of instance NAME's log match REGEX
# (extended), and at most how many of them one process wrote (the log's
# "rank(pid)" prefix): prints "TOTAL MAX_PER_PROCESS".
kh_log_lines() {
    grep -E -- "$2" "$KH_DIR/$1/kamailio.log" |
        sed -n 's/^ *[0-9]*(\([0-9]*\)).*/\1/p' | sort | uniq -c |
        awk '{ t += $1; if ($1 > m) m = $1 } END { print t + 0, m + 0 }'
}

# kh_check_dbq FILE NGOOD NBAD GMIN GMAX BMIN BMAX: FILE holds "user count"
# lines (kh_dbq); every right-password user u0001..uNGOOD must have between
# GMIN and GMAX subscriber queries, every wrong-password user u9001..
# between BMIN and BMAX.  Prints a summary; status 1 on any other count.
kh_check_dbq() {
    awk -v ngood="$2" -v nbad="$3" -v gmin="$4" -v gmax="$5" -v bmin="$6" -v bmax="$7" '
        { q[$1] = $2 }
        END {
            bad = 0; total = 0
            for (i = 1; i <= ngood + nbad; i++) {
                if (i <= ngood) { u = sprintf("u%04d", i); lo = gmin; hi = gmax; what = "" }
                else { u = sprintf("u%04d", 9000 + i - ngood); lo = bmin; hi = bmax; what = " (wrong password)" }
                total += q[u]
                if (q[u] < lo || q[u] > hi) {
                    if (lo == hi) printf "user %s%s: %d subscriber queries, want %d\n", u, what, q[u], lo
                    else printf "user %s%s: %d subscriber queries, want %d..%d\n", u, what, q[u], lo, hi
                    bad++
                }
            }
            printf "subscriber queries: %d in all for %d users, %d users with a wrong count\n", total, ngood + nbad, bad
            exit bad != 0
        }' "$1"
}

# Seconds since the epoch with fractions (for the lifetime test's bounds).
kh_now() { date +%s.%N; }

# kh_cluster_start NAME [MASTERS]: a Redis Cluster of MASTERS (3) masters,
# no replicas, each a redis-server on free 127.0.0.1 ports (client port and
# bus port = port + 10000, both below the ephemeral range) in $KH_DIR/NAME-<i>, made with redis-cli --cluster
# create; waits until every node says cluster_state:ok.  Sets
# KH_CLUSTER_SEEDS to "127.0.0.1:P1,127.0.0.1:P2,...".
kh_cluster_start() {
    local name=$1 n=${2:-3} i port dir nodes=() seeds="" ok
    command -v redis-server >/dev/null 2>&1 || kh_skip "redis-server not found (Debian: redis-server)"
    command -v redis-cli >/dev/null 2>&1 || kh_skip "redis-cli not found (Debian: redis-tools)"
    for ((i = 1; i <= n; i++)); do
        while :; do
            port=$(kh_free_port tcp 10000 22000)
            case " $(kh_ports_in_use tcp) " in *" $((port + 10000)) "*) continue ;; esac
            echo "$((port + 10000))" >>"$KH_DIR/ports-given"
            break
        done
        dir=$KH_DIR/$name-$i
        mkdir -p "$dir"
        kh_spawn "$dir/redis.log" redis-server --port "$port" --bind 127.0.0.1 --save "" \
            --appendonly no --dir "$dir" --cluster-enabled yes --cluster-config-file nodes.conf \
            --cluster-node-timeout 2000
        KH_PID[$name-$i]=$KH_LAST_PID
        KH_PORT[$name-$i]=$port
        nodes+=("127.0.0.1:$port")
        seeds+="${seeds:+,}127.0.0.1:$port"
    done
    for ((i = 1; i <= n; i++)); do
        for _ in $(seq 100); do
            [ "$(redis-cli -h 127.0.0.1 -p "${KH_PORT[$name-$i]}" ping 2>/dev/null)" = PONG ] && break
            sleep 0.1
        done
    done
    timeout 60 redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes \
        >"$KH_DIR/$name-create.log" 2>&1 || { cat "$KH_DIR/$name-create.log" >&2; kh_die "redis-cli --cluster create failed"; }
    for _ in $(seq 300); do
        ok=0
        for ((i = 1; i <= n; i++)); do
            redis-cli -h 127.0.0.1 -p "${KH_PORT[$name-$i]}" cluster info 2>/dev/null |
                grep -q '^cluster_state:ok' && ok=$((ok + 1))
        done
        [ $ok = "$n" ] && { KH_CLUSTER_SEEDS=$seeds; return 0; }
        sleep 0.1
    done
    kh_die "cluster $name not ok after 30 s"
}
