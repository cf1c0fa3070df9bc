#!/bin/bash
# sip_bench.sh [--quick] -- the password-cache use case inside Kamailio 5.6,
# four ways, in one run: the same sipp REGISTER-with-digest-auth scenario
# (integrations/kamailio/sipp/register.xml, every user with the right
# password) against
#   (a) kvi over the shared local engine (local://?shm=...; required: a kvi
#       without it fails the run, there is no per-process stand-in),
#   (b) kvi over redis (a redis-server on 127.0.0.1; its CPU is counted),
#   (c) Kamailio's native htable cache,
#   (d) no cache (every REGISTER checked against the subscriber table),
#   (e) kvi over redis with the near cache (client_cache=, docs/engines/
#       redis.md): (b)'s URL plus client_cache, on the same redis-server
#       (database 1; its CPU is counted the same way).
# The subscriber database is SQLite (default) or, with SIP_BENCH_DB=mariadb,
# a MariaDB server on a loopback port (a network round trip away; its CPU
# per pair is shown in its own column).  Each setup has its own table, so
# the queries are counted per setup at the database either way.
# The Kamailio instances (one per setup) run side by side; a rate ladder is walked with the
# setups alternating at every step (the order rotating from rate to rate).
#
# Honest by construction:
#   - a call counts as done only when the credentialed REGISTER got 200 (read
#     per call from sipp's call log); any other final reply is a failed call;
#     a 401/403 to a right password is a wrong answer, never load: the run
#     fails (exit 1), as it does when any warm-up REGISTER is not 200;
#   - subscriber queries are counted at the database (kvi_sql_log.so wraps
#     SQLite's sqlite3_step in every Kamailio process), and a cache (a, b, c)
#     must have asked exactly once per user;
#   - Kamailio CPU = utime+stime of all the instance's processes (/proc); for
#     (b) redis-server's CPU is added (and shown apart); sipp's own CPU per
#     call is a calibration column (it does the same work for every setup);
#     the load average is printed at each step;
#   - "out of mem" in any Kamailio log fails the run.
# A step is clean when every call got 200, none failed, and retransmissions
# stayed under 0.1 % of the calls.  Each setup's highest clean rate is
# reported; a setup stops after two unclean rates in a row.
#
# Environment: KVI_BUILD_DIR (default ./build), SIP_BENCH_USERS (1000),
# SIP_BENCH_RATES ("500 1000 2000 4000 8000" calls/s), SIP_BENCH_STEP_S (3),
# SIP_BENCH_TRIES (2: an unclean step is run once more), SIP_BENCH_ROUNDS (3:
# the ladder is walked that many times, the order of the setups rotating at
# every step; the summary shows per rate the clean try with the median CPU
# per pair, and a rate counts as clean for a setup when most rounds were
# clean there), SIP_BENCH_WORKERS
# ("8": Kamailio UDP workers; "8 2" runs the ladder for each),
# SIP_BENCH_SETUPS ("a b c d e": the setups to run, any of them; the ratios
# need (c)), SIP_BENCH_DB (sqlite | mariadb), SIP_BENCH_OUT (directory for sip_bench.json, sip_bench.tsv, sip_bench.svg;
# default $KVI_BUILD_DIR/sip-bench), KH_KEEP=1 keeps the logs.
# SIP_BENCH_CORRUPT=1 (for the test that the bench can fail): after the
# warm-up, the cached passwords of (a), (b) and (e) are overwritten with
# wrong ones (through another client: (e)'s workers must learn it from the
# server's invalidations).
# --quick: 100 users, rates 100 200, 1 s steps (the smoke test).
set -u
here=$(cd "$(dirname "$0")" && pwd)
export KVI_BUILD_DIR=${KVI_BUILD_DIR:-$(pwd)/build}
KH_BUILD=$KVI_BUILD_DIR
. "$here/../../integrations/kamailio/harness.sh"

USERS=${SIP_BENCH_USERS:-1000}
RATES=${SIP_BENCH_RATES:-"500 1000 2000 4000 8000"}
STEP_S=${SIP_BENCH_STEP_S:-3}
TRIES=${SIP_BENCH_TRIES:-2}
ROUNDS=${SIP_BENCH_ROUNDS:-3}
WORKERS=${SIP_BENCH_WORKERS:-8}
OUT=${SIP_BENCH_OUT:-$KVI_BUILD_DIR/sip-bench}
if [ "${1:-}" = --quick ]; then
    USERS=100 RATES="100 200" STEP_S=1 ROUNDS=1
fi
TCK=$(getconf CLK_TCK)
# Kamailio's memory manager: TLSF for every setup.  Debian's kamailio is
# built with memory debugging (DBG_SR_MEMORY), and its default manager,
# q_malloc, took 27 % of Kamailio's CPU in this use case (perf, every setup
# alike) with a cost that depends on each instance's fragmentation, which
# made the setups differ by the order they ran in.  KH_KAM_ARGS overrides.
export KH_KAM_ARGS=${KH_KAM_ARGS--x tlsf}
# Shared memory by the sizing rule of docs/kamailio.md for the ladder's top
# rate (8000/s: 8000 x 5 s x 10 KB = 400 MB, twice that; -m 512 ran out
# there once a run had gone on for minutes).
export KH_SHM_MB=${KH_SHM_MB:-1024}

kh_require kvi
kh_init
SETUPS=(${SIP_BENCH_SETUPS:-a b c d e})
for s in "${SETUPS[@]}"; do
    case $s in a | b | c | d | e) ;; *) kh_die "SIP_BENCH_SETUPS: '$s' is not one of a b c d e" ;; esac
done
case " ${SETUPS[*]} " in
*" a "*) kh_require_shm ;; # no shared engine: the run fails, (a) is never run per process
esac
DB=${SIP_BENCH_DB:-sqlite}
TABLES=()
for w in $WORKERS; do for s in "${SETUPS[@]}"; do TABLES+=("sub_$s$w"); done; done
DB_ARGS=()
case $DB in
sqlite) kh_make_db "$KH_DIR/subscriber.db" "$USERS" 0 "${TABLES[@]}" ;;
mariadb)
    kh_mariadb_start my
    kh_mariadb_make_db my "$USERS" 0 "${TABLES[@]}"
    DB_ARGS=("KVI_KAM_DB_URL=$KH_MY_URL" KVI_KAM_DB_MODULE=db_mysql.so)
    ;;
*) kh_die "SIP_BENCH_DB must be sqlite or mariadb, not $DB" ;;
esac
kh_redis_start redis
mkdir -p "$OUT" || kh_die "cannot make $OUT"

declare -A LABEL=([a]="kvi, shared local" [b]="kvi, redis" [c]="native htable" [d]="no cache"
    [e]="kvi, redis, near cache")
has() { case " ${SETUPS[*]} " in *" $1 "*) return 0 ;; esac; return 1; }
HARD=0 # wrong answers, out of memory, wrong query counts: the run fails

# The sipp injection file: every user, right password.
grep -v ';bad$' "$KH_DIR/users.csv" >"$KH_DIR/bench.csv"

ticks_of() { # PID: utime+stime of one process, clock ticks
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || { echo 0; return; }
    set -- ${stat##*) }
    echo $((${12} + ${13}))
}

# Results of one sipp run: "n200 non200 wrong" from its call log (wrong =
# 401/403 to a right password).
results_of() {
    awk '{ c[$3]++ } END { n = 0; for (k in c) if (k != "200") n += c[k]
                            printf "%d %d %d\n", c["200"] + 0, n, c["401"] + c["403"] }' "$1" 2>/dev/null || echo "0 0 0"
}

TSV=$OUT/sip_bench.tsv
printf 'workers\tsetup\trate\ttry\tcalls\tok200\tfailed\tretrans\telapsed_s\tkam_ticks\tredis_ticks\tsipp_cpu_s\tload1\tclean\tdb_ticks\tround\n' >"$TSV"
printf '%-7s %-20s %6s %6s %6s %6s %6s %9s %9s %9s %9s %9s %5s %s\n' workers setup rate calls ok200 failed retrans \
    achieved "kam us" "redis us" "total us" "sipp us" load clean
for w in $WORKERS; do
    B_URL="redis://127.0.0.1:${KH_PORT[redis]}/?lazy=yes&connect_timeout=200&timeout=200"
    # (e): its own database, so that (b)'s warm-up does not fill it.
    E_URL="redis://127.0.0.1:${KH_PORT[redis]}/1?lazy=yes&connect_timeout=200&timeout=200&client_cache=10000"
    if has a; then
        KH_SHM_SIZE=64m kh_shm_url "bench-w$w"
        A_URL=$KH_SHM_URL
        kh_kam_start "a$w" KVI_KAM_CHILDREN="$w" "${DB_ARGS[@]}" KVI_SIP_DB_TABLE="sub_a$w" KVI_SIP_CACHE=kvi KVI_SIP_ENGINE=local "KVI_SIP_URLS=$A_URL"
    fi
    has b && kh_kam_start "b$w" KVI_KAM_CHILDREN="$w" "${DB_ARGS[@]}" KVI_SIP_DB_TABLE="sub_b$w" KVI_SIP_CACHE=kvi KVI_SIP_ENGINE=redis "KVI_SIP_URLS=$B_URL"
    has c && kh_kam_start "c$w" KVI_KAM_CHILDREN="$w" "${DB_ARGS[@]}" KVI_SIP_DB_TABLE="sub_c$w" KVI_SIP_CACHE=htable
    has d && kh_kam_start "d$w" KVI_KAM_CHILDREN="$w" "${DB_ARGS[@]}" KVI_SIP_DB_TABLE="sub_d$w" KVI_SIP_CACHE=none
    has e && kh_kam_start "e$w" KVI_KAM_CHILDREN="$w" "${DB_ARGS[@]}" KVI_SIP_DB_TABLE="sub_e$w" KVI_SIP_CACHE=kvi KVI_SIP_ENGINE=redis "KVI_SIP_URLS=$E_URL"
    redis-cli -h 127.0.0.1 -p "${KH_PORT[redis]}" flushall >/dev/null

    # Warm-up: every user registers once on every setup (fills the caches);
    # every REGISTER must get 200.
    for s in "${SETUPS[@]}"; do
        kh_sipp_register "$s$w" "warm-$s$w" "$KH_DIR/bench.csv" 200 >/dev/null
        kh_check_register "$KH_DIR/bench.csv" "$KH_DIR/sipp-warm-$s$w/calls.log" >"$KH_DIR/warm-$s$w.txt" || {
            head -n 5 "$KH_DIR/warm-$s$w.txt"
            kh_die "warm-up of setup ($s) with $w workers: not every REGISTER got 200"
        }
    done
    if [ "${SIP_BENCH_CORRUPT:-0}" = 1 ]; then
        echo "SIP_BENCH_CORRUPT=1: the cached passwords of (a), (b) and (e) are now wrong"
        for ((i = 1; i <= USERS; i++)); do printf 'u%04d\n' "$i"; done | while read -r u; do
            has a && "$KH_BUILD/kvi" -u "$A_URL" store local "passwd_$u" corrupt >/dev/null
            has b && "$KH_BUILD/kvi" -u "$B_URL" store redis "passwd_$u" corrupt >/dev/null
            has e && "$KH_BUILD/kvi" -u "$E_URL" store redis "passwd_$u" corrupt >/dev/null
        done
    fi

    step=0
    for ((round = 1; round <= ROUNDS; round++)); do
    declare -A MISSES=() DEAD=()
    for rate in $RATES; do
        order=("${SETUPS[@]:$((step % ${#SETUPS[@]}))}" "${SETUPS[@]:0:$((step % ${#SETUPS[@]}))}")
        step=$((step + 1))
        for s in "${order[@]}"; do
            [ -n "${DEAD[$s]:-}" ] && continue
            n=$((rate * STEP_S))
            clean=no
            for ((try = 1; try <= TRIES; try++)); do
                tag=$s$w-$rate-r$round-$try
                k0=$(kh_cpu_ticks "$s$w")
                r0=$(ticks_of "${KH_PID[redis]}")
                d0=$([ "$DB" = mariadb ] && ticks_of "${KH_PID[my]}" || echo 0)
                start=$(kh_now)
                TIMEFORMAT='%U %S'
                { time KH_SIPP_TIMEOUT=$((STEP_S * 4 + 30)) kh_sipp "$s$w" "$tag" \
                    -sf "$KH_SRC/sipp/register.xml" -inf "$KH_DIR/bench.csv" -r "$rate" -m "$n" \
                    -l $((rate * 2)) >/dev/null 2>&1; } 2>"$KH_DIR/time-$tag"
                end=$(kh_now)
                k1=$(kh_cpu_ticks "$s$w")
                r1=$(ticks_of "${KH_PID[redis]}")
                d1=$([ "$DB" = mariadb ] && ticks_of "${KH_PID[my]}" || echo 0)
                sipp_cpu=$(awk '{ print $1 + $2 }' "$KH_DIR/time-$tag")
                read -r ok non200 wrong < <(results_of "$KH_DIR/sipp-$tag/calls.log")
                bad=$((n - ok))
                re=$(kh_sipp_stat "$KH_DIR/sipp-$tag/stat.csv" "Retransmissions(C)")
                rt=0
                [ "$s" = b ] || [ "$s" = e ] && rt=$((r1 - r0))
                load=$(cut -d' ' -f1 /proc/loadavg)
                elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
                if [ "$wrong" -gt 0 ]; then
                    echo "FAIL: ($s) ${LABEL[$s]}, $rate calls/s: $wrong REGISTERs with the right password got 401/403"
                    HARD=1
                fi
                if [ "$ok" = "$n" ] && [ $((re * 1000)) -lt "$n" ]; then
                    clean=yes
                fi
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$s" "$rate" "$try" "$n" "$ok" \
                    "$bad" "$re" "$elapsed" $((k1 - k0)) "$rt" "$sipp_cpu" "$load" "$clean" $((d1 - d0)) "$round" >>"$TSV"
                awk -v w="$w" -v lab="(${s}) ${LABEL[$s]}" -v rate="$rate" -v n="$n" -v ok="$ok" -v bad="$bad" \
                    -v re="$re" -v el="$elapsed" -v kt=$((k1 - k0)) -v rt="$rt" -v sc="$sipp_cpu" -v tck="$TCK" \
                    -v load1="$load" -v clean="$clean" -v try="$try" 'BEGIN {
                        f = ok > 0 ? 1e6 / ok : 0
                        printf "%-7s %-20s %6d %6d %6d %6d %6d %7.0f/s %9.1f %9s %9.1f %9.1f %5s %s (try %d)\n",
                               w, lab, rate, n, ok, bad, re, ok / el, kt / tck * f,
                               (rt > 0 ? sprintf("%.1f", rt / tck * f) : "-"), (kt + rt) / tck * f, sc * f, load1, clean, try }'
                [ $clean = yes ] && break
            done
            if [ $clean = yes ]; then
                MISSES[$s]=0
            else
                MISSES[$s]=$((${MISSES[$s]:-0} + 1))
                [ "${MISSES[$s]}" -ge 2 ] && DEAD[$s]=1
            fi
        done
    done
    done # rounds
    for s in "${SETUPS[@]}"; do
        q=$(kh_dbq_total "$s$w" "sub_$s$w")
        echo "$w $s $q" >>"$KH_DIR/queries.txt"
        if [ "$s" != d ] && [ "$q" != "$USERS" ]; then
            echo "FAIL: ($s) ${LABEL[$s]} with $w workers: $q subscriber queries at the database for $USERS users (a cache asks once per user)"
            HARD=1
        fi
        if grep -q "out of mem" "$KH_DIR/$s$w/kamailio.log"; then
            echo "FAIL: ($s) ${LABEL[$s]} with $w workers: Kamailio ran out of shared memory (grep 'out of mem' in its log)"
            HARD=1
        fi
        kh_kam_stop "$s$w"
    done
done

# The summary: per workers and setup, at each rate (the try kept: the
# clean one, else the last), CPU per REGISTER pair and its ratio to the
# native htable at the same rate; the highest clean rate; the goals.
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
echo
echo "== Kamailio 5.6 REGISTER with digest auth, $USERS users, database $DB; $(nproc) CPUs; load average at the end: $load_end"
awk -F'\t' -v tck="$TCK" -v users="$USERS" -v qfile="$KH_DIR/queries.txt" -v json="$OUT/sip_bench.json" \
    -v svg="$OUT/sip_bench.svg" -v step_s="$STEP_S" -v cpus="$(nproc)" -v db="$DB" -v setups="${SETUPS[*]}" '
    BEGIN {
        lab["a"] = "kvi, shared local"; lab["b"] = "kvi, redis (+ redis-server)"; lab["c"] = "native htable"; lab["d"] = "no cache"
        lab["e"] = "kvi, redis, near cache"
        while ((getline line < qfile) > 0) { split(line, q, " "); queries[q[1] "," q[2]] = q[3] }
    }
    NR == 1 { next }
    {
        # Every try is kept; per (workers, setup, rate) the summary shows the
        # clean try with the median CPU per pair over the rounds (else the
        # last try, marked not clean).
        k = $1 "," $2 "," $3
        n = ++rows[k]; row[k, n] = $0
        if ($6 > 0) cpu[k, n] = ($10 + $11) / $6; else cpu[k, n] = 1e18
        if ($14 == "yes") nclean[k]++
        if (!((k, $16) in seen)) { seen[k, $16] = 1; nrounds[k]++ }
        W[$1] = 1; R[$3] = 1
    }
    END {
        for (k in rows) {
            m = 0
            for (i = 1; i <= rows[k]; i++) { split(row[k, i], f, "\t"); if (f[14] == "yes") c[++m] = i }
            for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (cpu[k, c[j]] < cpu[k, c[i]]) { t = c[i]; c[i] = c[j]; c[j] = t }
            pick = m > 0 ? c[int((m + 1) / 2)] : rows[k]
            split(row[k, pick], f, "\t")
            keep[k] = 1; keep_clean[k] = f[14]
            calls[k] = f[5]; ok[k] = f[6]; bad[k] = f[7]; re[k] = f[8]; kt[k] = f[10]; rt[k] = f[11]; sc[k] = f[12]; ld[k] = f[13]; dt[k] = f[15]
            # clean in most of the rounds that ran this rate
            split(k, kk, ",")
            if (2 * nclean[k] > nrounds[k] && kk[3] + 0 > best[kk[1] "," kk[2]] + 0) best[kk[1] "," kk[2]] = kk[3]
            cleanof[k] = (nclean[k] + 0) "/" nrounds[k]
        }
        nr = 0; for (r in R) rates[++nr] = r + 0
        for (i = 1; i <= nr; i++) for (j = i + 1; j <= nr; j++) if (rates[j] < rates[i]) { t = rates[i]; rates[i] = rates[j]; rates[j] = t }
        NS = split(setups, S, " ")
        printf "{\n  \"users\": %d, \"step_s\": %d, \"cpus\": %d, \"database\": \"%s\",\n  \"steps\": [\n", users, step_s, cpus, db > json
        first = 1
        for (w in W) {
            printf "\n%s workers: CPU per REGISTER pair (us; for (b) Kamailio + redis-server = total), ratio to the native htable at the same rate\n", w
            printf "| %-32s |", "setup / rate (calls/s)"
            for (i = 1; i <= nr; i++) printf " %16d |", rates[i]
            printf " %-11s | %-9s |\n", "clean up to", "DB queries"
            printf "|%s|", "----------------------------------"
            for (i = 1; i <= nr; i++) printf "%s|", "------------------"
            printf "%s|%s|\n", "-------------", "-----------"
            for (si = 1; si <= NS; si++) {
                s = S[si]
                printf "| %-32s |", "(" s ") " lab[s]
                for (i = 1; i <= nr; i++) {
                    k = w "," s "," rates[i]; kc = w ",c," rates[i]
                    if (!(k in keep) || ok[k] == 0) { printf " %16s |", "-"; continue }
                    us = (kt[k] + rt[k]) / tck * 1e6 / ok[k]
                    cell = sprintf("%.0f", us)
                    if (keep_clean[k] != "yes") cell = cell "!"
                    if (s != "c" && (kc in keep) && ok[kc] > 0 && kt[kc] > 0) cell = cell sprintf(" %.2fx", us / (kt[kc] / tck * 1e6 / ok[kc]))
                    printf " %16s |", cell
                    US[w "," s "," rates[i]] = us
                }
                printf " %-11s | %-9s |\n", (((w "," s) in best) ? best[w "," s] "/s" : "none"), queries[w "," s]
            }
            for (si = 1; si <= NS; si++) {
                s = S[si]
                if (s != "b" && s != "e") continue
                printf "| %-32s |", "redis-server part of (" s ")"
                for (i = 1; i <= nr; i++) { k = w "," s "," rates[i]; printf " %16s |", ((k in keep) && ok[k] > 0 ? sprintf("%.0f", rt[k] / tck * 1e6 / ok[k]) : "-") }
                printf " %-11s | %-9s |\n", "", ""
            }
            if (db == "mariadb") for (si = 1; si <= NS; si++) {
                s = S[si]
                printf "| %-32s |", "MariaDB server CPU, (" s ")"
                for (i = 1; i <= nr; i++) { k = w "," s "," rates[i]; printf " %16s |", ((k in keep) && ok[k] > 0 ? sprintf("%.0f", dt[k] / tck * 1e6 / ok[k]) : "-") }
                printf " %-11s | %-9s |\n", "", ""
            }
            printf "| %-32s |", "sipp CPU per call (calibration)"
            for (i = 1; i <= nr; i++) { k = w ",c," rates[i]; printf " %16s |", ((k in keep) && ok[k] > 0 ? sprintf("%.0f", sc[k] * 1e6 / ok[k]) : "-") }
            printf " %-11s | %-9s |\n", "", ""
            printf "| %-32s |", "load average (1 min, at (c))"
            for (i = 1; i <= nr; i++) { k = w ",c," rates[i]; printf " %16s |", ((k in keep) ? ld[k] : "-") }
            printf " %-11s | %-9s |\n", "", ""
            for (si = 1; si <= NS; si++) for (i = 1; i <= nr; i++) {
                s = S[si]; k = w "," s "," rates[i]
                if (!(k in keep)) continue
                printf "%s    {\"workers\": %d, \"setup\": \"%s\", \"label\": \"%s\", \"rate\": %d, \"calls\": %d, \"ok200\": %d, \"failed\": %d, \"retransmissions\": %d, \"clean\": %s, \"kamailio_us_per_pair\": %.1f, \"redis_us_per_pair\": %.1f, \"sipp_us_per_call\": %.1f, \"db_server_us_per_pair\": %.1f, \"load1\": %s}", \
                    first ? "" : ",\n", w, s, lab[s], rates[i], calls[k], ok[k], bad[k], re[k], keep_clean[k] == "yes" ? "true" : "false", \
                    ok[k] ? kt[k] / tck * 1e6 / ok[k] : 0, ok[k] ? rt[k] / tck * 1e6 / ok[k] : 0, ok[k] ? sc[k] * 1e6 / ok[k] : 0, ok[k] ? dt[k] / tck * 1e6 / ok[k] : 0, ld[k] > json
                first = 0
            }
        }
        printf "\n  ],\n  \"highest_clean_rate\": {" > json
        first = 1
        for (w in W) for (si = 1; si <= NS; si++) { s = S[si]; printf "%s\"%s,%s\": %d", first ? "" : ", ", w, s, best[w "," s] + 0 > json; first = 0 }
        printf "},\n  \"db_queries\": {" > json
        first = 1
        for (w in W) for (si = 1; si <= NS; si++) { s = S[si]; printf "%s\"%s,%s\": %d", first ? "" : ", ", w, s, queries[w "," s] + 0 > json; first = 0 }
        printf "}\n}\n" > json
        close(json)

        # The plot: CPU per pair against rate, one line per setup (solid:
        # the most workers; dashed: fewer).
        ymax = 0; for (k in US) if (US[k] > ymax) ymax = US[k]
        if (ymax == 0) ymax = 1
        ymax = ymax * 1.1; xmax = rates[nr] * 1.05
        col["a"] = "#1f77b4"; col["b"] = "#d62728"; col["c"] = "#2ca02c"; col["d"] = "#7f7f7f"; col["e"] = "#9467bd"
        X0 = 70; Y0 = 40; PW = 600; PH = 340
        printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", X0 + PW + 220, Y0 + PH + 60 > svg
        printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<text x=\"%d\" y=\"20\" font-size=\"14\">Kamailio CPU per REGISTER pair (us) against rate (calls/s), %d users</text>\n", X0, users > svg
        printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/><line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", X0, Y0 + PH, X0 + PW, Y0 + PH, X0, Y0, X0, Y0 + PH > svg
        for (t = 0; t <= 4; t++) {
            yv = ymax * t / 4; yy = Y0 + PH - PH * t / 4
            printf "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.0f</text><line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ddd\"/>\n", X0 - 5, yy + 4, yv, X0, yy, X0 + PW, yy > svg
        }
        for (i = 1; i <= nr; i++) printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", X0 + PW * rates[i] / xmax, Y0 + PH + 16, rates[i] > svg
        li = 0
        for (w in W) for (si = 1; si <= NS; si++) {
            s = S[si]; pts = ""
            for (i = 1; i <= nr; i++) { k = w "," s "," rates[i]; if (k in US) pts = pts sprintf("%.1f,%.1f ", X0 + PW * rates[i] / xmax, Y0 + PH - PH * US[k] / ymax) }
            if (pts == "") continue
            dash = (w + 0 < 8) ? " stroke-dasharray=\"6,4\"" : ""
            printf "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"%s\"/>\n", col[s], dash, pts > svg
            printf "<text x=\"%d\" y=\"%d\" fill=\"%s\">(%s) %s, %s workers</text>\n", X0 + PW + 10, Y0 + 14 + 16 * li++, col[s], s, lab[s], w > svg
        }
        printf "</svg>\n" > svg
    }' "$TSV"
echo "(cells: CPU per REGISTER pair = challenge + authenticated REGISTER answered 200, in us, with the ratio to"
echo " the native htable at the same rate; '!' = the step was not clean (a failed call or >= 0.1 % retransmissions);"
echo " CPU: utime+stime of every process of the Kamailio instance, for (b) and (e) plus redis-server's; step ${STEP_S} s,"
echo " up to ${TRIES} tries per step, ${ROUNDS} rounds (median of the clean tries); DB queries counted at the database for the whole run, warm-up included)"
echo "table: $TSV  json: $OUT/sip_bench.json  plot: $OUT/sip_bench.svg"

# The goals of issue 19 at 4000 calls/s, 8 workers (reported, not judged:
# the machine is shared and its load decides).  Paired by round: the ratio
# of a setup to the htable in each round where both were clean there (they
# ran within seconds of each other), then the median of those ratios.
awk -F'\t' 'NR > 1 && $1 == 8 && $3 == 4000 && $14 == "yes" { us[$2, $16] = ($10 + $11) / $6; R[$16] = 1 }
    function ratio(s,    r, m, i, j, t, a) {
        m = 0
        for (r in R) if (((s, r) in us) && ((("c"), r) in us) && us["c", r] > 0) a[++m] = us[s, r] / us["c", r]
        if (m == 0) return -1
        for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        n_used = m
        return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    }
    END {
        ra = ratio("a"); na = n_used; rb = ratio("b"); nb = n_used; re = ratio("e"); ne = n_used
        if (ra < 0) print "goal (a) <= 1.05x htable at 4000/s, 8 workers: no round where (a) and (c) were both clean there"
        else printf "goal (a) <= 1.05x htable at 4000/s, 8 workers: %.2fx (median of %d paired rounds) %s\n", ra, na, ra <= 1.05 ? "met" : "NOT met"
        if (rb < 0) print "goal (b) <= 1.3x htable at 4000/s, 8 workers: no round where (b) and (c) were both clean there"
        else printf "goal (b) <= 1.3x htable at 4000/s, 8 workers, redis-server included: %.2fx (median of %d paired rounds) %s\n", rb, nb, rb <= 1.3 ? "met" : "NOT met"
        if (re < 0) print "goal (b) with the near cache, (e), <= 1.3x htable at 4000/s, 8 workers: no round where (e) and (c) were both clean there"
        else printf "goal (b) with the near cache, (e), <= 1.3x htable at 4000/s, 8 workers, redis-server included: %.2fx (median of %d paired rounds) %s\n", re, ne, re <= 1.3 ? "met" : "NOT met"
    }' "$TSV"

# A setup that never had every call answered 200, at any rate, did not
# work (retransmissions aside: those are the machine's).
for w in $WORKERS; do
    for s in "${SETUPS[@]}"; do
        awk -F'\t' -v w="$w" -v s="$s" '$1 == w && $2 == s && $5 == $6 { f = 1 } END { exit !f }' "$TSV" ||
            { echo "FAIL: ($s) ${LABEL[$s]} with $w workers: at no rate did every call get 200"; HARD=1; }
    done
done
[ $HARD = 0 ] && echo "sip_bench: every REGISTER answered right (200 or not at all), every cache asked the database once per user"
exit $HARD
