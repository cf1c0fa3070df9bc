#!/bin/bash
# sip_register_<mode>: Kamailio (8 workers) with kvi_routing.lua in cache
# mode <mode>, a subscriber database of 40 users plus 6 users sent with a
# wrong password, sipp registering every injection line three times (the
# second time with Kamailio stopped for 1.5 s in the middle, so that sipp
# retransmits).
#   - every REGISTER with the right password gets 200, every wrong one 401/403;
#   - subscriber-table queries per user (counted by the script): with a
#     cache, exactly 1 per right-password user (the lifetime is longer than
#     the run); without one ("none"), one per REGISTER; a wrong password is
#     never cached, so 3 per such user in every mode; retransmissions never
#     add a query (the script absorbs them in a transaction);
#   - kvi-shm: `kvi stats` from outside shows the workers' hits and misses
#     exactly (hits = right-password REGISTERs after each user's first).
# Modes: none, htable (Kamailio's native cache), kvi-redis (kvi over a
# redis-server), kvi-redis-nc (the same with the near cache, client_cache),
# kvi-shm (kvi over the shared local engine).  Database
# (second argument): sqlite (default; queries counted by kvi_sql_log.so) or
# mariadb (a MariaDB server on a loopback port, Kamailio's db_mysql; queries
# counted from the server's general query log, and its Com_select must have
# grown by at least as many).
set -u
mode=${1:?usage: test_sip_register.sh none|htable|kvi-redis|kvi-redis-nc|kvi-shm [sqlite|mariadb]}
db=${2:-sqlite}
. "${KVI_SOURCE_DIR:?}/integrations/kamailio/harness.sh"

case $mode in kvi-*) kh_require kvi ;; *) kh_require ;; esac
kh_init
NGOOD=40 NBAD=6 ROUNDS=3
args=()
case $db in
sqlite) kh_make_db "$KH_DIR/subscriber.db" $NGOOD $NBAD ;;
mariadb)
    kh_mariadb_start my
    kh_mariadb_make_db my $NGOOD $NBAD
    args=("KVI_KAM_DB_URL=$KH_MY_URL" KVI_KAM_DB_MODULE=db_mysql.so)
    ;;
*) kh_die "unknown database $db" ;;
esac

case $mode in
none | htable) args+=(KVI_SIP_CACHE=$mode) ;;
kvi-redis)
    kh_redis_start redis
    args+=(KVI_SIP_CACHE=kvi KVI_SIP_ENGINE=redis "KVI_SIP_URLS=redis://127.0.0.1:${KH_PORT[redis]}/")
    ;;
kvi-redis-nc)
    kh_redis_start redis
    args+=(KVI_SIP_CACHE=kvi KVI_SIP_ENGINE=redis "KVI_SIP_URLS=redis://127.0.0.1:${KH_PORT[redis]}/?client_cache=1000")
    ;;
kvi-shm)
    kh_require_shm
    kh_shm_url auth
    args+=(KVI_SIP_CACHE=kvi KVI_SIP_ENGINE=local "KVI_SIP_URLS=$KH_SHM_URL")
    ;;
*) kh_die "unknown mode $mode" ;;
esac
kh_kam_start p1 "${args[@]}"
[ "$db" = mariadb ] && sel0=$(kh_mariadb_selects my)

failed=0
for ((r = 1; r <= ROUNDS; r++)); do
    if [ $r = 2 ]; then
        # Round 2 is sent slowly (20/s) while Kamailio is stopped (SIGSTOP of
        # every process) for 1.5 s: the REGISTERs in flight are retransmitted
        # by sipp and must still be answered and counted once each.
        kh_sipp_register p1 "r$r" "$KH_DIR/users.csv" 20 &
        sipp_pid=$!
        sleep 0.5
        pids=$(kh_kam_pids p1)
        kill -STOP $pids
        sleep 1.5
        kill -CONT $pids
        wait $sipp_pid
    else
        kh_sipp_register p1 "r$r" "$KH_DIR/users.csv" 100
    fi || {
        echo "sipp round $r: not every call completed:"
        tail -n 20 "$KH_DIR/sipp-r$r/sipp.out"
        failed=1
    }
    kh_check_register "$KH_DIR/users.csv" "$KH_DIR/sipp-r$r/calls.log" || failed=1
done
# A wrong password for every user whose right one is cached by now: each
# gets 401/403 from the cache's password, without a query (with no cache,
# "none", one query each).  A route that took a cached password as proof
# without checking the credentials against it answered these 200.
{
    echo SEQUENTIAL
    awk -F';' '$3 == "good" { printf "%s;not-%s;bad\n", $1, $2 }' "$KH_DIR/users.csv"
} >"$KH_DIR/wrong.csv"
kh_sipp_register p1 wrong "$KH_DIR/wrong.csv" 100 || {
    echo "sipp, wrong passwords of cached users: not every call completed:"
    tail -n 20 "$KH_DIR/sipp-wrong/sipp.out"
    failed=1
}
kh_check_register "$KH_DIR/wrong.csv" "$KH_DIR/sipp-wrong/calls.log" || failed=1
retrans=$(kh_sipp_stat "$KH_DIR/sipp-r2/stat.csv" "Retransmissions(C)")
echo "round 2 (Kamailio stopped for 1.5 s): $retrans retransmissions"
[ "$retrans" -gt 0 ] || { echo "round 2 caused no retransmission: the stall did not happen"; failed=1; }

want_good=1
[ "$mode" = none ] && want_good=$((ROUNDS + 1)) # + the wrong-password round
kh_dbq p1 >"$KH_DIR/dbq.txt"
kh_check_dbq "$KH_DIR/dbq.txt" $NGOOD $NBAD $want_good $want_good $ROUNDS $ROUNDS || failed=1
if [ "$db" = mariadb ]; then
    # The server's own counter agrees with its log (it also counts the
    # statements of this check and Kamailio's table-version checks).
    sel=$(($(kh_mariadb_selects my) - sel0))
    q=$(awk '{ s += $2 } END { print s + 0 }' "$KH_DIR/dbq.txt")
    echo "MariaDB Com_select grew by $sel while the query log shows $q subscriber queries"
    [ "$sel" -ge "$q" ] && [ "$q" -gt 0 ] || { echo "Com_select and the query log disagree"; failed=1; }
fi
if [ "$mode" = kvi-shm ]; then
    # The workers' hit ratio, read from outside as an operator does (issue
    # 19 item 6): the segment counts every Kamailio process's fetches.  A
    # right password is a miss the first time and a hit in every later round
    # and in the wrong-password round; a wrong one is never cached (a miss
    # in each round).  Retransmissions are absorbed before the fetch.
    want_hits=$((NGOOD * ROUNDS)) want_misses=$((NGOOD + NBAD * ROUNDS))
    "$KH_BUILD/kvi" -u "$KH_SHM_URL" stats local >"$KH_DIR/stats.txt" 2>&1 || {
        cat "$KH_DIR/stats.txt"
        failed=1
    }
    sed 's/^/  kvi stats: /' "$KH_DIR/stats.txt"
    hits=$(awk '$1 == "hits" { print $2 }' "$KH_DIR/stats.txt")
    misses=$(awk '$1 == "misses" { print $2 }' "$KH_DIR/stats.txt")
    ratio=$(awk '$1 == "hit_ratio" { print $2 }' "$KH_DIR/stats.txt")
    want_ratio=$(awk -v h=$want_hits -v m=$want_misses 'BEGIN { printf "%.4f", h / (h + m) }')
    if [ "$hits" != "$want_hits" ] || [ "$misses" != "$want_misses" ] || [ "$ratio" != "$want_ratio" ]; then
        echo "kvi stats: hits $hits misses $misses ratio $ratio, want $want_hits $want_misses $want_ratio"
        failed=1
    fi
    "$KH_BUILD/kvi" -u "$KH_SHM_URL" stats local --format prometheus >"$KH_DIR/stats.prom" 2>&1
    grep -qx "kvi_hits_total{engine=\"local\",id=\"local\"} $want_hits" "$KH_DIR/stats.prom" || {
        echo "kvi stats --format prometheus lacks the hits: $(grep hits "$KH_DIR/stats.prom")"
        failed=1
    }
fi
# Cache failures (the script then asks the database) and errors, if any.
grep -E "WARNING|ERROR|CRITICAL" "$KH_DIR/p1/kamailio.log" | head -n 20
[ $failed = 0 ] || kh_die "sip_register_$mode ($db; logs: run with KH_KEEP=1)"
echo "sip_register_$mode ($db): OK"
