#!/bin/bash
# sip_billing_cluster: prepaid billing across two Kamailio instances (8
# workers each) sharing the credits in a 3-master Redis Cluster through kvi.
# Each INVITE reserves KVI_KAM_MAX_CALL_S * cost (20 units) with the bounded
# sub (min 0), the dialog module tracks the call, its end gives back what the
# call did not use.  sipp callers (uac_call.xml, calls of 0.3..2.3 s, several
# per user at once) on both instances, one sipp callee (uas_call.xml).
# Users: b0001..b0004 rich (1000), b0050 contended (47: two reservations at
# a time), b0090 poor (5: none).  Asserts:
#   - every call got 200 or 403; rich users only 200, the poor one only 403;
#   - no credit below 0: every reservation left >= 0, every final credit >= 0;
#   - credits exact: final = initial - sum of the charges both instances
#     logged, per user; one charge record per answered call, none lost;
#   - each charge is secs * cost, at most the reservation, for a call of at
#     most 10 s (the calls last 0.3..2.3 s; slack for a stalled machine).
set -u
. "${KVI_SOURCE_DIR:?}/integrations/kamailio/harness.sh"
kh_require kvi
kh_init
kh_make_db "$KH_DIR/subscriber.db" 1 0
kh_cluster_start rc 3
KVI=$KH_BUILD/kvi
URL="redis:billing://$KH_CLUSTER_SEEDS/?cluster=yes"
MAX_CALL_S=20 COST=1
RESERVE=$((MAX_CALL_S * COST))

declare -A CREDIT=([b0001]=1000 [b0002]=1000 [b0003]=1000 [b0004]=1000 [b0050]=47 [b0090]=5)
for u in "${!CREDIT[@]}"; do
    "$KVI" -u "$URL" store redis:billing "credit_$u" "${CREDIT[$u]}" || kh_die "cannot set the credit of $u"
done
{
    echo SEQUENTIAL
    for u in b0001 b0002 b0003 b0004; do for _ in 1 2 3; do echo "$u"; done; done
    for _ in 1 2 3 4; do echo b0050; done
    echo b0090
    echo b0090
} >"$KH_DIR/calls.csv"
NCALLS=$(($(wc -l <"$KH_DIR/calls.csv") - 1))

common=(KVI_SIP_CACHE=none "KVI_SIP_URLS=$URL" KVI_SIP_BILLING=redis:billing
        KVI_SIP_COST_PER_S=$COST KVI_KAM_MAX_CALL_S=$MAX_CALL_S)
kh_kam_start pa "${common[@]}"
kh_kam_start pb "${common[@]}"

uas_port=$(kh_free_port udp)
mkdir -p "$KH_DIR/uas"
(cd "$KH_DIR/uas" && exec setpriv --pdeathsig KILL -- sipp -sf "$KH_SRC/sipp/uas_call.xml" \
    -i 127.0.0.1 -p "$uas_port" -nostdin -trace_err -error_file "$KH_DIR/uas/errors.log" \
    >"$KH_DIR/uas/sipp.out" 2>&1) &
uas_pid=$!
KH_PIDS+=("$uas_pid")
sleep 0.5
kill -0 $uas_pid 2>/dev/null || { cat "$KH_DIR/uas/sipp.out"; kh_die "the callee sipp did not start"; }

failed=0
pa_port=$(kh_free_port udp) pb_port=$(kh_free_port udp)
KH_SIPP_PORT=$pa_port kh_sipp pa uac-a -sf "$KH_SRC/sipp/uac_call.xml" -inf "$KH_DIR/calls.csv" \
    -key uas "127.0.0.1:$uas_port" -r 50 -l 8 -m $NCALLS &
a=$!
KH_SIPP_PORT=$pb_port kh_sipp pb uac-b -sf "$KH_SRC/sipp/uac_call.xml" -inf "$KH_DIR/calls.csv" \
    -key uas "127.0.0.1:$uas_port" -r 50 -l 8 -m $NCALLS &
b=$!
wait $a || { echo "caller sipp on instance a: not every call completed"; tail -n 25 "$KH_DIR/sipp-uac-a/sipp.out"; failed=1; }
wait $b || { echo "caller sipp on instance b: not every call completed"; tail -n 25 "$KH_DIR/sipp-uac-b/sipp.out"; failed=1; }
kh_stop_pid $uas_pid

cat "$KH_DIR/sipp-uac-a/calls.log" "$KH_DIR/sipp-uac-b/calls.log" >"$KH_DIR/results.txt"
grep -h 'kvi-cdr ' "$KH_DIR/pa/kamailio.log" "$KH_DIR/pb/kamailio.log" |
    sed 's/.*kvi-cdr //' >"$KH_DIR/cdr.txt"
grep -h 'kvi-bill reserved ' "$KH_DIR/pa/kamailio.log" "$KH_DIR/pb/kamailio.log" |
    sed 's/.*kvi-bill reserved //' >"$KH_DIR/reserved.txt"
grep -h -E 'kvi: (reserve|refund|cannot define)|kvi-bill-lost' "$KH_DIR/pa/kamailio.log" "$KH_DIR/pb/kamailio.log" && failed=1

for u in $(printf '%s\n' "${!CREDIT[@]}" | sort); do
    final=$("$KVI" -u "$URL" counter redis:billing "credit_$u") || kh_die "cannot read the credit of $u"
    echo "$u ${CREDIT[$u]} $final"
done >"$KH_DIR/credits.txt"

awk -v ncalls=$((2 * NCALLS)) -v reserve=$RESERVE -v cost=$COST '
    FILENAME ~ /results/ { calls++; res[$1 " " $2]++; if ($2 == "200") ok[$1]++; else if ($2 == "403") no[$1]++; else { printf "call of %s: %s\n", $1, $2; bad++ } next }
    FILENAME ~ /reserved/ { split($1, a, "="); split($3, l, "="); if (l[2] < 0) { printf "credit below 0: %s\n", $0; bad++ } nres[a[2]]++; next }
    FILENAME ~ /cdr/ {
        for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        u = f["user"]; ncdr[u]++; charged[u] += f["charge"]
        if (f["event"] != "dialog:end") { printf "call not ended by BYE: %s\n", $0; bad++ }
        if (f["charge"] < 0 || f["charge"] > reserve || f["charge"] != f["secs"] * cost || f["secs"] > 10) { printf "bad charge: %s\n", $0; bad++ }
        next
    }
    FILENAME ~ /credits/ {
        u = $1; init = $2; final = $3
        if (final < 0) { printf "%s: credit %d below 0\n", u, final; bad++ }
        if (final != init - charged[u]) { printf "%s: credit %d, want %d - %d charged = %d\n", u, final, init, charged[u], init - charged[u]; bad++ }
        if (ncdr[u] != ok[u]) { printf "%s: %d charge records for %d answered calls\n", u, ncdr[u], ok[u]; bad++ }
        if (nres[u] != ok[u]) { printf "%s: %d reservations for %d answered calls\n", u, nres[u], ok[u]; bad++ }
        if (u ~ /^b000/ && no[u] > 0) { printf "%s (rich): %d calls refused\n", u, no[u]; bad++ }
        if (u == "b0090" && ok[u] > 0) { printf "%s (no credit): %d calls answered\n", u, ok[u]; bad++ }
        if (u == "b0090" && no[u] != 4) { printf "%s (no credit): %d calls refused, want 4\n", u, no[u]; bad++ }
        if (u == "b0050" && ok[u] < 1) { printf "%s (contended): no call answered\n", u; bad++ }
        printf "%-6s credit %5d -> %5d  answered %2d  refused %2d  charged %3d\n", u, init, final, ok[u], no[u], charged[u]
        next
    }
    END {
        if (calls != ncalls) { printf "%d call results, want %d\n", calls, ncalls; bad++ }
        printf "billing: %d calls, %d wrong results\n", calls, bad
        exit bad != 0
    }' "$KH_DIR/results.txt" "$KH_DIR/reserved.txt" "$KH_DIR/cdr.txt" "$KH_DIR/credits.txt" || failed=1
grep -h -E "WARNING|ERROR|CRITICAL" "$KH_DIR/pa/kamailio.log" "$KH_DIR/pb/kamailio.log" | head -n 20
[ $failed = 0 ] || kh_die "sip_billing_cluster"
echo "sip_billing_cluster: OK"
