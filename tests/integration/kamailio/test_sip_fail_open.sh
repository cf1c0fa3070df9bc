#!/bin/bash
# sip_fail_open_<case>: the password cache fails open -- Kamailio (8 workers)
# answers every REGISTER from the database while kvi cannot define or reach
# the cache, logs the failure once per KVI_SIP_RETRY_S seconds per process
# (not once per request), never falls back silently to a per-process cache,
# and uses the cache again once it is back.  40 users with the right
# password, 4 with a wrong one; every round checks every REGISTER (200 for a
# right password, 401/403 for a wrong one) from sipp's log, and the
# subscriber queries are counted at the database (sql_log.c).
# Cases:
#   redis-down-at-start  a plain (non-lazy) redis URL whose server is not
#                        running when the workers start: r1 from the
#                        database; redis started; after the retry interval
#                        r2 fills the cache, r3 is served by it (2 queries
#                        per right-password user in all);
#   redis-killed         the shipped URL (lazy, short timeouts); r1 fills the
#                        cache, redis is killed (SIGKILL) in the middle of
#                        r2 (before the kill from the cache, after it from
#                        the database), r3 from the database, redis started
#                        again (empty) and, once the engine's breaker let
#                        calls through, r4 fills, r5 hits (3 or 4 queries
#                        per user);
#   shm-mismatch         the shared segment exists with another size than
#                        the URL's: the definition is refused; three rounds,
#                        each from the database (3 queries per user: no
#                        per-process "local" cache in its place).
# Wrong passwords: one query per round in every case.
set -u
case=${1:?usage: test_sip_fail_open.sh redis-down-at-start|redis-killed|shm-mismatch}
. "${KVI_SOURCE_DIR:?}/integrations/kamailio/harness.sh"
kh_require kvi
kh_init
NGOOD=40 NBAD=4 RETRY_S=2
kh_make_db "$KH_DIR/subscriber.db" $NGOOD $NBAD
KVI=$KH_BUILD/kvi

failed=0
# round TAG: every user registers once; status 1 unless every REGISTER was
# answered right (callers: `round rN || failed=1`, also in the background).
round() {
    local rc=0
    kh_sipp_register p1 "$1" "$KH_DIR/users.csv" "${KH_SIPP_RATE:-200}" || {
        echo "sipp $1: not every REGISTER was answered:"
        tail -n 20 "$KH_DIR/sipp-$1/sipp.out"
        rc=1
    }
    kh_check_register "$KH_DIR/users.csv" "$KH_DIR/sipp-$1/calls.log" || rc=1
    return $rc
}
start_redis_on() { # NAME PORT
    mkdir -p "$KH_DIR/$1"
    KH_PORT[$1]=$2
    kh_redis_restart "$1"
}

case $case in
redis-down-at-start)
    port=$(kh_free_port tcp)
    kh_kam_start p1 KVI_SIP_CACHE=kvi KVI_SIP_ENGINE=redis KVI_SIP_RETRY_S=$RETRY_S \
        "KVI_SIP_URLS=redis://127.0.0.1:$port/"
    round r1 || failed=1
    start_redis_on redis "$port"
    sleep $((RETRY_S + 1))
    round r2 || failed=1
    round r3 || failed=1
    want=2
    ;;
redis-killed)
    kh_redis_start redis
    kh_kam_start p1 KVI_SIP_CACHE=kvi KVI_SIP_ENGINE=redis KVI_SIP_RETRY_S=$RETRY_S \
        "KVI_SIP_URLS=redis://127.0.0.1:${KH_PORT[redis]}/?lazy=yes&connect_timeout=200&timeout=200"
    round r1 || failed=1
    # Killed in the middle of a round (44 REGISTERs at 40/s, the kill after
    # 0.4 s): those before it are served from the cache, the rest from the
    # database, every one answered.
    KH_SIPP_RATE=40 round r2 &
    r2=$!
    sleep 0.4
    kh_redis_stop redis
    wait $r2 || failed=1
    round r3 || failed=1
    kh_redis_restart redis
    sleep 3 # the redis engine's breaker lets calls through again after down_for (2 s)
    round r4 || failed=1
    round r5 || failed=1
    want="3 4"
    ;;
shm-mismatch)
    kh_require_shm
    kh_shm_url mismatch
    # The segment is made first, 2 MiB; the URL asks for another size.
    "$KVI" -u "${KH_SHM_URL%%&*}&max_memory=2m" ping local >/dev/null || kh_die "cannot make the segment"
    kh_kam_start p1 KVI_SIP_CACHE=kvi KVI_SIP_ENGINE=local KVI_SIP_RETRY_S=$RETRY_S \
        "KVI_SIP_URLS=${KH_SHM_URL%%&*}&max_memory=16m"
    round r1 || failed=1
    round r2 || failed=1
    round r3 || failed=1
    want=3
    ;;
*) kh_die "unknown case $case" ;;
esac
nrounds=$(ls -d "$KH_DIR"/sipp-r* | wc -l)

kh_dbq p1 >"$KH_DIR/dbq.txt"
set -- $want
kh_check_dbq "$KH_DIR/dbq.txt" $NGOOD $NBAD "$1" "${2:-$1}" "$nrounds" "$nrounds" || failed=1

# The failures were logged, and only once per interval and process: the
# runs above last a few seconds, so no process may have written more than
# 1 + (run time / RETRY_S) lines of one kind.
secs=$(($(date +%s) - $(stat -c %Y "$KH_DIR/users.csv") + 1))
limit=$((1 + secs / RETRY_S))
read -r total most < <(kh_log_lines p1 'kvi:? (cannot define|fetch|store)')
echo "cache failures logged: $total lines, at most $most by one process (limit $limit per kind in $secs s)"
[ "$total" -gt 0 ] || { echo "the cache failure was not logged"; failed=1; }
for kind in 'cannot define' fetch store; do
    read -r _ most < <(kh_log_lines p1 "kvi:? $kind")
    [ "$most" -le "$limit" ] || { echo "'$kind' logged $most times by one process, want <= $limit"; failed=1; }
done
grep -E "kvi: " "$KH_DIR/p1/kamailio.log" | head -n 5
grep -E "CRITICAL|out of mem" "$KH_DIR/p1/kamailio.log" && { echo "critical lines or out of memory in the log"; failed=1; }
[ $failed = 0 ] || kh_die "sip_fail_open_$case (logs: run with KH_KEEP=1)"
echo "sip_fail_open_$case: OK"
