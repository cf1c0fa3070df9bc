#!/bin/bash
# sip_bench.sh [--quick] -- the password-cache use case inside Kamailio 5.6,
# four ways, in one run: the same sipp REGISTER-with-digest-auth scenario
# (integrations/kamailio/sipp/register.xml, every user with the right
# password) against
#   (a) kvi over the shared local engine (local://?shm=...),
#   (b) kvi over redis (a redis-server on 127.0.0.1),
#   (c) Kamailio's native htable cache,
#   (d) no cache (every REGISTER checked against the SQLite subscriber table).
# Four Kamailio instances (8 workers each) run side by side; a rate ladder is
# walked with the setups alternating at every step (the order rotating from
# rate to rate).  Per setup it reports the
# highest clean rate (every call done, 0 failed, < 0.1 % retransmissions),
# Kamailio CPU per authenticated REGISTER (utime+stime of all its processes,
# from /proc, in microseconds per REGISTER pair = challenge + authenticated
# REGISTER, over the rates at which every setup answered every call) and the
# subscriber-table queries the script made (user count = one per user).
#
# Environment: KVI_BUILD_DIR (default ./build), SIP_BENCH_USERS (1000),
# SIP_BENCH_RATES ("250 500 1000 2000 3000 4000 6000 8000" calls/s),
# SIP_BENCH_STEP_S (4 s per step), SIP_BENCH_TRIES (2: a step that is not
# clean is run once more; a setup stops after two rates in a row that were
# not clean -- the machine is shared), KH_KEEP=1 keeps the logs.
# --quick: 100 users, rates 100 200, 1 s steps (the smoke test).
set -u
here=$(cd "$(dirname "$0")" && pwd)
export KVI_BUILD_DIR=${KVI_BUILD_DIR:-$(pwd)/build}
KH_BUILD=$KVI_BUILD_DIR
. "$here/../../integrations/kamailio/harness.sh"

USERS=${SIP_BENCH_USERS:-1000}
RATES=${SIP_BENCH_RATES:-"250 500 1000 2000 3000 4000 6000 8000"}
STEP_S=${SIP_BENCH_STEP_S:-4}
TRIES=${SIP_BENCH_TRIES:-2}
if [ "${1:-}" = --quick ]; then
    USERS=100 RATES="100 200" STEP_S=1
fi
TCK=$(getconf CLK_TCK)

kh_require kvi
kh_init
kh_make_db "$KH_DIR/subscriber.db" "$USERS" 0
kh_redis_start redis

SETUPS=(a b c d)
declare -A LABEL=([a]="kvi, shared local" [b]="kvi, redis" [c]="native htable" [d]="no cache")
declare -A QUERIES CLEAN_RATE TICKS_AT CALLS_AT RETR_AT TICKS CALLS DEAD MISSES
if "$KH_BUILD/kvi" -u "local://?shm=kvi-sip-probe-$$&max_memory=1m" ping local >/dev/null 2>&1; then
    kh_shm_unlink "kvi-sip-probe-$$"
    kh_shm_url bench
    kh_kam_start a KVI_SIP_CACHE=kvi KVI_SIP_ENGINE=local "KVI_SIP_URLS=$KH_SHM_URL"
else
    echo "NOTE: this kvi has no shared local engine; (a) uses the in-process local engine (one cache per worker)"
    LABEL[a]="kvi, local per process"
    kh_kam_start a KVI_SIP_CACHE=kvi KVI_SIP_ENGINE=local "KVI_SIP_URLS=local://"
fi
kh_kam_start b KVI_SIP_CACHE=kvi KVI_SIP_ENGINE=redis "KVI_SIP_URLS=redis://127.0.0.1:${KH_PORT[redis]}/"
kh_kam_start c KVI_SIP_CACHE=htable
kh_kam_start d KVI_SIP_CACHE=none

# The sipp injection file: every user, right password.
grep -v ';bad$' "$KH_DIR/users.csv" >"$KH_DIR/bench.csv"

# Warm-up: every user registers once on every setup (fills the caches).
for s in "${SETUPS[@]}"; do
    kh_sipp_register "$s" "warm-$s" "$KH_DIR/bench.csv" 200 >/dev/null ||
        kh_die "warm-up of setup $s failed (logs: KH_KEEP=1)"
done

# Idle CPU of each instance (its timer processes), to say how much of the
# per-REGISTER figure is background.
IDLE_S=3
declare -A I0 IDLE_TPS ELAPSED_AT ELAPSED
for s in "${SETUPS[@]}"; do I0[$s]=$(kh_cpu_ticks "$s"); done
sleep $IDLE_S
for s in "${SETUPS[@]}"; do
    IDLE_TPS[$s]=$(awk -v a="${I0[$s]}" -v b="$(kh_cpu_ticks "$s")" -v t=$IDLE_S 'BEGIN { printf "%.3f", (b - a) / t }')
done

load=$(cut -d' ' -f1-3 /proc/loadavg)
printf '%-24s %8s %8s %8s %8s %9s %10s %s\n' setup "rate" calls failed retrans "achieved" "us/REG" clean
step=0
for rate in $RATES; do
    # The order rotates from rate to rate, so that no setup always runs
    # right after another one's load.
    order=("${SETUPS[@]:$((step % 4))}" "${SETUPS[@]:0:$((step % 4))}")
    step=$((step + 1))
    for s in "${order[@]}"; do
        [ -n "${DEAD[$s]:-}" ] && continue
        n=$((rate * STEP_S))
        for ((try = 1; try <= TRIES; try++)); do
            t0=$(kh_cpu_ticks "$s")
            start=$(kh_now)
            KH_SIPP_TIMEOUT=$((STEP_S * 4 + 30)) kh_sipp "$s" "$s-$rate-$try" -sf "$KH_SRC/sipp/register.xml" \
                -inf "$KH_DIR/bench.csv" -r "$rate" -m "$n" -l $((rate * 2)) >/dev/null 2>&1
            end=$(kh_now)
            t1=$(kh_cpu_ticks "$s")
            stat=$KH_DIR/sipp-$s-$rate-$try/stat.csv
            ok=$(kh_sipp_stat "$stat" "SuccessfulCall(C)")
            bad=$(kh_sipp_stat "$stat" "FailedCall(C)")
            re=$(kh_sipp_stat "$stat" "Retransmissions(C)")
            got=$(awk -v n="$ok" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", n / (b - a) }')
            us=$(awk -v t=$((t1 - t0)) -v k="$TCK" -v n="$ok" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / k / n; else print "-" }')
            clean=no
            if [ "$ok" = "$n" ] && [ "$bad" = 0 ]; then
                # Every call done: CPU comparable.  Keep the try with the
                # fewest retransmissions (each one is a message more).
                if [ -z "${RETR_AT[$s,$rate]:-}" ] || [ "$re" -lt "${RETR_AT[$s,$rate]}" ]; then
                    TICKS_AT[$s,$rate]=$((t1 - t0))
                    CALLS_AT[$s,$rate]=$ok
                    RETR_AT[$s,$rate]=$re
                    ELAPSED_AT[$s,$rate]=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
                fi
                if [ $((re * 1000)) -lt $((2 * n)) ]; then
                    clean=yes
                    CLEAN_RATE[$s]=$rate
                fi
            fi
            printf '%-24s %8s %8s %8s %8s %9s %10s %s\n' "${LABEL[$s]}" "$rate" "$ok" "$bad" "$re" "$got/s" "$us" "$clean (try $try)"
            [ $clean = yes ] && break
        done
        # Two rates in a row not clean: higher ones will not be either.
        if [ $clean = yes ]; then
            MISSES[$s]=0
        else
            MISSES[$s]=$((${MISSES[$s]:-0} + 1))
            [ "${MISSES[$s]}" -ge 2 ] && DEAD[$s]=1
        fi
    done
done

# CPU is compared over the rates at which every setup answered every call
# (retransmissions allowed: they cost the same work in every setup).
common=""
for rate in $RATES; do
    all=1
    for s in "${SETUPS[@]}"; do [ -n "${CALLS_AT[$s,$rate]:-}" ] || all=0; done
    [ $all = 1 ] || continue
    common+="${common:+ }$rate"
    for s in "${SETUPS[@]}"; do
        TICKS[$s]=$((${TICKS[$s]:-0} + ${TICKS_AT[$s,$rate]}))
        ELAPSED[$s]=$(awk -v a="${ELAPSED[$s]:-0}" -v b="${ELAPSED_AT[$s,$rate]}" 'BEGIN { print a + b }')
        CALLS[$s]=$((${CALLS[$s]:-0} + ${CALLS_AT[$s,$rate]}))
    done
done

echo
echo "== Kamailio 5.6 REGISTER with digest auth, $USERS users, 8 workers; load average before the ladder: $load, after: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
printf '| %-26s | %-22s | %-28s | %-16s | %-20s |\n' setup "highest clean rate" "Kamailio CPU per REGISTER" "of it idle" "subscriber queries"
printf '|%s|%s|%s|%s|%s|\n' "----------------------------" "------------------------" "------------------------------" "------------------" "----------------------"
for s in "${SETUPS[@]}"; do
    us=$(awk -v t="${TICKS[$s]:-0}" -v k="$TCK" -v n="${CALLS[$s]:-0}" 'BEGIN { if (n > 0) printf "%.1f us", t * 1e6 / k / n; else print "-" }')
    ratio=""
    if [ "$s" != c ] && [ "${CALLS[c]:-0}" -gt 0 ] && [ "${CALLS[$s]:-0}" -gt 0 ]; then
        ratio=$(awk -v a="${TICKS[$s]}" -v na="${CALLS[$s]}" -v c="${TICKS[c]}" -v nc="${CALLS[c]}" \
            'BEGIN { if (c > 0) printf " (%.2fx htable)", (a / na) / (c / nc) }')
    fi
    idle=$(awk -v r="${IDLE_TPS[$s]}" -v e="${ELAPSED[$s]:-0}" -v k="$TCK" -v n="${CALLS[$s]:-0}" \
        'BEGIN { if (n > 0) printf "%.1f us", r * e * 1e6 / k / n; else print "-" }')
    QUERIES[$s]=$(kh_dbq_total "$s")
    printf '| %-26s | %-22s | %-28s | %-16s | %-20s |\n' "(${s}) ${LABEL[$s]}" "$([ -n "${CLEAN_RATE[$s]:-}" ] && echo "${CLEAN_RATE[$s]} calls/s" || echo "none clean")" "$us$ratio" "$idle" "${QUERIES[$s]}"
done
echo "(CPU: utime+stime of every Kamailio process of the setup / REGISTER pairs answered 200, summed over the"
echo " rates at which all four setups answered every call; \"of it idle\": the instance's own idle CPU rate, measured"
echo " for ${IDLE_S} s before the ladder, times the steps' duration, per REGISTER; rates:"
echo " ${common:-none}; step ${STEP_S} s, up to ${TRIES} tries per step)"

# Not a timing goal but a fact the run must show: a shared cache asks the
# database once per user (the per-process fallback of (a) cannot).
bad=0
for s in a b c; do
    [ "$s" = a ] && [ "${LABEL[a]}" != "kvi, shared local" ] && continue
    if [ "${QUERIES[$s]}" != "$USERS" ]; then
        echo "FAIL: (${s}) ${LABEL[$s]} queried the database ${QUERIES[$s]} times for $USERS users"
        bad=1
    fi
done
[ $bad = 0 ] && echo "queries: every shared cache asked the database exactly once per user"
exit $bad
