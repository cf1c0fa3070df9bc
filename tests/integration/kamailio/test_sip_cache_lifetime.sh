#!/bin/bash
# sip_cache_lifetime_<engine>: the cached password lives KVI_SIP_LIFETIME
# seconds, shared by Kamailio's 8 workers.  Lifetime L = 4 s; sipp registers
# 40 users (+4 with a wrong password) in four rounds: r1, r2 at once, then a
# pause longer than L, then r3, r4 at once.  Each right-password user must
# be looked up in the subscriber table exactly twice (r1 and r3: one query
# per user per lifetime, whichever worker takes the REGISTER); a
# wrong-password user in every round.  The rounds' start and end times are
# measured: a round pair that took too long on a stalled machine to tell
# "same lifetime" from "expired" widens the allowed count by one (said
# loudly) instead of failing on timing.
# Engines: redis (kvi over redis-server), redis-nc (the same with the near
# cache, client_cache: its entries must die with the key's TTL, which the
# server does not announce before it deletes the key), shm (the shared
# local engine).
set -u
engine=${1:?usage: test_sip_cache_lifetime.sh redis|redis-nc|shm}
. "${KVI_SOURCE_DIR:?}/integrations/kamailio/harness.sh"
kh_require kvi
kh_init
NGOOD=40 NBAD=4 L=4
kh_make_db "$KH_DIR/subscriber.db" $NGOOD $NBAD
case $engine in
redis)
    kh_redis_start redis
    args=(KVI_SIP_ENGINE=redis "KVI_SIP_URLS=redis://127.0.0.1:${KH_PORT[redis]}/")
    ;;
redis-nc)
    kh_redis_start redis
    args=(KVI_SIP_ENGINE=redis "KVI_SIP_URLS=redis://127.0.0.1:${KH_PORT[redis]}/?client_cache=1000")
    ;;
shm)
    kh_require_shm
    kh_shm_url life
    args=(KVI_SIP_ENGINE=local "KVI_SIP_URLS=$KH_SHM_URL")
    ;;
*) kh_die "unknown engine $engine" ;;
esac
kh_kam_start p1 KVI_SIP_CACHE=kvi KVI_SIP_LIFETIME=$L KVI_KAM_CHILDREN=8 "${args[@]}"

failed=0
declare -A T0 T1
round() {
    T0[$1]=$(kh_now)
    if ! kh_sipp_register p1 "$1" "$KH_DIR/users.csv" 200; then
        echo "sipp $1: not every call completed:"
        tail -n 20 "$KH_DIR/sipp-$1/sipp.out"
        failed=1
    fi
    T1[$1]=$(kh_now)
    kh_check_register "$KH_DIR/users.csv" "$KH_DIR/sipp-$1/calls.log" || failed=1
}
round r1
round r2
sleep $((L + 2))
round r3
round r4

# A pair of rounds counts as "within one lifetime" when the first started
# less than L-1 s before the second ended, and as "expired" when the second
# started more than L+1 s after the first ended.
extra=0
within() { awk -v a="$1" -v b="$2" -v l=$L 'BEGIN { exit !(b - a < l - 1) }'; }
beyond() { awk -v a="$1" -v b="$2" -v l=$L 'BEGIN { exit !(b - a > l + 1) }'; }
for pair in "r1 r2" "r3 r4"; do
    set -- $pair
    if ! within "${T0[$1]}" "${T1[$2]}"; then
        echo "NOTE: rounds $1+$2 took longer than $((L - 1)) s (stalled machine): allowing one more query per user"
        extra=$((extra + 1))
    fi
done
beyond "${T1[r2]}" "${T0[r3]}" || kh_die "the pause between r2 and r3 was shorter than L+1 s (test bug)"

kh_dbq p1 >"$KH_DIR/dbq.txt"
kh_check_dbq "$KH_DIR/dbq.txt" $NGOOD $NBAD 2 $((2 + extra)) 4 4 || failed=1
grep -E "WARNING|ERROR|CRITICAL" "$KH_DIR/p1/kamailio.log" | head -n 20
[ $failed = 0 ] || kh_die "sip_cache_lifetime_$engine"
echo "sip_cache_lifetime_$engine: OK (lifetime $L s, 4 rounds)"
