#!/usr/bin/env bash
# test_cli_stats.sh KVI -- `kvi stats` on a shared collection (issue 19
# item 6): two kvi processes attached at once do known numbers of hits and
# misses, a third `kvi stats` shows every process's exact totals and the hit
# ratio; --format prometheus checked line by line (HELP/TYPE/sample grammar,
# families grouped, no password in any label); --interval N --count 2 prints
# two blocks, the second with the rates over the interval; the options'
# usage errors; a collection that is not shared keeps its own counters.
set -u

KVI=${1:?usage: test_cli_stats.sh PATH_TO_KVI}
. "$(dirname "$0")/../support/testlib.sh"
t_init cli-stats

SHM=kvi-cli-stats-$$
SEG=/dev/shm/kvi.$SHM
U="local://?shm=$SHM&max_memory=4m"
rm -f "$SEG"
trap 'rm -f "$SEG"; t_cleanup' EXIT
KVI_CMD=("$KVI" -u "$U")

run store local h hit
expect "store h" 0 ''
run store local c 5
expect "store c" 0 ''

# worker FILE HITS MISSES: a shell (one process, attached throughout) that
# fetches h HITS times and absent keys MISSES times.
worker() {
    local i
    {
        for i in $(seq "$2"); do echo "fetch local h"; done
        for i in $(seq "$3"); do echo "fetch local absent-$i"; done
    } | "$KVI" -u "$U" shell >"$1.out" 2>"$1.err"
}
worker "$T/w1" 40 10 &
p1=$!
worker "$T/w2" 25 15 &
p2=$!
wait $p1
wait $p2
check "worker 1 fetched 40 hits" test "$(grep -c '^hit$' "$T/w1.out")" = 40
check "worker 2 fetched 25 hits" test "$(grep -c '^hit$' "$T/w2.out")" = 25

# A third process reads the totals: 2 stores + 90 fetches, 65 hits, 25
# misses, ratio 65/90.
run stats local
expect "stats of the shared collection" 0 '*' ''
for line in "  ops       92" "  errors    0" "  misses    25" "  hits      65" \
    "  hit_ratio 0.7222" "  processes 1" "  entries   2"; do
    checks=$((checks + 1))
    grep -qx -- "$line" "$T/out" || fail "stats lacks the line '$line': $(cat "$T/out")"
done
check "stats says the counts are every process's" grep -q '^  shared    yes' "$T/out"
check "the first line is still the id" test "$(head -1 "$T/out")" = "local:"

run --json stats local
expect "stats --json" 0 '*' ''
check "stats --json totals" grep -Eq \
    '^\{"status":"ok","stats":\{"local":\{"ops":92,"errors":0,"misses":25,.*"hits":65,.*"hit_ratio":0\.7222,"shared":true,"processes":1\}\}\}$' \
    "$T/out"

# ---- Prometheus text format ------------------------------------------------
PW=PromSeCrEt42
KVI_CMD=("$KVI" -u "$U" -u "local:plain://" -u "redis:pw://u:$PW@127.0.0.1:1/?lazy=yes")
if ! "$KVI" -u "redis:x://127.0.0.1:1/?lazy=yes" engines >/dev/null 2>&1; then
    echo "NOTE: no redis module: the prometheus check runs without a redis id (no password)"
    [ "${KVI_REQUIRE_SERVERS:-0}" != 1 ] || fail "no redis module under KVI_REQUIRE_SERVERS=1"
    KVI_CMD=("$KVI" -u "$U" -u "local:plain://")
fi
run stats --format prometheus
expect "stats --format prometheus" 0 '*' ''
checks=$((checks + 1))
if ! awk '
    function bad(why) { print "line " NR ": " why ": " $0; err = 1 }
    /^# HELP / {
        if ($3 !~ /^kvi_[a-z_]+$/ || NF < 4) bad("HELP line")
        if ($3 in seen) bad("family " $3 " appears twice")
        seen[$3] = 1; help = $3; next
    }
    /^# TYPE / {
        if ($3 != help) bad("TYPE without its HELP")
        if ($4 != "counter" && $4 != "gauge" || NF != 4) bad("TYPE line")
        if ($4 == "counter" && $3 !~ /_total$/) bad("a counter not named _total")
        family = $3; nsamples[family] = 0; next
    }
    {
        if ($0 !~ /^kvi_[a-z_]+\{engine="[a-z]+",id="[^"\\]*"\} [0-9]+(\.[0-9]+)?$/) bad("sample line")
        name = $0; sub(/\{.*/, "", name)
        if (name != family) bad("sample outside its family " family)
        nsamples[family]++
    }
    END {
        for (f in seen) if (nsamples[f] == 0) { print "family " f " has no sample"; err = 1 }
        exit err
    }' "$T/out"; then
    fail "prometheus output is not well formed"
fi
for line in 'kvi_ops_total{engine="local",id="local"} 92' \
    'kvi_hits_total{engine="local",id="local"} 65' \
    'kvi_misses_total{engine="local",id="local"} 25' \
    'kvi_errors_total{engine="local",id="local"} 0' \
    'kvi_hit_ratio{engine="local",id="local"} 0.722222' \
    'kvi_shared{engine="local",id="local"} 1' \
    'kvi_processes{engine="local",id="local"} 1' \
    'kvi_shared{engine="local",id="local:plain"} 0' \
    'kvi_ops_total{engine="local",id="local:plain"} 0' \
    '# TYPE kvi_ops_total counter' '# TYPE kvi_hit_ratio gauge'; do
    checks=$((checks + 1))
    grep -qxF -- "$line" "$T/out" || fail "prometheus output lacks '$line'"
done
check "no ratio for an id that looked nothing up" \
    test "$(grep -c '^kvi_hit_ratio{' "$T/out")" = 1
check "no processes gauge for a collection that is not shared" \
    test "$(grep -c '^kvi_processes{' "$T/out")" = 1
checks=$((checks + 1))
if grep -aqF "$PW" "$T/out"; then fail "the password shows in the prometheus output"; fi

# ---- --interval N --count M ---------------------------------------------------
KVI_CMD=("$KVI" -u "$U")
run stats local --interval 1 --count 2
expect "stats --interval 1 --count 2" 0 '*' ''
check "two blocks" test "$(grep -c '^local:$' "$T/out")" = 2
check "blocks apart" test "$(grep -c '^$' "$T/out")" = 1
check "rates only in the second block" test "$(grep -c '^  ops/s ' "$T/out")" = 1
# Nobody works between the readings: every rate is 0 (a rate of the totals
# would show 92 ops).
for line in "  ops/s     0.000" "  misses/s  0.000" "  hits/s    0.000" \
    "  hit_ratio/interval -"; do
    checks=$((checks + 1))
    grep -qx -- "$line" "$T/out" || fail "interval block lacks '$line': $(cat "$T/out")"
done
iv=$(awk '$1 == "interval_s" { print $2 }' "$T/out")
check "the interval took about a second (a loaded machine may add some)" \
    awk -v v="$iv" 'BEGIN { exit !(v >= 0.95 && v < 5) }'

# With work in the interval: a worker runs once the first block is out.  It
# must end before the second reading: 8 s leave a loaded machine (ASan, two
# cores) room for the worker's start-up and its 40 fetches.
"$KVI" -u "$U" stats local --interval 8 --count 2 >"$T/iv.out" 2>"$T/iv.err" &
ps=$!
for _ in $(seq 400); do
    grep -q '^  processes' "$T/iv.out" && break
    sleep 0.05
done
worker "$T/w3" 30 10
wait $ps
rc=$?
cp "$T/iv.out" "$T/out"
cp "$T/iv.err" "$T/err"
expect "stats --interval 8 --count 2 with a worker" 0 '*' ''
check "interval hit ratio of the worker's fetches" grep -qx '  hit_ratio/interval 0.7500' "$T/out"
check "totals after the worker" grep -qx '  ops       132' "$T/out"

run --json stats local --interval 1 --count 2
expect "stats --json --interval" 0 '*' ''
check "one JSON document per block" test "$(grep -c '^{"status":"ok","stats":{"local":{' "$T/out")" = 2
check "rates in the second document" grep -q '"ops/s":0.000,.*"interval_s":[0-9]' "$T/out"

run stats local --interval 1 --count 2 --format prometheus
expect "prometheus every second" 0 '*' ''
check "two prometheus blocks" test "$(grep -c '^# TYPE kvi_ops_total counter$' "$T/out")" = 2

# ---- usage ---------------------------------------------------------------------
for args in "--count 2" "--interval 0" "--interval x" "--interval 86401" "--interval 1 --count 0" \
    "--format xml" "--format" "--interval 1 --interval 2" "--count 1 --interval 1 --count 2" \
    "--format text --format prometheus" "--format text --format text"; do
    run stats local $args
    expect "stats $args is a usage error" 2 '' '*'
done
run --json stats local --format prometheus
expect "--format prometheus with --json" 2 '*' '*'

# ---- a collection that is not shared: this process's own counters ----------------
KVI_CMD=("$KVI" -u "local://")
run stats local
expect "stats of an in-process collection" 0 '*' ''
check "its ops are its own (none)" grep -qx '  ops       0' "$T/out"
check "no shared line" test "$(grep -c '^  shared' "$T/out")" = 0
check "no ratio without lookups" grep -qx '  hit_ratio -' "$T/out"

echo "$checks checks, $fails failed"
[ "$fails" = 0 ]
